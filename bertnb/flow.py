"""What calls what in bertnb: call graphs found by code2flow, drawn to SVG offline.

Built in chapter 10 (chapter 00 shows the package map). code2flow reads the source (it imports nothing) and
writes a graph in DOT, Graphviz's text format; a DOT renderer lays it out as SVG. The renderer is
`graphviz-pure` (a pip package, the same bytes on every platform), or Graphviz's own `dot` where that is
installed (Colab, Binder). code2flow only writes SVG itself when `dot` is on PATH, so we ask it for DOT.

code2flow matches calls by name, statically. So `model(x)` (which runs `forward` through `__call__`) draws
no arrow, and `loss.backward()` draws one to any method of ours named `backward`: read the graphs as
"probably calls", not as a trace.
"""

from __future__ import annotations

import ast
import collections
import contextlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent  # bertnb/
INSTALL_HINT = ("no DOT renderer found: install one with `pip install graphviz-pure` (or Graphviz's `dot`: "
                "`apt install graphviz`, `conda install graphviz`)")


@contextlib.contextmanager
def quiet_root_logging():
    """Keep libraries that call logging.basicConfig (code2flow, netron) from configuring the notebook's root
    logger: while a handler is attached, basicConfig does nothing, and their INFO lines go nowhere.

    Built in chapter 10."""
    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def find_dot_renderer() -> str:
    """The path of a DOT renderer: graphviz-pure (on PATH or beside this Python, as in a venv whose bin/ is
    not on PATH), else Graphviz's `dot`; a RuntimeError naming the install command when there is none.

    Built in chapter 10."""
    beside_python = Path(sys.executable).parent / "graphviz-pure"
    for candidate in (shutil.which("graphviz-pure"), beside_python if beside_python.exists() else None,
                      shutil.which("dot")):
        if candidate:
            return str(candidate)
    raise RuntimeError(INSTALL_HINT)


def render_svg(dot_file, svg_file) -> Path:
    """Lay out the DOT file `dot_file` as the SVG file `svg_file`; returns its path.

    Built in chapter 10."""
    renderer = find_dot_renderer()
    result = subprocess.run([renderer, "-Tsvg", str(dot_file), "-o", str(svg_file)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{Path(renderer).name} could not render {dot_file}: {result.stderr.strip()}")
    return Path(svg_file)


# --------------------------------------------------------------------------------------------------------
# What a target names


def package_modules() -> dict:
    """{dotted module name: file} for every module of bertnb that defines a function (nothing else to draw).

    Built in chapter 10."""
    modules = {}
    for file in sorted(PACKAGE_DIR.rglob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        if not any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) for node in ast.walk(tree)):
            continue
        parts = file.relative_to(PACKAGE_DIR.parent).with_suffix("").parts  # ('bertnb', 'checks', 'ch05')
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = file
    return modules


def split_target(target: str, modules: dict):
    """'bertnb.model.BertModel.pool' -> ('bertnb.model', 'BertModel.pool'); a module alone -> (module, '');
    a bare function name -> ('', name). The longest module prefix wins.

    Built in chapter 10."""
    for module in sorted(modules, key=len, reverse=True):
        if target == module:
            return module, ""
        if target.startswith(module + "."):
            return module, target[len(module) + 1:]
    if target.startswith("bertnb."):
        first = target.split(".")[1]
        if f"bertnb.{first}" not in modules:
            raise ValueError(f"no module {target!r} in bertnb: allowed modules {sorted(modules)}")
    return "", target


# --------------------------------------------------------------------------------------------------------
# code2flow


def code2flow_graph(files, out, target_function: str | None = None, callers: int = 0, callees: int = 2):
    """Run code2flow on `files`, writing `out` (.gv: DOT grouped by file and class; .json: nodes and edges).
    With `target_function` (code2flow's 'file::Class.method', 'Class.method' or 'name'), only what it calls
    up to `callees` steps away and what calls it up to `callers` steps away.

    Built in chapter 10."""
    try:
        import code2flow
        from code2flow.engine import SubsetParams
    except ImportError:
        raise ModuleNotFoundError("call graphs need code2flow: pip install code2flow==2.5.1 (or the course's "
                                  "extra: pip install 'bertnb[export]')") from None

    subset = SubsetParams.generate(target_function, callers, callees) if target_function else None
    with quiet_root_logging():
        try:
            code2flow.code2flow([str(f) for f in files], str(out), level=logging.WARNING, subset_params=subset)
        except AssertionError as error:  # code2flow reports an unknown or ambiguous name this way
            raise ValueError(f"call graph of {target_function!r}: {error}") from None
    return Path(out)


def module_of(code2flow_name: str, stems: dict) -> str:
    """'train::train_step' -> 'bertnb.train' (code2flow names a function by its file's stem); a subpackage's
    modules count as the subpackage ('ch05::check_weighted_mlm_loss' -> 'bertnb.checks').

    Built in chapter 10."""
    return ".".join(stems[code2flow_name.split("::")[0]].split(".")[:2])


def module_map_dot(modules: dict) -> str:
    """The package as one box per module (its number of functions) and an arrow per pair of modules whose
    functions call each other, labelled with how many caller-callee pairs there are.

    Built in chapter 10."""
    stems = {file.stem: name for name, file in modules.items()}  # checks/__init__.py is '__init__'
    with tempfile.TemporaryDirectory() as folder:
        graph = json.loads(code2flow_graph(modules.values(), Path(folder) / "calls.json").read_text())["graph"]
    module_by_uid = {uid: module_of(node["name"], stems) for uid, node in graph["nodes"].items()}
    functions = collections.Counter(module_by_uid.values())
    calls = collections.Counter((module_by_uid[e["source"]], module_by_uid[e["target"]]) for e in graph["edges"])
    lines = ['digraph bertnb {', 'rankdir="LR"; node [shape=box, style="rounded,filled", fillcolor="#e8f0fe", '
             'fontname="Helvetica"]; edge [fontname="Helvetica", fontsize=9, color="#666666"];']
    for module in sorted(functions):
        short = module.removeprefix("bertnb.") or "bertnb"
        lines.append(f'"{module}" [label="{short}\\n{functions[module]} functions"];')
    for (caller, callee), count in sorted(calls.items()):
        if caller != callee:  # calls inside a module are that module's own business
            lines.append(f'"{caller}" -> "{callee}" [label="{count}"];')
    lines.append("}")
    return "\n".join(lines)


def call_graph(target: str = "bertnb", out="runs/call_graph.svg", callers: int = 1, callees: int = 2) -> Path:
    """Draw what calls what in bertnb to the SVG file `out` (its folder is created); returns its path.

    target:
      "bertnb"                          the package: one box per module, arrows = calls between modules
      "bertnb.train"                    one module: its functions grouped by class, arrows = calls
      "train_step", "bertnb.train.train_step", "BertForPreTraining.losses"
                                        one function's neighbourhood in the whole package: what it calls
                                        (`callees` steps) and what calls it (`callers` steps)

    Built in chapter 10."""
    if not isinstance(target, str) or not target:
        raise ValueError(f"target must be 'bertnb', a module such as 'bertnb.train' or a function name such as "
                         f"'train_step'; got {target!r}")
    find_dot_renderer()  # fail before the work when nothing can draw the result
    modules = package_modules()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    dot_file = out.with_suffix(".gv")
    if target == "bertnb":
        dot_file.write_text(module_map_dot(modules))
        return render_svg(dot_file, out)
    module, function = split_target(target, modules)
    if not function:  # one module, alone
        code2flow_graph([modules[module]], dot_file)
        return render_svg(dot_file, out)
    name = f"{modules[module].stem}::{function}" if module else function
    code2flow_graph(modules.values(), dot_file, target_function=name, callers=callers, callees=callees)
    return render_svg(dot_file, out)
