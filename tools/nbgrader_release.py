"""nbgrader release: every chapter as an nbgrader source assignment, graded by the course's own checks.

    python -m tools.nbgrader_release [--out build/classroom/nbgrader]

Writes an nbgrader course folder: `nbgrader_config.py` and `source/chNN/NN_name.ipynb` for each chapter. In each,
every exercise stub cell becomes an nbgrader solution cell holding the reference solution (read from tests/, see
`tools.exercises`) between `### BEGIN SOLUTION` and `### END SOLUTION`, and a locked, autograded test cell worth
one point follows it: `assert chNN.check_xxx(answer)`, the same check the chapter already runs. Then, in that folder
(nbgrader is not a course requirement: install it where you grade, `pip install nbgrader`):

    nbgrader generate_assignment ch07      # release/ch07: the solutions cut out again, back to the stub
    nbgrader autograde ch07                # after collecting submissions into submitted/<student>/ch07/

For a function the signature and the stub's comments stay outside the markers, so the released cell is the stub
the chapter has; an answer `name = None` is released as nbgrader's code stub (see `CODE_STUB`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from tools.exercises import NOTEBOOKS, ROOT, Stub, chapter_notebooks, imported_names, solution_of, stubs_in_cell
from tools.student_copies import clear_outputs

DEFAULT_OUT = ROOT / "build" / "classroom" / "nbgrader"
CODE_STUB = "raise NotImplementedError  # your code here"  # what generate_assignment leaves for a solution
CONFIG = f'''# nbgrader configuration for the bertnb course (written by python -m tools.nbgrader_release)
c = get_config()  # noqa: F821 (nbgrader defines it)
c.CourseDirectory.course_id = "bertnb"
c.ClearSolutions.code_stub = {{"python": {CODE_STUB!r}}}
c.ExecutePreprocessor.timeout = 900  # seconds per cell: a chapter's training cells take minutes on a laptop
'''


def _indented(lines: list[str], spaces: int) -> list[str]:
    """The lines shifted right, runs of blank lines made one (inside a function one blank line separates)."""
    shifted = []
    for line in lines:
        if line.strip() or (shifted and shifted[-1]):
            shifted.append(" " * spaces + line if line.strip() else "")
    return shifted


def marked_solution(stub: Stub, stub_lines: list[str], already_imported: set[str]) -> list[str]:
    """The stub's lines with its answer written between nbgrader's solution markers."""
    solution = solution_of(stub, already_imported)
    if stub.kind == "value":
        imports = solution.imports + ([""] if solution.imports else [])
        return ["### BEGIN SOLUTION", solution.header(), *imports, *solution.definition, "### END SOLUTION"]
    signature_and_comments = stub_lines[:-1]  # the last line is `raise NotImplementedError  # your code here`
    inside = _indented(solution.imports + ([""] if solution.imports else []) + solution.helpers, 4)
    return [*signature_and_comments, "    ### BEGIN SOLUTION", "    " + solution.header(), *inside, *solution.body,
            "    ### END SOLUTION"]


def nbgrader_metadata(grade_id: str, solution: bool) -> dict:
    """nbgrader's cell metadata (schema 3): an autograded answer, or a locked autograded test worth one point."""
    if solution:
        return {"grade": False, "grade_id": grade_id, "locked": False, "schema_version": 3, "solution": True,
                "task": False}
    return {"grade": True, "grade_id": grade_id, "locked": True, "points": 1, "schema_version": 3,
            "solution": False, "task": False}


def release_notebook(path: Path):
    """One chapter as an nbgrader source notebook; returns (notebook, number of graded exercises)."""
    notebook = nbformat.read(path, as_version=4)
    clear_outputs(notebook)
    cells, sources, graded = [], [], 0
    for index, cell in enumerate(notebook.cells):
        cells.append(cell)
        if cell.cell_type != "code":
            continue
        sources.append(cell.source)
        stubs = stubs_in_cell(cell.source, path, index)
        if not stubs:
            continue
        lines = cell.source.splitlines()
        for stub in sorted(stubs, key=lambda s: s.first, reverse=True):  # bottom up: line numbers stay valid
            lines[stub.first - 1:stub.last] = marked_solution(stub, lines[stub.first - 1:stub.last],
                                                              imported_names(sources))
        cell.source = "\n".join(lines)
        names = "_".join(stub.name for stub in stubs)
        cell.metadata["nbgrader"] = nbgrader_metadata(f"ch{stubs[0].chapter}_{names}", solution=True)
        for stub in stubs:
            if stub.check is None:
                raise ValueError(f"{stub.where()}: no chNN.check_...({stub.name}) call in its cell to grade it with")
            test = nbformat.v4.new_code_cell(f"assert {stub.check}({stub.name})  # autograded: 1 point")
            test.metadata["nbgrader"] = nbgrader_metadata(f"ch{stub.chapter}_{stub.name}_test", solution=False)
            cells.append(test)
            graded += 1
    notebook.cells = cells
    return notebook, graded


def write_release(out: Path = DEFAULT_OUT, notebooks: Path = NOTEBOOKS) -> dict[str, int]:
    """Write the nbgrader course folder; returns {assignment name: graded exercises}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "nbgrader_config.py").write_text(CONFIG)
    assignments = {}
    for path in chapter_notebooks(notebooks):
        notebook, graded = release_notebook(path)
        folder = out / "source" / f"ch{path.name[:2]}"
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, folder / path.name)
        assignments[folder.name] = graded
    return assignments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the nbgrader course folder to write")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS, help="folder of the chapters")
    args = parser.parse_args(argv)
    assignments = write_release(args.out, args.notebooks)
    print(f"{len(assignments)} nbgrader assignments, {sum(assignments.values())} autograded exercises, in "
          f"{args.out}/source; then, in {args.out}: nbgrader generate_assignment ch07 (for example)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
