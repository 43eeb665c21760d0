"""Chapters 03 and 04: the exercise checks accept the reference solutions (kept here, not in the notebooks),
reject wrong answers with a message, and report an unsolved stub as "not solved yet" without raising.
Also the batch helper the chapters use, `bertnb.batching.encode_batch`."""

import math

import pytest
import torch
import torch.nn.functional as F

from bertnb.checks import ch03, ch04
from bertnb.batching import encode_batch, tokens_of
from bertnb.tokenization import BertTokenizer
from tests.check_contract import unsolved, assert_accepted, assert_rejected, assert_not_solved


# ---------------------------------------------------------------------------------------------------------
# reference solutions, chapter 03


def masked_softmax(scores, valid_lens):
    keys = torch.arange(scores.shape[-1])  # [m]
    mask = (keys[None, :] < valid_lens[:, None])[:, None, None, :]  # [B, 1, 1, m]: keys only
    return scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)  # [B, h, m, m]


def attention_entropy(weights):
    return -torch.special.xlogy(weights, weights).sum(-1).mean(-1)  # [h]


def previous_token_score(weights):
    return weights.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1)  # [h]: mean of weights[k, i, i - 1]


# wrong answers, each a mistake a student could make


def _key_mask(valid_lens, m):
    return torch.arange(m)[None, :] < valid_lens[:, None]  # [B, m]


def masked_softmax_large_negative(scores, valid_lens):  # also right: -1e9 instead of -inf
    mask = _key_mask(valid_lens, scores.shape[-1])[:, None, None, :]
    return scores.masked_fill(~mask, -1e9).softmax(dim=-1)


def masked_softmax_on_queries(scores, valid_lens):
    mask = _key_mask(valid_lens, scores.shape[-1])[:, None, :, None]  # [B, 1, m, 1]: rows, not columns
    return scores.masked_fill(~mask, -1e9).softmax(dim=-1)


def masked_softmax_on_queries_inf(scores, valid_lens):
    mask = _key_mask(valid_lens, scores.shape[-1])[:, None, :, None]
    return scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)  # NaN rows


def masked_softmax_zero_fill(scores, valid_lens):
    mask = _key_mask(valid_lens, scores.shape[-1])[:, None, None, :]
    return (scores * mask).softmax(dim=-1)  # a score of 0 still gets exp(0) = 1


def masked_softmax_after(scores, valid_lens):
    mask = _key_mask(valid_lens, scores.shape[-1])[:, None, None, :]
    return scores.softmax(dim=-1) * mask  # rows no longer sum to 1


def masked_softmax_wrong_dim(scores, valid_lens):
    mask = _key_mask(valid_lens, scores.shape[-1])[:, None, None, :]
    return scores.masked_fill(~mask, -1e9).softmax(dim=-2)


def entropy_naive_log(weights):
    return -(weights * weights.log()).sum(-1).mean(-1)  # NaN where a weight is 0


def entropy_summed_over_rows(weights):
    return -torch.special.xlogy(weights, weights).sum(-1).sum(-1)


def previous_is_next(weights):
    return weights.diagonal(offset=1, dim1=-2, dim2=-1).mean(-1)


def previous_over_m(weights):
    return weights.diagonal(offset=-1, dim1=-2, dim2=-1).sum(-1) / weights.shape[-1]


def test_ch03_reference_masked_softmax_equals_bertnb_attention_weights():
    from bertnb.model import attention_with_weights, padding_mask

    Q, K, V = (torch.randn(2, 3, 6, 4) for _ in range(3))  # [B, h, m, d]
    valid_lens = torch.tensor([6, 2])
    _, weights = attention_with_weights(Q, K, V, padding_mask(valid_lens, 6))
    torch.testing.assert_close(masked_softmax(Q @ K.transpose(-2, -1) / 2.0, valid_lens), weights)


# ---------------------------------------------------------------------------------------------------------
# reference solutions, chapter 04


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def pre_ln_forward(layer, X, valid_lens):
    X = X + layer.attention(layer.norm1(X), valid_lens)[0]  # normalise the sub-layer's input, add to the stream
    return X + layer.ffn(layer.norm2(X))  # [B, m, n]


def most_similar(E, i):
    E = F.normalize(E, dim=-1)  # unit vectors: the dot product is the cosine
    similarity = E @ E[i]  # [S]
    similarity[i] = float("-inf")  # not itself
    return int(similarity.argmax())


# wrong answers


def gelu_tanh_no_cubic(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * x))


def gelu_tanh_without_root(x):
    return 0.5 * x * (1 + torch.tanh(2 / math.pi * (x + 0.044715 * x ** 3)))


def post_ln_forward(layer, X, valid_lens):
    return layer(X, valid_lens)[0]  # BERT's own layer


def pre_ln_no_mask(layer, X, valid_lens):
    return pre_ln_forward(layer, X, None)


def pre_ln_normalised_output(layer, X, valid_lens):
    return layer.norm2(pre_ln_forward(layer, X, valid_lens))


def pre_ln_ffn_reads_wrong_input(layer, X, valid_lens):
    H = X + layer.attention(layer.norm1(X), valid_lens)[0]
    return H + layer.ffn(layer.norm2(X))


def pre_ln_returns_pair(layer, X, valid_lens):
    return layer.attention(layer.norm1(X), valid_lens)


def most_similar_by_dot_product(E, i):
    similarity = E @ E[i]
    similarity[i] = float("-inf")
    return int(similarity.argmax())


def most_similar_including_itself(E, i):
    return int((F.normalize(E, dim=-1) @ F.normalize(E, dim=-1)[i]).argmax())


def test_ch04_reference_gelu_tanh_is_torchs_and_close_to_erf():
    x = torch.linspace(-5, 5, 101)
    torch.testing.assert_close(gelu_tanh(x), F.gelu(x, approximate="tanh"), atol=1e-6, rtol=0)
    assert (gelu_tanh(x) - F.gelu(x)).abs().max() < 5e-4  # the chapter's claim: within 5 x 10^-4 of erf


def test_a_student_bug_is_reported_not_raised(capsys):
    assert ch04.check_gelu_tanh(lambda x: x[10 ** 6]) is False
    assert "your code raised IndexError" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------
# every check: accepts the reference, rejects each wrong answer with its hint, reports a stub as unsolved


@pytest.mark.parametrize("check, reference", [
    (ch03.check_masked_softmax, masked_softmax),
    (ch03.check_masked_softmax, masked_softmax_large_negative),
    (ch03.check_attention_entropy, attention_entropy),
    (ch03.check_previous_token_score, previous_token_score),
    (ch04.check_gelu_tanh, gelu_tanh),
    (ch04.check_pre_ln_forward, pre_ln_forward),
    (ch04.check_most_similar, most_similar),
])
def test_reference_is_accepted(check, reference, capsys):
    assert_accepted(check, reference, capsys)


@pytest.mark.parametrize("check, wrong, hint", [
    (ch03.check_masked_softmax, masked_softmax_on_queries, "on the queries"),
    (ch03.check_masked_softmax, masked_softmax_on_queries_inf, "NaN"),
    (ch03.check_masked_softmax, masked_softmax_zero_fill, "exp(0) = 1"),
    (ch03.check_masked_softmax, masked_softmax_after, "sum to 1"),
    (ch03.check_masked_softmax, masked_softmax_wrong_dim, "columns sum to 1"),
    (ch03.check_masked_softmax, lambda s, v: masked_softmax(s * 2, v), "scale"),
    (ch03.check_masked_softmax, lambda s, v: masked_softmax(s, v)[:, 0], "shape"),
    (ch03.check_attention_entropy, entropy_naive_log, "NaN"),
    (ch03.check_attention_entropy, entropy_summed_over_rows, "average over the m rows"),
    (ch03.check_attention_entropy, lambda w: -attention_entropy(w), "minus sign"),
    (ch03.check_previous_token_score, previous_is_next, "next token"),
    (ch03.check_previous_token_score, previous_over_m, "m - 1"),
    (ch03.check_previous_token_score, lambda w: w.diagonal(dim1=-2, dim2=-1).mean(-1), "expected"),
    (ch04.check_gelu_tanh, gelu_tanh_no_cubic, "cubic term"),
    (ch04.check_gelu_tanh, gelu_tanh_without_root, "square root"),
    (ch04.check_gelu_tanh, F.gelu, "exact erf"),
    (ch04.check_pre_ln_forward, post_ln_forward, "post-LN"),
    (ch04.check_pre_ln_forward, pre_ln_no_mask, "valid_lens"),
    (ch04.check_pre_ln_forward, pre_ln_normalised_output, "never normalised"),
    (ch04.check_pre_ln_forward, pre_ln_ffn_reads_wrong_input, "unnormalised"),
    (ch04.check_pre_ln_forward, pre_ln_returns_pair, "(Y, weights)"),
    (ch04.check_most_similar, most_similar_by_dot_product, "largest dot product"),
    (ch04.check_most_similar, most_similar_including_itself, "itself"),
    (ch04.check_most_similar, lambda E, i: 4 if i != 4 else 0, "expected"),
    (ch04.check_most_similar, lambda E, i: [0, 1], "one index"),
])
def test_wrong_answer_is_rejected(check, wrong, hint, capsys):
    assert_rejected(check, wrong, hint, capsys)


@pytest.mark.parametrize("check", [ch03.check_masked_softmax, ch03.check_attention_entropy,
                                   ch03.check_previous_token_score, ch04.check_gelu_tanh, ch04.check_pre_ln_forward,
                                   ch04.check_most_similar])
def test_unsolved_stub_says_not_solved(check, capsys):
    assert_not_solved(check, capsys)


# ---------------------------------------------------------------------------------------------------------
# bertnb.batching.encode_batch


@pytest.fixture(scope="module")
def tokenizer():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "a", "dog", "."]
    return BertTokenizer.from_vocab(vocab)


def test_encode_batch_pads_to_the_longest(tokenizer):
    tokens, segments, valid_lens = encode_batch(tokenizer, ["the cat sat.", "a dog"])
    assert tokens.tolist() == [[2, 5, 6, 7, 12, 3], [2, 10, 11, 3, 0, 0]]  # [B, m], padded with [PAD] = 0
    assert segments.tolist() == [[0] * 6, [0] * 6]
    assert valid_lens.tolist() == [6, 4]
    assert tokens.dtype == segments.dtype == valid_lens.dtype == torch.long
    assert tokens_of(tokenizer, tokens[1], valid_lens[1]) == ["[CLS]", "a", "dog", "[SEP]"]


def test_encode_batch_pairs_and_truncation(tokenizer):
    tokens, segments, valid_lens = encode_batch(tokenizer, [("the cat", "sat on the mat"), "dog"], max_len=6)
    ids, segs = tokenizer.encode("the cat", "sat on the mat", max_len=6)  # truncation is the tokenizer's
    assert len(ids) == 6 and tokens[0].tolist() == ids and segments[0].tolist() == segs
    assert segs[0] == 0 and segs[-1] == 1  # a real pair: segment B present
    assert valid_lens.tolist() == [6, 3] and tokens[1].tolist() == [2, 11, 3, 0, 0, 0]


def test_encode_batch_rejects_a_bare_string(tokenizer):
    with pytest.raises(TypeError, match="list of texts"):
        encode_batch(tokenizer, "the cat")
    with pytest.raises(ValueError, match="empty"):
        encode_batch(tokenizer, [])
