"""bertnb.viz: the attention explorer driven from Python (set a control, check what it shows), the per-head
statistics on maps whose answers are known, and attention rollout against a two-layer example by hand."""

import math

import ipywidgets
import numpy as np
import pytest
import torch
from traitlets import TraitError

from bertnb.model import BertConfig, BertForPreTraining, BertModel
from bertnb.tokenization import BertTokenizer
from bertnb.viz import (attention_maps, attention_rollout, explore_attention, head_statistics, merge_units,
                        shown_units, strongest_head, uniform_attentions, unit_label, word_spans)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "un", "##aff", "##able",
         ".", "dog"]


@pytest.fixture(scope="module")
def tokenizer():
    return BertTokenizer.from_vocab(VOCAB)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(3)
    cfg = BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_layers=3, num_heads=4, ffn_size=32, max_len=32)
    model = BertModel(cfg).eval()
    with torch.no_grad():  # sharper, more varied maps than the 0.02-scale initialisation gives
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return model


TEXT_A, TEXT_B = "the cat sat on the unaffable mat.", "the dog sat."


def direct_maps(model, tokenizer, text_a, text_b=None):
    ids, segments = tokenizer.encode(text_a, text_b)
    with torch.no_grad():
        _, attentions = model(torch.tensor([ids]), torch.tensor([segments]), torch.tensor([len(ids)]),
                              return_attention=True)
    return tokenizer.convert_ids_to_tokens(ids), [a[0].numpy() for a in attentions]  # L x [h, m, m]


# ---------------------------------------------------------------------------------------------------------
# units: tokens and words


def test_word_spans_join_pieces_to_the_word_before():
    tokens = ["[CLS]", "un", "##aff", "##able", "cat", ".", "[SEP]"]
    assert word_spans(tokens) == [[0], [1, 2, 3], [4], [5], [6]]
    assert unit_label(tokens, [1, 2, 3]) == "unaffable"
    assert shown_units(tokens, words=True, specials=False) == [[1, 2, 3], [4], [5]]
    assert shown_units(tokens, words=False, specials=False) == [[1], [2], [3], [4], [5]]


def test_merge_units_sums_over_keys_and_averages_over_queries():
    A = np.array([[0.5, 0.2, 0.3],
                  [0.1, 0.6, 0.3],
                  [0.3, 0.3, 0.4]])  # rows sum to 1
    units = [[0], [1, 2]]  # token 0 alone, tokens 1 and 2 one word
    by_hand = np.array([[0.5, 0.2 + 0.3],  # query 0: sum over the word's keys
                        [(0.1 + 0.3) / 2, ((0.6 + 0.3) + (0.3 + 0.4)) / 2]])  # the word's queries: their mean
    np.testing.assert_allclose(merge_units(A, units), by_hand, atol=1e-12)
    np.testing.assert_allclose(merge_units(A, units).sum(1), 1.0, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------
# the explorer, driven from Python


def test_explorer_is_a_widget_and_shows_the_selected_head(model, tokenizer):
    w = explore_attention(model, tokenizer, TEXT_A, TEXT_B)
    assert isinstance(w, ipywidgets.Widget)
    tokens, maps = direct_maps(model, tokenizer, TEXT_A, TEXT_B)
    assert w.labels() == tokens
    for layer in range(3):
        for head in range(4):
            w.layer.value, w.head.value = layer, head
            np.testing.assert_allclose(w.attention(), maps[layer][head], atol=1e-6)
    np.testing.assert_allclose(w.attention().sum(1), 1.0, atol=1e-5)  # every token shown: rows sum to 1


def test_picture_follows_the_controls(model, tokenizer):
    w = explore_attention(model, tokenizer, TEXT_A)
    w.layer.value = 0
    first = w.image.value
    assert first[:8] == PNG_MAGIC and w.png == first
    w.layer.value = 2
    assert w.image.value != first, "changing the layer must change the picture"
    layer_2 = w.image.value
    w.head.value = 3
    assert w.image.value != layer_2
    one_head = w.image.value
    w.view.value = "all heads"
    assert w.image.value != one_head
    w.view.value = "one head"
    assert w.image.value == one_head  # drawing is deterministic: the same view gives the same bytes


def test_token_picker_describes_rows_and_columns(model, tokenizer):
    w = explore_attention(model, tokenizer, TEXT_A)
    before = w.image.value
    cat = w.labels().index("cat")
    w.token.value = cat
    assert w.image.value != before  # the row and the column are outlined
    M, labels = w.attention(), w.labels()
    top_to, top_from = labels[int(M[cat].argmax())], labels[int(M[:, cat].argmax())]
    assert f"'cat' attends to: {top_to} {M[cat].max():.2f}" in w.caption.value
    assert f"attended by: {top_from} {M[:, cat].max():.2f}" in w.caption.value
    w.words.value = True  # the picked token stays picked when the units change
    assert w.labels()[w.token.value] == "cat"
    w.token.value = -1
    assert "attends to" not in w.caption.value


def test_hiding_specials_drops_their_rows_and_columns(model, tokenizer):
    w = explore_attention(model, tokenizer, TEXT_A, TEXT_B)
    tokens, maps = direct_maps(model, tokenizer, TEXT_A, TEXT_B)
    keep = [i for i, t in enumerate(tokens) if t not in ("[CLS]", "[SEP]")]
    w.layer.value, w.head.value = 1, 2
    w.specials.value = False
    assert "[CLS]" not in w.labels() and "[SEP]" not in w.labels()
    np.testing.assert_allclose(w.attention(), maps[1][2][np.ix_(keep, keep)], atol=1e-6)  # raw weights kept
    assert "less than 1" in w.caption.value


def test_words_group_wordpieces(model, tokenizer):
    w = explore_attention(model, tokenizer, TEXT_A)
    tokens, maps = direct_maps(model, tokenizer, TEXT_A)
    w.words.value = True
    assert "unaffable" in w.labels() and "##aff" not in w.labels()
    assert len(w.labels()) == len(tokens) - 2
    np.testing.assert_allclose(w.attention(), merge_units(maps[2][0], word_spans(tokens)), atol=1e-6)
    np.testing.assert_allclose(w.attention().sum(1), 1.0, atol=1e-5)


def test_padding_is_never_shown_or_attended(model, tokenizer):
    texts = [TEXT_A, "the cat."]  # the second row is padded to the first's length
    tokens, valid_lens, attentions = attention_maps(model, tokenizer, texts)
    short = int(valid_lens[1])
    assert tokens.shape[1] > short
    for A in attentions:  # [B, h, m, m]
        assert torch.all(A[1, :, :, short:] == 0), "padded keys must get zero weight"
    alone = explore_attention(model, tokenizer, "the cat.")
    assert "[PAD]" not in alone.labels() and len(alone.labels()) == short
    for layer in range(3):  # the same maps, padded in a batch or alone
        alone.layer.value = layer
        np.testing.assert_allclose(alone.attention(), attentions[layer][1, 0, :short, :short].numpy(), atol=1e-5)


def test_save_png_writes_the_picture_shown(model, tokenizer, tmp_path):
    w = explore_attention(model, tokenizer, TEXT_A)
    w.token.value = 2
    path = w.save_png(tmp_path / "sub" / "explorer.png")
    assert path.read_bytes() == w.image.value
    assert w.static().data == w.png
    assert len(repr(w)) < 110 and "AttentionExplorer(layer=2" in repr(w)


def test_bad_values_are_refused_with_the_allowed_range(model, tokenizer):
    w = explore_attention(model, tokenizer, TEXT_A)
    with pytest.raises(TraitError, match=r"layer must be an int in \[0, 2\], got 3"):
        w.layer.value = 3
    with pytest.raises(TraitError, match=r"head must be an int in \[0, 3\], got -1"):
        w.head.value = -1
    with pytest.raises(TraitError):
        w.token.value = 99
    with pytest.raises(TypeError, match="BertModel or BertForPreTraining"):
        explore_attention(torch.nn.Linear(2, 2), tokenizer, TEXT_A)
    with pytest.raises(TypeError, match="text_b must be a str"):
        explore_attention(model, tokenizer, TEXT_A, 3)


def test_pretraining_model_is_read_through_its_encoder(tokenizer):
    cfg = BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_layers=2, num_heads=2, ffn_size=32, max_len=32)
    full = BertForPreTraining(cfg).train()
    w = explore_attention(full, tokenizer, TEXT_A)
    assert full.training, "the model's mode is restored"
    tokens, maps = direct_maps(full.bert.eval(), tokenizer, TEXT_A)
    w.layer.value = 0
    np.testing.assert_allclose(w.attention(), maps[0][0], atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# per-head statistics


def shifted_maps(m, valid, shift):
    """One head per layer whose every real query q looks only at q + shift (clipped into the real tokens)."""
    A = torch.zeros(1, 1, m, m)
    for q in range(m):
        A[0, 0, q, min(max(q + shift, 0), valid - 1)] = 1.0
    return A


def test_statistics_of_known_maps():
    m, valid = 6, 5
    tokens = torch.tensor([[2, 7, 8, 9, 3, 0]])  # [CLS] w w w [SEP] [PAD]
    valid_lens = torch.tensor([valid])
    layers = [shifted_maps(m, valid, -1), shifted_maps(m, valid, 0), shifted_maps(m, valid, 1)]
    layers[0][0, 0, valid:] = 0.5  # garbage in the padded query rows must not count
    stats = head_statistics(layers, tokens, valid_lens, cls_id=2, sep_id=3)
    assert stats["previous"].shape == (3, 1)
    np.testing.assert_allclose(stats["previous"][:, 0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(stats["same"][:, 0], [1 / 5, 1.0, 1 / 5])  # q = 0 looks at itself when clipped
    np.testing.assert_allclose(stats["next"][:, 0], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(stats["entropy"], 0.0, atol=1e-12)  # one-hot rows
    np.testing.assert_allclose(stats["[CLS]"][:, 0], [2 / 5, 1 / 5, 0.0])  # queries 0 and 1 look at position 0
    np.testing.assert_allclose(stats["[SEP]"][:, 0], [0.0, 1 / 5, 2 / 5])
    assert strongest_head(stats, "previous") == (0, 0, 1.0)
    assert strongest_head(stats, "next")[:2] == (2, 0)


def test_uniform_baseline_is_one_over_the_valid_length():
    valid_lens = torch.tensor([4, 7])
    m = 7
    tokens = torch.tensor([[2, 5, 6, 3, 0, 0, 0], [2, 5, 6, 3, 7, 8, 3]])
    uniform = uniform_attentions(valid_lens, m, num_layers=2, num_heads=3)
    assert len(uniform) == 2 and tuple(uniform[0].shape) == (2, 3, m, m)
    stats = head_statistics(uniform, tokens, valid_lens, cls_id=2, sep_id=3)
    # every real query of a row of length n puts 1/n everywhere: averaged over the 4 + 7 real queries
    expected_entropy = (4 * math.log(4) + 7 * math.log(7)) / 11
    np.testing.assert_allclose(stats["entropy"], expected_entropy, rtol=1e-12)
    np.testing.assert_allclose(stats["[CLS]"], (4 / 4 + 7 / 7) / 11, rtol=1e-12)
    np.testing.assert_allclose(stats["[SEP]"], (4 * 1 / 4 + 7 * 2 / 7) / 11, rtol=1e-12)
    np.testing.assert_allclose(stats["previous"], (3 / 4 + 6 / 7) / 9, rtol=1e-12)  # queries with a neighbour


def test_minilm_has_heads_the_statistics_find():
    from bertnb.pretrained import load_minilm

    minilm, tok = load_minilm()
    texts = ["The cat sat on the mat because it was warm.", "Python lists grow when you append to them.",
             "She read the letter twice before she answered it."]
    tokens, valid_lens, attentions = attention_maps(minilm, tok, texts)
    stats = head_statistics(attentions, tokens, valid_lens, tok.cls_id, tok.sep_id)
    base = head_statistics(uniform_attentions(valid_lens, tokens.shape[1], 6, 12), tokens, valid_lens,
                           tok.cls_id, tok.sep_id)
    assert strongest_head(stats, "previous")[2] > 0.5 > 3 * base["previous"].max()
    assert strongest_head(stats, "[CLS]")[2] > 0.5  # MiniLM has [CLS] heads, and hardly any [SEP] head
    assert strongest_head(stats, "entropy")[2] < 0.5 * base["entropy"].max()


# ---------------------------------------------------------------------------------------------------------
# attention rollout


def test_rollout_two_layers_by_hand():
    # layer 1: head 0 looks at token 0, head 1 at token 1 -> mean [[.5, .5], [.5, .5]]
    layer1 = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]]])  # [B=1, h=2, 2, 2]
    # layer 2: both heads look at token 0 -> mean [[1, 0], [1, 0]]
    layer2 = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [1.0, 0.0]]]])
    # with residual 0.5: A1 = .5 mean + .5 I = [[.75, .25], [.25, .75]]; A2 = [[1, 0], [.5, .5]]
    # rollout = A2 @ A1 = [[.75, .25], [.5 * .75 + .5 * .25, .5 * .25 + .5 * .75]] = [[.75, .25], [.5, .5]]
    expected = torch.tensor([[[0.75, 0.25], [0.5, 0.5]]])
    torch.testing.assert_close(attention_rollout([layer1, layer2], residual=0.5), expected)
    # the other order of the product, A1 @ A2 = [[.875, .125], [.625, .375]], is a different answer
    assert not torch.allclose(attention_rollout([layer2, layer1]), expected)


def test_rollout_renormalises_rows_and_handles_extremes(model, tokenizer):
    _, _, attentions = attention_maps(model, tokenizer, [TEXT_A, "the cat."])
    R = attention_rollout(attentions)  # [B, m, m]
    assert tuple(R.shape) == (2, attentions[0].shape[-1], attentions[0].shape[-1])
    torch.testing.assert_close(R.sum(-1), torch.ones(R.shape[:2]))
    torch.testing.assert_close(attention_rollout(attentions, residual=1.0), torch.eye(R.shape[-1]).expand_as(R))
    plain = attentions[2].mean(1) @ attentions[1].mean(1) @ attentions[0].mean(1)
    torch.testing.assert_close(attention_rollout(attentions, residual=0.0), plain)
    short = 4  # "[CLS] the cat . [SEP]" is 5 tokens: real queries send nothing to the padding
    assert torch.all(R[1, :short + 1, short + 1:] == 0)


def test_rollout_refuses_bad_input():
    A = torch.full((1, 2, 3, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"residual must be a number in \[0.0, 1.0\]"):
        attention_rollout([A], residual=1.5)
    with pytest.raises(ValueError, match="attentions is empty"):
        attention_rollout([])
    with pytest.raises(ValueError, match=r"layer 1 is \(1, 2, 3, 4\)"):
        attention_rollout([A, torch.zeros(1, 2, 3, 4)])
