"""Input checks, in one place: bad input fails early with a message naming the value and what is allowed.

Two kinds. The argument helpers `check_int`, `check_float`, `check_choice` check one plain Python value
(a config field, a function argument, a command-line option); the whole package uses them instead of
writing the same `if not isinstance(...)` by hand. The tensor checks `check_model_inputs` and
`check_pred_positions` check what a model is called with, before any computation, so a token id out of the
vocabulary fails here and not as an index error deep inside an embedding.

One name per idea: `pred_positions` [B, p] are the positions whose tokens the MLM head predicts, wherever
they are passed.
"""

from __future__ import annotations

import math
import numbers

import torch


# --------------------------------------------------------------------------------------------------------
# Argument helpers


def _range_text(low, high, low_open: bool = False, high_open: bool = False) -> str:
    """The allowed range in words a reader knows: ' >= 1', ' < 1', ' in [0, 1)', or '' when unbounded."""
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high}"
    return ""


def check_int(name: str, value, low=None, high=None) -> int:
    """`value` as an int in [low, high] (either bound may be None), else a clear error.

    Package plumbing, not built in a chapter; first met in chapter 02 (BertConfig checks its fields).
    bool is refused although Python counts it as an int: `max_pred=True` is a mistake, not 1.
    """
    allowed = _range_text(low, high)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # Integral: NumPy ints pass too
        raise TypeError(f"{name} must be an int{allowed}, got {value!r} ({type(value).__name__})")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an int{allowed}, got {value}")
    return value


def check_float(name: str, value, low=None, high=None, low_open: bool = False, high_open: bool = False) -> float:
    """`value` (an int or a float) as a float within the bounds, open or closed, else a clear error.

    Package plumbing, not built in a chapter; first met in chapter 02 (BertConfig checks its fields).
    bool, NaN and infinities are refused: NaN compares False with every bound, so it would slip through a
    range test, and no setting of the course means "infinitely large".
    """
    allowed = _range_text(low, high, low_open, high_open)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number{allowed}, got {value!r} ({type(value).__name__})")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number{allowed}, got {value}")
    if too_low or too_high:
        raise ValueError(f"{name} must be a number{allowed}, got {value}")
    return value


def check_choice(name: str, value, choices):
    """`value` if it is one of `choices`, else an error listing them.

    Package plumbing, not built in a chapter; first met in chapter 02 (BertConfig checks its fields).
    """
    if value not in choices:
        listed = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}")
    return value


# --------------------------------------------------------------------------------------------------------
# Tensor checks: what a model is called with. They are skipped while torch.export / torch.onnx traces the
# model (see `exporting`): a check that reads tensor values cannot be exported.


def exporting() -> bool:
    """True while torch.export (or torch.onnx's exporter) traces the model. Package plumbing (chapter 10
    exports the model)."""
    is_exporting = getattr(torch.compiler, "is_exporting", None)  # absent in older torch
    return bool(is_exporting and is_exporting())


def check_integer_tensor(name: str, value, shape_text: str) -> None:
    """`value` must be a tensor of integers (ids or positions); shape_text such as '[B, m]' goes in the message.
    Package plumbing, not built in a chapter."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor {shape_text}, got {type(value).__name__}")
    if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
        raise TypeError(f"{name} must hold integers (torch.long), got dtype {value.dtype}")


def check_values_in_range(what: str, value, low: int, high: int, allowed: str) -> None:
    """Every entry of the tensor `value` must lie in [low, high]; the message names the first offender.
    Package plumbing, not built in a chapter."""
    smallest, largest = int(value.min()), int(value.max())
    if smallest < low or largest > high:
        bad = smallest if smallest < low else largest
        raise ValueError(f"{what} {bad} is out of range: allowed {allowed}")


def check_model_inputs(cfg, tokens, segments=None, valid_lens=None) -> None:
    """tokens [B, m] ids in [0, V), segments [B, m] in [0, type_vocab_size), valid_lens [B] in [1, m].

    `cfg` is the model's BertConfig. Package plumbing, not built in a chapter: `BertModel.forward` (chapter 04)
    calls it before any computation.
    """
    check_integer_tensor("tokens", tokens, "of token ids [B, m]")
    if tokens.dim() != 2:
        raise ValueError(f"tokens must have shape [B, m], got {tuple(tokens.shape)}")
    B, m = tokens.shape
    if m < 1 or m > cfg.max_len:
        raise ValueError(f"sequence length m = {m} is out of range: allowed 1 to max_len = {cfg.max_len}")
    check_values_in_range("token id", tokens, 0, cfg.vocab_size - 1, f"0 to V - 1 = {cfg.vocab_size - 1}")
    if segments is not None:
        check_integer_tensor("segments", segments, "[B, m]")
        if segments.shape != tokens.shape:
            raise ValueError(f"segments shape {tuple(segments.shape)} does not match tokens shape "
                             f"{tuple(tokens.shape)}")
        check_values_in_range("segment id", segments, 0, cfg.type_vocab_size - 1, f"0 to {cfg.type_vocab_size - 1}")
    if valid_lens is not None:
        check_integer_tensor("valid_lens", valid_lens, "[B]")
        if valid_lens.shape != (B,):
            raise ValueError(f"valid_lens must have shape [B] = ({B},), got {tuple(valid_lens.shape)}")
        check_values_in_range("valid_lens value", valid_lens, 1, m, f"1 to m = {m}")


def check_pred_positions(pred_positions, tokens) -> None:
    """pred_positions [B, p] must index the m positions of tokens [B, m]: integers in [0, m - 1].

    Package plumbing, not built in a chapter: called wherever pred_positions are passed (BertForPreTraining,
    chapter 06; bertnb.fastpath).
    """
    B, m = tokens.shape
    check_integer_tensor("pred_positions", pred_positions, "[B, p]")
    if pred_positions.dim() != 2 or pred_positions.shape[0] != B:
        raise ValueError(f"pred_positions must have shape [B, p] with B = {B}, got {tuple(pred_positions.shape)}")
    if pred_positions.numel():
        check_values_in_range("pred_positions value", pred_positions, 0, m - 1, f"0 to m - 1 = {m - 1}")
