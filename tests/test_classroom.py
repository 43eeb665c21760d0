"""The classroom kit (tools/): every exercise stub has a reference solution in tests/ and that solution passes the
chapter's check; student copies have no outputs and still reproduce the checked cells; a solved copy runs with
every check correct; the nbgrader release cuts back to the chapter's own stub; the wheelhouse command's inputs.
The slow parts (every solved copy, nbgrader itself, an offline install from a wheelhouse) are in
tests/run_classroom_check.py (make test-classroom)."""

import importlib
import json
import re
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from tools import nbgrader_release, wheelhouse
from tools.exercises import (NOTEBOOKS, SOLUTIONS, MissingSolution, Stub, chapter_notebooks, chapter_test_files,
                             find_stubs, reference_of, solution_lines, solved_source, stubs_in_cell,
                             unmatched_solutions)
from tools.solved_copies import check_results, write_solved_copy
from tools.student_copies import fresh_folder, marker_tag, write_student_copies

CHAPTERS = chapter_notebooks()
STUBS = [stub for path in CHAPTERS for stub in find_stubs(path)]
# The smallest chapter (about 5 s): the one whose copies are executed here; make test-classroom runs them all.
SMALL_CHAPTER = NOTEBOOKS / "02_embeddings.ipynb"
# check_node_counts exports three models to ONNX (about 25 s); tests/test_checks_ch10.py already shows it accepts
# the very constant the solved copy uses, and make test-classroom runs it inside the solved chapter.
SLOW_CHECKS = {"ch10.check_node_counts"}


def run_check(stub: Stub, answer) -> bool:
    module, function = stub.check.split(".")
    return getattr(importlib.import_module(f"bertnb.checks.{module}"), function)(answer)


# ---------------------------------------------------------------------------------------------------------
# The link from each stub to its solution


def test_every_stub_has_a_check_and_a_reference_solution():
    problems = []
    for stub in STUBS:
        if stub.check is None:
            problems.append(f"{stub.where()}: no chNN.check_...({stub.name}) call in its cell")
        try:
            solution_lines(stub)
        except MissingSolution as missing:
            problems.append(str(missing))
    assert not problems, "\n".join(problems)


def test_every_chapter_has_at_least_two_exercises():
    per_chapter = {path.name: sum(stub.notebook == path for stub in STUBS) for path in CHAPTERS}
    assert all(count >= 2 for count in per_chapter.values()), per_chapter


def test_no_solution_entry_is_left_without_its_stub():
    assert unmatched_solutions(STUBS) == []


def test_the_naming_rule_and_its_exceptions():
    def stub(chapter, name, kind):
        return Stub(NOTEBOOKS / f"{chapter}_x.ipynb", 0, name, kind, 1, 2, None)

    assert [path.name for path in chapter_test_files("01")] == ["test_checks_ch00_02.py"]
    assert reference_of(stub("07", "my_cosine_factor", "function")) == ("test_checks_ch07.py", "cosine_factor")
    assert reference_of(stub("08", "initial_loss", "value")) == ("test_checks_ch08.py", "INITIAL_LOSS")
    assert reference_of(stub("10", "predicted", "value")) == ("test_checks_ch10.py", "NODE_COUNTS")
    with pytest.raises(MissingSolution, match="Define NO_SUCH_ANSWER or no_such_answer .once."):
        reference_of(stub("07", "no_such_answer", "value"))


def test_a_new_stub_without_a_solution_fails_loudly_saying_what_to_add():
    stub = Stub(NOTEBOOKS / "07_pretraining.ipynb", 3, "my_new_exercise", "function", 1, 2, "ch07.check_new")
    with pytest.raises(MissingSolution, match=r"no reference solution. Define new_exercise .once. in the chapter's "
                                              r"test file \(test_checks_ch07.py\).*SOLUTIONS\['07'\]"):
        solution_lines(stub)


def test_an_entry_naming_a_missing_reference_fails_loudly(monkeypatch):
    stub = Stub(NOTEBOOKS / "07_pretraining.ipynb", 3, "my_new_exercise", "function", 1, 2, "ch07.check_new")
    monkeypatch.setitem(SOLUTIONS, "07", {"my_new_exercise": "test_checks_ch07.py::no_such_function"})
    with pytest.raises(MissingSolution, match="defines no function 'no_such_function'"):
        solution_lines(stub)


def test_what_counts_as_a_stub(tmp_path):
    source = '''from bertnb.checks import ch07
answer = None  # a number
unrelated = None


def my_thing(x):
    # a hint for the student
    raise NotImplementedError  # your code here


def finished(x):
    return x


ch07.check_answer(answer)
if ch07.check_thing(my_thing):
    print(my_thing(1))
'''
    stubs = stubs_in_cell(source, tmp_path / "07_x.ipynb", 0)
    assert [(s.name, s.kind, s.first, s.last, s.check) for s in stubs] == [
        ("answer", "value", 2, 2, "ch07.check_answer"), ("my_thing", "function", 6, 8, "ch07.check_thing")]
    with pytest.raises(SyntaxError, match="plain Python"):
        stubs_in_cell("%time x = 1\nraise NotImplementedError", tmp_path / "07_x.ipynb", 0)
    assert stubs_in_cell("%matplotlib inline", tmp_path / "07_x.ipynb", 0) == []


@pytest.mark.parametrize("stub", [s for s in STUBS if s.check not in SLOW_CHECKS], ids=lambda s: s.name)
def test_each_solution_passes_its_check_on_its_own(stub, capsys):
    """The code a solved copy puts in place of the stub (imports and helpers included) runs alone and is correct."""
    namespace = {}
    exec(compile("\n".join(solution_lines(stub)), stub.where(), "exec"), namespace)
    assert run_check(stub, namespace[stub.name]) is True
    assert capsys.readouterr().out.rstrip().endswith(": correct")


def test_a_solved_cell_keeps_the_rest_of_the_cell():
    for path in CHAPTERS:
        cells = nbformat.read(path, as_version=4).cells
        for index in sorted({stub.cell_index for stub in STUBS if stub.notebook == path}):
            source = cells[index].source
            solved = solved_source(source, [s for s in STUBS if s.notebook == path and s.cell_index == index], set())
            assert "NotImplementedError" not in solved and "# reference solution, from tests/" in solved
            after_stub = source.splitlines()[max(s.last for s in STUBS
                                                  if s.notebook == path and s.cell_index == index):]
            if after_stub:  # the check call and what follows it, unchanged
                assert solved.splitlines()[-len(after_stub):] == after_stub, (path, index)


# ---------------------------------------------------------------------------------------------------------
# Student copies


def _marker_free(source: str) -> str:
    return "\n".join(line for line in source.split("\n") if marker_tag(line) is None)


def test_student_copies_have_no_outputs_and_the_same_code(tmp_path):
    written = write_student_copies(tmp_path)
    assert [path.name for path in written] == [path.name for path in CHAPTERS]
    for original_path, copy_path in zip(CHAPTERS, written):
        original, copy = nbformat.read(original_path, as_version=4), nbformat.read(copy_path, as_version=4)
        assert copy.metadata.kernelspec == original.metadata.kernelspec and "widgets" not in copy.metadata
        assert len(copy.cells) == len(original.cells)
        for before, after in zip(original.cells, copy.cells):
            assert after.source == _marker_free(before.source)
            assert "execution" not in after.metadata
            if after.cell_type != "code":
                continue
            assert after.outputs == [] and after.execution_count is None
            markers = {marker_tag(line) for line in before.source.split("\n")} - {None}
            assert set(after.metadata.get("tags", [])) == set(before.metadata.get("tags", [])) | markers
        assert len(find_stubs(copy_path)) == len(find_stubs(original_path))  # the stubs as they are


def test_marker_lines_are_read_as_nbval_reads_them():
    assert [marker_tag(line) for line in ["# NBVAL_CHECK_OUTPUT", "  #NBVAL_SKIP ", "x = 1  # NBVAL_SKIP",
                                          "# NBVAL_CHECK_OUTPUT please"]] == ["nbval-check-output", "nbval-skip",
                                                                              None, None]


def test_student_copies_never_overwrite_the_course(tmp_path):
    with pytest.raises(ValueError, match="own notebooks folder"):
        fresh_folder(NOTEBOOKS)
    (tmp_path / "99_old.ipynb").write_text("{}")
    (tmp_path / "notes.txt").write_text("the teacher's")
    write_student_copies(tmp_path)
    assert not (tmp_path / "99_old.ipynb").exists() and (tmp_path / "notes.txt").read_text() == "the teacher's"


def _checked_outputs(notebook) -> list:
    """What nbval compares in the cells tagged nbval-check-output: the printed text (streams joined, as nbval
    joins them: how a kernel splits a print into messages varies) and the text/plain results."""
    checked = []
    for cell in notebook.cells:
        if cell.cell_type == "code" and "nbval-check-output" in cell.metadata.get("tags", []):
            printed = "".join(output.text for output in cell.outputs if output.output_type == "stream")
            results = [output.data.get("text/plain") for output in cell.outputs
                       if output.output_type == "execute_result"]
            checked.append((printed, results))
    return checked


def test_a_student_copy_run_reproduces_the_checked_cells(tmp_path):
    """When a student runs the copy, the deterministic (nbval-checked) cells show what the stored chapter shows."""
    copy_path = next(path for path in write_student_copies(tmp_path) if path.name == SMALL_CHAPTER.name)
    copy = nbformat.read(copy_path, as_version=4)
    NotebookClient(copy, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    expected = _checked_outputs(nbformat.read(SMALL_CHAPTER, as_version=4))
    assert len(expected) >= 3 and _checked_outputs(copy) == expected


# ---------------------------------------------------------------------------------------------------------
# Solved copies


def test_a_solved_copy_runs_with_every_check_correct(tmp_path):
    assert write_solved_copy(SMALL_CHAPTER, tmp_path) == []
    solved = nbformat.read(tmp_path / SMALL_CHAPTER.name, as_version=4)
    printed = "".join(output.get("text", "") for cell in solved.cells for output in cell.get("outputs", []))
    assert printed.count(": correct") >= 2 and "not solved yet" not in printed


def test_check_results_reports_a_check_that_is_not_correct(tmp_path):
    cell = nbformat.v4.new_code_cell("# reference solution, from tests/x.py (f)\ndef my_f(): ...\nch07.check_f(my_f)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="f: not right yet: expected 1\n")]
    problems = check_results(nbformat.v4.new_notebook(cells=[cell]), tmp_path / "07_x.ipynb")
    assert len(problems) == 1 and "07_x.ipynb, cell 0" in problems[0] and "not right yet" in problems[0]


# ---------------------------------------------------------------------------------------------------------
# nbgrader release


def _released(source: str) -> str:
    """What `nbgrader generate_assignment` makes of a solution cell: the marked region becomes the code stub."""
    pattern = r"^( *)### BEGIN SOLUTION\n.*?^ *### END SOLUTION$"
    return re.sub(pattern, lambda m: m.group(1) + nbgrader_release.CODE_STUB, source, flags=re.M | re.S)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda path: path.name[:2])
def test_nbgrader_release_grades_every_exercise_and_releases_the_chapters_stub(path):
    notebook, graded = nbgrader_release.release_notebook(path)
    stubs = find_stubs(path)
    assert graded == len(stubs)
    original = nbformat.read(path, as_version=4).cells
    solution_cells = [cell for cell in notebook.cells if cell.metadata.get("nbgrader", {}).get("solution")]
    test_cells = [cell for cell in notebook.cells if cell.metadata.get("nbgrader", {}).get("grade")]
    assert len(test_cells) == len(stubs) and all(cell.metadata.nbgrader["points"] == 1 for cell in test_cells)
    assert {cell.source.split("  #")[0] for cell in test_cells} == {f"assert {s.check}({s.name})" for s in stubs}
    grade_ids = [cell.metadata.nbgrader["grade_id"] for cell in solution_cells + test_cells]
    assert len(set(grade_ids)) == len(grade_ids) and all(re.fullmatch(r"[\w-]+", gid) for gid in grade_ids)
    for cell, index in zip(solution_cells, sorted({stub.cell_index for stub in stubs})):
        assert "### BEGIN SOLUTION" in cell.source and "NotImplementedError" not in cell.source
        if all(stub.kind == "function" for stub in stubs if stub.cell_index == index):
            assert _released(cell.source) == original[index].source  # students get the chapter's own stub


def test_nbgrader_release_writes_a_course_folder(tmp_path):
    assignments = nbgrader_release.write_release(tmp_path)
    assert sorted(assignments) == [f"ch{path.name[:2]}" for path in CHAPTERS]
    assert (tmp_path / "source" / "ch07" / "07_pretraining.ipynb").is_file()
    assert 'course_id = "bertnb"' in (tmp_path / "nbgrader_config.py").read_text()


# ---------------------------------------------------------------------------------------------------------
# Wheelhouse (the download and the offline install run in make test-classroom)


def test_the_wheelhouse_asks_for_every_requirement_and_the_build_backend():
    lines = wheelhouse.requirement_lines()
    assert "torch==2.13.0" in lines and any(line.startswith("setuptools>=") for line in lines)
    assert not any(line.startswith("-") for line in lines)
    assert set(wheelhouse.SOURCE_ONLY) <= {re.match(r"[\w.-]+", line).group(0) for line in lines}


def test_the_wheelhouse_platforms_list_every_tag_pip_needs():
    linux = wheelhouse.PLATFORMS["linux-x86_64"]
    assert linux[0] == "manylinux_2_28_x86_64" and "manylinux_2_17_x86_64" in linux  # torch; safetensors
    assert "macosx_14_0_arm64" in wheelhouse.PLATFORMS["macos-arm64"]  # torch 2.13's macOS wheel
    assert wheelhouse.PLATFORMS["windows-x86_64"] == ["win_amd64"]


def test_the_wheelhouse_resolves_markers_for_the_target_machine():
    """pip would evaluate `; platform_system == "Linux"` (torch's CUDA wheels) for this machine (pip #11664)."""
    windows = wheelhouse.marker_values("windows-x86_64", "3.12")
    assert windows["platform_system"] == "Windows" and windows["python_version"] == "3.12"
    assert wheelhouse.marker_values("this", "") == {}
    assert set(wheelhouse.TARGET_MARKERS) == set(wheelhouse.PLATFORMS) - {"this"}
    script = ["-c", wheelhouse.PIP_FOR_TARGET, json.dumps(windows), "--version"]  # pip starts with the patch in
    assert subprocess.run([sys.executable, *script], capture_output=True, text=True, check=True).stdout.startswith(
        "pip ")


@pytest.mark.parametrize("argv, message", [
    (["--platform", "amiga"], "invalid choice: 'amiga'"),
    (["--python-version", "three"], "--python-version must look like 3.11"),
])
def test_the_wheelhouse_command_rejects_bad_arguments_naming_the_allowed_values(argv, message, capsys):
    with pytest.raises(SystemExit):
        wheelhouse.main(argv)
    assert message in capsys.readouterr().err


def test_the_solved_copies_command_rejects_an_unknown_chapter(capsys):
    from tools import solved_copies

    with pytest.raises(SystemExit):
        solved_copies.main(["--chapters", "11", "--no-execute"])
    assert "unknown chapter(s) ['11']: choose from ['00'" in capsys.readouterr().err


def test_reference_of_names_the_test_file():
    stub = next(stub for stub in STUBS if stub.name == "initial_loss")
    assert reference_of(stub) == ("test_checks_ch08.py", "INITIAL_LOSS")
