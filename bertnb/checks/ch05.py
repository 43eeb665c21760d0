"""Exercise checks for chapter 05, the masked language model.

Each check runs the student's function on small inputs and compares it with `bertnb` (the finished code),
printing "correct", what is wrong, or "not solved yet". None of them raises.
"""

from __future__ import annotations

import math

import torch

from bertnb.checks import expect, expect_int, run_check
from bertnb.data import num_predictions
from bertnb.model import gather_positions


def check_num_to_predict(num_to_predict) -> bool:
    """num_to_predict(length, max_pred) -> int: how many of a packed sequence's `length` tokens BERT
    predicts, min(max_pred, max(1, round(0.15 * length))) with Python's round."""

    def test(fn):
        cases = [(length, max_pred) for max_pred in (20, 80, 5) for length in range(1, 600)]
        for length, max_pred in cases:
            got = expect_int(fn(length, max_pred), f"num_to_predict({length}, {max_pred})")
            want = num_predictions(length, max_pred)
            if got == want:
                continue
            x = 0.15 * length
            hint = ""
            if got == 0:
                hint = " A short sequence still gets one prediction: max(1, ...)"
            elif got > max_pred:
                hint = f" Never more than max_pred = {max_pred} (there are only p slots): min(max_pred, ...)"
            elif got == min(max_pred, max(1, int(x))):
                hint = " int() cuts the fraction off (int(2.7) == 2); the original rounds: round(x)"
            elif got == min(max_pred, max(1, math.floor(x + 0.5))):
                hint = (f" 0.15 * {length} = {x:g}: Python's round sends halves to the even neighbour "
                        f"(round(4.5) == 4, round(1.5) == 2), and that is what BERT's code does; use round(x)")
            elif got == min(max_pred, max(1, math.ceil(x))):
                hint = " math.ceil rounds every fraction up; the original rounds to the nearest: round(x)"
            expect(False, f"for length = {length}, max_pred = {max_pred}: expected {want}, got {got}.{hint}")

    return run_check("num_to_predict", num_to_predict, test)


def check_gather(gather) -> bool:
    """gather(X [B, m, n], P [B, p]) -> [B, p, n]: row P[i, j] of sequence i, for every i and j."""

    def test(fn):
        g = torch.Generator().manual_seed(5)
        for B, m, n, p in ((3, 7, 4, 2), (2, 5, 3, 5), (1, 4, 2, 3), (4, 6, 1, 1)):
            X = torch.randn(B, m, n, generator=g)  # [B, m, n]
            P = torch.randint(0, m, (B, p), generator=g)  # [B, p]
            got = fn(X.clone(), P.clone())
            expect(isinstance(got, torch.Tensor), f"return a tensor, got {type(got).__name__}")
            want = gather_positions(X, P)  # [B, p, n]
            if tuple(got.shape) == (B, B, p, n):
                expect(False, f"got shape {tuple(got.shape)} = [B, B, p, n]: X[:, P] pairs every sequence with "
                       "every row of P. Sequence i must use only row i of P: index the batch axis too")
            if got.numel() == B * p * n and tuple(got.shape) != (B, p, n):
                expect(False, f"the values may be right but the shape is {tuple(got.shape)}; reshape to "
                       f"[B, p, n] = {(B, p, n)}")
            expect(tuple(got.shape) == (B, p, n), f"for X {tuple(X.shape)} and P {tuple(P.shape)} the result "
                   f"should be [B, p, n] = {(B, p, n)}, got {tuple(got.shape)}")
            if B > 1 and torch.equal(got, X[0][P]):
                expect(False, "every sequence read its positions from sequence 0: the batch index of row j of "
                       "the flat index must be the sequence that P's row came from")
            expect(torch.equal(got, want), f"for B={B}, m={m}, p={p} the gathered vectors differ from "
                   "X[batch_idx, P]: is the flat batch index repeat_interleave(arange(B), p) (0 0 1 1 ...), "
                   "not repeat (0 1 0 1 ...)?")

    return run_check("gather", gather, test)


def check_pad_share(pad_share) -> bool:
    """pad_share(mlm_weights [B, p]) -> float: the share of the B * p prediction slots that are padding
    (weight 0), the slots a correct loss must ignore."""

    def test(fn):
        cases = [
            torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]]),  # 4 of the 8 slots are padding
            torch.ones(3, 5),  # a batch of long sequences: no padding slot at all
            torch.tensor([[1.0] * 19 + [0.0], [1.0] * 4 + [0.0] * 16, [1.0] * 20]),
        ]
        for weights in cases:
            got = fn(weights.clone())
            if isinstance(got, torch.Tensor):
                expect(got.numel() == 1, f"return one number, got a tensor of shape {tuple(got.shape)}")
                got = got.item()
            expect(isinstance(got, (int, float)) and not isinstance(got, bool),
                   f"return a float, got {got!r}")
            want = (weights == 0).float().mean().item()
            if want != 0.5 and abs(got - (1 - want)) < 1e-6:
                expect(False, f"{got:.3f} is the share of real slots; the padding slots are those with weight 0")
            if abs(got - (weights == 0).sum().item()) < 1e-6 and want > 0:
                expect(False, f"{got:g} is the number of padding slots: divide by the B * p = "
                       f"{weights.numel()} slots to get a share")
            expect(abs(got - want) < 1e-6, f"for weights with rows {weights.sum(1).int().tolist()} real slots of "
                   f"p = {weights.shape[1]}, expected {want:.4f}, got {got:.4f}")

    return run_check("pad_share", pad_share, test)
