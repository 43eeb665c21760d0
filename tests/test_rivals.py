"""bertnb.rivals: the n-gram rivals and the text-blind NSP guess, against values computed by hand on a toy
corpus (the arithmetic is written out in the comments). Milliseconds."""

import math

import numpy as np
import pytest
import torch

from bertnb.metrics import MASK, RANDOM, UNCHANGED
from bertnb.rivals import (NSP_FEATURES, NgramCounts, NgramRivals, TextBlindNsp, heldout_slots, pair_features,
                           punctuation_ids, score_rivals)

# ids: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4; words a 5, b 6, c 7, d 8. V = 9, 4 non-special tokens.
CLS, SEP, MASK_ID, A, B, C, D = 2, 3, 4, 5, 6, 7, 8
SPECIAL = {0, 1, 2, 3, 4}
V = 9
TRAINING = [
    [CLS, A, B, C, SEP],   # a after [CLS], b between a and c, c between b and [SEP]
    [CLS, A, D, C, SEP],
    [CLS, A, D, C, SEP],
    [CLS, A, B, SEP],
    [CLS, B, B, B, SEP],
]
# Counts of the non-special tokens: a 4, b 5, c 3, d 2 (14). Add-0.1 unigram over the 4 non-special ids:
# p(a) = 4.1 / 14.4, p(b) = 5.1 / 14.4, p(c) = 3.1 / 14.4, p(d) = 2.1 / 14.4.
UNI = {A: 4.1 / 14.4, B: 5.1 / 14.4, C: 3.1 / 14.4, D: 2.1 / 14.4}


def left_a(x):
    # after a: b twice, d twice (4 in all, T = 2 distinct): (count + 2 p_uni) / (4 + 2)
    return ({B: 2, D: 2}.get(x, 0) + 2 * UNI[x]) / 6


def right_c(x):
    # before c: b once, d twice (3, T = 2): (count + 2 p_uni) / (3 + 2)
    return ({B: 1, D: 2}.get(x, 0) + 2 * UNI[x]) / 5


def two_sided_a_c(x):
    # between a and c: b once, d twice (3, T = 2), backing off to the mean of the two bigrams
    return ({B: 1, D: 2}.get(x, 0) + 2 * (left_a(x) + right_c(x)) / 2) / 5


@pytest.fixture(scope="module")
def rivals():
    return NgramRivals(NgramCounts(TRAINING, SPECIAL, V))


def test_counts_by_hand():
    counts = NgramCounts(TRAINING, SPECIAL, V)
    assert counts.unigram.tolist() == [0, 0, 0, 0, 0, 4, 5, 3, 2]
    assert [t.tolist() for t in counts.left.lookup(A)] == [[B, D], [2.0, 2.0]]
    assert [t.tolist() for t in counts.left.lookup(CLS)] == [[A, B], [4.0, 1.0]]
    assert [t.tolist() for t in counts.both.lookup(A * V + C)] == [[B, D], [1.0, 2.0]]
    assert [t.tolist() for t in counts.left.lookup(MASK_ID)] == [[], []]  # [MASK] never in the training text


def test_distributions_by_hand(rivals):
    for x in (A, B, C, D):
        assert rivals.unigram[x] == pytest.approx(UNI[x])
        assert rivals.left_bigram(A)[x] == pytest.approx(left_a(x))
        assert rivals.right_bigram(C)[x] == pytest.approx(right_c(x))
        assert rivals.two_sided(A, C)[x] == pytest.approx(two_sided_a_c(x))
    for probs in (rivals.unigram, rivals.left_bigram(A), rivals.two_sided(A, C), rivals.two_sided(MASK_ID, MASK_ID)):
        assert probs.sum() == pytest.approx(1.0) and probs[sorted(SPECIAL)].sum() == 0  # never a special
    np.testing.assert_allclose(rivals.left_bigram(MASK_ID), rivals.unigram)  # unseen context: back off


def test_copy_aware_puts_half_on_the_visible_token_except_at_mask(rivals):
    copied = rivals.distribution("copy + left bigram", A, C, D, is_mask=False)
    assert copied[C] == pytest.approx(0.5 + 0.5 * left_a(C)) and copied[B] == pytest.approx(0.5 * left_a(B))
    np.testing.assert_allclose(rivals.distribution("copy + left bigram", A, MASK_ID, D, is_mask=True),
                               rivals.left_bigram(A))
    assert rivals.left_bigram(A)[C] == pytest.approx(left_a(C))  # the table's own array was not changed
    with pytest.raises(ValueError, match="unknown rival 'trigram': allowed unigram"):
        rivals.distribution("trigram", A, C, D, True)


def held_out_batch():
    """Five held-out slots, what each rival guesses worked out by hand:
    1. [CLS] a [MASK] c [SEP], label d ([MASK]): unigram b, left bigram b (p(b|a) > p(d|a): b is more frequent),
       two-sided d (between a and c, d was seen twice, b once).
    2. [CLS] c b [SEP], label a (random: b is shown): unigram b; copy-aware b; left bigram after c: c is only
       ever followed by [SEP], never counted, so back off to the unigram: b.
    3. [CLS] d c [SEP], label c (unchanged): after d, only c: left bigram c, two-sided (d, [SEP]) c.
    4, 5. [CLS] [MASK] [MASK] [SEP], labels a, b: slot 4's left is [CLS] (a 4 times, b once): a; slot 5's
       left is [MASK], unseen: the unigram's b, right."""
    tokens = torch.tensor([[CLS, A, MASK_ID, C, SEP], [CLS, C, B, SEP, 0], [CLS, D, C, SEP, 0],
                           [CLS, MASK_ID, MASK_ID, SEP, 0]])  # [B=4, m=5]
    return {"tokens": tokens, "segments": torch.zeros_like(tokens), "valid_lens": torch.tensor([5, 4, 4, 4]),
            "pred_positions": torch.tensor([[2, 0], [2, 0], [2, 0], [1, 2]]),
            "mlm_labels": torch.tensor([[D, 0], [A, 0], [C, 0], [A, B]]),
            "mlm_weights": torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 1.0]]),
            "nsp_labels": torch.tensor([0, 0, 1, 1])}


def test_heldout_slots_see_what_the_model_sees():
    slots = heldout_slots([held_out_batch()], MASK_ID)
    assert slots.label.tolist() == [D, A, C, A, B]
    assert slots.visible.tolist() == [MASK_ID, B, C, MASK_ID, MASK_ID]
    assert slots.left.tolist() == [A, C, D, CLS, MASK_ID]
    assert slots.right.tolist() == [C, SEP, SEP, MASK_ID, SEP]
    assert slots.kind.tolist() == [MASK, RANDOM, UNCHANGED, MASK, MASK]


def test_scores_by_hand(rivals):
    slots = heldout_slots([held_out_batch()], MASK_ID)
    scores = score_rivals(rivals, slots)
    assert scores["unigram"]["predicted"].tolist() == [B, B, B, B, B]
    assert scores["left bigram"]["predicted"].tolist() == [B, B, C, A, B]
    assert scores["two-sided"]["predicted"][[0, 2]].tolist() == [D, C]
    assert scores["copy + unigram"]["predicted"].tolist() == [B, B, C, B, B]
    assert scores["unigram"]["accuracy"] == pytest.approx(1 / 5)  # slot 5
    assert scores["unigram"]["accuracy_mask"] == pytest.approx(1 / 3)  # slots 1, 4, 5
    assert scores["left bigram"]["accuracy"] == pytest.approx(3 / 5)  # slots 3, 4, 5
    assert scores["left bigram"]["accuracy_mask"] == pytest.approx(2 / 3)
    assert scores["left bigram"]["accuracy_unchanged"] == 1.0 and scores["left bigram"]["accuracy_random"] == 0.0
    assert scores["copy + unigram"]["accuracy_unchanged"] == 1.0
    # Cross-entropy of the unigram: -mean log p_uni(label) over d, a, c, a, b.
    expected = -sum(math.log(UNI[x]) for x in (D, A, C, A, B)) / 5
    assert scores["unigram"]["cross_entropy"] == pytest.approx(expected)
    # Two-sided on the [MASK] slots: slot 1 between a and c; slots 4 and 5 have a [MASK] neighbour, so the pair
    # is unseen and the mean of the bigrams is used, the [MASK] side being the unigram.
    after_cls_a = ({A: 4, B: 1}[A] + 2 * UNI[A]) / 7  # after [CLS]: a 4, b 1 (5, T = 2)
    before_sep_b = ({B: 2, C: 3}[B] + 2 * UNI[B]) / 7  # before [SEP]: c 3, b 2 (5, T = 2)
    slot_4, slot_5 = (after_cls_a + UNI[A]) / 2, (UNI[B] + before_sep_b) / 2
    assert scores["two-sided"]["cross_entropy_mask"] == pytest.approx(
        -(math.log(two_sided_a_c(D)) + math.log(slot_4) + math.log(slot_5)) / 3)


def test_punctuation_ids():
    vocab = {"[PAD]": 0, ".": 1, "，": 2, "##)": 3, "the": 4, "a.b": 5, "##": 6, "...": 7}
    assert punctuation_ids(vocab) == {1, 2, 3, 7}


def test_pair_features_by_hand():
    # [CLS] w . [SEP] , x y [SEP]: A = (w, .), B = (, x y) ; punctuation ids {9, 10}
    features = dict(zip(NSP_FEATURES, pair_features([2, 5, 9, 3, 10, 6, 7, 3], [0, 0, 0, 0, 1, 1, 1, 1], {9, 10})))
    assert features == {"length of A": 2, "length of B": 3, "A's share of the length": 0.4, "total length": 5,
                        "A ends with punctuation": 1, "B ends with punctuation": 0,
                        "A starts with punctuation": 0, "B starts with punctuation": 1,
                        "punctuation share of A": 0.5, "punctuation share of B": pytest.approx(1 / 3)}


def test_text_blind_nsp_learns_a_length_rule():
    # Toy pairs where NotNext (1) always has the longer B: the regression finds it on unseen pairs.
    rng = np.random.default_rng(0)
    len_a = rng.integers(5, 30, 200)
    labels = rng.integers(0, 2, 200)
    len_b = np.where(labels == 1, 40 - len_a + 10, 40 - len_a - 10).clip(1)
    features = np.array([[a, b, a / (a + b), a + b, 0, 0, 0, 0, 0, 0] for a, b in zip(len_a, len_b)], dtype=float)
    model = TextBlindNsp().fit(features[:150], labels[:150])
    assert (model.predict(features[150:]) == labels[150:]).mean() == 1.0
    constant = TextBlindNsp().fit(np.zeros((10, 10)), np.array([1] * 7 + [0] * 3))  # no signal: the majority
    assert constant.predict(np.zeros((3, 10))).tolist() == [1, 1, 1]


def test_rival_baselines_on_real_data_score_the_models_slots():
    """On the tiny real pipeline: the rivals score exactly the slots `predict_slots` scores, the loop's flat
    numbers are in range, and the training set's epoch is left as it was."""
    from bertnb.data import heldout_batches
    from bertnb.metrics import predict_slots
    from bertnb.rivals import rival_baselines
    from tests.tiny import tiny_data, tiny_model

    train_data, heldout, tokenizer = tiny_data()
    batches = heldout_batches(heldout, 8, 24)
    train_data.set_epoch(3)
    flat = rival_baselines(train_data, batches, tokenizer)
    assert train_data.epoch == 3
    slots = predict_slots(tiny_model(len(tokenizer)), batches, tokenizer.mask_id)
    assert heldout_slots(batches, tokenizer.mask_id).label.tolist() == slots["label"].tolist()
    assert 0 <= flat["mlm_two_sided_mask_accuracy"] <= 1 and 0 <= flat["nsp_text_blind_accuracy"] <= 1
    assert set(flat) == {f"mlm_{r}_{m}" for r in ("unigram", "left_bigram", "two_sided", "copy_two_sided")
                         for m in ("mask_accuracy", "accuracy", "cross_entropy")} | {"nsp_text_blind_accuracy"}
    assert flat["mlm_unigram_cross_entropy"] > 0


def test_spread_indices():
    from bertnb.rivals import spread_indices

    assert spread_indices(5, None) == [0, 1, 2, 3, 4] and spread_indices(5, 10) == [0, 1, 2, 3, 4]
    assert spread_indices(10, 4) == [0, 2, 5, 7]
