"""Exercise checks for chapter 09, Looking inside.

Each check runs the student's function on attention maps with padding and compares it with the answer
computed here, printing "correct", what is wrong, or "not solved yet". None of them raises.
"""

from __future__ import annotations

import math

import torch

from . import expect, run_check


def _padded_maps(seed: int, B: int = 3, h: int = 2, m: int = 7):
    """Random attention maps [B, h, m, m] as a model gives them: padded keys get zero weight, and the padded
    query rows hold junk (they still attend to the real keys), so a function that counts them is caught."""
    g = torch.Generator().manual_seed(seed)
    valid_lens = torch.tensor([m, 4, 2][:B])
    scores = 3 * torch.randn(B, h, m, m, generator=g, dtype=torch.float64)  # [B, h, m, m]
    keys = torch.arange(m)[None, :] < valid_lens[:, None]  # [B, m]
    A = scores.masked_fill(~keys[:, None, None, :], float("-inf")).softmax(-1)  # [B, h, m, m]
    A[0, 0, 2] = torch.nn.functional.one_hot(torch.tensor(3), m).double()  # a one-hot row: 0 log 0 must be 0
    return A, valid_lens


def _real_queries(valid_lens, m):
    return (torch.arange(m)[None, :] < valid_lens[:, None]).double()  # [B, m]


def _reference_entropy(A, valid_lens):
    per_query = -torch.special.xlogy(A, A).sum(-1)  # [B, h, m], nats
    real = _real_queries(valid_lens, A.shape[-1])[:, None, :]  # [B, 1, m]
    return (per_query * real).sum((0, 2)) / real.sum((0, 2))  # [h]


def _reference_distance(A, valid_lens):
    m = A.shape[-1]
    gap = (torch.arange(m)[:, None] - torch.arange(m)[None, :]).abs().double()  # [m, m]: |q - k|
    per_query = (A * gap).sum(-1)  # [B, h, m]
    real = _real_queries(valid_lens, m)[:, None, :]  # [B, 1, m]
    return (per_query * real).sum((0, 2)) / real.sum((0, 2))  # [h]


def _as_head_vector(got, h: int, what: str, nan_hint: str = ""):
    expect(isinstance(got, torch.Tensor), f"return a torch.Tensor of shape [h] = ({h},), got {type(got).__name__}")
    expect(tuple(got.shape) == (h,), f"{what} should have one value per head, shape [h] = ({h},), "
           f"got {tuple(got.shape)}: average over the batch and the real queries")
    expect(bool(torch.isfinite(got).all()), f"{what} has NaN or inf: {got.tolist()}.{nan_hint}")
    return got.double()


def check_head_entropy(head_entropy) -> bool:
    """head_entropy(A [B, h, m, m], valid_lens [B]) -> [h]: each head's entropy in nats, averaged over every
    real query of the batch (padded query rows left out; 0 log 0 counts as 0)."""

    def test(fn):
        for seed in (0, 1):
            A, valid_lens = _padded_maps(seed)
            got = _as_head_vector(fn(A.clone(), valid_lens.clone()), A.shape[1], "the entropy",
                                  " A weight of 0 gives 0 * log 0, which must count as 0: torch.special.xlogy(p, p) "
                                  "does that, p * p.log() gives NaN")
            want = _reference_entropy(A, valid_lens)
            if torch.allclose(got, want / math.log(2), atol=1e-6):
                expect(False, "that is in bits (log2); the chapter measures entropy in nats (natural log)")
            if torch.allclose(got, -torch.special.xlogy(A, A).sum(-1).mean((0, 2)), atol=1e-6):
                expect(False, "the padded query rows were averaged in: count only queries q < valid_lens[b]")
            if torch.allclose(got, -want, atol=1e-6):
                expect(False, "the sign is flipped: entropy is -sum p log p, never negative")
            expect(torch.allclose(got, want, atol=1e-6), f"expected {want.tolist()}, got {got.tolist()}")

    return run_check("head_entropy", head_entropy, test)


def check_attention_distance(attention_distance) -> bool:
    """attention_distance(A [B, h, m, m], valid_lens [B]) -> [h]: how far each head looks, the mean over the
    real queries q of sum_k A[q, k] * |q - k| (in tokens)."""

    def test(fn):
        for seed in (2, 3):
            A, valid_lens = _padded_maps(seed)
            got = _as_head_vector(fn(A.clone(), valid_lens.clone()), A.shape[1], "the distance")
            want = _reference_distance(A, valid_lens)
            m = A.shape[-1]
            signed = (torch.arange(m)[:, None] - torch.arange(m)[None, :]).double()  # q - k
            real = _real_queries(valid_lens, m)[:, None, :]
            signed_mean = ((A * signed).sum(-1) * real).sum((0, 2)) / real.sum((0, 2))
            if torch.allclose(got.abs(), signed_mean.abs(), atol=1e-6):
                expect(False, "looking left and right cancel out: use the absolute gap |q - k|")
            all_queries = (A * signed.abs()).sum(-1).mean((0, 2))
            if torch.allclose(got, all_queries, atol=1e-6):
                expect(False, "the padded query rows were averaged in: count only queries q < valid_lens[b]")
            expect(torch.allclose(got, want, atol=1e-6), f"expected {want.tolist()}, got {got.tolist()}")
        # a previous-token head looks exactly one token away (the first query looks at itself, 0 away)
        m = 5
        previous = torch.zeros(1, 1, m, m, dtype=torch.float64)
        previous[0, 0, 0, 0] = 1.0
        previous[0, 0, torch.arange(1, m), torch.arange(0, m - 1)] = 1.0
        got = fn(previous, torch.tensor([m]))
        expect(abs(float(got[0]) - 4 / 5) < 1e-6, f"a previous-token head on 5 tokens should give 4/5 = 0.8 "
               f"(four queries 1 away, one 0 away), got {float(got[0]):.4f}")

    return run_check("attention_distance", attention_distance, test)
