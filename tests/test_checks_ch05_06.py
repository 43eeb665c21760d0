"""Chapters 05 and 06: the exercise checks accept the reference solutions (kept here, not in the notebooks),
reject wrong answers with a message and without raising, and say "not solved yet" for the notebook's stub."""

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bertnb.checks import ch05, ch06
from bertnb.data import mask_tokens
from bertnb.losses import mlm_loss
from tests.check_contract import assert_accepted, assert_rejected, assert_not_solved


# ---------------------------------------------------------------------------------------------------------
# Reference solutions, chapter 05


def weighted_mlm_loss(logits, labels, weights):
    per_slot = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")  # [B * p], one per slot
    weights = weights.flatten()  # [B * p]: 1 real, 0 padding
    return (per_slot * weights).sum() / weights.sum()  # the mean over the real slots only


# 19 of the 128 tokens are chosen (round(0.15 * 128)); 80 % become [MASK], 10 % a random token (the original
# again only with probability 1 / 30,517), 10 % stay: 19 * (0.8 + 0.1 * (1 - 1 / 30517))
CORRUPTED_COUNT = 19 * (0.8 + 0.1 * (1 - 1 / 30517))


def pad_share(mlm_weights):
    return (mlm_weights == 0).float().mean().item()


# wrong answers, chapter 05


def weighted_mlm_loss_mean_of_all(logits, labels, weights):  # d2l's: the weights cancel out
    per_slot = F.cross_entropy(logits.flatten(0, 1), labels.flatten())  # already the mean over all slots
    return (per_slot * weights.flatten()).sum() / weights.sum()


def weighted_mlm_loss_over_all_slots(logits, labels, weights):
    per_slot = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")
    return (per_slot * weights.flatten()).sum() / weights.numel()  # padding still in the denominator


def pad_share_real(mlm_weights):
    return mlm_weights.mean().item()


def pad_count(mlm_weights):
    return (mlm_weights == 0).sum().item()


# ---------------------------------------------------------------------------------------------------------
# Reference solutions, chapter 06


# A is one of the 6 sentences with a successor (a1 a2 a3 b1 c1 c2); the first random.choice picks each document
# with odds 1/3, whatever its size, so B shares A's document 1/3 of the time; it is A's true next sentence with
# odds 1/3 x 1/len(A's document), averaged over the 6: (3 x 1/12 + 1 x 1/6 + 2 x 1/9) / 6 = 23/216
TOY_NOTNEXT = (1 / 3, 23 / 216)


def break_init(model):
    with torch.no_grad():  # in place: the tied MLM decoder is this very tensor, and must stay so
        model.bert.embeddings.token_embedding.weight.normal_(0.0, 1.0)


def other_document(num_docs, doc_index, rng):
    other = rng.randrange(num_docs - 1)  # one of the num_docs - 1 others ...
    return other + 1 if other >= doc_index else other  # ... skipping doc_index


def other_document_retry(num_docs, doc_index, rng):  # also right: draw again until it differs
    while True:
        d = rng.randrange(num_docs)
        if d != doc_index:
            return d


# wrong answers, chapter 06


def break_init_new_table(model):  # a new nn.Embedding: N(0, 1), but the decoder keeps the old table
    model.bert.embeddings.token_embedding = nn.Embedding(*model.bert.embeddings.token_embedding.weight.shape)


def break_init_everything(model):
    for p in model.parameters():
        torch.nn.init.normal_(p)


def other_document_any(num_docs, doc_index, rng):
    return rng.randrange(num_docs)  # may return A's own document


def other_document_next(num_docs, doc_index, rng):
    return (doc_index + 1) % num_docs  # never the same, but not random


def other_document_global_random(num_docs, doc_index, rng):
    return other_document(num_docs, doc_index, random)  # ignores the rng it is given


@pytest.mark.parametrize("check, reference", [
    (ch05.check_weighted_mlm_loss, weighted_mlm_loss),
    (ch05.check_corrupted_count, CORRUPTED_COUNT),
    (ch05.check_pad_share, pad_share),
    (ch06.check_toy_notnext, TOY_NOTNEXT),
    (ch06.check_break_init, break_init),
    (ch06.check_other_document, other_document),
    (ch06.check_other_document, other_document_retry),
])
def test_reference_is_accepted(check, reference, capsys):
    assert_accepted(check, reference, capsys)


@pytest.mark.parametrize("check, wrong, hint", [
    (ch05.check_weighted_mlm_loss, weighted_mlm_loss_mean_of_all, "reduction='none'"),
    (ch05.check_weighted_mlm_loss, weighted_mlm_loss_over_all_slots, "number of real slots"),
    (ch05.check_weighted_mlm_loss, lambda lo, la, w: weighted_mlm_loss(lo, la, w).item(), "one-number tensor"),
    (ch05.check_corrupted_count, 19, "stays unchanged"),
    (ch05.check_corrupted_count, 0.15 * 128, "rounded"),
    (ch05.check_corrupted_count, 0.8 * 19, "random replacement"),
    (ch05.check_pad_share, pad_share_real, "share of real slots"),
    (ch05.check_pad_share, pad_count, "number of padding slots"),
    (ch05.check_pad_share, lambda w: (w == 0).float().mean(1), "one number"),
    (ch06.check_toy_notnext, (1 / 3, 1 / 9), "uniform over the sentences"),
    (ch06.check_toy_notnext, (sum((n / 9) ** 2 for n in (4, 2, 3)), 23 / 216), "odds 1/3"),
    (ch06.check_toy_notnext, 1 / 3, "two numbers"),
    (ch06.check_break_init, break_init_new_table, "no longer shares the token table"),
    (ch06.check_break_init, break_init_everything, "only the token table should"),
    (ch06.check_other_document, other_document_any, "own document"),
    (ch06.check_other_document, other_document_next, "about"),
    (ch06.check_other_document, other_document_global_random, "same seed"),
])
def test_wrong_answer_is_rejected(check, wrong, hint, capsys):
    assert_rejected(check, wrong, hint, capsys)


@pytest.mark.parametrize("check", [ch05.check_weighted_mlm_loss, ch05.check_pad_share, ch06.check_break_init,
                                   ch06.check_other_document])
def test_unsolved_stub_says_not_solved(check, capsys):
    assert_not_solved(check, capsys)


@pytest.mark.parametrize("check", [ch05.check_corrupted_count, ch06.check_toy_notnext])
def test_unanswered_value_says_not_solved(check, capsys):
    assert_not_solved(check, capsys, answer=None)  # the notebook's `answer = None`


def test_a_crashing_answer_is_reported_not_raised(capsys):
    assert ch05.check_weighted_mlm_loss(lambda logits, labels, weights: logits[99]) is False
    assert "your code raised IndexError" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------
# The reference solutions agree with bertnb itself


def test_reference_solutions_equal_bertnb():
    logits, labels = torch.randn(2, 4, 9), torch.randint(0, 9, (2, 4))
    weights = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    torch.testing.assert_close(weighted_mlm_loss(logits, labels, weights), mlm_loss(logits, labels, weights))
    rng_a, rng_b = random.Random(0), random.Random(0)
    from bertnb.data import _random_other_document
    assert [other_document(7, 2, rng_a) for _ in range(50)] == [_random_other_document(7, 2, rng_b)
                                                                 for _ in range(50)]


def test_corrupted_count_matches_the_masking_of_real_sequences():
    """The predicted count against bertnb.data.mask_tokens itself, over many 128-token sequences."""
    V, special = 30522, {0, 100, 101, 102, 103}
    rng = random.Random(0)
    changed = []
    for _ in range(4000):
        tokens = [101] + [rng.randrange(1000, V) for _ in range(125)] + [102] + [rng.randrange(1000, V)] + [102]
        tokens = tokens[:127] + [102]  # [CLS] 125 words [SEP] 1 word [SEP]: exactly 128 tokens
        masked = mask_tokens(tokens, special, V, 20, rng)[0]
        changed.append(sum(a != b for a, b in zip(tokens, masked)))
    assert abs(sum(changed) / len(changed) - CORRUPTED_COUNT) < 0.1  # sd of the mean about 0.02


def test_toy_notnext_shares_match_a_simulation_of_d2ls_rule():
    documents = ch06.TOY_CORPUS
    rng = random.Random(0)
    firsts = [(d, i) for d, doc in enumerate(documents) for i in range(len(doc) - 1)]
    same = true_next = 0
    draws = 60000
    for _ in range(draws):
        d, i = rng.choice(firsts)
        b = rng.choice(rng.choice(documents))  # d2l's random.choice(random.choice(paragraphs))
        same += b in documents[d]
        true_next += b == documents[d][i + 1]
    assert abs(same / draws - TOY_NOTNEXT[0]) < 0.01 and abs(true_next / draws - TOY_NOTNEXT[1]) < 0.01
