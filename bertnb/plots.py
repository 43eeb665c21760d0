"""Figures shared by the chapters (matplotlib only, so they render on GitHub, Binder and Colab alike)."""

from __future__ import annotations

import matplotlib.pyplot as plt


def heatmap(matrix, xlabels=None, ylabels=None, title="", ax=None, cmap="viridis", colorbar=True,
            vmin=None, vmax=None):
    """A labelled heatmap of a 2-D tensor or array (attention weights, similarities)."""
    values = matrix.detach().cpu().numpy() if hasattr(matrix, "detach") else matrix
    if ax is None:
        _, ax = plt.subplots(figsize=(max(3, 0.35 * values.shape[1] + 1.5), max(2.5, 0.3 * values.shape[0] + 1)))
    image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    if xlabels is not None:
        ax.set_xticks(range(len(xlabels)), xlabels, rotation=90, fontsize=8)
    if ylabels is not None:
        ax.set_yticks(range(len(ylabels)), ylabels, fontsize=8)
    ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax
