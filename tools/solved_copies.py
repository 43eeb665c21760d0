"""Solved copies: every chapter with each exercise stub replaced by its reference solution, executed.

    python -m tools.solved_copies [--out build/classroom/solved] [--chapters 03 07] [--fast] [--no-execute]

The solutions are read from tests/ (see `tools.exercises`: no second copy of any exists), each renamed to the
stub's name and preceded by a comment naming where it comes from. Each copy is then run top to bottom in the
folder it is written to (like `python -m bertnb.store_notebook`) and checked: no cell raised, and every
exercise's check printed "correct" and nothing else. The command fails, naming the cell, when one did not.
`--fast` runs the chapters in their fast mode (BERTNB_FAST=1), as the tests do; the default is the full run a
teacher projects.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import nbformat
from nbclient.exceptions import CellExecutionError

from bertnb.store_notebook import store
from tools.exercises import NOTEBOOKS, ROOT, chapter_notebooks, imported_names, stubs_in_cell, solved_source
from tools.student_copies import clear_outputs, fresh_folder

DEFAULT_OUT = ROOT / "build" / "classroom" / "solved"
NOT_CORRECT = ("not solved yet", "not right yet", "your code raised")


def solve(notebook, path: Path) -> int:
    """Replace every stub of `notebook` (read from `path`) by its reference solution; returns how many."""
    solved, sources = 0, []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        sources.append(cell.source)
        stubs = stubs_in_cell(cell.source, path, index)
        if stubs:
            cell.source = solved_source(cell.source, stubs, imported_names(sources))
            solved += len(stubs)
    return solved


def check_results(notebook, path: Path) -> list[str]:
    """What is wrong with an executed solved copy: each exercise cell must print one "correct" per check."""
    problems = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code" or "# reference solution, from tests/" not in cell.source:
            continue
        text = "".join(output.get("text", "") for output in cell.outputs if output.get("output_type") == "stream")
        checks = cell.source.count(".check_")
        correct = sum(line.endswith(": correct") for line in text.splitlines())
        if correct < checks or any(phrase in text for phrase in NOT_CORRECT):
            problems.append(f"{path.name}, cell {index}: expected {checks} check(s) to print 'correct', got: "
                            f"{text.strip()[:300]!r}")
    return problems


def write_solved_copy(source: Path, out: Path, execute: bool = True) -> list[str]:
    """Write the solved copy of one chapter into `out` and (by default) run and check it; returns the problems."""
    notebook = nbformat.read(source, as_version=4)
    clear_outputs(notebook)
    if solve(notebook, source) == 0:
        return [f"{source.name}: no exercise stub found"]
    target = Path(out) / source.name
    nbformat.write(notebook, target)
    if not execute:
        return []
    try:
        store(target)  # runs it in `out` and stores the outputs, tqdm bars as text
    except CellExecutionError as error:
        return [f"{source.name}: a cell raised: {str(error)[-800:]}"]
    return check_results(nbformat.read(target, as_version=4), target)


def select_chapters(chapters: list[str] | None, notebooks: Path = NOTEBOOKS) -> list[Path]:
    """The chapter notebooks whose numbers are in `chapters` (all of them when None)."""
    paths = chapter_notebooks(notebooks)
    available = [path.name[:2] for path in paths]
    if chapters is None:
        return paths
    unknown = [chapter for chapter in chapters if chapter not in available]
    if unknown:
        raise ValueError(f"unknown chapter(s) {unknown}: choose from {available}")
    return [path for path in paths if path.name[:2] in chapters]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder to write (its old copies replaced)")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS, help="folder of the chapters")
    parser.add_argument("--chapters", nargs="+", metavar="NN", help="only these chapters, e.g. 03 07")
    parser.add_argument("--fast", action="store_true", help="run the chapters in fast mode (BERTNB_FAST=1)")
    parser.add_argument("--no-execute", action="store_true", help="write the copies without running them")
    args = parser.parse_args(argv)
    try:
        sources = select_chapters(args.chapters, args.notebooks)
    except ValueError as error:
        parser.error(str(error))
    if args.fast:
        os.environ["BERTNB_FAST"] = "1"  # the kernels inherit it
    out = fresh_folder(args.out)
    problems = []
    for source in sources:
        problems += write_solved_copy(source, out, execute=not args.no_execute)
    for problem in problems:
        print("FAILED:", problem, file=sys.stderr)
    status = "written" if args.no_execute else "executed, every check correct" if not problems else "with problems"
    print(f"{len(sources)} solved copies in {out}: {status}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
