"""Going further: the pretraining losses of a plain `BertForPreTraining`, computed faster.

`pretraining_losses` returns the same two numbers as `bertnb.losses.pretraining_loss` (the chapters' forward
pass and cross-entropies), with the same gradients for every weight, and is what `bertnb.train.train_step`
and benchmarks/pretrain_step.py run. It reads the model's own weights and modules; `bertnb.model` knows
nothing of it. Three changes, each one switch of `pretraining_losses` (the benchmark times each):

1. A cheaper dropout mask on the CPU: two 32-bit random numbers from each 64-bit draw.
2. The last encoder layer only where the losses read: `[CLS]` (NSP) and the p predicted positions (MLM).
   Its keys and values still come from all m positions; only its queries, FFN and LayerNorms shrink.
3. The vocabulary projection fused with the MLM cross-entropy: one [V, B·p] buffer instead of five [B·p, V].

Why each helps, and by how much, is measured in benchmarks/README.md. Read top to bottom: dropout,
the encoder, the fused loss, the entry point.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bertnb.losses import mlm_loss, nsp_loss
from bertnb.model import attention_with_weights, gather_positions, padding_mask
from bertnb.validation import check_float, check_model_inputs, check_pred_positions, exporting


# --------------------------------------------------------------------------------------------------------
# 1. Dropout with a cheaper random mask


def dropout_keep_mask(shape, p: float, device=None, generator=None):
    """A boolean mask of `shape`: each entry independently True (keep) with probability 1 - p.

    One 64-bit random draw holds two independent 32-bit numbers; an entry is kept when its 32-bit number is
    at least p * 2^32, so p is honoured to 2^-32 (torch's CPU dropout draws a float: 2^-24). Going further,
    chapter 07.
    """
    check_float("dropout probability p", p, low=0.0, high=1.0, high_open=True)
    n = math.prod(shape)
    words = torch.empty((n + 1) // 2, dtype=torch.int64, device=device)  # 2 lanes of 32 bits per word
    words.random_(-2 ** 63, None, generator=generator)  # uniform over all 2^64 values
    lanes = words.view(torch.int32)[:n].view(shape)  # each uniform over [-2^31, 2^31)
    return lanes >= round(p * 2 ** 32) - 2 ** 31  # P(keep) = 1 - p


def dropout(X, p: float, training: bool = True):
    """Inverted dropout with `dropout_keep_mask`: zero each entry with probability p, scale the rest by
    1 / (1 - p). The same distribution as F.dropout; on a GPU it is F.dropout (which has a fused kernel).
    Going further, chapter 07."""
    if not training or p == 0.0:
        return X
    if X.device.type != "cpu":
        return F.dropout(X, p, training=True)
    keep = dropout_keep_mask(X.shape, p, device=X.device)
    scale = torch.full((), 1.0 / (1.0 - p), dtype=X.dtype)  # a 0-dim tensor in X's dtype (bf16 stays bf16)
    return X * torch.where(keep, scale, torch.zeros((), dtype=X.dtype))  # backward multiplies by the same


def apply_dropout(X, module, cheap: bool):
    """The model's nn.Dropout `module` (its p, its train/eval mode) applied to X, with our mask if `cheap`.
    Going further, chapter 07."""
    if cheap:
        return dropout(X, module.p, module.training)
    return module(X)


# --------------------------------------------------------------------------------------------------------
# 2. The encoder, the last layer only at the positions the losses read


def self_attention(attention, X, valid_lens, cheap_dropout: bool, query_positions=None):
    """`attention` (a model.MultiHeadAttention) run on X [B, m, n] -> [B, q, n], its queries only at
    `query_positions` [B, q] (all m when None); keys and values from all m positions.

    With dropout on the CPU, SDPA has no fused kernel and runs softmax(QK^T/sqrt(d))V written out inside,
    with torch's mask; we run the same computation with `attention_with_weights` and our mask. Going further,
    chapter 07.
    """
    queries = X if query_positions is None else gather_positions(X, query_positions)  # [B, q, n]
    Q = attention.split_heads(attention.W_q(queries))  # [B, h, q, d]
    K, V = attention.split_heads(attention.W_k(X)), attention.split_heads(attention.W_v(X))  # [B, h, m, d]
    mask = padding_mask(valid_lens, X.shape[1])  # [B, 1, 1, m] or None
    drop = attention.dropout
    dropout_p = drop.p if drop.training else 0.0
    if dropout_p > 0.0 and X.device.type == "cpu":
        out, _ = attention_with_weights(Q, K, V, mask, lambda W: apply_dropout(W, drop, cheap_dropout))
    else:
        out = F.scaled_dot_product_attention(Q, K, V, attn_mask=mask, dropout_p=dropout_p)  # [B, h, q, d]
    return attention.W_o(attention.merge_heads(out))  # [B, q, n]


def encoder_layer(layer, X, valid_lens, cheap_dropout: bool, query_positions=None):
    """`layer` (a model.EncoderLayer) on X [B, m, n] -> [B, q, n], computed only at `query_positions`.
    Going further, chapter 07."""
    Y = self_attention(layer.attention, X, valid_lens, cheap_dropout, query_positions)  # [B, q, n]
    if query_positions is not None:
        X = gather_positions(X, query_positions)  # [B, q, n]: the residual stream where the output is wanted
    X = layer.norm1(X + apply_dropout(Y, layer.dropout, cheap_dropout))  # [B, q, n]
    return layer.norm2(X + apply_dropout(layer.ffn(X), layer.dropout, cheap_dropout))  # [B, q, n]


def encode_at(bert, tokens, segments, valid_lens, read_positions, cheap_dropout: bool = True,
              last_layer_at_read_positions: bool = True):
    """`bert` (a model.BertModel) -> its output at read_positions [B, q] only: [B, q, n].

    Every layer but the last runs at all m positions (the last one's keys and values need them all); the last
    runs only at read_positions, unless `last_layer_at_read_positions` is False (then all m, gathered after).
    Going further, chapter 07.
    """
    embeddings = bert.embeddings
    m = tokens.shape[1]
    X = embeddings.token_embedding(tokens) + embeddings.segment_embedding(segments)  # [B, m, n]
    X = X + embeddings.position_embedding(torch.arange(m, device=tokens.device))  # [B, m, n]
    X = apply_dropout(embeddings.norm(X), embeddings.dropout, cheap_dropout)  # [B, m, n]
    *before, last = bert.layers
    for layer in before:
        X = encoder_layer(layer, X, valid_lens, cheap_dropout)  # [B, m, n]
    if last_layer_at_read_positions:
        return encoder_layer(last, X, valid_lens, cheap_dropout, read_positions)  # [B, q, n]
    return gather_positions(encoder_layer(last, X, valid_lens, cheap_dropout), read_positions)  # [B, q, n]


# --------------------------------------------------------------------------------------------------------
# 3. The MLM loss with the vocabulary projection fused in


class _DecoderCrossEntropy(torch.autograd.Function):
    """Weighted cross-entropy of the logits H W^T + b, computed in one [V, R] buffer (R = B * p).

    The gradient with respect to the logits is softmax(logits) - onehot(label). Here one buffer holds the
    logits, then exp(logit - max) in place, then that gradient in place. The buffer is the transposed logits,
    [V, R] = W @ H^T (faster for V >> R; benchmarks/README.md). Inputs run in float32 even under autocast.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # float32 even under bf16 autocast
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)
    def forward(ctx, H, W, b, labels, weights):  # [R, n], [V, n], [V], [R], [R] (weights already normalised)
        logits_t = torch.addmm(b[:, None], W, H.t())  # [V, R]: column r holds the V logits of prediction r
        picked = logits_t.gather(0, labels[None, :]).squeeze(0)  # [R]: the logit of the right token
        top = logits_t.amax(0, keepdim=True)  # [1, R]: subtracted first, so exp cannot overflow
        exp = logits_t.sub_(top).exp_()  # [V, R]: exp(logit - top), in the logits' buffer
        total = exp.sum(0)  # [R]
        log_z = top.squeeze(0) + total.log()  # [R]: log of the softmax's denominator
        ctx.save_for_backward(H, W, labels, weights, total)
        ctx.exp = exp  # ours alone (not an input or output), so backward may overwrite it
        return ((log_z - picked) * weights).sum()  # sum of w * (-log softmax at the label)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    @torch.amp.custom_bwd(device_type="cpu")
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        H, W, labels, weights, total = ctx.saved_tensors
        if ctx.exp is None:
            raise RuntimeError("decoder_cross_entropy's backward ran twice: its buffer is reused, so retain_graph "
                               "cannot be used through it")
        scale = grad_loss * weights  # [R]
        grad_t, ctx.exp = ctx.exp.mul_((scale / total)[None, :]), None  # [V, R]: scale * softmax, in place
        grad_t[labels, torch.arange(len(labels), device=grad_t.device)] -= scale  # scale * (softmax - onehot)
        grad_H = grad_t.t() @ W if ctx.needs_input_grad[0] else None  # [R, V] @ [V, n] -> [R, n]
        grad_W = grad_t @ H if ctx.needs_input_grad[1] else None  # [V, R] @ [R, n] -> [V, n]
        grad_b = grad_t.sum(1) if ctx.needs_input_grad[2] else None  # [V]
        return grad_H, grad_W, grad_b, None, None


def decoder_cross_entropy(H, weight, bias, mlm_labels, mlm_weights=None):
    """The MLM loss straight from the head's hidden vectors H [B, p, n], the decoder weight [V, n] and bias
    [V]; mlm_labels [B, p] in [0, V), mlm_weights [B, p] (1 = a real prediction, 0 = a padded slot; None = all 1).

    The same value and gradients as `bertnb.losses.mlm_loss(F.linear(H, weight, bias), ...)`, the weighted
    mean sum(w * CE) / max(sum(w), 1), without storing the logits. Its backward runs once (no retain_graph).
    Going further, chapter 07.
    """
    n = H.shape[-1]
    labels = mlm_labels.reshape(-1)  # [R]
    if mlm_weights is None:
        mlm_weights = torch.ones_like(labels, dtype=torch.float32)
    weights = mlm_weights.reshape(-1).float()  # [R]
    weights = weights / weights.sum().clamp(min=1.0)  # padded predictions count neither above nor below
    return _DecoderCrossEntropy.apply(H.reshape(-1, n), weight, bias, labels, weights)


# --------------------------------------------------------------------------------------------------------
# The entry point


def pretraining_losses(model, tokens, segments, valid_lens, pred_positions, mlm_labels, mlm_weights, nsp_labels,
                       *, cheap_dropout: bool = True, last_layer_at_read_positions: bool = True,
                       fused_loss: bool = True):
    """(MLM loss, NSP loss) of `model`, a plain model.BertForPreTraining, on one batch: scalar tensors with
    the values and gradients of `bertnb.losses.pretraining_loss`, computed faster (see the module's docstring).

    Dropout runs where the model is in training mode. The keyword switches turn each speed-up off, one at a
    time, for the benchmark's ablation rows. Going further, chapter 07 (what `bertnb.train.train_step` runs).
    """
    if not exporting():  # the same checks as the model's forward, with the same names
        check_model_inputs(model.cfg, tokens, segments, valid_lens)
        check_pred_positions(pred_positions, tokens)
    if segments is None:
        segments = torch.zeros_like(tokens)  # a single sentence is all segment A
    cls = torch.zeros_like(pred_positions[:, :1])  # [B, 1]: <cls> is at position 0
    read_positions = torch.cat([cls, pred_positions], 1)  # [B, 1 + p]: what the two losses read
    H = encode_at(model.bert, tokens, segments, valid_lens, read_positions, cheap_dropout,
                  last_layer_at_read_positions)  # [B, 1 + p, n]
    nsp = nsp_loss(model.nsp(model.bert.pool(H)).float(), nsp_labels)  # pool reads H[:, 0], the <cls> vector
    mlm_head = model.mlm
    predicted = mlm_head.transform(H[:, 1:])  # [B, p, n]
    if fused_loss:
        mlm = decoder_cross_entropy(predicted, mlm_head.decoder_weight, mlm_head.bias, mlm_labels, mlm_weights)
    else:
        logits = F.linear(predicted, mlm_head.decoder_weight, mlm_head.bias)  # [B, p, V]
        mlm = mlm_loss(logits.float(), mlm_labels, mlm_weights)
    return mlm, nsp
