"""Looking inside: the attention explorer, per-head statistics and attention rollout. Built in chapter 09.

Everything here reads the attention maps the model returns with `return_attention=True`, L tensors of
shape [B, h, m, m] (row q of a map: how query position q spreads its weight over the m keys).

- `explore_attention` is an ipywidgets widget made only of ipywidgets' own controls and an `Image` holding a
  PNG drawn by matplotlib: no JavaScript of its own and nothing from a CDN, so it renders wherever
  ipywidgets 7.7 (Colab) or 8 (JupyterLab 4, Binder) does, and `save_png` writes exactly what it shows.
- `head_statistics` measures every head (entropy, share on [CLS] / [SEP], on the previous / same / next
  token) so heads are found by numbers, not by scrolling; `uniform_attentions` gives the baseline.
- `attention_rollout` follows Abnar & Zuidema (2020), "Quantifying Attention Flow in Transformers".

Notation: B batch · m length · h heads · L layers · k the number of units shown (tokens or words).
"""

from __future__ import annotations

import io
from pathlib import Path

import ipywidgets
import numpy as np
import torch
from traitlets import TraitError, validate

from bertnb.validation import check_float

SPECIAL_TOKENS_SHOWN = ("[CLS]", "[SEP]")  # the tokens the "show [CLS]/[SEP]" box hides
NO_TOKEN = -1  # the token picker's value when no token is picked


# --------------------------------------------------------------------------------------------------------
# From text to attention maps


def encoder_of(model):
    """The `BertModel` inside `model` (a `BertForPreTraining` keeps it in `.bert`). Built in chapter 09."""
    from bertnb.model import BertModel

    encoder = getattr(model, "bert", model)
    if not isinstance(encoder, BertModel):
        raise TypeError(f"model must be a bertnb BertModel or BertForPreTraining, got {type(model).__name__}")
    return encoder


def attention_maps(model, tokenizer, texts):
    """Texts -> (tokens [B, m], valid_lens [B], attentions L x [B, h, m, m]), in eval mode, without gradients.

    Each item of `texts` is a str or a pair (text_a, text_b). Rows are padded on the right to the longest
    one; the model's padding mask (from `valid_lens`) gives padded keys zero weight. Built in chapter 09.
    """
    encoder = encoder_of(model)
    if isinstance(texts, str) or not texts:
        raise TypeError("texts must be a non-empty list of str or (text_a, text_b) pairs")
    encoded = [tokenizer.encode(*((t, None) if isinstance(t, str) else t), max_len=encoder.cfg.max_len)
               for t in texts]
    m = max(len(ids) for ids, _ in encoded)
    tokens = torch.tensor([ids + [tokenizer.pad_id] * (m - len(ids)) for ids, _ in encoded])  # [B, m]
    segments = torch.tensor([segs + [0] * (m - len(segs)) for _, segs in encoded])  # [B, m]
    valid_lens = torch.tensor([len(ids) for ids, _ in encoded])  # [B]
    was_training = encoder.training
    encoder.eval()  # dropout off: the same text always gives the same maps
    try:
        with torch.no_grad():
            _, attentions = encoder(tokens, segments, valid_lens, return_attention=True)  # L x [B, h, m, m]
    finally:
        encoder.train(was_training)
    return tokens, valid_lens, attentions


# --------------------------------------------------------------------------------------------------------
# Units: what the rows and columns of a shown map stand for (tokens or whole words)


def word_spans(tokens: list[str]) -> list[list[int]]:
    """WordPiece tokens -> the positions of each word: a piece starting with "##" joins the word before it.

    ["[CLS]", "una", "##ffa", "##ble", "!", "[SEP]"] -> [[0], [1, 2, 3], [4], [5]]. Built in chapter 09.
    """
    spans = []
    for position, token in enumerate(tokens):
        if token.startswith("##") and spans:
            spans[-1].append(position)
        else:
            spans.append([position])
    return spans


def merge_units(A, units: list[list[int]]):
    """A [m, m] attention map -> [k, k] over k units (each a list of positions).

    Attention *to* a unit is the sum over its keys (the weight the query gave the whole word); attention
    *from* a unit is the mean over its queries (a word asks one question, on average). So a row over all
    units still sums to 1. This is Clark et al. (2019), "What Does BERT Look At?". Built in chapter 09.
    """
    A = np.asarray(A, dtype=np.float64)
    to_units = np.stack([A[:, unit].sum(axis=1) for unit in units], axis=1)  # [m, k]: sum over each unit's keys
    return np.stack([to_units[unit].mean(axis=0) for unit in units])  # [k, k]: mean over each unit's queries


def unit_label(tokens: list[str], unit: list[int]) -> str:
    """The text of a unit: its pieces glued back together ("una" "##ffa" "##ble" -> "unaffable").
    Built in chapter 09."""
    return "".join(tokens[p].removeprefix("##") if i else tokens[p] for i, p in enumerate(unit))


def shown_units(tokens: list[str], words: bool, specials: bool) -> list[list[int]]:
    """The units a view shows: tokens or words, with or without [CLS]/[SEP]. Built in chapter 09."""
    units = word_spans(tokens) if words else [[p] for p in range(len(tokens))]
    if not specials:
        units = [unit for unit in units if tokens[unit[0]] not in SPECIAL_TOKENS_SHOWN]
    return units


# --------------------------------------------------------------------------------------------------------
# Pictures (matplotlib without pyplot: drawing a PNG for the widget shows nothing by itself)


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _png(figure, dpi: int) -> bytes:
    """The figure as PNG bytes with a 256-colour palette: a third of the size of full colour, which matters
    for a picture sent to the browser on every click and stored in the notebook."""
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    picture = Image.open(buffer).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    picture.save(out, format="png", optimize=True)
    return out.getvalue()


def _draw_map(ax, M, labels, title, picked=NO_TOKEN):
    """One head's map as a heatmap: queries down, keys across; the picked unit's row and column outlined."""
    from matplotlib.patches import Rectangle

    k = len(labels)
    image = ax.imshow(M, cmap="viridis", vmin=0, vmax=max(float(M.max()), 1e-9), aspect="auto")
    ax.set_xticks(range(k), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(k), labels, fontsize=7)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_title(title, fontsize=9)
    if picked != NO_TOKEN:
        # the row: what the picked unit attends to; the column: what attends to it
        ax.add_patch(Rectangle((-0.5, picked - 0.5), k, 1, fill=False, edgecolor="#ff3030", linewidth=2))
        ax.add_patch(Rectangle((picked - 0.5, -0.5), 1, k, fill=False, edgecolor="#ffb000", linewidth=2))
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="attention weight")


def _top(values, labels, n=3) -> str:
    order = np.argsort(-values, kind="stable")[:n]
    return ", ".join(f"{labels[i]} {values[i]:.2f}" for i in order)


# --------------------------------------------------------------------------------------------------------
# The explorer widget


class StrictIntSlider(ipywidgets.IntSlider):
    """An IntSlider that refuses a value out of [min, max] with an error naming the range (a plain
    IntSlider silently clamps it, so `w.layer.value = 9` on a 6-layer model would show layer 5).
    Built in chapter 09 (the explorer's layer and head sliders)."""

    @validate("value")
    def _validate_value(self, proposal):
        value = proposal["value"]
        if not self.min <= value <= self.max:
            raise TraitError(f"{self.description} must be an int in [{self.min}, {self.max}], got {value}")
        return value


def explore_attention(model, tokenizer, text_a: str, text_b: str | None = None, dpi: int = 100):
    """An ipywidgets widget to explore a model's attention on one text (or pair). Built in chapter 09.

    Controls code can set: `.layer.value`, `.head.value`, `.token.value` (a position in the shown units, or
    -1 for none), `.view.value` ("one head" / "all heads"), `.specials.value` (show [CLS]/[SEP]),
    `.words.value` (group WordPieces into words: sum over keys, mean over queries). `.attention()` is the
    selected head's map as shown, numpy [k, k] over real tokens only (padding never appears); `.labels()`
    its row and column names; `.png` the picture; `.save_png(path)` writes it.
    """
    encoder = encoder_of(model)
    for name, text in (("text_a", text_a), ("text_b", text_b)):
        if text is not None and not isinstance(text, str):
            raise TypeError(f"{name} must be a str, got {type(text).__name__}")
    tokens, valid_lens, attentions = attention_maps(encoder, tokenizer, [(text_a, text_b)])
    real = int(valid_lens[0])
    names = tokenizer.convert_ids_to_tokens(tokens[0, :real])  # the padding dropped
    maps = np.stack([a[0, :, :real, :real].numpy() for a in attentions])  # [L, h, m, m], real tokens only
    return AttentionExplorer(maps, names, dpi)


class AttentionExplorer(ipywidgets.VBox):
    """The widget `explore_attention` returns (its docstring lists the controls). Built in chapter 09."""

    def __init__(self, maps, tokens: list[str], dpi: int = 100):
        super().__init__()
        self.maps, self.tokens, self.dpi = maps, tokens, dpi  # [L, h, m, m], m token names
        L, h = maps.shape[:2]
        self.layer = StrictIntSlider(value=L - 1, min=0, max=L - 1, description="layer", continuous_update=False)
        self.head = StrictIntSlider(value=0, min=0, max=h - 1, description="head", continuous_update=False)
        self.token = ipywidgets.Dropdown(description="token")
        self.view = ipywidgets.ToggleButtons(options=["one head", "all heads"], value="one head")
        self.specials = ipywidgets.Checkbox(value=True, description="show [CLS]/[SEP]", indent=False)
        self.words = ipywidgets.Checkbox(value=False, description="group WordPieces into words", indent=False)
        self.image = ipywidgets.Image(format="png")
        self.caption = ipywidgets.HTML()
        self._units = []
        self._rebuilding = False  # True while the token picker is refilled: one redraw at the end, not three
        self._fill_token_options(picked_position=None)
        for control in (self.layer, self.head, self.token, self.view):
            control.observe(lambda change: self._redraw() if not self._rebuilding else None, names="value")
        for control in (self.specials, self.words):
            control.observe(lambda change: self._units_changed(), names="value")
        row1 = ipywidgets.HBox([self.layer, self.head, self.view])
        row2 = ipywidgets.HBox([self.token, self.specials, self.words])
        self.children = (row1, row2, self.image, self.caption)
        self._redraw()

    def __repr__(self):  # what is left in a stored notebook: keep it short (ipywidgets cuts it at 110)
        return f"AttentionExplorer(layer={self.layer.value}, head={self.head.value}, {len(self.tokens)} tokens)"

    # --- what is shown ------------------------------------------------------------------------------------

    def _fill_token_options(self, picked_position):
        """Rebuild the token picker for the current units, keeping the picked token when it is still shown."""
        self._units = shown_units(self.tokens, self.words.value, self.specials.value)
        labels = self.labels()
        options = [("(none)", NO_TOKEN)] + [(f"{i}: {label}", i) for i, label in enumerate(labels)]
        value = next((i for i, unit in enumerate(self._units) if picked_position in unit), NO_TOKEN)
        self._rebuilding = True
        try:
            self.token.options = options
            self.token.value = value
        finally:
            self._rebuilding = False

    def _units_changed(self):
        picked = self._units[self.token.value][0] if self.token.value != NO_TOKEN else None
        self._fill_token_options(picked)
        self._redraw()

    def labels(self) -> list[str]:
        """The names of the shown rows and columns (tokens, or words)."""
        return [unit_label(self.tokens, unit) for unit in self._units]

    def _map(self, layer: int, head: int):
        """[k, k]: one head's map over the shown units (without [CLS]/[SEP], rows sum to less than 1)."""
        return merge_units(self.maps[layer, head], self._units)

    def attention(self):
        """The selected head's map as shown now: numpy [k, k], real tokens only."""
        return self._map(self.layer.value, self.head.value)

    # --- drawing ------------------------------------------------------------------------------------------

    def _describe_pick(self, M, labels) -> str:
        picked = self.token.value
        if picked == NO_TOKEN:
            return ""
        return (f"'{labels[picked]}' attends to: {_top(M[picked], labels)}\n"
                f"attended by: {_top(M[:, picked], labels)}")

    def _draw(self):
        layer, head, labels = self.layer.value, self.head.value, self.labels()
        k = len(labels)
        M = self.attention()  # [k, k]
        side = min(7.0, 2.0 + 0.15 * k)  # inches: rows about 0.15 inch apart, room for the labels
        if self.view.value == "one head":
            figure = _new_figure(side + 1.0, side)
            _draw_map(figure.add_subplot(), M, labels, f"layer {layer}, head {head}", self.token.value)
        else:
            figure = self._draw_all_heads(layer, head, k)
        pick = self._describe_pick(M, labels)
        if pick:  # two lines of text under the plot, in room the layout leaves free
            room = 0.4 / figure.get_figheight()  # 0.4 inch, as a share of the figure's height
            figure.text(0.01, 0.0, pick, fontsize=8, va="bottom", ha="left", family="monospace")
            figure.get_layout_engine().set(rect=(0, room, 1, 1 - room))
        return figure

    def _draw_all_heads(self, layer: int, head: int, k: int):
        """The layer's h maps in a grid of up to 4 columns, the selected head's title in red."""
        h = self.maps.shape[1]
        cols = min(h, 4)
        rows = -(-h // cols)  # ceiling division
        figure = _new_figure(1.6 * cols + 0.6, 1.6 * rows + 0.4)
        for index, ax in enumerate(figure.subplots(rows, cols, squeeze=False).flat):
            ax.set_xticks([])
            ax.set_yticks([])
            if index >= h:  # an empty slot in the last row
                ax.set_axis_off()
                continue
            ax.imshow(self._map(layer, index), cmap="viridis", vmin=0, aspect="auto")
            ax.set_title(f"head {index}", fontsize=8, color="#d00000" if index == head else "black",
                         fontweight="bold" if index == head else "normal")
        figure.suptitle(f"layer {layer}, all {h} heads ({k} units; selected head in red)", fontsize=9)
        figure.supxlabel("key (attended to)", fontsize=8)
        figure.supylabel("query (attending)", fontsize=8)
        return figure

    def _redraw(self):
        self.png = _png(self._draw(), self.dpi)
        self.image.value = self.png
        M, labels = self.attention(), self.labels()
        rows = "rows sum to 1" if self.specials.value else "rows sum to less than 1: the rest went to [CLS]/[SEP]"
        pick = self._describe_pick(M, labels).replace("\n", "<br>")
        self.caption.value = (f"<small>layer {self.layer.value}, head {self.head.value}: {len(labels)} "
                              f"{'words' if self.words.value else 'tokens'}, {rows}"
                              f"{'<br>' + pick if pick else ''}</small>")

    def save_png(self, path) -> Path:
        """Write the picture now shown to `path` (a .png); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.png)
        return path

    def static(self):
        """The picture now shown as an IPython image: the fallback where widgets cannot render."""
        from IPython.display import Image

        return Image(data=self.png, format="png")


# --------------------------------------------------------------------------------------------------------
# Per-head statistics


STATISTICS = ("entropy", "[CLS]", "[SEP]", "previous", "same", "next")


def _mean_over_queries(per_query, queries):
    """per_query [L, B, h, q], queries [B, q] (True = counted) -> [L, h]: the mean over counted queries."""
    weight = queries[None, :, None, :].to(per_query.dtype)  # [1, B, 1, q]
    return ((per_query * weight).sum(dim=(1, 3)) / weight.sum(dim=(1, 3))).numpy()  # [L, h]


def head_statistics(attentions, tokens, valid_lens, cls_id: int, sep_id: int) -> dict:
    """Per layer x head, averaged over the real queries of a batch -> {name: numpy [L, h]}. Built in chapter 09.

    "entropy": of each query's weights, in nats (0 for one-hot, log(length) for uniform); "[CLS]", "[SEP]":
    the share of the weight on those tokens; "previous", "same", "next": on position q - 1, q, q + 1 (over
    the queries that have such a neighbour). Padded queries are left out; padded keys carry zero weight.
    """
    A = torch.stack(list(attentions)).double()  # [L, B, h, m, m]
    m = A.shape[-1]
    real = torch.arange(m)[None, :] < valid_lens[:, None]  # [B, m]
    on_token = lambda token_id: (A * (tokens == token_id)[None, :, None, None, :]).sum(-1)  # noqa: E731
    return {
        "entropy": _mean_over_queries(-torch.special.xlogy(A, A).sum(-1), real),  # xlogy: 0 log 0 = 0
        "[CLS]": _mean_over_queries(on_token(cls_id), real),
        "[SEP]": _mean_over_queries(on_token(sep_id), real),
        # offset -1 holds A[q, q - 1] for q = 1..m-1; offset +1 holds A[q, q + 1] for q = 0..m-2. Either way
        # both q and its neighbour must be real tokens: real[:, 1:] says so for both.
        "previous": _mean_over_queries(A.diagonal(offset=-1, dim1=-2, dim2=-1), real[:, 1:]),
        "same": _mean_over_queries(A.diagonal(dim1=-2, dim2=-1), real),
        "next": _mean_over_queries(A.diagonal(offset=1, dim1=-2, dim2=-1), real[:, 1:]),
    }


def uniform_attentions(valid_lens, m: int, num_layers: int, num_heads: int):
    """The baseline: every real query spreads its weight evenly over the real keys (1 / valid length).
    -> L x [B, h, m, m], for `head_statistics`. Built in chapter 09."""
    real = (torch.arange(m)[None, :] < valid_lens[:, None]).double()  # [B, m]
    rows = real / valid_lens[:, None].double()  # [B, m]: 1 / length on real keys
    uniform = rows[:, None, None, :].expand(-1, num_heads, m, -1)  # [B, h, m, m]
    return [uniform] * num_layers


def strongest_head(stats: dict, name: str) -> tuple[int, int, float]:
    """(layer, head, value) of the head with the highest `name` share, or the lowest entropy. Built in chapter 09."""
    values = stats[name]  # [L, h]
    flat = values.argmin() if name == "entropy" else values.argmax()
    layer, head = np.unravel_index(flat, values.shape)
    return int(layer), int(head), float(values[layer, head])


def plot_head_statistics(stats_by_model: dict, baseline: dict | None = None, title: str = "", dpi: int = 100):
    """{model name: head_statistics(...)} -> one pyplot figure: a row of [L x h] heatmaps per model, a column
    per statistic; with `baseline` (the uniform statistics) its value heads each column. Built in chapter 09."""
    import matplotlib.pyplot as plt

    names = list(stats_by_model)
    figure, axes = plt.subplots(len(names), len(STATISTICS), figsize=(9.5, 0.4 + 1.25 * len(names)), dpi=dpi,
                                layout="constrained", squeeze=False)
    entropy_max = max(float(stats["entropy"].max()) for stats in stats_by_model.values())
    for row, name in enumerate(names):
        for col, statistic in enumerate(STATISTICS):
            ax, values = axes[row, col], stats_by_model[name][statistic]  # values [L, h]
            is_share = statistic != "entropy"
            image = ax.imshow(values, cmap="magma" if is_share else "viridis", vmin=0,
                              vmax=1 if is_share else entropy_max, aspect="auto", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"{'share on ' if is_share else ''}{statistic}" +
                             (f"\n(uniform {baseline[statistic].mean():.2f})" if baseline else ""), fontsize=8)
            if col == 0:
                ax.set_ylabel(f"{name}\nlayer (0 on top)", fontsize=8)
            if row == len(names) - 1:
                ax.set_xlabel("head", fontsize=8)
        if row == 0:
            entropy_image, share_image = axes[0, 0].images[0], image
    figure.colorbar(entropy_image, ax=axes[:, 0], label="entropy (nats)", shrink=0.8, location="left", pad=0.12)
    figure.colorbar(share_image, ax=axes[:, 1:], label="share of the weight", shrink=0.8)
    figure.suptitle(title, fontsize=9)
    return figure


# --------------------------------------------------------------------------------------------------------
# Attention rollout


def attention_rollout(attentions, residual: float = 0.5):
    """Abnar & Zuidema (2020): how much each output position draws on each input token, through all layers.

    attentions: L x [B, h, m, m] -> [B, m, m]. Per layer: average the heads, add the residual connection as
    `residual` times the identity (the rest, 1 - residual, is the attention), renormalise every row to sum
    to 1, then multiply the layers through, first layer on the right: R = Â_L ... Â_2 Â_1. Built in chapter 09.
    """
    residual = check_float("residual", residual, low=0.0, high=1.0)
    attentions = list(attentions)
    if not attentions:
        raise ValueError("attentions is empty: pass the L maps [B, h, m, m] the model returns")
    shape = tuple(attentions[0].shape)
    for layer, A in enumerate(attentions):
        if A.dim() != 4 or A.shape[-1] != A.shape[-2] or tuple(A.shape) != shape:
            raise ValueError(f"every attention map must be [B, h, m, m] with one shape for all layers: layer 0 is "
                             f"{shape}, layer {layer} is {tuple(A.shape)}")
    identity = torch.eye(shape[-1], dtype=attentions[0].dtype, device=attentions[0].device)  # [m, m]
    rollout = None
    for A in attentions:
        mixed = (1 - residual) * A.mean(dim=1) + residual * identity  # [B, m, m]: heads averaged, residual added
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)  # [B, m, m]: rows sum to 1 again
        rollout = mixed if rollout is None else mixed @ rollout  # [B, m, m]: this layer after the ones below
    return rollout
