"""bertnb.fastpath against the plain path (bertnb.model forward + bertnb.losses): the same losses and gradients;
its cheaper dropout mask against the statistics of dropout; the fused loss against F.linear + F.cross_entropy.

Every dropout test runs in training mode, where dropout actually runs. Tolerances are explicit.
"""

import pytest
import torch
import torch.nn.functional as F

from bertnb import fastpath
from bertnb.fastpath import decoder_cross_entropy, dropout, dropout_keep_mask, pretraining_losses, self_attention
from bertnb.losses import mlm_loss, pretraining_loss
from bertnb.model import BertConfig, BertForPreTraining, MultiHeadAttention

# (vocab, hidden, layers, heads, ffn, max_len): one layer (the last is the first), odd sizes, many heads
DIMS = [(300, 32, 3, 4, 48, 24), (101, 24, 1, 3, 37, 40), (500, 48, 2, 12, 96, 64)]
SWITCHES = ("cheap_dropout", "last_layer_at_read_positions", "fused_loss")


def make_model(vocab, hidden, layers, heads, ffn, max_len, dropout_p=0.0, seed=0):
    """A BertForPreTraining in training mode, every parameter pushed off its initial value (LayerNorm 1, bias 0)
    so a forgotten or swapped one would show."""
    cfg = BertConfig(vocab_size=vocab, hidden_size=hidden, num_layers=layers, num_heads=heads, ffn_size=ffn,
                     max_len=max_len, dropout=dropout_p)
    torch.manual_seed(seed)
    model = BertForPreTraining(cfg).train()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model


def make_batch(cfg, B=5, m=None, p=4, seed=2):
    """A padded batch: distinct predicted positions inside each row's valid length, some slots weighted 0."""
    g = torch.Generator().manual_seed(seed)
    m = m or min(cfg.max_len, 24)
    tokens = torch.randint(0, cfg.vocab_size, (B, m), generator=g)  # [B, m]
    segments = torch.randint(0, 2, (B, m), generator=g)  # [B, m]
    valid_lens = torch.randint(p + 1, m + 1, (B,), generator=g)  # [B]
    valid_lens[0] = m
    pred_positions = torch.stack([1 + torch.randperm(int(v) - 1, generator=g)[:p] for v in valid_lens])  # [B, p]
    mlm_weights = torch.ones(B, p)
    mlm_weights[-1, 1:] = 0  # padded prediction slots
    return dict(tokens=tokens, segments=segments, valid_lens=valid_lens, pred_positions=pred_positions,
                mlm_labels=torch.randint(0, cfg.vocab_size, (B, p), generator=g), mlm_weights=mlm_weights,
                nsp_labels=torch.randint(0, 2, (B,), generator=g))


def losses_and_grads(model, compute):
    """compute() -> (mlm, nsp); returns them and the gradient of their sum for every named parameter."""
    mlm, nsp = compute()
    grads = torch.autograd.grad(mlm + nsp, list(model.parameters()))
    return mlm, nsp, dict(zip((name for name, _ in model.named_parameters()), grads))


def plain(model, batch):
    losses = pretraining_loss(model, batch)
    return losses["mlm_loss"], losses["nsp_loss"]


def assert_same(ours, reference, atol=1e-6, rtol=1e-4):
    (mlm, nsp, grads), (mlm_ref, nsp_ref, grads_ref) = ours, reference
    torch.testing.assert_close(mlm, mlm_ref, atol=atol, rtol=0)
    torch.testing.assert_close(nsp, nsp_ref, atol=atol, rtol=0)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, grads_ref[name], atol=atol, rtol=rtol, msg=name)


# ---------------------------------------------------------------------------------------------------------
# the same losses and gradients as the plain path


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("off", [None, *SWITCHES])
def test_losses_and_gradients_equal_the_plain_path_with_dropout_0(dims, off):
    """Dropout 0 in training mode: both are deterministic and the training-mode code runs. All three speed-ups
    on, and each one off in turn (the benchmark's ablation rows)."""
    model = make_model(*dims)
    batch = make_batch(model.cfg)
    switches = {name: name != off for name in SWITCHES}
    ours = losses_and_grads(model, lambda: pretraining_losses(model, **batch, **switches))
    assert_same(ours, losses_and_grads(model, lambda: plain(model, batch)))


@pytest.mark.parametrize("fused_loss", [True, False])
def test_with_torch_s_dropout_mask_the_losses_equal_the_plain_path_in_training(fused_loss):
    """With dropout 0.1 running: given the same masks (torch's, from the same seed, drawn in the same order), the
    fast path computes exactly what the plain model computes, gradients included. This holds when every layer
    runs at all m positions; at the read positions the last layer draws fewer mask entries."""
    model = make_model(*DIMS[0], dropout_p=0.1)
    batch = make_batch(model.cfg)
    torch.manual_seed(7)
    ours = losses_and_grads(model, lambda: pretraining_losses(model, **batch, cheap_dropout=False,
                                                              last_layer_at_read_positions=False,
                                                              fused_loss=fused_loss))
    torch.manual_seed(7)
    reference = losses_and_grads(model, lambda: plain(model, batch))
    assert_same(ours, reference)
    model.eval()
    assert abs(plain(model, batch)[0].item() - reference[0].item()) > 1e-3  # dropout really changed the loss


def test_the_last_layer_runs_only_at_the_read_positions():
    model = make_model(*DIMS[0])
    batch = make_batch(model.cfg, B=5, m=24, p=4)
    rows = {}
    for i, layer in enumerate(model.bert.layers):
        layer.ffn.register_forward_hook(lambda module, inputs, output, i=i: rows.__setitem__(i, inputs[0].shape[1]))
    pretraining_losses(model, **batch)
    assert rows == {0: 24, 1: 24, 2: 1 + 4}  # [CLS] and the p predicted positions
    pretraining_losses(model, **batch, last_layer_at_read_positions=False)
    assert rows == {0: 24, 1: 24, 2: 24}


def test_dropout_runs_in_training_mode_only():
    model = make_model(*DIMS[0], dropout_p=0.1)
    batch = make_batch(model.cfg)
    with torch.no_grad():
        first, second = pretraining_losses(model, **batch)[0], pretraining_losses(model, **batch)[0]
        model.eval()
        eval_losses = [pretraining_losses(model, **batch)[0] for _ in range(2)]
        eval_plain = plain(model, batch)[0]
    assert first != second and first != eval_losses[0]  # a fresh mask each call
    assert eval_losses[0] == eval_losses[1]
    torch.testing.assert_close(eval_losses[0], eval_plain, atol=1e-6, rtol=0)


def test_losses_are_float32_under_bf16_autocast():
    model = make_model(*DIMS[0])
    batch = make_batch(model.cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mlm, nsp = pretraining_losses(model, **batch)
    assert mlm.dtype == nsp.dtype == torch.float32
    reference = plain(model, batch)
    torch.testing.assert_close(mlm, reference[0], atol=0.05, rtol=0)  # bf16 matrix products: ~1e-2
    torch.testing.assert_close(nsp, reference[1], atol=0.05, rtol=0)


def test_bad_pred_positions_are_named_as_such():
    model = make_model(*DIMS[0])
    batch = make_batch(model.cfg, m=12)
    batch["pred_positions"] = batch["pred_positions"] + 12
    with pytest.raises(ValueError, match=r"pred_positions value \d+ .*0 to m - 1 = 11"):
        pretraining_losses(model, **batch)


# ---------------------------------------------------------------------------------------------------------
# the cheaper dropout mask: the statistics of dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_mask_keeps_1_minus_p_with_independent_lanes(p):
    torch.manual_seed(0)
    n = 4_000_000
    keep = dropout_keep_mask((n,), p).float()
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs(keep.mean().item() - (1 - p)) < 5 * sigma, keep.mean()
    # the two lanes of one 64-bit draw: both kept with probability (1 - p)^2, as if independent
    both = (1 - p) ** 2
    assert abs((keep[0::2] * keep[1::2]).mean().item() - both) < 5 * (both * (1 - both) / (n / 2)) ** 0.5
    # far apart too (a 32-bit lane repeating every k draws would show here)
    assert abs((keep[:-7] * keep[7:]).mean().item() - both) < 5 * (both * (1 - both) / (n - 7)) ** 0.5


def test_a_neighbour_s_lane_says_nothing():
    """P(keep | the other lane of the same draw was dropped) = 1 - p as well."""
    torch.manual_seed(1)
    p, n = 0.5, 2_000_000
    keep = dropout_keep_mask((n,), p)
    after_drop = keep[1::2][~keep[0::2]].float()
    assert abs(after_drop.mean().item() - (1 - p)) < 5 * (p * (1 - p) / len(after_drop)) ** 0.5


def test_dropout_scales_the_survivors_and_backward_uses_the_same_mask():
    X = torch.randn(64, 300, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(1)
    Y = dropout(X, 0.25)  # training=True by default
    kept = Y != 0
    assert 0.7 < kept.double().mean().item() < 0.8
    torch.testing.assert_close(Y[kept], X[kept] / 0.75)  # the survivors scaled by 1 / (1 - p)
    Y.sum().backward()
    torch.testing.assert_close(X.grad, kept.double() / 0.75)  # the gradient goes through the same mask
    torch.manual_seed(1)
    assert torch.equal(dropout(X, 0.25), Y)  # the seed fixes the mask
    assert sorted(set(dropout(torch.full((1000,), 0.5), 0.875).tolist())) == [0.0, 4.0]  # 0.5 / (1 - 0.875)


def test_dropout_is_the_identity_in_eval_mode_and_at_p_0_and_keeps_the_dtype():
    X = torch.randn(5, 7)
    assert dropout(X, 0.0) is X and dropout(X, 0.3, training=False) is X
    assert dropout(X.bfloat16(), 0.3).dtype == torch.bfloat16
    with pytest.raises(ValueError, match=r"dropout probability p must be a number in \[0.0, 1.0\), got 1.0"):
        dropout(X, 1.0)


def test_fast_attention_dropout_in_training_averages_to_the_eval_output():
    """Training mode with dropout 0.3: the explicit path with the cheap mask on the attention weights. Its mean
    over many masks is the eval-mode output: the dropout is unbiased and acts on the right tensor. And it does
    drop: single draws differ."""
    cfg = BertConfig(vocab_size=10, hidden_size=8, num_layers=1, num_heads=2, ffn_size=8, dropout=0.3)
    attention = MultiHeadAttention(cfg)
    X = torch.randn(2, 5, 8)
    valid_lens = torch.tensor([5, 3])
    expected = self_attention(attention.eval(), X, valid_lens, cheap_dropout=True)
    attention.train()
    torch.manual_seed(0)
    with torch.no_grad():
        draws = torch.stack([self_attention(attention, X, valid_lens, cheap_dropout=True) for _ in range(4000)])
    assert draws.std(0).min() > 0  # training mode really drops
    torch.testing.assert_close(draws.mean(0), expected, atol=5 * draws.std(0).max().item() / 4000 ** 0.5, rtol=0)


def test_cheap_dropout_is_used_in_training_and_torch_s_when_switched_off(monkeypatch):
    """Training mode, dropout 0.1: the default draws every mask with dropout_keep_mask; cheap_dropout=False
    never calls it (torch's masks)."""
    model = make_model(*DIMS[0], dropout_p=0.1)
    batch = make_batch(model.cfg)
    calls = []
    original = fastpath.dropout_keep_mask
    monkeypatch.setattr(fastpath, "dropout_keep_mask", lambda *args, **kw: calls.append(args[0]) or original(*args, **kw))
    pretraining_losses(model, **batch)
    layers = model.cfg.num_layers
    assert len(calls) == 1 + 3 * layers  # embeddings; per layer: attention weights and two residual branches
    calls.clear()
    pretraining_losses(model, **batch, cheap_dropout=False)
    assert calls == []


# ---------------------------------------------------------------------------------------------------------
# the fused vocabulary projection + cross-entropy


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
    grads_expected = torch.autograd.grad(expected, (H, W, b), retain_graph=True)
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
    torch.manual_seed(0)
    H, W, b = torch.randn(4, 8, requires_grad=True), torch.randn(30, 8, requires_grad=True), torch.randn(30)
    labels = torch.randint(0, 30, (1, 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = decoder_cross_entropy(H.bfloat16()[None], W, b, labels)
    assert loss.dtype == torch.float32
    loss.backward()
    assert H.grad.dtype == torch.float32 and W.grad.dtype == torch.float32
    expected = F.cross_entropy(F.linear(H.bfloat16().float(), W, b), labels[0])  # float32 from bf16 inputs
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=0)


def test_decoder_cross_entropy_refuses_a_second_backward():
    H, W, b = torch.randn(1, 4, 8, requires_grad=True), torch.randn(10, 8), torch.zeros(10)
    loss = decoder_cross_entropy(H, W, b, torch.zeros(1, 4, dtype=torch.long))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="ran twice"):
        loss.backward()
