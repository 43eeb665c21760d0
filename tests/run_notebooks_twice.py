"""Run every notebook top to bottom twice in the same kernel, in its default (not fast) mode.

A reader often re-runs all cells without restarting: a notebook that only works from a fresh kernel
(a name redefined, a generator used up, a file opened twice) fails the second run here.

    python -m tests.run_notebooks_twice notebooks        (what `make test-slow` runs)
"""

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def run_twice(path: Path) -> list[float]:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    seconds = []
    with client.setup_kernel():
        for _ in range(2):
            start = time.perf_counter()
            for index, cell in enumerate(notebook.cells):
                client.execute_cell(cell, index)  # raises CellExecutionError on any error
            seconds.append(time.perf_counter() - start)
    return seconds


def main(folder: str) -> int:
    paths = sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        print(f"no notebooks found in {folder}")
        return 1
    for path in paths:
        first, second = run_twice(path)
        print(f"{path.name}: first run {first:.1f} s, second run in the same kernel {second:.1f} s")
    print(f"{len(paths)} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "notebooks"))
