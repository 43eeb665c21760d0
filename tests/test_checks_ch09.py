"""Chapter 09: the exercise checks accept the reference solutions (kept here, not in the notebook), reject
plausible wrong answers with a message and without raising, and say "not solved yet" for the stub."""

import math

import pytest
import torch

from bertnb.checks import ch09
from tests.check_contract import assert_rejected, assert_not_solved


def real_queries(valid_lens, m):
    return (torch.arange(m)[None, :] < valid_lens[:, None]).to(torch.float64)[:, None, :]  # [B, 1, m]


# reference solutions


def head_entropy(A, valid_lens):
    per_query = -torch.special.xlogy(A, A).sum(-1)  # [B, h, m]
    real = real_queries(valid_lens, A.shape[-1])
    return (per_query * real).sum((0, 2)) / real.sum((0, 2))  # [h]


def attention_distance(A, valid_lens):
    m = A.shape[-1]
    gap = (torch.arange(m)[:, None] - torch.arange(m)[None, :]).abs()  # [m, m]
    real = real_queries(valid_lens, m)
    return ((A * gap).sum(-1) * real).sum((0, 2)) / real.sum((0, 2))  # [h]


# wrong answers


def entropy_bits(A, valid_lens):
    return head_entropy(A, valid_lens) / math.log(2)


def entropy_all_queries(A, valid_lens):
    return -torch.special.xlogy(A, A).sum(-1).mean((0, 2))


def entropy_nan(A, valid_lens):  # p * log p is NaN at p = 0
    per_query = -(A * A.log()).sum(-1)
    real = real_queries(valid_lens, A.shape[-1])
    return (per_query * real).sum((0, 2)) / real.sum((0, 2))


def entropy_per_query(A, valid_lens):
    return -torch.special.xlogy(A, A).sum(-1)  # [B, h, m]: not averaged


def distance_signed(A, valid_lens):
    m = A.shape[-1]
    gap = (torch.arange(m)[:, None] - torch.arange(m)[None, :]).to(A.dtype)
    real = real_queries(valid_lens, m)
    return ((A * gap).sum(-1) * real).sum((0, 2)) / real.sum((0, 2))


def distance_all_queries(A, valid_lens):
    m = A.shape[-1]
    gap = (torch.arange(m)[:, None] - torch.arange(m)[None, :]).abs()
    return (A * gap).sum(-1).mean((0, 2))


def distance_unweighted(A, valid_lens):  # the mean gap to the real keys, ignoring the weights
    m = A.shape[-1]
    gap = (torch.arange(m)[:, None] - torch.arange(m)[None, :]).abs().to(A.dtype)
    keys = real_queries(valid_lens, m)  # [B, 1, m] doubles as the real keys
    per_query = (gap[None, None] * keys[:, :, None, :]).sum(-1) / keys.sum(-1, keepdim=True)
    real = real_queries(valid_lens, m)
    return (per_query.expand(-1, A.shape[1], -1) * real).sum((0, 2)) / real.sum((0, 2))


@pytest.mark.parametrize("check, solution", [(ch09.check_head_entropy, head_entropy),
                                             (ch09.check_attention_distance, attention_distance)])
def test_reference_solutions_pass(check, solution, capsys):
    assert check(solution)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("check", [ch09.check_head_entropy, ch09.check_attention_distance])
def test_stub_is_not_solved_yet(check, capsys):
    assert_not_solved(check, capsys)


@pytest.mark.parametrize("check, wrong, hint", [
    (ch09.check_head_entropy, entropy_bits, "bits"),
    (ch09.check_head_entropy, entropy_all_queries, "padded query rows"),
    (ch09.check_head_entropy, entropy_nan, "0 * log 0"),
    (ch09.check_head_entropy, entropy_per_query, "one value per head"),
    (ch09.check_attention_distance, distance_signed, "absolute gap"),
    (ch09.check_attention_distance, distance_all_queries, "padded query rows"),
    (ch09.check_attention_distance, distance_unweighted, "expected"),
])
def test_wrong_answers_are_rejected_with_a_hint(check, wrong, hint, capsys):
    assert_rejected(check, wrong, hint, capsys)


def test_a_crashing_answer_is_reported_not_raised(capsys):
    assert not ch09.check_head_entropy(lambda A, valid_lens: A.nope)
    assert "raised AttributeError" in capsys.readouterr().out
