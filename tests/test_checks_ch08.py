"""Chapter 08: the exercise checks accept the reference solutions (kept here, not in the notebook), reject
plausible wrong answers with a message and without raising, and say "not solved yet" for the notebook's stub."""

import math

import pytest
import torch
import torch.nn.functional as F

from bertnb.checks import ch08
from tests.check_contract import unsolved


# ---------------------------------------------------------------------------------------------------------
# Reference solutions


def freeze_bottom(model, k):
    for module in [model.bert.embeddings, *model.bert.layers[:k]]:
        for param in module.parameters():
            param.requires_grad = False


def encode_pairs(tokenizer, pairs, max_len):
    encoded = [tokenizer.encode(a, b, max_len=max_len) for a, b in pairs]
    m = max(len(ids) for ids, _ in encoded)
    tokens = torch.tensor([ids + [tokenizer.pad_id] * (m - len(ids)) for ids, _ in encoded])  # [B, m]
    segments = torch.tensor([segs + [0] * (m - len(segs)) for _, segs in encoded])  # [B, m]
    return tokens, segments, torch.tensor([len(ids) for ids, _ in encoded])


INITIAL_LOSS = math.log(8)


# ---------------------------------------------------------------------------------------------------------
# Wrong answers


def freeze_layers_only(model, k):  # forgets the embeddings
    for layer in model.bert.layers[:k]:
        layer.requires_grad_(False)


def freeze_everything_but_head(model, k):
    model.bert.requires_grad_(False)


def freeze_top(model, k):  # the last k layers instead of the first k
    model.bert.embeddings.requires_grad_(False)
    for layer in model.bert.layers[len(model.bert.layers) - k:] if k else []:
        layer.requires_grad_(False)


def encode_pairs_as_one_text(tokenizer, pairs, max_len):
    return encode_pairs(tokenizer, [(a + " " + b, None) for a, b in pairs], max_len)


def encode_pairs_pad_segment_one(tokenizer, pairs, max_len):
    tokens, segments, valid_lens = encode_pairs(tokenizer, pairs, max_len)
    return tokens, torch.where(tokens == tokenizer.pad_id, 1, segments), valid_lens


def encode_pairs_no_truncation(tokenizer, pairs, max_len):
    return encode_pairs(tokenizer, pairs, None)


# ---------------------------------------------------------------------------------------------------------


def test_reference_solutions_pass(capsys):
    assert ch08.check_freeze_bottom(freeze_bottom)
    assert ch08.check_encode_pairs(encode_pairs)
    assert ch08.check_initial_loss(INITIAL_LOSS)
    assert capsys.readouterr().out.count("correct") == 3


def test_initial_loss_is_what_a_fresh_classifier_measures():
    from bertnb.finetune import BertClassifier
    from bertnb.model import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertClassifier(BertModel(BertConfig(vocab_size=50, hidden_size=32, num_layers=2, num_heads=2,
                                                ffn_size=64, max_len=16)), num_classes=8).eval()
    tokens = torch.randint(5, 50, (256, 12))
    labels = torch.randint(0, 8, (256,))
    loss = F.cross_entropy(model(tokens), labels).item()
    assert abs(loss - INITIAL_LOSS) < 0.01


@pytest.mark.parametrize("wrong, message", [
    (freeze_layers_only, "embeddings still train"),
    (freeze_everything_but_head, "pooler is frozen"),
    (freeze_top, "expected the first k"),
])
def test_freeze_bottom_rejects_wrong_answers(wrong, message, capsys):
    assert not ch08.check_freeze_bottom(wrong)
    assert message in capsys.readouterr().out


@pytest.mark.parametrize("wrong, message", [
    (encode_pairs_as_one_text, "two [SEP]"),
    (encode_pairs_pad_segment_one, "Padding positions get segment 0"),
    (encode_pairs_no_truncation, "max_len = 8"),
])
def test_encode_pairs_rejects_wrong_answers(wrong, message, capsys):
    assert not ch08.check_encode_pairs(wrong)
    assert message in capsys.readouterr().out


@pytest.mark.parametrize("wrong, message", [(3.0, "bits"), (0.125, "probability"), (0.69, "off"),
                                            ("2.08", "give a number")])
def test_initial_loss_rejects_wrong_answers(wrong, message, capsys):
    assert not ch08.check_initial_loss(wrong)
    assert message in capsys.readouterr().out


def test_stubs_are_not_solved_and_never_raise(capsys):
    assert not ch08.check_freeze_bottom(unsolved)
    assert not ch08.check_encode_pairs(unsolved)
    assert not ch08.check_initial_loss(None)
    assert capsys.readouterr().out.count("not solved yet") == 3
