"""bertnb.export: the ONNX file runs in onnxruntime like the model runs in torch (at batch sizes and lengths
other than the export example's, padded rows included), bad arguments get clear errors, and Netron serves
the file on loopback and stops. A tiny config keeps each export to a few seconds."""

import os
import socket
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from bertnb.export import (ONNX_INPUTS, export_onnx, max_diff_at_real_positions, onnx_graph_dot, onnx_op_counts,  # noqa: E402
                           onnx_session, run_onnx, start_netron)
from bertnb.model import BertConfig, BertForPreTraining, BertModel  # noqa: E402

TOLERANCE = 1e-4  # max |torch - onnxruntime| at real positions, float32
CFG = BertConfig(vocab_size=97, hidden_size=32, num_layers=2, num_heads=4, ffn_size=64, max_len=40)
# (B, m) unlike the export example's (2, 8): one sequence, odd lengths, the longest allowed
SHAPES = [(1, 5), (3, 17), (5, CFG.max_len)]


def random_inputs(B, m, seed):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, CFG.vocab_size, (B, m), generator=g)  # [B, m]
    segments = torch.randint(0, 2, (B, m), generator=g)  # [B, m]
    valid_lens = torch.randint(1, m + 1, (B,), generator=g)  # [B]
    valid_lens[0] = 1  # the most padded row: only <cls> is real (no row is ever fully masked)
    valid_lens[-1] = m if B > 1 else 1  # and one unpadded row
    return tokens, segments, valid_lens


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory):
    torch.manual_seed(0)
    model = BertModel(CFG).train()  # exported in eval mode, then given back in its own mode
    path = export_onnx(model, tmp_path_factory.mktemp("encoder") / "encoder.onnx")
    assert model.training
    return model.eval(), path


@pytest.fixture(scope="module")
def pretraining_file(tmp_path_factory):
    torch.manual_seed(1)
    model = BertForPreTraining(CFG).eval()
    return model, export_onnx(model, tmp_path_factory.mktemp("pretraining") / "pretraining.onnx")


def test_the_file_is_one_self_contained_graph_with_named_dynamic_inputs(encoder_file):
    _, path = encoder_file
    assert sorted(p.name for p in path.parent.iterdir()) == ["encoder.onnx"]  # no external weight files
    graph = onnx.load(str(path), load_external_data=False).graph
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in graph.initializer)  # weights inside
    inputs = {value.name: value.type.tensor_type for value in graph.input}
    assert tuple(inputs) == ONNX_INPUTS
    for name, tensor_type in inputs.items():
        assert tensor_type.elem_type == onnx.TensorProto.INT64, name
        dims = tensor_type.shape.dim
        assert all(d.dim_param and not d.dim_value for d in dims), f"{name} has a fixed dimension: {dims}"
    assert [value.name for value in graph.output] == ["X", "pooled"]


@pytest.mark.parametrize("B, m", SHAPES)
def test_encoder_matches_torch_at_other_shapes(encoder_file, B, m):
    model, path = encoder_file
    tokens, segments, valid_lens = random_inputs(B, m, seed=B * 100 + m)
    with torch.no_grad():
        X = model(tokens, segments, valid_lens)  # [B, m, n]
        pooled = model.pool(X)  # [B, n]
    out = run_onnx(onnx_session(path), tokens, segments, valid_lens)
    assert out["X"].shape == (B, m, CFG.hidden_size)
    assert all(np.isfinite(value).all() for value in out.values())  # no NaN from the padding mask, anywhere
    assert max_diff_at_real_positions(X, out["X"], valid_lens) <= TOLERANCE
    np.testing.assert_allclose(out["pooled"], pooled.numpy(), atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("B, m", SHAPES[:2])
def test_pretraining_model_matches_torch_at_other_shapes(pretraining_file, B, m):
    model, path = pretraining_file
    tokens, segments, valid_lens = random_inputs(B, m, seed=B + m)
    every_position = torch.arange(m).expand(B, m)  # [B, m]: the exported MLM head reads every position
    with torch.no_grad():
        X, mlm_logits, nsp_logits = model(tokens, segments, valid_lens, every_position)
    out = run_onnx(onnx_session(path), tokens, segments, valid_lens)
    assert list(out) == ["X", "mlm_logits", "nsp_logits"]
    assert out["mlm_logits"].shape == (B, m, CFG.vocab_size)
    assert max_diff_at_real_positions(X, out["X"], valid_lens) <= TOLERANCE
    assert max_diff_at_real_positions(mlm_logits, out["mlm_logits"], valid_lens) <= TOLERANCE
    np.testing.assert_allclose(out["nsp_logits"], nsp_logits.numpy(), atol=TOLERANCE, rtol=0)


def test_export_leaves_dropout_out_of_the_graph(encoder_file):
    _, path = encoder_file  # the model was in training mode, with dropout 0.1, when it was exported
    assert "Dropout" not in onnx_op_counts(path)


def test_the_static_graph_names_the_operators_and_the_model_parts(encoder_file):
    _, path = encoder_file
    dot = onnx_graph_dot(path)
    for text in ('label="tokens"', 'label="Softmax"', 'label="LayerNormalization"', 'label="embeddings"',
                 'label="layers.0.attention"', 'label="X"'):
        assert text in dot


def test_the_difference_ignores_pad_positions():
    ours = np.zeros((2, 3, 4), dtype=np.float32)
    theirs = ours.copy()
    theirs[1, 2] = 7.0  # a pad position of row 1 (valid_lens 2)
    theirs[0, 1] = 0.5  # a real one
    assert max_diff_at_real_positions(ours, theirs, torch.tensor([3, 2])) == 0.5


def test_bad_arguments_get_clear_errors(tmp_path):
    with pytest.raises(TypeError, match="BertModel or BertForPreTraining.*Linear"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "m.onnx")
    model = BertModel(CFG)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_onnx(model, tmp_path / "missing" / "m.onnx")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        export_onnx(model, tmp_path)
    if os.geteuid() == 0:  # root writes through permission bits: use a folder no one can create files in
        unwritable = "/proc/bertnb-model.onnx"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        unwritable = locked / "m.onnx"
    with pytest.raises(PermissionError, match="cannot write"):
        export_onnx(model, unwritable)
    with pytest.raises(FileNotFoundError, match="export_onnx"):
        onnx_session(tmp_path / "nothing.onnx")


# ---------------------------------------------------------------------------------------------------------
# Netron, on loopback only


def get(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read()


def test_netron_serves_the_model_on_loopback_and_stops(encoder_file):
    _, path = encoder_file
    server = start_netron(path)
    try:
        assert server.host == "127.0.0.1" and server.url == f"http://127.0.0.1:{server.port}"
        status, page = get(server.url)
        assert status == 200 and b'content="/data/encoder.onnx"' in page  # the viewer page names our file
        status, served = get(f"{server.url}/data/encoder.onnx")
        assert status == 200 and served == path.read_bytes()
    finally:
        server.stop()
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        get(server.url)


def test_netron_errors_for_a_busy_port_and_a_missing_file(encoder_file, tmp_path):
    _, path = encoder_file
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match=f"port {port} on 127.0.0.1 is busy"):
            start_netron(path, port=port)
    with pytest.raises(FileNotFoundError, match="no model file"):
        start_netron(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="port must be"):
        start_netron(path, port=70000)
