"""Exercise checks for chapter 03, Attention.

Each check takes the student's function, runs it on small inputs and compares with the answer computed
here, printing "correct", what is wrong, or "not solved yet". None of them raises.
"""

from __future__ import annotations

import torch

from . import expect, run_check


def _reference_masked_softmax(scores, valid_lens):
    keys = torch.arange(scores.shape[-1])  # [m]
    mask = (keys[None, :] < valid_lens[:, None])[:, None, None, :]  # [B, 1, 1, m]
    return scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)  # [B, h, m, m]


def check_masked_softmax(masked_softmax) -> bool:
    """masked_softmax(scores [B, h, m, m], valid_lens [B]) -> weights [B, h, m, m]: softmax over the keys
    (last axis) in which the padded keys j >= valid_lens[b] get weight exactly 0."""

    def test(fn):
        g = torch.Generator().manual_seed(3)
        scores = torch.randn(3, 2, 5, 5, generator=g)  # [B, h, m, m]
        valid_lens = torch.tensor([5, 2, 3])
        out = fn(scores.clone(), valid_lens.clone())
        expect(isinstance(out, torch.Tensor), f"return a torch.Tensor, got {type(out).__name__}")
        expect(tuple(out.shape) == tuple(scores.shape), f"the weights should have the shape of the scores, "
               f"[B, h, m, m] = {tuple(scores.shape)}, got {tuple(out.shape)}")
        expect(not torch.isnan(out).any(), "got NaN: is some row masked entirely? Mask keys (columns), never "
               "queries (rows): every row keeps at least its valid_lens[b] >= 1 real keys")
        expected = _reference_masked_softmax(scores, valid_lens)
        rows, ones = out.sum(-1), torch.ones(scores.shape[:-1])  # [B, h, m] each
        if torch.allclose(out.sum(-2), ones, atol=1e-5) and not torch.allclose(rows, ones):
            expect(False, "the columns sum to 1, not the rows: a query's weights over the keys are the last "
                   "axis, softmax(dim=-1)")
        query_masked = scores.masked_fill(~(torch.arange(5)[None, :] < valid_lens[:, None])[:, None, :, None],
                                          torch.finfo(scores.dtype).min)  # padded query rows become uniform
        expect(not torch.allclose(out, query_masked.softmax(-1), atol=1e-5),
               "the mask is on the queries (rows); it belongs on the keys (columns): a [B, 1, 1, m] mask")
        padded = out[1, :, :, 2:]  # sequence 1 has 2 real keys: columns 2, 3, 4 are padding
        expect(padded.abs().max() < 1e-6, f"padded keys must get weight 0; sequence 1 (valid_lens 2) gives "
               f"its padded key columns up to {padded.abs().max():.3f}. Note a score of 0 is not 'no weight' "
               "(exp(0) = 1): fill the masked scores with -inf (or a very large negative number) before softmax")
        expect(torch.allclose(rows, ones, atol=1e-5), "each row (one query's weights over the "
               "keys) should sum to 1: mask the scores before the softmax, not the weights after it")
        expect(torch.allclose(out, expected, atol=1e-6), "the weights differ from softmax over the real keys; "
               "did you scale or shift the scores? The function gets the scores already divided by sqrt(d)")

    return run_check("masked_softmax", masked_softmax, test)


def check_attention_entropy(attention_entropy) -> bool:
    """attention_entropy(weights [h, m, m]) -> [h]: each row's entropy -sum_j p_j log p_j, averaged over
    the m query rows. A weight of exactly 0 contributes 0 (the limit of p log p), not NaN."""

    def test(fn):
        g = torch.Generator().manual_seed(3)
        weights = torch.randn(4, 6, 6, generator=g).mul(3).softmax(-1)  # [h, m, m]
        weights[1] = torch.eye(6)  # a head where every query looks at itself only: entropy 0, and many 0s
        weights[2] = torch.full((6, 6), 1 / 6)  # a uniform head: entropy log(6)
        out = fn(weights.clone())
        expected = -torch.special.xlogy(weights, weights).sum(-1).mean(-1)  # [h]
        expect(isinstance(out, torch.Tensor), f"return a torch.Tensor, got {type(out).__name__}")
        expect(tuple(out.shape) == (4,), f"weights [h, m, m] = (4, 6, 6) should give one number per head, "
               f"shape (4,), got {tuple(out.shape)}")
        expect(not torch.isnan(out).any(), "got NaN: 0 * log(0) is NaN in floating point. Use "
               "torch.special.xlogy(p, p) (which is 0 where p = 0) or clamp p before the log")
        expect(not (out < -1e-6).any(), "entropy is never negative: did you forget the minus sign?")
        if torch.allclose(out, -torch.special.xlogy(weights, weights).sum(-1).sum(-1), atol=1e-4):
            expect(False, "that is the sum over the query rows: average over the m rows instead")
        expect(torch.allclose(out, expected, atol=1e-4), f"expected {expected.round(decimals=3).tolist()}, "
               f"got {out.round(decimals=3).tolist()}; the uniform head (index 2) should give "
               f"log(6) = {torch.log(torch.tensor(6.0)):.3f}, the one-hot head (index 1) 0")

    return run_check("attention_entropy", attention_entropy, test)


def check_previous_token_score(previous_token_score) -> bool:
    """previous_token_score(weights [h, m, m]) -> [h]: the weight each head puts on the token just before the
    query, weights[k, i, i - 1], averaged over the m - 1 queries i = 1 .. m - 1 that have a previous token."""

    def test(fn):
        g = torch.Generator().manual_seed(5)
        m = 7
        weights = torch.randn(3, m, m, generator=g).mul(2).softmax(-1)  # [h, m, m]
        shifted = torch.diag(torch.ones(m - 1), -1)  # query i looks at i - 1 only
        shifted[0, 0] = 1.0  # query 0 has no previous token: it looks at itself
        weights[1] = shifted
        out = fn(weights.clone())
        expected = weights.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1)  # [h]
        expect(isinstance(out, torch.Tensor), f"return a torch.Tensor, got {type(out).__name__}")
        expect(tuple(out.shape) == (3,), f"weights [h, m, m] = (3, {m}, {m}) should give one number per head, "
               f"shape (3,), got {tuple(out.shape)}")
        if torch.allclose(out, weights.diagonal(offset=1, dim1=-2, dim2=-1).mean(-1), atol=1e-5):
            expect(False, "that is the next token (key i + 1): rows are queries, columns keys, so the previous "
                   "token of query i is column i - 1, the diagonal below the main one (offset=-1)")
        if torch.allclose(out, weights.diagonal(offset=-1, dim1=-2, dim2=-1).sum(-1) / m, atol=1e-5):
            expect(False, f"only m - 1 = {m - 1} queries have a previous token: average over those, not over m")
        expect(torch.allclose(out, expected, atol=1e-5), f"expected {expected.round(decimals=3).tolist()}, got "
               f"{out.round(decimals=3).tolist()}; the head that always looks one token back (index 1) scores 1")

    return run_check("previous_token_score", previous_token_score, test)
