"""bertnb.metrics: the held-out metrics split by kind of prediction slot ([MASK] / random / unchanged), checked
on hand-built batches and a model whose guesses are known; the held-out unigram cross-entropy by hand. Seconds."""

import math
import random

import pytest
import torch

from bertnb.data import collate, mask_tokens
from bertnb.losses import pretraining_loss
from bertnb.metrics import (MASK, RANDOM, UNCHANGED, evaluate, frequent_token_ids, heldout_unigram_cross_entropy,
                            predict_slots, prediction_profile, pretraining_baselines, slot_kinds)

MASK_ID = 4
V = 10


def hand_batch():
    """Two sequences, the kinds known by construction: row 0 slots = [MASK], random, unchanged, padding;
    row 1 = [MASK], unchanged, padding, padding."""
    tokens = torch.tensor([[2, MASK_ID, 9, 7, 3, 0],
                           [2, 5, MASK_ID, 6, 8, 3]])  # [B=2, m=6]
    return {
        "tokens": tokens,
        "segments": torch.zeros_like(tokens),
        "valid_lens": torch.tensor([5, 6]),
        "pred_positions": torch.tensor([[1, 2, 3, 0], [2, 4, 0, 0]]),  # [B, p=4]
        "mlm_labels": torch.tensor([[5, 6, 7, 0], [7, 8, 0, 0]]),
        "mlm_weights": torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]]),
        "nsp_labels": torch.tensor([0, 1]),
    }


def test_slot_kinds_read_from_the_batch():
    kinds = slot_kinds(hand_batch(), MASK_ID)
    real = hand_batch()["mlm_weights"] > 0
    assert kinds[real].tolist() == [MASK, RANDOM, UNCHANGED, MASK, UNCHANGED]


def test_slot_kinds_recover_what_mask_tokens_did():
    """On real masking, the kinds read from the batch are the ones mask_tokens drew (known here by comparing
    with the unmasked tokens), and their shares are close to 80 / 10 / 10."""
    rng = random.Random(0)
    special = {0, 1, 2, 3, MASK_ID}
    vocab_size = 1000  # a random draw hits the label 1 time in ~1,000 random slots: rare, and counted exactly
    items, truth = [], []
    for _ in range(400):
        original = [2] + [rng.randrange(5, vocab_size) for _ in range(30)] + [3]
        masked, positions, labels, weights = mask_tokens(original, special, vocab_size, 5, rng, mask_id=MASK_ID)
        items.append({"tokens": masked, "segments": [0] * len(masked), "pred_positions": positions,
                      "mlm_labels": labels, "mlm_weights": weights, "nsp_label": 0})
        for position, weight in zip(positions, weights):
            if weight:
                shown = masked[position]
                truth.append(MASK if shown == MASK_ID else UNCHANGED if shown == original[position] else RANDOM)
    batch = collate(items)
    kinds = slot_kinds(batch, MASK_ID)[batch["mlm_weights"] > 0].tolist()
    assert kinds == truth
    shares = [kinds.count(k) / len(kinds) for k in (MASK, RANDOM, UNCHANGED)]
    assert shares[0] == pytest.approx(0.8, abs=0.03)  # 2,000 slots: 3 standard deviations is about 0.027
    assert shares[1] == pytest.approx(0.1, abs=0.025) and shares[2] == pytest.approx(0.1, abs=0.025)


class CopyModel(torch.nn.Module):
    """Guesses the visible token at every slot: logit `confidence` there, 0 elsewhere; NSP always 'IsNext'."""

    def __init__(self, confidence=3.0):
        super().__init__()
        self.confidence = torch.nn.Parameter(torch.tensor(confidence))

    def forward(self, tokens, segments, valid_lens=None, pred_positions=None):
        visible = tokens.gather(1, pred_positions)  # [B, p]
        logits = torch.nn.functional.one_hot(visible, V).float() * self.confidence  # [B, p, V]
        nsp = torch.tensor([[1.0, 0.0]]).expand(len(tokens), 2)  # [B, 2]
        return None, logits, nsp


def test_evaluate_splits_accuracy_and_loss_by_kind():
    c = 3.0
    metrics = evaluate(CopyModel(c), [hand_batch()], mask_id=MASK_ID)
    hit = -math.log(math.exp(c) / (math.exp(c) + V - 1))  # the label is the visible token
    miss = -math.log(1 / (math.exp(c) + V - 1))  # it is not
    assert metrics["mlm_accuracy"] == pytest.approx(2 / 5)  # the 2 unchanged slots of 5
    assert metrics["mlm_accuracy_mask"] == 0.0 and metrics["mlm_accuracy_random"] == 0.0
    assert metrics["mlm_accuracy_unchanged"] == 1.0
    assert metrics["mlm_share_mask"] == pytest.approx(2 / 5)
    assert metrics["mlm_share_random"] == pytest.approx(1 / 5)
    assert metrics["mlm_share_unchanged"] == pytest.approx(2 / 5)
    assert metrics["mlm_loss_unchanged"] == pytest.approx(hit)
    assert metrics["mlm_loss_mask"] == pytest.approx(miss) and metrics["mlm_loss_random"] == pytest.approx(miss)
    assert metrics["mlm_loss"] == pytest.approx((2 * hit + 3 * miss) / 5)
    assert metrics["nsp_accuracy"] == 0.5 and metrics["mlm_slots"] == 5


def test_evaluate_without_mask_id_keeps_the_three_old_keys_and_values():
    plain = evaluate(CopyModel(), [hand_batch()])
    split = evaluate(CopyModel(), [hand_batch()], mask_id=MASK_ID)
    assert set(plain) == {"mlm_accuracy", "mlm_loss", "nsp_accuracy"}
    assert all(split[key] == plain[key] for key in plain)


def test_a_kind_without_slots_reports_none():
    batch = hand_batch()
    batch["tokens"][0, 2] = 6  # the random slot becomes unchanged
    metrics = evaluate(CopyModel(), [batch], mask_id=MASK_ID)
    assert metrics["mlm_accuracy_random"] is None and metrics["mlm_loss_random"] is None
    assert metrics["mlm_share_random"] == 0.0


def test_mlm_loss_is_the_weighted_mean_of_the_chapter_loss_over_batches():
    """Two batches of different slot counts: the per-slot mean, not the mean of the batch means."""
    from tests.tiny import tiny_data, tiny_model

    train_data, heldout, tokenizer = tiny_data()
    from bertnb.data import heldout_batches
    batches = heldout_batches(heldout, 4, 12)
    model = tiny_model(len(tokenizer)).eval()
    with torch.no_grad():
        sums = [(pretraining_loss(model, b)["mlm_loss"].item() * b["mlm_weights"].sum().item(),
                 b["mlm_weights"].sum().item()) for b in batches]
    metrics = evaluate(model, batches, mask_id=tokenizer.mask_id)
    assert metrics["mlm_loss"] == pytest.approx(sum(s for s, _ in sums) / sum(n for _, n in sums), rel=1e-6)
    slots = predict_slots(model, batches, tokenizer.mask_id)
    assert len(slots["label"]) == metrics["mlm_slots"] == sum(n for _, n in sums)


def test_heldout_unigram_cross_entropy_by_hand():
    # Training labels: token 5 three times, token 6 once; V = 4 ids; add-0.1: p(5) = 3.1 / 4.4, p(6) = 1.1 / 4.4,
    # p(7) = 0.1 / 4.4. Held-out labels 5, 7.
    expected = -(math.log(3.1 / 4.4) + math.log(0.1 / 4.4)) / 2
    assert heldout_unigram_cross_entropy({5: 3, 6: 1}, [5, 7], vocab_size=4) == pytest.approx(expected)


def test_pretraining_baselines_report_the_heldout_unigram_cross_entropy():
    batch = hand_batch()  # held-out labels 5, 6, 7, 7, 8
    base = pretraining_baselines({5: 3, 7: 1}, [batch], vocab_size=V)
    assert base["mlm_most_frequent_token"] == 5
    assert base["mlm_most_frequent_heldout_accuracy"] == pytest.approx(1 / 5)
    p = {5: 3.1 / (4 + 0.1 * V), 6: 0.1 / (4 + 0.1 * V), 7: 1.1 / (4 + 0.1 * V), 8: 0.1 / (4 + 0.1 * V)}
    expected = -sum(math.log(p[t]) for t in (5, 6, 7, 7, 8)) / 5
    assert base["mlm_unigram_heldout_cross_entropy"] == pytest.approx(expected)
    assert base["mlm_unigram_heldout_cross_entropy"] > base["mlm_unigram_entropy"]  # in-sample flatters


def test_prediction_profile_by_hand():
    predicted = [5, 5, 9, 5, 8]
    labels = [5, 6, 9, 7, 8]
    kinds = [MASK, MASK, MASK, RANDOM, UNCHANGED]
    profile = prediction_profile(predicted, labels, kinds, frequent_tokens={5, 6})
    assert profile["most_predicted_token"] == 5 and profile["most_predicted_share"] == pytest.approx(3 / 5)
    assert profile["distinct_predicted"] == 3
    assert profile["mask_content_slots"] == 1  # the [MASK] slot labelled 9 (5 and 6 are frequent)
    assert profile["mask_content_accuracy"] == 1.0
    assert frequent_token_ids({5: 3, 6: 3, 7: 1}, k=2) == {5, 6}


def test_live_plot_draws_the_fair_rivals_on_zoomed_axes():
    from bertnb.plots import LiveLossPlot

    losses = [{"step": s, "mlm_loss": 10.3 if s < 5 else 6.0 - s / 1000} for s in range(1, 201)]  # a spike, then flat
    history = [{"step": s, "mlm_loss": 5.9, "mlm_accuracy": 0.15, "nsp_accuracy": 0.6, "mlm_loss_mask": 6.1,
                "mlm_accuracy_mask": 0.09} for s in (100, 200)]
    base = {"mlm_unigram_entropy": 6.2, "mlm_unigram_heldout_cross_entropy": 6.4, "mlm_two_sided_cross_entropy": 4.3,
            "mlm_most_frequent_heldout_accuracy": 0.04, "mlm_two_sided_mask_accuracy": 0.3,
            "nsp_accuracy": 0.5, "nsp_text_blind_accuracy": 0.55}
    ax_loss, ax_acc = LiveLossPlot().figure({"event": "end", "step": 200, "total_steps": 200, "losses": losses,
                                             "history": history, "baselines": base}).axes
    loss_labels = [t.get_text() for t in ax_loss.get_legend().get_texts()]
    assert {"unigram (held-out)", "two-sided n-gram", "held-out, [MASK] slots"} <= set(loss_labels)
    assert "unigram entropy (in-sample)" not in loss_labels  # the in-sample number is not the rival
    low, high = ax_loss.get_ylim()
    assert low < 4.3 and 6.4 < high < 7.0  # zoomed: the first steps' 10.3 is left out of view
    acc_labels = [t.get_text() for t in ax_acc.get_legend().get_texts()]
    assert "MLM rival: two-sided n-gram, [MASK]" in acc_labels and "NSP: text-blind" in acc_labels
