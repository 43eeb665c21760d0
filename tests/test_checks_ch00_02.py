"""The exercise checks of chapters 00-02: each accepts the reference solution (kept here, not in the
notebooks), rejects a wrong answer without raising, and says "not solved yet" for the notebook's stub."""

import pytest
import torch

from bertnb.checks import ch00, ch01, ch02


def unsolved(*args, **kwargs):  # what the notebooks hold before the student writes anything
    raise NotImplementedError  # your code here


# ---------------------------------------------------------------------------------------------------------
# Reference solutions


def encoder_layer_params(cfg):
    n, f = cfg.hidden_size, cfg.ffn_size
    attention = 4 * (n * n + n)  # W_q, W_k, W_v, W_o: each an n x n weight and an n bias
    norms = 2 * (2 * n)  # two LayerNorms, each a scale and a shift of size n
    ffn = (n * f + f) + (f * n + n)  # dense n -> f and dense f -> n, with biases
    return attention + norms + ffn


def mlm_logits_shape(B, m, p, V):
    return (B, p, V)  # m does not appear: only the p gathered positions go through the head


def truncate_pair(tokens_a, tokens_b, max_len):
    budget = max_len - 3  # [CLS] A [SEP] B [SEP]
    if len(tokens_a) + len(tokens_b) <= budget:
        return tokens_a, tokens_b
    shorter = min(len(tokens_a), len(tokens_b))
    if 2 * shorter <= budget:
        keep_short, keep_long = shorter, budget - shorter
    else:
        keep_short, keep_long = budget // 2, budget - budget // 2
    if len(tokens_a) > len(tokens_b):
        return tokens_a[:keep_long], tokens_b[:keep_short]
    return tokens_a[:keep_short], tokens_b[:keep_long]


def word_ids(tokens):
    ids, word = [], -1
    for token in tokens:
        if token in ("[CLS]", "[SEP]", "[PAD]"):
            ids.append(None)
        else:
            word += not token.startswith("##")
            ids.append(word)
    return ids


def embedding_params(cfg):
    n = cfg.hidden_size
    return (cfg.vocab_size + cfg.type_vocab_size + cfg.max_len) * n + 2 * n  # three tables + LayerNorm


def embedding_sum(tokens, segments, token_table, segment_table, position_table):
    m = tokens.shape[1]
    return token_table[tokens] + segment_table[segments] + position_table[:m]  # [B, m, n] + [m, n]


# ---------------------------------------------------------------------------------------------------------
# Wrong answers: plausible mistakes


def encoder_layer_params_no_biases(cfg):
    n, f = cfg.hidden_size, cfg.ffn_size
    return 4 * n * n + 2 * n * f


def mlm_logits_all_positions(B, m, p, V):
    return (B, m, V)  # what Hugging Face's head computes, not ours


def truncate_one_at_a_time(tokens_a, tokens_b, max_len):
    """Google BERT's `_truncate_seq_pair`: differs from longest-first on odd budgets (A=5, B=5, max_len 10)."""
    tokens_a, tokens_b = list(tokens_a), list(tokens_b)
    while len(tokens_a) + len(tokens_b) > max_len - 3:
        (tokens_a if len(tokens_a) > len(tokens_b) else tokens_b).pop()
    return tokens_a, tokens_b


def truncate_forgets_specials(tokens_a, tokens_b, max_len):
    return truncate_pair(tokens_a, tokens_b, max_len + 3)


def word_ids_per_token(tokens):
    return [None if t in ("[CLS]", "[SEP]", "[PAD]") else i - 1 for i, t in enumerate(tokens)]


def embedding_params_no_norm(cfg):
    return (cfg.vocab_size + cfg.type_vocab_size + cfg.max_len) * cfg.hidden_size


def embedding_sum_whole_table(tokens, segments, token_table, segment_table, position_table):
    return token_table[tokens] + segment_table[segments]  # forgot the positions


# ---------------------------------------------------------------------------------------------------------

CASES = [
    (ch00.check_encoder_layer_params, encoder_layer_params, [encoder_layer_params_no_biases, lambda cfg: 1.5]),
    (ch00.check_mlm_logits_shape, mlm_logits_shape, [mlm_logits_all_positions, lambda B, m, p, V: "B, p, V"]),
    (ch01.check_truncate_pair, truncate_pair, [truncate_one_at_a_time, truncate_forgets_specials,
                                               lambda a, b, max_len: (a, b)]),
    (ch01.check_word_ids, word_ids, [word_ids_per_token, lambda tokens: [0] * len(tokens)]),
    (ch02.check_embedding_params, embedding_params, [embedding_params_no_norm, lambda cfg: None]),
    (ch02.check_embedding_sum, embedding_sum, [embedding_sum_whole_table,
                                               lambda t, s, T, S, P: (T[t] + S[s] + P[: t.shape[1]]).mean(0)]),
]
IDS = [check.__name__ for check, _, _ in CASES]


@pytest.mark.parametrize("check, reference, wrongs", CASES, ids=IDS)
def test_reference_is_accepted(check, reference, wrongs, capsys):
    assert check(reference) is True
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("check, reference, wrongs", CASES, ids=IDS)
def test_wrong_answers_are_rejected_without_raising(check, reference, wrongs, capsys):
    for wrong in wrongs:
        assert check(wrong) is False
        out = capsys.readouterr().out
        # rejected as wrong with a reason (not "not solved yet", not a crash report), and never "correct"
        assert "not right yet: " in out and len(out.split("not right yet: ", 1)[1].strip()) > 10, out
        assert not out.rstrip().endswith(": correct"), out


@pytest.mark.parametrize("check, reference, wrongs", CASES, ids=IDS)
def test_unsolved_stub_prints_not_solved(check, reference, wrongs, capsys):
    assert check(unsolved) is False
    assert "not solved yet" in capsys.readouterr().out
    assert check(None) is False  # an answer left as None
    assert "not solved yet" in capsys.readouterr().out


def test_a_crashing_answer_is_reported_not_raised(capsys):
    assert ch02.check_embedding_sum(lambda *args: 1 / 0) is False
    assert "ZeroDivisionError" in capsys.readouterr().out


def test_truncation_rule_is_hugging_faces():
    """The rule the check asks for is the one HF's tokenizer (and bertnb.tokenization.encode) applies."""
    transformers = pytest.importorskip("transformers")
    from bertnb.pretrained import minilm_path
    from bertnb.tokenization import BertTokenizer

    vocab = str(minilm_path() / "vocab.txt")
    hf = transformers.BertTokenizer(vocab=vocab)
    ours = BertTokenizer(vocab)
    for len_a, len_b, max_len in ch01.TRUNCATION_CASES:
        text_a, text_b = " ".join(["cat"] * len_a), " ".join(["dog"] * len_b)
        hf_ids = hf(text_a, text_b, truncation="longest_first", max_length=max_len)["input_ids"]
        keep_a, keep_b = ch01.reference_keep_lengths(len_a, len_b, max_len - 3)
        assert hf_ids.count(hf.convert_tokens_to_ids("cat")) == keep_a
        assert hf_ids.count(hf.convert_tokens_to_ids("dog")) == keep_b
        assert ours.encode(text_a, text_b, max_len=max_len)[0] == hf_ids


def test_word_id_rule_is_hugging_faces():
    transformers = pytest.importorskip("transformers")
    from bertnb.pretrained import minilm_path

    hf = transformers.BertTokenizer(vocab=str(minilm_path() / "vocab.txt"))
    for text in ("Hello, unaffable world!", "Tokenization isn't hard.", "北京 café 🙂 x**2"):
        encoding = hf(text)
        assert ch01.reference_word_ids(hf.convert_ids_to_tokens(encoding["input_ids"])) == encoding.word_ids()


def test_reference_sum_matches_the_embedding_module():
    from bertnb.model import BertConfig, BertEmbeddings

    cfg = BertConfig(vocab_size=50, hidden_size=8, num_layers=1, num_heads=2, ffn_size=16, max_len=10)
    emb = BertEmbeddings(cfg).eval()
    tokens, segments = torch.randint(0, 50, (2, 6)), torch.randint(0, 2, (2, 6))
    X = embedding_sum(tokens, segments, emb.token_embedding.weight, emb.segment_embedding.weight,
                      emb.position_embedding.weight)
    torch.testing.assert_close(emb.norm(X), emb(tokens, segments))
