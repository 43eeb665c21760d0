"""bertnb.validation: every bad input gets the right exception and a message naming the value and what is
allowed; good input passes through unchanged."""

import math

import numpy as np
import pytest
import torch

from bertnb.model import BertConfig
from bertnb.validation import (check_choice, check_float, check_int, check_model_inputs, check_pred_positions,
                               exporting)

# ---------------------------------------------------------------------------------------------------------
# the argument helpers

GOOD = [
    (lambda: check_int("n", 3, low=1), 3),
    (lambda: check_int("n", 1, low=1, high=1), 1),
    (lambda: check_int("n", -7), -7),
    (lambda: check_int("n", np.int64(4), low=0), 4),  # NumPy integers are ints
    (lambda: check_float("p", 0, low=0.0, high=1.0, high_open=True), 0.0),  # an int is a number
    (lambda: check_float("p", 0.5, low=0.0, high=1.0, low_open=True, high_open=True), 0.5),
    (lambda: check_float("lr", 1e-3, low=0.0, low_open=True), 1e-3),
    (lambda: check_float("x", np.float32(2.5)), 2.5),
    (lambda: check_choice("activation", "relu", ("gelu", "relu")), "relu"),
]


@pytest.mark.parametrize("call, expected", GOOD)
def test_good_arguments_come_back(call, expected):
    value = call()
    assert value == expected and type(value) is type(expected)


BAD_ARGUMENTS = [
    (lambda: check_int("max_pred", True, low=1), TypeError, r"max_pred must be an int >= 1, got True \(bool\)"),
    (lambda: check_int("max_pred", False), TypeError, r"max_pred must be an int, got False \(bool\)"),
    (lambda: check_int("steps", 2.0, low=1), TypeError, r"steps must be an int >= 1, got 2.0 \(float\)"),
    (lambda: check_int("steps", "3", low=1), TypeError, r"steps must be an int >= 1, got '3' \(str\)"),
    (lambda: check_int("steps", None, low=1), TypeError, r"got None \(NoneType\)"),
    (lambda: check_int("steps", 0, low=1), ValueError, r"steps must be an int >= 1, got 0"),
    (lambda: check_int("seed", 2 ** 31, 0, 2 ** 31 - 1), ValueError, r"seed must be an int in \[0, 2147483647\], "
                                                                     r"got 2147483648"),
    (lambda: check_int("layer", 6, high=5), ValueError, r"layer must be an int <= 5, got 6"),
    (lambda: check_float("dropout", True, 0.0, 1.0), TypeError, r"dropout must be a number in \[0.0, 1.0\], got True"),
    (lambda: check_float("dropout", "0.1", 0.0, 1.0), TypeError, r"got '0.1' \(str\)"),
    (lambda: check_float("dropout", math.nan, 0.0, 1.0), ValueError, r"dropout must be a finite number .*got nan"),
    (lambda: check_float("lr", math.inf, low=0.0), ValueError, r"lr must be a finite number >= 0.0, got inf"),
    (lambda: check_float("dropout", 1.0, 0.0, 1.0, high_open=True), ValueError,
     r"dropout must be a number in \[0.0, 1.0\), got 1.0"),
    (lambda: check_float("minutes", 0, low=0, low_open=True), ValueError, r"minutes must be a number > 0, got 0.0"),
    (lambda: check_float("x", 1.5, high=1, high_open=True), ValueError, r"x must be a number < 1, got 1.5"),
    (lambda: check_float("x", -0.1, low=0.0, high=1.0, low_open=True), ValueError, r"in \(0.0, 1.0\], got -0.1"),
    (lambda: check_choice("activation", "swish", ("gelu", "relu")), ValueError,
     r"activation must be one of 'gelu', 'relu'; got 'swish'"),
    (lambda: check_choice("corpus", None, ["python-docs", "peoples-daily"]), ValueError,
     r"one of 'python-docs', 'peoples-daily'; got None"),
]


@pytest.mark.parametrize("call, error, pattern", BAD_ARGUMENTS)
def test_bad_arguments_are_refused_with_the_allowed_values(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


# ---------------------------------------------------------------------------------------------------------
# the model's tensor inputs

CFG = BertConfig(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2, ffn_size=8, max_len=10)
T = torch.tensor


def test_good_model_inputs_pass():
    tokens = T([[1, 49, 0], [2, 3, 4]])
    check_model_inputs(CFG, tokens, T([[0, 1, 1], [0, 0, 0]]), T([3, 1]))
    check_model_inputs(CFG, tokens)  # segments and valid_lens are optional
    check_pred_positions(T([[0, 2], [1, 1]]), tokens)
    check_pred_positions(torch.zeros(2, 0, dtype=torch.long), tokens)  # p = 0: nothing to predict
    assert not exporting()


BAD_TENSORS = [  # (tokens, segments, valid_lens, pred_positions) -> exception and message
    ((T([[1, 2]]).repeat(1, 6),), ValueError, r"m = 12 .*allowed 1 to max_len = 10"),
    ((torch.zeros(1, 0, dtype=torch.long),), ValueError, r"m = 0 .*allowed 1 to max_len = 10"),
    ((T([[1, -1]]),), ValueError, r"token id -1 .*allowed 0 to V - 1 = 49"),
    ((T([[1, 50]]),), ValueError, r"token id 50 .*allowed 0 to V - 1 = 49"),
    ((T([[1.0, 2.0]]),), TypeError, r"tokens must hold integers \(torch.long\), got dtype torch.float32"),
    ((T([[True, False]]),), TypeError, r"tokens must hold integers .*torch.bool"),
    (([[1, 2]],), TypeError, r"tokens must be a torch.Tensor of token ids \[B, m\], got list"),
    ((T([1, 2]),), ValueError, r"tokens must have shape \[B, m\], got \(2,\)"),
    ((T([[1, 2]]), T([[0, 2]])), ValueError, r"segment id 2 .*allowed 0 to 1"),
    ((T([[1, 2]]), T([[0, -1]])), ValueError, r"segment id -1 .*allowed 0 to 1"),
    ((T([[1, 2]]), T([[0, 1, 0]])), ValueError, r"segments shape \(1, 3\) does not match tokens shape \(1, 2\)"),
    ((T([[1, 2]]), T([[0.0, 1.0]])), TypeError, r"segments must hold integers"),
    ((T([[1, 2]]), None, T([0])), ValueError, r"valid_lens value 0 .*allowed 1 to m = 2"),
    ((T([[1, 2]]), None, T([3])), ValueError, r"valid_lens value 3 .*allowed 1 to m = 2"),
    ((T([[1, 2]]), None, T([1, 2])), ValueError, r"valid_lens must have shape \[B\] = \(1,\), got \(2,\)"),
    ((T([[1, 2]]), None, [2]), TypeError, r"valid_lens must be a torch.Tensor \[B\], got list"),
    ((T([[1, 2]]), None, None, T([[2]])), ValueError, r"pred_positions value 2 .*allowed 0 to m - 1 = 1"),
    ((T([[1, 2]]), None, None, T([[-1]])), ValueError, r"pred_positions value -1 .*allowed 0 to m - 1 = 1"),
    ((T([[1, 2]]), None, None, T([0, 1])), ValueError, r"pred_positions must have shape \[B, p\] with B = 1"),
    ((T([[1, 2]]), None, None, T([[0.0]])), TypeError, r"pred_positions must hold integers"),
]


@pytest.mark.parametrize("args, error, pattern", BAD_TENSORS)
def test_bad_model_inputs_are_refused_naming_the_value_and_range(args, error, pattern):
    tokens, segments, valid_lens, pred_positions = (*args, None, None, None)[:4]
    with pytest.raises(error, match=pattern):
        check_model_inputs(CFG, tokens, segments, valid_lens)
        if pred_positions is not None:
            check_pred_positions(pred_positions, tokens)
