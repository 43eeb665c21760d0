"""BERT, the finished model the notebooks build step by step.

One file, read top to bottom: config, input checks, dropout, embeddings, attention, encoder layer, the encoder
(`BertModel`, which owns the pooler as Hugging Face's does), the two pretraining heads, `BertForPreTraining`
(whose `losses` is what a train step runs: only what the two losses read) and the fused MLM loss.

Notation (the course's): B batch · m sequence length · n hidden size · h heads · d = n / h head size ·
f feed-forward size · V vocabulary size · p predicted positions per sequence · L layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class BertConfig:
    vocab_size: int = 30522  # V
    hidden_size: int = 256  # n
    num_layers: int = 4  # L
    num_heads: int = 4  # h
    ffn_size: int = 1024  # f
    max_len: int = 512  # longest sequence the position table covers
    type_vocab_size: int = 2  # segments A and B
    dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    activation: str = "gelu"  # "gelu" (exact erf, as BERT) or "relu" (the d2l chapter)
    embedding_norm: bool = True  # LayerNorm after summing the embeddings (BERT); d2l's version has none

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "ffn_size", "max_len",
                     "type_vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"BertConfig.{name} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads "
                             f"({self.num_heads}) so every head gets d = n / h features")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")

    @property
    def head_size(self) -> int:  # d
        return self.hidden_size // self.num_heads


# exact-erf GELU, as the original BERT and Hugging Face's "gelu" (not the tanh approximation)
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


# --------------------------------------------------------------------------------------------------------
# Input checks. They run before any computation, so bad input fails with a message naming the value and the
# allowed range instead of an index error deep inside an embedding. They are skipped while torch.export /
# torch.onnx traces the model: data-dependent checks cannot be exported.


def _exporting() -> bool:
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    return bool(is_exporting and is_exporting())


def _check_integer_tensor(name: str, value, shape_text: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor {shape_text}, got {type(value).__name__}")
    if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
        raise TypeError(f"{name} must hold integers (torch.long), got dtype {value.dtype}")


def _check_range(what: str, value, low: int, high: int, allowed: str) -> None:
    """Every entry of `value` must lie in [low, high]; name the first offender and the allowed range."""
    smallest, largest = int(value.min()), int(value.max())
    if smallest < low or largest > high:
        bad = smallest if smallest < low else largest
        raise ValueError(f"{what} {bad} is out of range: allowed {allowed}")


def check_inputs(cfg: BertConfig, tokens, segments=None, valid_lens=None) -> None:
    _check_integer_tensor("tokens", tokens, "of token ids [B, m]")
    if tokens.dim() != 2:
        raise ValueError(f"tokens must have shape [B, m], got {tuple(tokens.shape)}")
    B, m = tokens.shape
    if m < 1 or m > cfg.max_len:
        raise ValueError(f"sequence length m = {m} is out of range: allowed 1 to max_len = {cfg.max_len}")
    _check_range("token id", tokens, 0, cfg.vocab_size - 1, f"0 to V - 1 = {cfg.vocab_size - 1}")
    if segments is not None:
        _check_integer_tensor("segments", segments, "[B, m]")
        if segments.shape != tokens.shape:
            raise ValueError(f"segments shape {tuple(segments.shape)} does not match tokens shape "
                             f"{tuple(tokens.shape)}")
        _check_range("segment id", segments, 0, cfg.type_vocab_size - 1, f"0 to {cfg.type_vocab_size - 1}")
    if valid_lens is not None:
        _check_integer_tensor("valid_lens", valid_lens, "[B]")
        if valid_lens.shape != (B,):
            raise ValueError(f"valid_lens must have shape [B] = ({B},), got {tuple(valid_lens.shape)}")
        _check_range("valid_lens value", valid_lens, 1, m, f"1 to m = {m}")


def check_pred_positions(pred_positions, B: int, m: int, name: str = "pred_positions") -> None:
    _check_integer_tensor(name, pred_positions, "[B, p]")
    if pred_positions.dim() != 2 or pred_positions.shape[0] != B:
        raise ValueError(f"{name} must have shape [B, p] with B = {B}, got {tuple(pred_positions.shape)}")
    if pred_positions.numel():
        _check_range(f"{name} value", pred_positions, 0, m - 1, f"0 to m - 1 = {m - 1}")


# --------------------------------------------------------------------------------------------------------
# Dropout, with a cheaper random mask on the CPU


def dropout_keep_mask(shape, p: float, device=None, generator=None):
    """A boolean mask of `shape`: each entry independently True (keep) with probability 1 - p.

    One 64-bit random draw holds two independent 32-bit numbers; an entry is kept when its 32-bit number is at
    least p * 2^32. So p is honoured to 2^-32 (torch's own CPU dropout draws a float: 2^-24).
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    n = math.prod(shape)
    words = torch.empty((n + 1) // 2, dtype=torch.int64, device=device)  # 2 lanes of 32 bits per word
    words.random_(-2 ** 63, None, generator=generator)  # uniform over all 2^64 values
    lanes = words.view(torch.int32)[:n].view(shape)  # each uniform over [-2^31, 2^31)
    return lanes >= round(p * 2 ** 32) - 2 ** 31  # P(keep) = 1 - p


def dropout(X, p: float, training: bool = True):
    """Inverted dropout: zero each entry of X with probability p, scale the rest by 1 / (1 - p).

    The same distribution as F.dropout, at about half the cost on the CPU (see `Dropout`).
    """
    if not training or p == 0.0:
        return X
    if X.device.type != "cpu":
        return F.dropout(X, p, training=True)  # a GPU has a fused dropout kernel already
    keep = dropout_keep_mask(X.shape, p, device=X.device)
    scale = torch.full((), 1.0 / (1.0 - p), dtype=X.dtype)  # a 0-dim tensor in X's dtype (bf16 stays bf16)
    return X * torch.where(keep, scale, torch.zeros((), dtype=X.dtype))  # backward multiplies by the same


class Dropout(nn.Dropout):
    """nn.Dropout with a cheaper mask on the CPU: the same distribution, about twice as fast.

    Why: torch's CPU dropout draws a 64-bit random number per element (`bernoulli_`). In a small BERT's train
    step that was the largest cost after the matrix products (13 dropouts over ~17 M numbers at B = 32,
    m = 128, n = 256: 15 % of the step). Two elements per 64-bit draw halve the random-number work; measured
    with benchmarks/pretrain_step.py. The masks differ from nn.Dropout's for the same seed, not their
    statistics (tests/test_model.py checks rate, scale and independence).
    """

    def forward(self, X):
        return dropout(X, self.p, self.training)


# --------------------------------------------------------------------------------------------------------
# Embeddings


class BertEmbeddings(nn.Module):
    """token + segment + learned position embeddings, then LayerNorm and dropout."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.hidden_size)  # [V, n]
        self.segment_embedding = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)  # [2, n]
        self.position_embedding = nn.Embedding(cfg.max_len, cfg.hidden_size)  # [max_len, n]
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps) if cfg.embedding_norm else nn.Identity()
        self.dropout = Dropout(cfg.dropout)

    def forward(self, tokens, segments):
        m = tokens.shape[1]
        positions = torch.arange(m, device=tokens.device)  # [m]
        X = self.token_embedding(tokens) + self.segment_embedding(segments)  # [B, m, n]
        X = X + self.position_embedding(positions)  # [B, m, n] + [m, n] broadcasts over the batch
        return self.dropout(self.norm(X))  # [B, m, n]


# --------------------------------------------------------------------------------------------------------
# Attention


def padding_mask(valid_lens, m: int):
    """valid_lens [B] -> boolean mask [B, 1, 1, m]: True where a key is a real token (may be attended)."""
    if valid_lens is None:
        return None
    keys = torch.arange(m, device=valid_lens.device)  # [m]
    return (keys[None, :] < valid_lens[:, None])[:, None, None, :]  # [B, 1, 1, m], broadcast over h, queries


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product self-attention with a key padding mask from `valid_lens`.

    Two paths compute the same thing: `F.scaled_dot_product_attention` (fused, fast) by default, and the
    explicit softmax(QK^T / sqrt(d)) V when the attention weights are wanted for plotting, and when training
    with dropout on the CPU: there SDPA has no fused kernel with dropout and runs the same explicit
    computation inside, with torch's slower dropout mask (see `Dropout`).
    """

    def __init__(self, cfg: BertConfig):
        super().__init__()
        n = cfg.hidden_size
        self.num_heads = cfg.num_heads
        self.W_q = nn.Linear(n, n)
        self.W_k = nn.Linear(n, n)
        self.W_v = nn.Linear(n, n)
        self.W_o = nn.Linear(n, n)
        self.dropout_p = cfg.dropout  # dropout on the attention weights, as in BERT

    def split_heads(self, X):  # [B, m, n] -> [B, h, m, d]
        B, m, n = X.shape
        return X.view(B, m, self.num_heads, n // self.num_heads).transpose(1, 2)

    @staticmethod
    def merge_heads(X):  # [B, h, m, d] -> [B, m, n]
        B, h, m, d = X.shape
        return X.transpose(1, 2).reshape(B, m, h * d)

    def forward(self, X, valid_lens=None, return_attention: bool = False, query_positions=None):
        """X [B, m, n] -> ([B, q, n], weights [B, h, q, m] or None). Every position queries (q = m), or only
        `query_positions` [B, q] when given: the keys and values still come from all m positions."""
        queries = X if query_positions is None else gather_positions(X, query_positions)  # [B, q, n]
        Q = self.split_heads(self.W_q(queries))  # [B, h, q, d]
        K, V = self.split_heads(self.W_k(X)), self.split_heads(self.W_v(X))  # each [B, h, m, d]
        mask = padding_mask(valid_lens, X.shape[1])  # [B, 1, 1, m] or None
        dropout_p = self.dropout_p if self.training else 0.0
        if return_attention or (dropout_p > 0.0 and X.device.type == "cpu"):
            out, weights = attention_with_weights(Q, K, V, mask, dropout_p)  # [B, h, q, d], [B, h, q, m]
            weights = weights if return_attention else None
        else:
            out = F.scaled_dot_product_attention(Q, K, V, attn_mask=mask, dropout_p=dropout_p)  # [B, h, q, d]
            weights = None
        return self.W_o(self.merge_heads(out)), weights  # [B, q, n], weights or None


def attention_with_weights(Q, K, V, mask=None, dropout_p: float = 0.0):
    """The explicit path: Q [B, h, q, d], K, V [B, h, m, d], mask [B, 1, 1, m] -> (out [B, h, q, d], weights
    [B, h, q, m]). In self-attention every position queries: q = m."""
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])  # [B, h, q, m]
    if mask is not None:
        scores.masked_fill_(~mask, float("-inf"))  # padded keys get zero weight after softmax (in place: ours)
    weights = scores.softmax(dim=-1)  # [B, h, q, m], each row sums to 1 over the real keys
    return dropout(weights, dropout_p) @ V, weights  # [B, h, q, d]; dropout zeroes some weights in training


# --------------------------------------------------------------------------------------------------------
# Encoder


class PositionWiseFFN(nn.Module):
    """dense (n -> f), activation, dense (f -> n), applied to every position alike."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense1 = nn.Linear(cfg.hidden_size, cfg.ffn_size)
        self.activation = ACTIVATIONS[cfg.activation]()
        self.dense2 = nn.Linear(cfg.ffn_size, cfg.hidden_size)

    def forward(self, X):  # [B, m, n]
        return self.dense2(self.activation(self.dense1(X)))  # [B, m, f] -> [B, m, n]


class EncoderLayer(nn.Module):
    """Post-LN Transformer encoder layer, as BERT: X = LN(X + Attn(X)); X = LN(X + FFN(X))."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attention = MultiHeadAttention(cfg)
        self.norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ffn = PositionWiseFFN(cfg)
        self.norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.dropout)

    def forward(self, X, valid_lens=None, return_attention: bool = False, positions=None):
        """X [B, m, n] -> [B, m, n], or [B, q, n] at `positions` [B, q] only (attention still reads all m)."""
        Y, weights = self.attention(X, valid_lens, return_attention, positions)  # [B, q, n]
        if positions is not None:
            X = gather_positions(X, positions)  # [B, q, n]: the residual stream where the output is wanted
        X = self.norm1(X + self.dropout(Y))  # [B, q, n]
        X = self.norm2(X + self.dropout(self.ffn(X)))  # [B, q, n]
        return X, weights


class BertModel(nn.Module):
    """The BERT encoder: embeddings, L encoder layers, and the pooler (dense + tanh on the <cls> vector)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        self.embeddings = BertEmbeddings(cfg)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_layers))
        self.pooler = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.apply(init_bert_weights)

    def forward(self, tokens, segments=None, valid_lens=None, return_attention: bool = False,
                output_positions=None):
        """tokens, segments [B, m], valid_lens [B] -> X [B, m, n] (and the L attention maps [B, h, m, m]).

        output_positions [B, q] (optional): only these positions of the output are wanted, so the last layer
        computes only them (its keys and values still come from all m positions) and X is [B, q, n]. The
        pretraining losses read q = 1 + p positions (<cls> and the predicted ones): see
        `BertForPreTraining.losses`.
        """
        if not _exporting():
            check_inputs(self.cfg, tokens, segments, valid_lens)
            if output_positions is not None:
                check_pred_positions(output_positions, *tokens.shape, name="output_positions")
        if segments is None:
            segments = torch.zeros_like(tokens)  # a single sentence is all segment A
        X = self.embeddings(tokens, segments)  # [B, m, n]
        attentions = []
        for i, layer in enumerate(self.layers):
            positions = output_positions if i == len(self.layers) - 1 else None  # every position until the last
            X, weights = layer(X, valid_lens, return_attention, positions)  # [B, m, n], [B, h, m, m] or None
            attentions.append(weights)
        return (X, attentions) if return_attention else X  # [B, m or q, n], L x [B, h, m or q, m]

    def pool(self, X):
        """X [B, m, n] -> [B, n]: the pooled <cls> vector the NSP and classification heads read."""
        return torch.tanh(self.pooler(X[:, 0]))  # [B, n]


def init_bert_weights(module: nn.Module) -> None:
    """BERT's initialisation: weights ~ normal(0, 0.02), biases 0, LayerNorm scale 1 and shift 0."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------------------------------------
# Pretraining heads


def gather_positions(X, pred_positions):
    """X [B, m, n], pred_positions [B, p] -> [B, p, n]: the hidden vectors at the predicted positions.

    `X[batch_idx, P]` with batch_idx [B, 1] broadcast against P [B, p] picks row P[i, j] of sequence i.
    """
    batch_idx = torch.arange(X.shape[0], device=X.device)[:, None]  # [B, 1]
    return X[batch_idx, pred_positions]  # [B, p, n]


class MaskLM(nn.Module):
    """Masked-language-model head on the gathered positions only: dense + activation + LayerNorm, then a
    decoder whose weight is the token embedding (tied, as in the original BERT) plus its own bias.

    Only the p predicted positions go through the vocabulary projection: [B, p, n] @ [n, V] instead of
    [B, m, n] @ [n, V], which is most of a small BERT's training step when V = 30,522.
    """

    def __init__(self, cfg: BertConfig, token_embedding: nn.Embedding):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.activation = ACTIVATIONS[cfg.activation]()
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.decoder_weight = token_embedding.weight  # [V, n], the same Parameter: tied, not copied
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))  # [V]

    def forward(self, X, pred_positions):
        """X [B, m, n], pred_positions [B, p] -> logits [B, p, V]."""
        return self.decode(gather_positions(X, pred_positions))  # [B, p, n] -> [B, p, V]

    def transform(self, H):  # [B, p, n] -> [B, p, n]: dense, activation, LayerNorm
        return self.norm(self.activation(self.dense(H)))

    def decode(self, H):
        """H [B, p, n], the hidden vectors already gathered -> logits [B, p, V]."""
        return F.linear(self.transform(H), self.decoder_weight, self.bias)  # [B, p, V]

    def loss(self, H, mlm_labels, mlm_weights):
        """H [B, p, n] already gathered -> the weighted MLM loss, the logits never stored (decoder_cross_entropy)."""
        return decoder_cross_entropy(self.transform(H), self.decoder_weight, self.bias, mlm_labels, mlm_weights)


class NextSentencePred(nn.Module):
    """Two-way classifier on the pooled <cls> vector: 0 = IsNext, 1 = NotNext (Hugging Face's labels)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.output = nn.Linear(cfg.hidden_size, 2)

    def forward(self, pooled):  # [B, n]
        return self.output(pooled)  # [B, 2]


class BertForPreTraining(nn.Module):
    """BertModel + MaskLM + NextSentencePred: the model of the pretraining chapters."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        self.bert = BertModel(cfg)
        self.mlm = MaskLM(cfg, self.bert.embeddings.token_embedding)
        self.nsp = NextSentencePred(cfg)
        self.mlm.apply(init_bert_weights)
        self.nsp.apply(init_bert_weights)

    def forward(self, tokens, segments=None, valid_lens=None, pred_positions=None):
        X = self.bert(tokens, segments, valid_lens)  # [B, m, n]
        mlm_logits = None
        if pred_positions is not None:
            if not _exporting():
                check_pred_positions(pred_positions, *tokens.shape)
            mlm_logits = self.mlm(X, pred_positions)  # [B, p, V]
        nsp_logits = self.nsp(self.bert.pool(X))  # [B, 2]
        return X, mlm_logits, nsp_logits

    def losses(self, tokens, segments, valid_lens, pred_positions, mlm_labels, mlm_weights, nsp_labels):
        """The two pretraining losses (MLM, NSP), computing only what they read. What a train step runs.

        The heads read the last layer's output at 1 + p positions per sequence: <cls> (the pooler, NSP) and the
        p predicted ones (MLM). So the last layer computes only those (`BertModel(output_positions=...)`),
        as the MLM head already decodes only the p gathered positions (chapter 05); its keys and values still
        come from all m positions. The MLM loss is `decoder_cross_entropy`. Same values and gradients as
        `forward` + `bertnb.train.mlm_loss` + `nsp_loss` (tests/test_model.py); faster
        (benchmarks/pretrain_step.py).
        """
        if not _exporting():  # name pred_positions in the error, not the output_positions built from it
            check_inputs(self.cfg, tokens, segments, valid_lens)
            check_pred_positions(pred_positions, *tokens.shape)
        B = tokens.shape[0]
        cls = torch.zeros(B, 1, dtype=pred_positions.dtype, device=pred_positions.device)  # [B, 1]: <cls> is at 0
        read = torch.cat([cls, pred_positions], 1)  # [B, 1 + p]: the positions the two losses read
        H = self.bert(tokens, segments, valid_lens, output_positions=read)  # [B, 1 + p, n]
        mlm = self.mlm.loss(H[:, 1:], mlm_labels, mlm_weights)  # the p predicted positions
        nsp_logits = self.nsp(self.bert.pool(H))  # [B, 2]: pool reads H[:, 0], the <cls> vector
        return mlm, F.cross_entropy(nsp_logits.float(), nsp_labels)


# --------------------------------------------------------------------------------------------------------
# The MLM loss with the vocabulary projection fused in: one [V, R] tensor where F.linear + F.cross_entropy
# make five [R, V] ones


class _DecoderCrossEntropy(torch.autograd.Function):
    """Weighted cross-entropy of the logits H W^T + b, computed in one [V, R] buffer.

    Why (speed): the gradient with respect to the logits is softmax(logits) - onehot(label). F.linear followed by
    F.cross_entropy gets there through five [R, V] tensors (the logits, the log-probabilities, a zero-filled
    gradient for them, the gradient of log_softmax, the gradient of the logits). Here one buffer holds the
    logits, then exp(logit - max) in place, then the gradient in place. With R = B * p = 640 and V = 30,522 each
    is 78 MB, and on a small CPU writing that much fresh memory costs about as much as the arithmetic.
    The buffer is the transposed logits, [V, R] = W @ H^T: with V much larger than R, the three matrix products
    (this one and the two of backward) ran about 1.3x faster in that layout than in [R, V] (MKL, 2-core AMD
    EPYC). Measured with benchmarks/pretrain_step.py (the ablation row) and tests/test_model.py (the values).
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)  # float32 even under bf16 autocast
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
    """MLM loss straight from the head's hidden vectors: H [B, p, n], the decoder weight [V, n] and bias [V],
    mlm_labels [B, p] token ids in [0, V), mlm_weights [B, p] (1 = a real prediction, 0 = a padded slot;
    None = all 1).

    The weighted mean  sum(w * CE) / max(sum(w), 1) of the logits H weight^T + bias: the same value and
    gradients as F.linear, then F.cross_entropy with reduction="none", weighted and averaged (that is
    `bertnb.train.mlm_loss`), but faster (see _DecoderCrossEntropy). Backward runs once.
    """
    n = H.shape[-1]
    labels = mlm_labels.reshape(-1)  # [R]
    if mlm_weights is None:
        mlm_weights = torch.ones_like(labels, dtype=torch.float32)
    weights = mlm_weights.reshape(-1).float()  # [R]
    weights = weights / weights.sum().clamp(min=1.0)  # padded predictions count neither above nor below
    return _DecoderCrossEntropy.apply(H.reshape(-1, n), weight, bias, labels, weights)


def count_parameters(model: nn.Module) -> int:
    """Parameters counted once each (the tied decoder weight is the token embedding)."""
    return sum(p.numel() for p in model.parameters())
