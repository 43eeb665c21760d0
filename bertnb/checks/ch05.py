"""Exercise checks for chapter 05, the masked language model.

Each check runs the student's function on small inputs and compares it with `bertnb` (the finished code),
printing "correct", what is wrong, or "not solved yet". None of them raises.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bertnb.checks import expect, run_check
from bertnb.losses import mlm_loss



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


def check_weighted_mlm_loss(weighted_mlm_loss) -> bool:
    """weighted_mlm_loss(logits [B, p, V], labels [B, p], weights [B, p]) -> a scalar tensor: the cross-entropy
    of every slot (F.cross_entropy with reduction="none"), times its weight, summed, divided by the number of
    real slots; equal to `bertnb.losses.mlm_loss`, and with the same gradient."""

    def test(fn):
        g = torch.Generator().manual_seed(7)
        cases = [
            torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]]),  # 4 of 8 slots are padding
            torch.ones(2, 3),  # no padding at all
            torch.tensor([[1.0] * 5 + [0.0] * 5, [1.0] * 2 + [0.0] * 8, [1.0] * 9 + [0.0]]),
        ]
        for weights in cases:
            B, p, V = *weights.shape, 11
            logits = torch.randn(B, p, V, generator=g, requires_grad=True)  # [B, p, V]
            labels = torch.randint(0, V, (B, p), generator=g)  # [B, p]
            labels[weights == 0] = 0  # padding slots: label 0, as the data pipeline writes them
            logits_padding = logits.detach().clone()
            logits_padding[weights == 0, 0] += 10.0  # a model that has learnt to predict label 0 in padding
            for case_logits in (logits, logits_padding.requires_grad_(True)):
                got = fn(case_logits, labels.clone(), weights.clone())
                expect(isinstance(got, torch.Tensor) and got.numel() == 1,
                       f"return the loss as a one-number tensor (so it can be backpropagated), got {got!r}")
                want = mlm_loss(case_logits, labels, weights)
                real = int(weights.sum())
                if abs(got.item() - want.item()) > 1e-5:
                    per_slot = F.cross_entropy(case_logits.flatten(0, 1), labels.flatten(), reduction="none")
                    if abs(got.item() - per_slot.mean().item()) < 1e-5:
                        expect(False, f"{got.item():.4f} is the mean over all B * p = {weights.numel()} slots, "
                               f"padding included (reduction='mean' averages before you can weight the slots: "
                               f"use reduction='none'); weight each slot's loss, divide by the {real} real slots")
                    if abs(got.item() - (per_slot * weights.flatten()).sum().item() / weights.numel()) < 1e-5:
                        expect(False, f"the padding slots are weighted 0 but still counted in the denominator: "
                               f"divide by the number of real slots ({real}), not by B * p = {weights.numel()}")
                    expect(False, f"expected {want.item():.4f} for {real} real slots of {weights.numel()}, got "
                           f"{got.item():.4f}")
                expect(got.requires_grad, "the loss has no gradient: compute it from the logits with torch "
                       "operations (no .item(), no numpy)")

    return run_check("weighted_mlm_loss", weighted_mlm_loss, test)


SPECIAL_PIECES = {"[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"}


def reference_word_groups(pieces: list[str]) -> list[list[int]]:
    """The positions of each whole word: a piece starting with ## joins the word before it; [CLS], [SEP] and
    [PAD] belong to no word ([MASK] and [UNK] are words of their own)."""
    groups = []
    for position, piece in enumerate(pieces):
        if piece in ("[CLS]", "[SEP]", "[PAD]"):
            continue
        if piece.startswith("##") and groups and groups[-1][-1] == position - 1:
            groups[-1].append(position)
        else:
            groups.append([position])
    return groups


def check_word_groups(word_groups) -> bool:
    """word_groups(pieces: list of WordPiece strings) -> list of lists of positions, one list per whole word,
    in order: what whole-word masking chooses from."""

    def test(fn):
        cases = [
            ["[CLS]", "the", "cat", "sat", "[SEP]"],
            ["[CLS]", "una", "##ffa", "##ble", "tokens", "[SEP]", "it", "pu", "##rred", "[SEP]"],
            ["[CLS]", "em", "##bed", "##ding", "##s", "are", "tables", ".", "[SEP]", "[PAD]", "[PAD]"],
            ["[CLS]", "x", "*", "*", "2", "ang", "##strom", "[SEP]", "##s", "[SEP]"],
        ]
        for pieces in cases:
            got = fn(list(pieces))
            expect(isinstance(got, list) and all(isinstance(g, list) for g in got),
                   f"return a list of lists of positions, got {got!r}")
            want = reference_word_groups(pieces)
            if got == want:
                continue
            flat = [position for group in got for position in group]
            if any(pieces[position] in ("[CLS]", "[SEP]", "[PAD]") for position in flat):
                expect(False, f"for {pieces}: [CLS], [SEP] and [PAD] are never masked, so they belong to no word")
            if len(got) == sum(1 for p in pieces if p not in ("[CLS]", "[SEP]", "[PAD]")):
                expect(False, f"for {pieces}: every piece is its own group; a piece that starts with ## continues "
                       "the word before it")
            expect(False, f"for {pieces} expected {want}, got {got}")

    return run_check("word_groups", word_groups, test)


def expected_corrupted(length: int = 128, vocab_size: int = 30522, num_special: int = 5) -> float:
    """How many of a packed sequence's `length` tokens the model sees changed, on average: round(0.15 · length)
    predictions (all of them fit in max_pred = 20 for length 128), of which 80 % become [MASK] and 10 % a random
    non-special token, which is the original itself with probability 1 / (V - specials)."""
    count = round(0.15 * length)
    return count * (0.8 + 0.1 * (1 - 1 / (vocab_size - num_special)))


def check_corrupted_count(answer) -> bool:
    """answer: a number, the average count of tokens that differ from the original text in a pair packed to
    exactly 128 tokens, after chapter 05's masking (within 0.05)."""

    def test(answer):
        expect(isinstance(answer, (int, float)) and not isinstance(answer, bool),
               f"give one number (a count of tokens, it may have decimals), got {answer!r}")
        want = expected_corrupted()
        if abs(answer - want) <= 0.05:
            return
        hints = {0.15 * 128: "0.15 x 128 = 19.2, but the count is rounded to a whole number of predictions first",
                 19: "19 positions are chosen, but 1 in 10 of them stays unchanged: the model sees the original",
                 0.8 * 19: "a random replacement changes the token too (it is the original only by a 1 in 30,517 "
                           "chance): count the 10 % random ones as well",
                 0.9 * 0.15 * 128: "right idea, but round(0.15 x 128) is taken before the 80/10/10 split",
                 0.9 * 0.15 * 125: "the count uses the packed length, [CLS] and [SEP] included: 128, not 125"}
        for wrong, hint in hints.items():
            if abs(answer - wrong) <= 0.05:
                expect(False, f"{answer:g}: {hint}")
        expect(False, f"{answer:g} is not it: how many positions are chosen (section 1.1), and which of the "
               "three cases changes what the model sees?")

    return run_check("corrupted_count", answer, test)
