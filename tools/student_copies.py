"""Student copies: every chapter with its outputs cleared, the exercise stubs as they are, in one folder to hand out.

    python -m tools.student_copies [--out build/classroom/student] [--notebooks notebooks]

A stored chapter shows its results; a student copy makes the student produce them. What changes, cell by cell:
outputs, execution counts and run timings are removed, and so is the stored widget state. An nbval marker written
as a comment line (`# NBVAL_CHECK_OUTPUT`, `# NBVAL_IGNORE_OUTPUT`, `# NBVAL_SKIP`) becomes the equivalent cell
tag: the student reads clean code and the cell is still checked the same way when the copy is run under nbval
(tests/test_classroom.py runs a student copy and compares those cells with the stored chapter). Nothing else is
touched: sources, tags and the kernelspec stay as they are.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from tools.exercises import NOTEBOOKS, ROOT, chapter_notebooks

DEFAULT_OUT = ROOT / "build" / "classroom" / "student"
# nbval's comment markers (a comment line anywhere in the cell) and the cell tags that mean the same
MARKER_TAGS = {"NBVAL_CHECK_OUTPUT": "nbval-check-output", "NBVAL_IGNORE_OUTPUT": "nbval-ignore-output",
               "NBVAL_SKIP": "nbval-skip", "NBVAL_RAISES_EXCEPTION": "nbval-raises-exception"}


def marker_tag(line: str) -> str | None:
    """The tag equivalent to an nbval marker line (read as nbval reads it), None for any other line."""
    stripped = line.strip()
    return MARKER_TAGS.get(stripped.lstrip("#").strip()) if stripped.startswith("#") else None


def markers_to_tags(cell) -> None:
    """Move a code cell's nbval comment markers into its tags (nbval reads either)."""
    kept = []
    for line in cell.source.split("\n"):
        tag = marker_tag(line)
        if tag is None:
            kept.append(line)
        elif tag not in cell.metadata.setdefault("tags", []):
            cell.metadata.tags.append(tag)
    cell.source = "\n".join(kept)


def clear_outputs(notebook) -> None:
    """Remove what running the notebook left in it: outputs, execution counts, timings, widget state."""
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            markers_to_tags(cell)
        cell.metadata.pop("execution", None)  # nbclient's run timestamps
    notebook.metadata.pop("widgets", None)


def fresh_folder(out: Path) -> Path:
    """`out`, created if needed, with any chapter copies a previous run left in it removed (none is stale).
    Only NN_name.ipynb files are removed, and never from the course's own notebooks folder."""
    out = Path(out)
    if out.resolve() == NOTEBOOKS.resolve():
        raise ValueError(f"--out {out} is the course's own notebooks folder: choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    for old in chapter_notebooks(out):
        old.unlink()
    return out


def write_student_copies(out: Path = DEFAULT_OUT, notebooks: Path = NOTEBOOKS) -> list[Path]:
    """Write a student copy of every chapter in `notebooks` to `out`; returns the paths written."""
    sources = chapter_notebooks(notebooks)
    if not sources:
        raise FileNotFoundError(f"no chapter notebooks (NN_name.ipynb) in {notebooks}")
    out = fresh_folder(out)
    written = []
    for path in sources:
        notebook = nbformat.read(path, as_version=4)
        clear_outputs(notebook)
        nbformat.write(notebook, out / path.name)
        written.append(out / path.name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="folder to write (its old chapter copies are replaced)")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS, help="folder of the chapters")
    args = parser.parse_args(argv)
    written = write_student_copies(args.out, args.notebooks)
    print(f"{len(written)} student copies, outputs cleared, in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
