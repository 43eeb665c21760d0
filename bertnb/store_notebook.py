"""Execute a chapter in its default mode and store it with outputs, ready to commit.

    python -m bertnb.store_notebook notebooks/07_pretraining.ipynb [more.ipynb ...]

Like `jupyter nbconvert --execute --inplace`, plus one step: tqdm progress bars in a notebook are widgets, and
their state would be stored in the file (large, and shown as "Error displaying widget" where the widget
manager is missing, e.g. on GitHub). Each widget output is replaced by the text of its final state, and the
widget state is dropped.
"""

from __future__ import annotations

import html
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _plain(value: str) -> str:
    return html.unescape(re.sub("<[^>]+>", "", value))


def _progress_text(state: dict, model_id: str) -> str:
    """tqdm's widget is an HBox of (label, progress bar, label): render it as tqdm's text line."""
    box = state[model_id]["state"]
    left, bar, right = (state[ref.removeprefix("IPY_MODEL_")]["state"] for ref in box["children"])
    done = round(10 * bar["value"] / bar["max"]) if bar.get("max") else 0
    return f"{_plain(left['value'])}|{'█' * done}{' ' * (10 - done)}|{_plain(right['value'])}"


def widgets_to_text(notebook) -> int:
    """Replace every widget output by plain text and remove the stored widget state; returns how many."""
    state = notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    replaced = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                continue
            try:
                text = _progress_text(state, view["model_id"])
            except (KeyError, ValueError):  # not a tqdm bar: keep its plain-text fallback
                text = output["data"].get("text/plain", "")
            output["data"] = {"text/plain": text}
            replaced += 1
    notebook.metadata.pop("widgets", None)
    return replaced


def store(path: Path) -> float:
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    replaced = widgets_to_text(notebook)
    nbformat.write(notebook, path)
    print(f"{path}: executed in {seconds:.1f} s, {replaced} widget output(s) stored as text")
    return seconds


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for name in sys.argv[1:]:
        store(Path(name))
