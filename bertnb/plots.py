"""Figures shared by the chapters (matplotlib only, so they render on GitHub, Binder and Colab alike)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def heatmap(matrix, xlabels=None, ylabels=None, title="", ax=None, cmap="viridis", colorbar=True,
            vmin=None, vmax=None, colorbar_label=None, tick_fontsize=9):
    """A labelled heatmap of a 2-D tensor or array (attention weights, similarities), its colorbar labelled
    with `colorbar_label` (what the colour measures). Built in chapter 02."""
    values = matrix.detach().cpu().numpy() if hasattr(matrix, "detach") else matrix
    if ax is None:
        _, ax = plt.subplots(figsize=(max(3, 0.35 * values.shape[1] + 1.5), max(2.5, 0.3 * values.shape[0] + 1)))
    image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    if xlabels is not None:
        ax.set_xticks(range(len(xlabels)), xlabels, rotation=90, fontsize=tick_fontsize)
    if ylabels is not None:
        ax.set_yticks(range(len(ylabels)), ylabels, fontsize=tick_fontsize)
    ax.set_title(title)
    if colorbar:
        bar = ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        if colorbar_label:
            bar.set_label(colorbar_label)
    return ax


def draw_bert_architecture(cfg=None, ax=None):
    """The whole BERT pretraining model as one boxes-and-arrows picture, with the shape of every tensor.

    Reads top to bottom: ids -> embeddings -> L encoder layers -> X [B, m, n], which splits into the masked
    language model head (only the p gathered positions) and the pooler + next sentence prediction head.
    With a `BertConfig`, the sizes of that config are written under the title. Drawn with matplotlib only,
    so it needs nothing installed and nothing from the network.
    Built in chapter 00.
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    if ax is None:
        _, ax = plt.subplots(figsize=(9.5, 11.5))
    ax.set_xlim(0, 12)
    ax.set_ylim(0, 16)
    ax.axis("off")
    colors = {"input": "#e8e8e8", "embed": "#cfe2f3", "attn": "#fce5cd", "norm": "#eeeeee",
              "ffn": "#d9ead3", "tensor": "#ffffff", "head": "#e6d7f0"}

    def box(x, y, w, h, text, kind, **kw):  # (x, y) is the centre
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.15",
                                    facecolor=colors[kind], edgecolor="#555555", linewidth=1, **kw))
        ax.text(x, y, text, ha="center", va="center", fontsize=10)

    def arrow(x1, y1, x2, y2, label=None, style="-|>", **kw):
        ax.add_patch(FancyArrowPatch((x1, y1), (x2, y2), arrowstyle=style, mutation_scale=10,
                                     color="#444444", linewidth=1, shrinkA=0, shrinkB=0, **kw))
        if label:
            ax.text((x1 + x2) / 2 + 0.12, (y1 + y2) / 2, label, fontsize=10, color="#1f4e79",
                    ha="left", va="center", family="monospace")

    # 1. inputs and the three embedding tables
    for x, text, table in ((2, "tokens\n[B, m]", "token embedding\n[V, n]"),
                           (6, "segments\n[B, m]  in {0, 1}", "segment embedding\n[2, n]"),
                           (10, "positions\n0 .. m-1   [m]", "position embedding\n[max_len, n]")):
        box(x, 15.3, 2.8, 0.8, text, "input")
        box(x, 13.9, 2.8, 0.8, table, "embed")
        arrow(x, 14.9, x, 14.3)
        arrow(x, 13.5, 6 + (x - 6) * 0.25, 12.75)
    box(6, 12.35, 6.0, 0.8, "sum (broadcast over B)  ->  LayerNorm  ->  dropout", "embed")
    arrow(6, 11.95, 6, 11.35, "X  [B, m, n]")

    # 2. the encoder stack: one post-LN layer drawn, repeated L times
    ax.add_patch(FancyBboxPatch((1.6, 5.75), 8.8, 5.55, boxstyle="round,pad=0.05,rounding_size=0.2",
                                facecolor="none", edgecolor="#888888", linestyle="--", linewidth=1.2))
    ax.text(10.3, 9.9, "x L\nencoder\nlayers", ha="right", va="center", fontsize=10, fontweight="bold")
    box(6, 10.5, 6.0, 0.8, "multi-head self-attention\nh heads of size d = n / h;  weights [B, h, m, m]",
        "attn")
    box(6, 9.2, 3.6, 0.6, "add & LayerNorm", "norm")
    box(6, 7.75, 6.0, 0.8, "position-wise feed-forward\ndense n -> f,  GELU [B, m, f],  dense f -> n", "ffn")
    box(6, 6.45, 3.6, 0.6, "add & LayerNorm", "norm")
    arrow(6, 11.35, 6, 10.9)
    arrow(6, 10.1, 6, 9.5, "[B, m, n]")
    arrow(6, 8.9, 6, 8.15, "[B, m, n]")
    arrow(6, 7.35, 6, 6.75, "[B, m, n]")
    # residual connections: around attention and around the feed-forward block
    arrow(6, 11.15, 2.35, 11.15, style="-")
    arrow(2.35, 11.15, 2.35, 9.2, style="-")
    arrow(2.35, 9.2, 4.2, 9.2)
    arrow(6, 8.6, 2.35, 8.6, style="-")
    arrow(2.35, 8.6, 2.35, 6.45, style="-")
    arrow(2.35, 6.45, 4.2, 6.45)
    ax.text(2.2, 10.2, "residual", rotation=90, fontsize=10, ha="right", va="center", color="#666666")
    ax.text(2.2, 7.5, "residual", rotation=90, fontsize=10, ha="right", va="center", color="#666666")
    arrow(6, 6.15, 6, 5.1)
    box(6, 4.75, 2.8, 0.7, "X  [B, m, n]", "tensor")

    # 3. the two pretraining heads
    arrow(4.6, 4.75, 3, 4.2)
    arrow(7.4, 4.75, 9, 4.2)
    box(3, 3.8, 5.0, 0.8, "gather the p masked positions\nX[batch_idx, pred_positions]  ->  [B, p, n]",
        "head")
    box(3, 2.45, 5.0, 0.9, "masked language model head\ndense, GELU, LayerNorm, decoder [n, V]\n"
        "(tied to the token embedding)", "head")
    box(3, 1.0, 3.4, 0.6, "mlm_logits  [B, p, V]", "tensor")
    arrow(3, 3.4, 3, 2.9)
    arrow(3, 2.0, 3, 1.3)
    box(9, 3.8, 4.4, 0.8, "[CLS] vector  X[:, 0]  [B, n]\npooler: dense + tanh  ->  [B, n]", "head")
    box(9, 2.45, 4.4, 0.9, "next sentence prediction head\ndense n -> 2", "head")
    box(9, 1.0, 3.4, 0.6, "nsp_logits  [B, 2]", "tensor")
    arrow(9, 3.4, 9, 2.9)
    arrow(9, 2.0, 9, 1.3)

    title = "BERT for pretraining"
    if cfg is not None:
        title += (f"\nV = {cfg.vocab_size:,}   n = {cfg.hidden_size}   L = {cfg.num_layers}   h = {cfg.num_heads}"
                  f"   d = {cfg.hidden_size // cfg.num_heads}   f = {cfg.ffn_size}   max_len = {cfg.max_len}")
    ax.set_title(title, fontsize=12)
    return ax


def shares_vs_targets(shares, targets=None, ax=None, title="", ylabel="share"):
    """Bars of measured shares (a dict label -> share in [0, 1]), each labelled with its percentage, and the
    target share of each label as a dashed red line: the 80/10/10 masking rule, the 50/50 NSP labels.
    Built in chapter 05."""
    labels = list(shares)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(3.0, 1.1 * len(labels) + 1), 3))
    values = [100 * shares[label] for label in labels]
    bars = ax.bar(labels, values, color="#9fc5e8", edgecolor="#555555")
    for bar, value in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, value + 2.5, f"{value:.1f} %", ha="center", va="bottom")
    marked = False
    for i, label in enumerate(labels):
        if targets and label in targets:
            ax.hlines(100 * targets[label], i - 0.4, i + 0.4, colors="#cc0000", linestyles="--",
                      label=None if marked else "target")
            marked = True
    if marked:
        ax.legend(loc="upper right")
    ax.set_ylim(0, 115)
    ax.set_ylabel(f"{ylabel} (%)")
    ax.set_title(title)
    return ax


# --------------------------------------------------------------------------------------------------------
# A live loss plot for notebooks


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None  # Jupyter and Colab kernels


def _moving_average(values: list[float], window: int) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if len(values) < 2 or window < 2:
        return values
    cumsum = np.cumsum(np.insert(values, 0, 0.0))
    out = np.empty_like(values)
    for i in range(len(values)):  # the mean of the last `window` values (fewer at the start)
        lo = max(0, i + 1 - window)
        out[i] = (cumsum[i + 1] - cumsum[lo]) / (i + 1 - lo)
    return out


class LiveLossPlot:
    """A training callback (`bertnb.train.fit`) that redraws one small figure in the notebook while training
    runs. Built in chapter 07.

    Left: the training MLM loss per step (faint) and its moving average, the held-out MLM loss at each
    evaluation (and on [MASK] slots alone, when the evaluation splits it: `bertnb.metrics.evaluate(...,
    mask_id=...)`), against the held-out cross-entropy of the training unigram (what ignoring the context
    scores) and, when the baselines hold them, of the n-gram rivals (`bertnb.rivals.rival_baselines`). Right:
    held-out accuracy ([MASK] slots first, when split) and NSP accuracy against the same rivals (or chance).
    Both y axes are zoomed on the curves and lines that matter, not on the first steps' loss. Redrawn every
    `every` steps, after each evaluation and at the end, in place (`display(..., display_id=True)` then
    `handle.update(fig)`). Outside a notebook kernel it does nothing; `figure()` still draws the current
    state (e.g. to save it).
    """

    def __init__(self, every: int = 10, figsize=(8.0, 2.8), dpi: int = 100, smoothing: int = 20):
        self.every, self.figsize, self.dpi, self.smoothing = every, figsize, dpi, smoothing
        self.enabled = _in_notebook()
        self.last_event = None
        self._handle = None

    def __call__(self, event: dict) -> None:
        self.last_event = event
        if not self.enabled:
            return
        if event["event"] == "step" and event["step"] % self.every:
            return
        import io

        from IPython.display import Image, display

        buffer = io.BytesIO()  # a PNG made here, so it shows whatever matplotlib backend the kernel has
        self.figure().savefig(buffer, format="png")
        image = Image(data=buffer.getvalue(), format="png")
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)

    def figure(self, event: dict | None = None):
        """Draw the state of `event` (default: the last one received) on a new matplotlib Figure."""
        from matplotlib.figure import Figure

        event = event or self.last_event
        fig = Figure(figsize=self.figsize, dpi=self.dpi, layout="constrained")
        ax_loss, ax_acc = fig.subplots(1, 2)
        if event is None:
            return fig
        total, history, base = event["total_steps"], event["history"], event.get("baselines") or {}
        self._draw_loss(ax_loss, event["losses"], history, base, total)
        self._draw_accuracy(ax_acc, history, base, total)
        return fig

    def _draw_loss(self, ax, losses, history, base, total) -> None:
        shown = []  # every value the zoomed y axis must keep in view
        if losses:
            steps, values = [r["step"] for r in losses], [r["mlm_loss"] for r in losses]
            smooth = _moving_average(values, self.smoothing)
            ax.plot(steps, values, color="tab:blue", alpha=0.25, linewidth=0.8)
            ax.plot(steps, smooth, color="tab:blue", label="train MLM loss")
            shown += list(smooth[len(smooth) // 10:])  # the first tenth (the fall from ln V) may leave the view
        hs = [h["step"] for h in history]
        for key, style, label in (("mlm_loss", "o-", "held-out, all slots"),
                                  ("mlm_loss_mask", "s-", "held-out, [MASK] slots")):
            values = [h.get(key) for h in history]
            if values and all(v is not None for v in values):
                ax.plot(hs, values, style, color="black", markersize=3, linewidth=1 if key == "mlm_loss" else 1.6,
                        alpha=0.5 if key == "mlm_loss" else 1.0, label=label)
                shown += values
        for key, style, label in (("mlm_unigram_heldout_cross_entropy", ":", "unigram (held-out)"),
                                  ("mlm_two_sided_cross_entropy", "--", "two-sided n-gram")):
            if key in base:
                ax.axhline(base[key], color="tab:red", linestyle=style, linewidth=1, label=label)
                shown.append(base[key])
        if "mlm_unigram_heldout_cross_entropy" not in base and "mlm_unigram_entropy" in base:  # an older run
            ax.axhline(base["mlm_unigram_entropy"], color="tab:red", linestyle=":", linewidth=1,
                       label="unigram entropy (in-sample)")
            shown.append(base["mlm_unigram_entropy"])
        ax.set(xlim=(0, total), xlabel="step", ylabel="nats per masked token", title="MLM loss")
        if shown:
            low, high = min(shown), max(shown)
            margin = 0.1 * (high - low) + 0.05
            ax.set_ylim(low - margin, high + margin)
        ax.legend(fontsize=6, loc="upper right")

    def _draw_accuracy(self, ax, history, base, total) -> None:
        shown = []
        hs = [h["step"] for h in history]
        split = bool(history) and all(h.get("mlm_accuracy_mask") is not None for h in history)
        curves = [("mlm_accuracy_mask", "s-", 1.0, "MLM, [MASK] slots")] if split else []
        curves += [("mlm_accuracy", "o-", 0.5 if split else 1.0, "MLM, all slots"),
                   ("nsp_accuracy", "o-", 1.0, "NSP")]
        for key, style, alpha, label in curves:
            if history:
                values = [h[key] for h in history]
                ax.plot(hs, values, style, color="tab:green" if key == "nsp_accuracy" else "tab:orange",
                        markersize=3, alpha=alpha, label=f"{label} (held-out)")
                shown += values
        if "mlm_two_sided_mask_accuracy" in base:
            rival, label = base["mlm_two_sided_mask_accuracy"], "MLM rival: two-sided n-gram, [MASK]"
        else:
            rival, label = base.get("mlm_most_frequent_heldout_accuracy"), "MLM: most frequent token"
        if rival is not None:
            ax.axhline(rival, color="tab:orange", linestyle="--", linewidth=1, label=label)
            shown.append(rival)
        nsp_rival = base.get("nsp_text_blind_accuracy", base.get("nsp_accuracy"))
        if nsp_rival is not None:
            ax.axhline(nsp_rival, color="tab:green", linestyle=":", linewidth=1,
                       label="NSP: text-blind" if "nsp_text_blind_accuracy" in base else "NSP: chance")
            shown.append(nsp_rival)
        ax.set(xlim=(0, total), xlabel="step", ylabel="accuracy", title="held-out accuracy")
        ax.set_ylim(0, min(1.0, 1.15 * max(shown, default=1.0)))
        ax.legend(fontsize=6, loc="best")


# --------------------------------------------------------------------------------------------------------
# Fine-tuning (chapter 08)


def confusion_matrix_plot(confusion, label_names, ax=None, title="confusion matrix"):
    """A [C, C] confusion matrix (rows: true class, columns: predicted) as a labelled heatmap, each cell
    showing its count; the colour is the share of its row, so a small class's errors show as clearly as a
    large one's. Built in chapter 08."""
    counts = np.asarray(confusion, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    if ax is None:
        size = 1.2 + 0.45 * len(label_names)
        _, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, col), count in np.ndenumerate(counts):
        ax.text(col, row, f"{count:.0f}", ha="center", va="center", fontsize=7,
                color="white" if shares[row, col] > 0.6 else "black")
    ticks = range(len(label_names))
    ax.set_xticks(ticks, label_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, label_names, fontsize=8)
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    return ax


class FineTuningLivePlot(LiveLossPlot):
    """LiveLossPlot's live redrawing, for fine-tuning: the training loss (per step, faint, and its moving
    average) and the dev accuracy and macro-F1 at each evaluation, against `baseline` (e.g. the majority
    class's dev accuracy). Built in chapter 08."""

    def __init__(self, baseline: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.baseline = baseline or {}

    def _draw_loss(self, ax, losses, history, base, total) -> None:
        if losses:
            steps, values = [r["step"] for r in losses], [r["loss"] for r in losses]
            ax.plot(steps, values, color="tab:blue", alpha=0.25, linewidth=0.8)
            ax.plot(steps, _moving_average(values, self.smoothing), color="tab:blue", label="train loss")
            ax.legend(fontsize=7, loc="upper right")
        ax.set(xlim=(0, total), xlabel="step", ylabel="cross-entropy (nats)", title="training loss")

    def _draw_accuracy(self, ax, history, base, total) -> None:
        for key, color in (("dev_accuracy", "tab:orange"), ("dev_macro_f1", "tab:green")):
            if history:
                ax.plot([h["step"] for h in history], [h[key] for h in history], "o-", color=color,
                        markersize=3, label=key.replace("_", " "))
        for (name, value), style in zip(self.baseline.items(), (":", "--")):
            ax.axhline(value, color="black", linestyle=style, linewidth=1, label=name)
        ax.set(xlim=(0, total), ylim=(0, 1), xlabel="step", ylabel="score", title="dev set")
        if history or self.baseline:
            ax.legend(fontsize=7, loc="lower right")
