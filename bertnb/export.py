"""The model outside PyTorch: ONNX export, a check with onnxruntime, and Netron to look at the graph.

Built in chapter 10. `export_onnx` writes one self-contained `.onnx` file whose inputs are the course's
`tokens [B, m]`, `segments [B, m]` and `valid_lens [B]`, with B and m left free (dynamic), so the same file
runs any batch size and any length up to max_len. `start_netron` serves that file to the Netron viewer on
127.0.0.1; `onnx_graph_svg` draws the same graph statically, for readers who cannot run a server.

Facts this relies on (torch >= 2.9, netron 9.x; checked in their sources):
- `torch.onnx.export(..., dynamo=True)` (the default since torch 2.9) takes `dynamic_shapes`, not the old
  `dynamic_axes`; `external_data=False` keeps the weights inside the one file.
- torch.export specialises a dimension whose example size is 0 or 1, so the example batch and length are >= 2.
- `BertModel` skips its input checks while exporting (`torch.compiler.is_exporting()`): data-dependent
  checks cannot be traced. The exported graph therefore trusts its inputs: 1 <= valid_lens <= m.
- `netron.start(file, address=("127.0.0.1", 0), browse=False)` returns the (host, port) it serves on, and
  `netron.stop(address)` stops it. Offline, Netron's page first shows a consent prompt (it tries ipinfo.io).
"""

from __future__ import annotations

import ast
import collections
import contextlib
import logging
import os
import socket
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .flow import quiet_root_logging, render_svg
from .model import BertForPreTraining, BertModel

ONNX_INPUTS = ("tokens", "segments", "valid_lens")
EXPORTABLE = "BertModel or BertForPreTraining"


# --------------------------------------------------------------------------------------------------------
# What the exported graph computes. ONNX outputs are a flat tuple of tensors, so each model gets a small
# wrapper that says which tensors come out and in what order.


class EncoderForExport(nn.Module):
    """BertModel as an ONNX graph: (tokens, segments, valid_lens) -> (X [B, m, n], pooled [B, n]).

    Built in chapter 10."""

    output_names = ("X", "pooled")

    def __init__(self, model: BertModel):
        super().__init__()
        self.model = model

    def forward(self, tokens, segments, valid_lens):
        X = self.model(tokens, segments, valid_lens)  # [B, m, n]
        return X, self.model.pool(X)  # [B, m, n], [B, n]


class PreTrainingForExport(nn.Module):
    """BertForPreTraining as an ONNX graph: (tokens, segments, valid_lens) -> (X [B, m, n], mlm_logits
    [B, m, V], nsp_logits [B, 2]). The MLM head runs at every position (p = m), so a fill-mask demo can read
    any position without a fourth input.

    Built in chapter 10."""

    output_names = ("X", "mlm_logits", "nsp_logits")

    def __init__(self, model: BertForPreTraining):
        super().__init__()
        self.model = model

    def forward(self, tokens, segments, valid_lens):
        B, m = tokens.shape
        every_position = torch.arange(m, device=tokens.device).expand(B, m)  # [B, m]: p = m
        return self.model(tokens, segments, valid_lens, every_position)  # [B, m, n], [B, m, V], [B, 2]


def export_wrapper(model: nn.Module) -> nn.Module:
    """The wrapper that fixes the graph's outputs for `model`, or a TypeError naming the allowed types.

    Built in chapter 10."""
    if isinstance(model, BertForPreTraining):
        return PreTrainingForExport(model)
    if isinstance(model, BertModel):
        return EncoderForExport(model)
    raise TypeError(f"export_onnx exports a {EXPORTABLE}, got {type(model).__name__}")


def writable_output_path(path) -> Path:
    """`path` as a Path whose folder exists and can be written, or an error that names the problem.

    Built in chapter 10."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder: give a file name, e.g. {path / 'model.onnx'}")
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {folder} does not exist: create it first (mkdir -p {folder})")
    existed = path.exists()
    try:  # try it: permission bits alone do not tell (root ignores them; read-only file systems do not)
        with open(path, "ab"):
            pass
    except OSError as error:
        raise PermissionError(f"cannot write {path}: {error.strerror}; choose a writable folder, e.g. runs/") from None
    if not existed:
        path.unlink()
    return path


def example_inputs(cfg, device=None):
    """Example (tokens, segments, valid_lens) for tracing: B = 2 and m = min(8, max_len), both >= 2 so the
    exporter keeps them dynamic (it specialises sizes 0 and 1). Row 1 is padded, so the mask is traced.

    Built in chapter 10."""
    if cfg.max_len < 2:
        raise ValueError(f"max_len must be >= 2 to export a dynamic length, got {cfg.max_len}")
    B, m = 2, min(8, cfg.max_len)
    tokens = torch.randint(0, cfg.vocab_size, (B, m), device=device)  # [B, m]
    segments = torch.zeros_like(tokens)  # [B, m]
    valid_lens = torch.tensor([m, m - 1], device=device)  # [B]: the second row has one pad position
    return tokens, segments, valid_lens


@contextlib.contextmanager
def quiet_exporter():
    """Hide the exporter's notes that say nothing about our model: optional torchvision operators it skips,
    dynamic-axis renaming and deprecations inside torch. Errors still show.

    Built in chapter 10."""
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with quiet_root_logging(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"# The axis name")
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:
        exporter_log.setLevel(level)


def export_onnx(model: nn.Module, path) -> Path:
    """Export a BertModel or BertForPreTraining to one self-contained ONNX file at `path`; returns the path.

    Inputs `tokens [B, m]`, `segments [B, m]`, `valid_lens [B]` (int64), with B and m dynamic (1 <= m <=
    max_len). Outputs: `X`, `pooled` for a BertModel; `X`, `mlm_logits`, `nsp_logits` for a
    BertForPreTraining. The model is exported in eval mode (no dropout) and put back in its own mode after.

    Built in chapter 10."""
    wrapper = export_wrapper(model)
    path = writable_output_path(path)
    device = next(model.parameters()).device
    batch = torch.export.Dim("batch", min=1)
    length = torch.export.Dim("length", min=1, max=model.cfg.max_len)
    dynamic_shapes = {"tokens": {0: batch, 1: length}, "segments": {0: batch, 1: length}, "valid_lens": {0: batch}}
    was_training = model.training
    wrapper.eval()
    try:
        with quiet_exporter(), torch.no_grad():
            torch.onnx.export(wrapper, example_inputs(model.cfg, device), str(path), dynamo=True,
                              input_names=list(ONNX_INPUTS), output_names=list(wrapper.output_names),
                              dynamic_shapes=dynamic_shapes, external_data=False, verbose=False)
    finally:
        model.train(was_training)
    return path


# --------------------------------------------------------------------------------------------------------
# Running the file with onnxruntime


def onnx_session(path, threads: int | None = None):
    """An onnxruntime CPU session for the ONNX file at `path` (`threads` intra-op threads; None: its default).

    Built in chapter 10."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX file at {path}: write one with export_onnx(model, path)")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session, tokens, segments, valid_lens) -> dict:
    """Run an exported model on torch tensors (or arrays): {output name: numpy array}.

    Built in chapter 10."""
    feeds = {name: np.asarray(value.cpu() if isinstance(value, torch.Tensor) else value, dtype=np.int64)
             for name, value in zip(ONNX_INPUTS, (tokens, segments, valid_lens))}
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def max_diff_at_real_positions(ours, theirs, valid_lens) -> float:
    """Largest |ours - theirs| over the real (non-pad) positions of [B, m, ...] outputs.

    Pad positions are excluded: nothing reads them, and the model leaves them unspecified. Built in chapter 10."""
    ours, theirs = (np.asarray(t.detach().cpu() if isinstance(t, torch.Tensor) else t) for t in (ours, theirs))
    if ours.shape != theirs.shape:
        raise ValueError(f"shapes differ: {ours.shape} vs {theirs.shape}")
    valid_lens = np.asarray(valid_lens.cpu() if isinstance(valid_lens, torch.Tensor) else valid_lens)
    real = np.arange(ours.shape[1])[None, :] < valid_lens[:, None]  # [B, m], True at real tokens
    return float(np.abs(ours - theirs)[real].max())


# --------------------------------------------------------------------------------------------------------
# Looking at the graph without a server: the node list, drawn by the same DOT renderer as the call graphs


def onnx_op_counts(path) -> collections.Counter:
    """How many nodes of each operator type (MatMul, Add, Softmax, ...) the ONNX graph at `path` has.

    Built in chapter 10."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return collections.Counter(node.op_type for node in graph.node)


def _module_of(node) -> str:
    """The model part a node comes from, from the exporter's name scopes: 'embeddings', 'layers.0.attention',
    'pooler', ... ('' for shape bookkeeping that belongs to no module)."""
    scopes = dict((p.key, p.value) for p in node.metadata_props).get("pkg.torch.onnx.name_scopes", "[]")
    parts = [part for part in ast.literal_eval(scopes)[:-1] if part]  # [..., 'model.layers.0.attention.W_q']
    if not parts:
        return ""
    names = parts[-1].split(".")[1:]  # drop the wrapper's attribute ("model")
    names = [name for name in names if name != "bert"]  # BertForPreTraining.bert.layers -> layers
    if len(names) >= 2 and names[1].isdigit():  # layers.0.attention: a layer and its part
        return ".".join(names[:3])
    return names[0] if names else ""


def onnx_graph_dot(path, max_nodes: int = 120) -> str:
    """The ONNX graph at `path` as DOT text: one box per operator (its type), grouped by model part, arrows
    along the tensors; weights are not drawn. At most `max_nodes` operators (the first ones in order).

    Built in chapter 10."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    nodes = list(graph.node)[:max_nodes]
    made_by = {}  # tensor name -> id of the node (or graph input) that produces it
    lines = ['digraph onnx {', 'rankdir="TB"; ranksep=0.25; nodesep=0.2; node [fontname="Helvetica", fontsize=10, height=0.3];']
    for value in graph.input:
        made_by[value.name] = f"in_{value.name}"
        lines.append(f'"in_{value.name}" [label="{value.name}", shape=ellipse, style=filled, fillcolor="#cde4ff"];')
    groups = collections.defaultdict(list)
    for i, node in enumerate(nodes):
        groups[_module_of(node)].append(f'"n{i}" [label="{node.op_type}", shape=box, style="rounded,filled", '
                                        f'fillcolor="#eeeeee"];')
        for output in node.output:
            made_by[output] = f"n{i}"
    for k, (module, members) in enumerate(sorted(groups.items())):
        if module:
            lines += [f'subgraph "cluster_{k}" {{', f'label="{module}"; style=dotted;', *members, "}"]
        else:
            lines += members
    for i, node in enumerate(nodes):
        for name in node.input:
            if name in made_by:  # weights (initializers) have no producer and are left out
                lines.append(f'"{made_by[name]}" -> "n{i}";')
    for value in graph.output:
        if value.name in made_by:
            lines.append(f'"out_{value.name}" [label="{value.name}", shape=ellipse, style=filled, '
                         f'fillcolor="#d5f5d5"];')
            lines.append(f'"{made_by[value.name]}" -> "out_{value.name}";')
    lines.append("}")
    return "\n".join(lines)


def onnx_graph_svg(path, out, max_nodes: int = 120) -> Path:
    """Draw the ONNX graph at `path` (see `onnx_graph_dot`) to the SVG file `out`; returns its path.

    Built in chapter 10."""
    out = writable_output_path(out)
    dot_file = out.with_suffix(".gv")
    dot_file.write_text(onnx_graph_dot(path, max_nodes))
    return render_svg(dot_file, out)


# --------------------------------------------------------------------------------------------------------
# Netron, served on loopback


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could listen on host:port now.

    Built in chapter 10."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Python's HTTPServer binds
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class NetronServer:
    """A Netron viewer serving one model file on 127.0.0.1. `url` to open it, `stop()` to end it, `show()`
    to embed it in a notebook.

    Built in chapter 10."""

    path: Path
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def running(self) -> bool:
        import netron

        return netron.status((self.host, self.port))

    def stop(self) -> None:
        import netron

        with quiet_root_logging():
            netron.stop((self.host, self.port))

    def show(self, height: int = 600):
        """Embed the viewer in the notebook: through Colab's port proxy on Colab, through
        jupyter-server-proxy on Binder (JupyterHub), elsewhere as an IFrame to 127.0.0.1, which only a
        browser on the kernel's own machine can reach (a line below it says so)."""
        from IPython.display import IFrame, display

        if "google.colab" in sys.modules:
            from google.colab import output

            output.serve_kernel_port_as_iframe(self.port, height=height)
            return
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
        if prefix:  # Binder: the hub proxies {prefix}proxy/{port}/ to the kernel's localhost:port
            display(IFrame(f"{prefix.rstrip('/')}/proxy/{self.port}/", width="100%", height=height))
            return
        display(IFrame(self.url, width="100%", height=height))
        print(f"Netron serves {self.path.name} at {self.url} on the machine that runs this kernel. If your "
              f"browser runs elsewhere, the frame above stays empty: forward the port "
              f"(ssh -L {self.port}:127.0.0.1:{self.port} <kernel machine>) and open {self.url}.")


def start_netron(path, port: int | None = None) -> NetronServer:
    """Serve the model file `path` to the Netron viewer on 127.0.0.1, on `port` or a free one (None).

    Returns a NetronServer (`.url`, `.stop()`, `.show()`). Raises FileNotFoundError for a missing file and
    OSError when `port` is busy. Offline, the page first shows a consent prompt: Netron tries to reach
    ipinfo.io; dismissing it is fine. Built in chapter 10."""
    import netron

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}: export one first, e.g. export_onnx(model, {str(path)!r})")
    if port is not None:
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"port must be an int from 1 to 65535, or None for a free one; got {port!r}")
        if not port_is_free(port):
            raise OSError(f"port {port} on 127.0.0.1 is busy (another server listens there): choose another "
                          f"port, or port=None for a free one")
    with quiet_root_logging():  # netron.serve would otherwise configure the root logger at INFO
        host, bound = netron.start(str(path), address=("127.0.0.1", port or 0), browse=False)
    return NetronServer(path=path, host=host, port=bound)
