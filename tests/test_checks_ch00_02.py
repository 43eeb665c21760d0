"""The exercise checks of chapters 00-02: each accepts the reference solution (kept here, not in the
notebooks), rejects a wrong answer without raising, and says "not solved yet" for the notebook's stub."""

import math

import pytest
import torch

from bertnb.checks import ch00, ch01, ch02
from tests.check_contract import assert_accepted, assert_not_solved


# ---------------------------------------------------------------------------------------------------------
# Reference solutions


def encoder_layer_params(cfg):
    n, f = cfg.hidden_size, cfg.ffn_size
    attention = 4 * (n * n + n)  # W_q, W_k, W_v, W_o: each an n x n weight and an n bias
    norms = 2 * (2 * n)  # two LayerNorms, each a scale and a shift of size n
    ffn = (n * f + f) + (f * n + n)  # dense n -> f and dense f -> n, with biases
    return attention + norms + ffn


def break_even_hidden_size(V, L):
    # one layer with f = 4n: attention 4n² + 4n, feed-forward 8n² + 5n, two LayerNorms 4n -> 12n² + 13n;
    # L (12n² + 13n) >= V n  <=>  n >= (V - 13 L) / (12 L)
    return max(1, math.ceil((V - 13 * L) / (12 * L)))


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


def sinusoidal_table(max_len, n):
    position = torch.arange(max_len)[:, None]  # [max_len, 1]
    frequency = 10000 ** (-torch.arange(0, n, 2) / n)  # [n / 2]: one per pair of features, 2k / n
    table = torch.zeros(max_len, n)
    table[:, 0::2] = torch.sin(position * frequency)  # [max_len, n / 2]: even features
    table[:, 1::2] = torch.cos(position * frequency)  # odd features: the same frequencies
    return table


def embedding_sum(tokens, segments, token_table, segment_table, position_table):
    m = tokens.shape[1]
    return token_table[tokens] + segment_table[segments] + position_table[:m]  # [B, m, n] + [m, n]


# ---------------------------------------------------------------------------------------------------------
# Wrong answers: plausible mistakes


def encoder_layer_params_no_biases(cfg):
    n, f = cfg.hidden_size, cfg.ffn_size
    return 4 * n * n + 2 * n * f


def break_even_no_biases(V, L):
    return math.ceil(V / (12 * L))  # forgot the 13n of biases and LayerNorms


def break_even_one_layer(V, L):
    return break_even_hidden_size(V, 1)  # compared the table with a single layer


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


def sinusoidal_halves(max_len, n):
    table = sinusoidal_table(max_len, n)
    return torch.cat([table[:, 0::2], table[:, 1::2]], dim=1)  # all sines, then all cosines


def sinusoidal_feature_exponent(max_len, n):
    position, feature = torch.arange(max_len)[:, None], torch.arange(n)
    angle = position / 10000 ** (feature / n)  # the cosine of pair k uses (2k + 1) / n: a wrong frequency
    return torch.where(feature % 2 == 0, torch.sin(angle), torch.cos(angle))


def embedding_sum_whole_table(tokens, segments, token_table, segment_table, position_table):
    return token_table[tokens] + segment_table[segments]  # forgot the positions


# ---------------------------------------------------------------------------------------------------------

CASES = [
    (ch00.check_encoder_layer_params, encoder_layer_params, [encoder_layer_params_no_biases, lambda cfg: 1.5]),
    (ch00.check_break_even_hidden_size, break_even_hidden_size, [break_even_no_biases, break_even_one_layer]),
    (ch01.check_truncate_pair, truncate_pair, [truncate_one_at_a_time, truncate_forgets_specials,
                                               lambda a, b, max_len: (a, b)]),
    (ch01.check_word_ids, word_ids, [word_ids_per_token, lambda tokens: [0] * len(tokens)]),
    (ch02.check_sinusoidal_table, sinusoidal_table, [sinusoidal_halves, sinusoidal_feature_exponent,
                                                     lambda max_len, n: sinusoidal_table(max_len, n).flip(1)]),
    (ch02.check_embedding_sum, embedding_sum, [embedding_sum_whole_table,
                                               lambda t, s, T, S, P: (T[t] + S[s] + P[: t.shape[1]]).mean(0)]),
]
IDS = [check.__name__ for check, _, _ in CASES]


@pytest.mark.parametrize("check, reference, wrongs", CASES, ids=IDS)
def test_reference_is_accepted(check, reference, wrongs, capsys):
    assert_accepted(check, reference, capsys)


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
    assert_not_solved(check, capsys)
    assert_not_solved(check, capsys, answer=None)  # an answer left as None


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


@pytest.mark.parametrize("check, wrong, hint", [
    (ch00.check_break_even_hidden_size, break_even_no_biases, "the 13n per layer"),
    (ch00.check_break_even_hidden_size, break_even_one_layer, "ONE layer"),
    (ch02.check_sinusoidal_table, sinusoidal_halves, "interleaves"),
    (ch02.check_sinusoidal_table, sinusoidal_feature_exponent, "SAME frequency"),
])
def test_new_checks_name_the_mistake(check, wrong, hint, capsys):
    assert check(wrong) is False
    assert hint in capsys.readouterr().out


def test_break_even_size_makes_the_layers_as_large_as_the_table():
    """The reference's n, built for real: L layers with f = 4n reach V x n parameters, at n - 1 they do not."""
    from bertnb.model import BertConfig, EncoderLayer, count_parameters

    V, L = 30522, 6
    n = break_even_hidden_size(V, L)
    for size, enough in ((n, True), (n - 1, False)):
        layer = EncoderLayer(BertConfig(vocab_size=V, hidden_size=size, num_heads=1, ffn_size=4 * size))
        assert (L * count_parameters(layer) >= V * size) is enough


def test_sinusoidal_reference_matches_the_formula_by_hand():
    table = sinusoidal_table(6, 4)
    assert table[0].tolist() == [0.0, 1.0, 0.0, 1.0]  # position 0: sin 0 = 0, cos 0 = 1
    assert math.isclose(table[5, 2].item(), math.sin(5 / 10000 ** (2 / 4)), rel_tol=1e-6)
    assert math.isclose(table[5, 3].item(), math.cos(5 / 10000 ** (2 / 4)), rel_tol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# bertnb.notebook: the figure defaults and the small stored PNGs


def test_setup_sets_projector_defaults_and_palette_png_is_small():
    import io

    import matplotlib
    from matplotlib.figure import Figure
    from PIL import Image

    from bertnb.notebook import palette_png, setup

    setup()  # outside a kernel: the rcParams only, no formatter
    assert matplotlib.rcParams["figure.dpi"] >= 100 and matplotlib.rcParams["font.size"] >= 11
    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    ax.imshow(torch.rand(20, 20).numpy(), cmap="RdBu_r")
    ax.plot(range(20), torch.rand(20).numpy())
    full = io.BytesIO()
    fig.savefig(full, format="png", dpi=100, bbox_inches="tight")
    small = palette_png(fig)
    picture = Image.open(io.BytesIO(small))
    assert picture.mode == "P" and picture.size == Image.open(io.BytesIO(full.getvalue())).size
    assert len(small) < len(full.getvalue())
    assert palette_png(Figure()) is None  # nothing drawn: nothing shown, as IPython's own formatter
