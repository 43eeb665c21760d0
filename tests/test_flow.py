"""bertnb.flow: code2flow's call graphs of the package, rendered to SVG offline, name the functions they
draw; bad targets and a missing renderer get clear errors. The functions checked are this course's own,
in modules whose names are stable (flow, export, train_step from the public API)."""

import shutil
import sys
import xml.etree.ElementTree as ET

import pytest

pytest.importorskip("code2flow")

from bertnb import flow  # noqa: E402
from bertnb.flow import call_graph, package_modules  # noqa: E402


def svg_text(path):
    text = path.read_text()
    ET.fromstring(text)  # well-formed SVG
    return text


def test_one_module_shows_its_functions(tmp_path):
    text = svg_text(call_graph("bertnb.flow", tmp_path / "flow.svg"))
    for name in ("call_graph()", "render_svg()", "find_dot_renderer()", "code2flow_graph()"):
        assert name in text
    assert "File: flow" in text  # grouped by module


def test_a_functions_neighbourhood_shows_it_and_what_it_calls(tmp_path):
    text = svg_text(call_graph("bertnb.flow.call_graph", tmp_path / "neighbourhood.svg", callers=0, callees=1))
    for name in ("call_graph()", "module_map_dot()", "split_target()"):
        assert name in text
    assert "onnx_graph_svg()" not in text  # in another module and not called by call_graph
    text = svg_text(call_graph("train_step", tmp_path / "train_step.svg"))
    assert "train_step()" in text


def test_the_package_map_has_one_box_per_module_and_arrows_between_them(tmp_path):
    text = svg_text(call_graph("bertnb", tmp_path / "bertnb.svg"))
    for module in ("model", "tokenization", "export", "flow"):
        assert f">{module}<" in text
    assert "<title>bertnb.export&#45;&gt;bertnb.flow</title>" in text  # export draws with flow's renderer
    assert "ch05" not in text  # the exercise checks are one box, "checks"


def test_every_module_with_functions_is_listed():
    modules = package_modules()
    assert {"bertnb.model", "bertnb.flow", "bertnb.export", "bertnb.checks"} <= set(modules)
    assert "bertnb" not in modules  # bertnb/__init__.py defines no function


def test_bad_targets_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"no module 'bertnb.nowhere'.*allowed modules.*bertnb.model"):
        call_graph("bertnb.nowhere", tmp_path / "x.svg")
    with pytest.raises(ValueError, match="Could not find node 'no_such_function'"):
        call_graph("no_such_function", tmp_path / "x.svg")
    with pytest.raises(ValueError, match="target must be"):
        call_graph("", tmp_path / "x.svg")


def test_no_renderer_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))  # no graphviz-pure beside it
    with pytest.raises(RuntimeError, match="pip install graphviz-pure"):
        call_graph("bertnb.flow", tmp_path / "x.svg")
    assert not (tmp_path / "x.svg").exists()


def test_quiet_root_logging_leaves_the_root_logger_as_it_was():
    import logging

    before = list(logging.getLogger().handlers)
    with flow.quiet_root_logging():
        logging.basicConfig(level=logging.INFO)  # what code2flow and netron call: a no-op here
    assert logging.getLogger().handlers == before
