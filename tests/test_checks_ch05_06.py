"""Chapters 05 and 06: the exercise checks accept the reference solutions (kept here, not in the notebooks),
reject wrong answers with a message and without raising, and say "not solved yet" for the notebook's stub."""

import math
import random

import pytest
import torch

from bertnb.checks import ch05, ch06
from bertnb.data import num_predictions
from bertnb.model import BertConfig, BertModel, gather_positions


def unsolved(*args, **kwargs):  # what the notebooks hold before the student writes anything
    raise NotImplementedError  # your code here


# ---------------------------------------------------------------------------------------------------------
# Reference solutions, chapter 05


def num_to_predict(length, max_pred):
    return min(max_pred, max(1, round(length * 0.15)))


def gather(X, P):
    B, p = P.shape
    batch_idx = torch.repeat_interleave(torch.arange(B), p)  # [B * p]: 0 0 .. 0 1 1 .. 1 ...
    flat = X[batch_idx, P.reshape(-1)]  # [B * p, n]
    return flat.reshape(B, p, -1)  # [B, p, n]


def gather_flat_offsets(X, P):  # also right: flatten X and add b * m to sequence b's positions
    B, m, n = X.shape
    flat_index = (P + torch.arange(B)[:, None] * m).reshape(-1)  # [B * p]
    return X.reshape(B * m, n)[flat_index].reshape(B, P.shape[1], n)


def pad_share(mlm_weights):
    return (mlm_weights == 0).float().mean().item()


# wrong answers, chapter 05


def num_to_predict_int(length, max_pred):
    return min(max_pred, max(1, int(length * 0.15)))


def num_to_predict_half_up(length, max_pred):
    return min(max_pred, max(1, math.floor(length * 0.15 + 0.5)))


def num_to_predict_no_floor(length, max_pred):
    return min(max_pred, round(length * 0.15))


def num_to_predict_no_cap(length, max_pred):
    return max(1, round(length * 0.15))


def gather_all_rows(X, P):
    return X[:, P]  # [B, B, p, n]


def gather_repeat(X, P):
    B, p = P.shape
    batch_idx = torch.arange(B).repeat(p)  # 0 1 0 1 ...: the wrong order
    return X[batch_idx, P.reshape(-1)].reshape(B, p, -1)


def gather_flat_shape(X, P):
    return gather(X, P).reshape(-1, X.shape[-1])  # [B * p, n]


def gather_from_first(X, P):
    return X[0][P]


def pad_share_real(mlm_weights):
    return mlm_weights.mean().item()


def pad_count(mlm_weights):
    return (mlm_weights == 0).sum().item()


# ---------------------------------------------------------------------------------------------------------
# Reference solutions, chapter 06


def nsp_label(doc_a, doc_b):
    return 0 if doc_a == doc_b else 1  # 0 = IsNext (B continues A), 1 = NotNext


def pooler(X, dense):
    return torch.tanh(dense(X[:, 0]))  # [B, n]: the [CLS] vector through dense + tanh


def other_document(num_docs, doc_index, rng):
    other = rng.randrange(num_docs - 1)  # one of the num_docs - 1 others ...
    return other + 1 if other >= doc_index else other  # ... skipping doc_index


def other_document_retry(num_docs, doc_index, rng):  # also right: draw again until it differs
    while True:
        d = rng.randrange(num_docs)
        if d != doc_index:
            return d


# wrong answers, chapter 06


def nsp_label_flipped(doc_a, doc_b):
    return 1 if doc_a == doc_b else 0  # d2l's convention


def nsp_label_bool(doc_a, doc_b):
    return doc_a != doc_b


def pooler_mean(X, dense):
    return torch.tanh(dense(X.mean(1)))


def pooler_no_tanh(X, dense):
    return dense(X[:, 0])


def pooler_raw(X, dense):
    return X[:, 0]


def pooler_last(X, dense):
    return torch.tanh(dense(X[:, -1]))


def other_document_any(num_docs, doc_index, rng):
    return rng.randrange(num_docs)  # may return A's own document


def other_document_next(num_docs, doc_index, rng):
    return (doc_index + 1) % num_docs  # never the same, but not random


def other_document_global_random(num_docs, doc_index, rng):
    return other_document(num_docs, doc_index, random)  # ignores the rng it is given


@pytest.mark.parametrize("check, reference", [
    (ch05.check_num_to_predict, num_to_predict),
    (ch05.check_gather, gather),
    (ch05.check_gather, gather_flat_offsets),
    (ch05.check_pad_share, pad_share),
    (ch06.check_nsp_label, nsp_label),
    (ch06.check_pooler, pooler),
    (ch06.check_other_document, other_document),
    (ch06.check_other_document, other_document_retry),
])
def test_reference_is_accepted(check, reference, capsys):
    assert check(reference) is True
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("check, wrong, hint", [
    (ch05.check_num_to_predict, num_to_predict_int, "int() cuts"),
    (ch05.check_num_to_predict, num_to_predict_half_up, "halves to the even"),
    (ch05.check_num_to_predict, num_to_predict_no_floor, "max(1, ...)"),
    (ch05.check_num_to_predict, num_to_predict_no_cap, "min(max_pred, ...)"),
    (ch05.check_num_to_predict, lambda length, max_pred: float(num_to_predict(length, max_pred)), "an int"),
    (ch05.check_gather, gather_all_rows, "[B, B, p, n]"),
    (ch05.check_gather, gather_repeat, "repeat_interleave"),
    (ch05.check_gather, gather_flat_shape, "reshape"),
    (ch05.check_gather, gather_from_first, "sequence 0"),
    (ch05.check_pad_share, pad_share_real, "share of real slots"),
    (ch05.check_pad_share, pad_count, "number of padding slots"),
    (ch05.check_pad_share, lambda w: (w == 0).float().mean(1), "one number"),
    (ch06.check_nsp_label, nsp_label_flipped, "flipped"),
    (ch06.check_nsp_label, nsp_label_bool, "bool"),
    (ch06.check_pooler, pooler_mean, "mean pooling"),
    (ch06.check_pooler, pooler_no_tanh, "tanh"),
    (ch06.check_pooler, pooler_raw, "raw [CLS]"),
    (ch06.check_pooler, pooler_last, "first token"),
    (ch06.check_other_document, other_document_any, "own document"),
    (ch06.check_other_document, other_document_next, "about"),
    (ch06.check_other_document, other_document_global_random, "same seed"),
])
def test_wrong_answer_is_rejected(check, wrong, hint, capsys):
    assert check(wrong) is False
    out = capsys.readouterr().out
    assert "not right yet" in out and hint in out, out


@pytest.mark.parametrize("check", [ch05.check_num_to_predict, ch05.check_gather, ch05.check_pad_share,
                                   ch06.check_nsp_label, ch06.check_pooler, ch06.check_other_document])
def test_unsolved_stub_says_not_solved(check, capsys):
    assert check(unsolved) is False
    assert "not solved yet" in capsys.readouterr().out


def test_a_crashing_answer_is_reported_not_raised(capsys):
    assert ch05.check_gather(lambda X, P: X[P]) is False  # an IndexError or a wrong shape, never raised
    assert "gather:" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------
# The reference solutions agree with bertnb itself


def test_reference_solutions_equal_bertnb():
    assert all(num_to_predict(n, p) == num_predictions(n, p) for n in range(1, 700) for p in (1, 20, 80))
    X, P = torch.randn(3, 9, 4), torch.randint(0, 9, (3, 5))
    assert torch.equal(gather(X, P), gather_positions(X, P))
    model = BertModel(BertConfig(vocab_size=50, hidden_size=8, num_layers=1, num_heads=2, ffn_size=16))
    X = torch.randn(2, 6, 8)
    torch.testing.assert_close(pooler(X, model.pooler), model.pool(X))
    rng_a, rng_b = random.Random(0), random.Random(0)
    from bertnb.data import _random_other_document
    assert [other_document(7, 2, rng_a) for _ in range(50)] == [_random_other_document(7, 2, rng_b)
                                                                 for _ in range(50)]
