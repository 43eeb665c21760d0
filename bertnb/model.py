"""BERT, the finished model the notebooks build step by step.

One file, read top to bottom: config, embeddings, attention (SDPA, with the explicit path right under it),
encoder layer, the encoder `BertModel` (which owns the pooler, as Hugging Face's does), the two pretraining
heads, `BertForPreTraining`. This is the plain model; `bertnb.fastpath` trains the same weights faster, and
`bertnb.validation` holds the input checks the model calls.

Notation (the course's): B batch · m sequence length · n hidden size · h heads · d = n / h head size ·
f feed-forward size · V vocabulary size · p predicted positions per sequence · L layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bertnb.validation import (check_choice, check_float, check_int, check_model_inputs, check_pred_positions,
                               exporting)

# exact-erf GELU, as the original BERT and Hugging Face's "gelu" (not the tanh approximation)
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


@dataclass
class BertConfig:
    """The model's sizes and choices. Built in chapter 02 (and grown through chapter 04)."""

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
            check_int(f"BertConfig.{name}", getattr(self, name), low=1)
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads "
                             f"({self.num_heads}) so every head gets d = n / h features")
        check_float("BertConfig.dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        check_float("BertConfig.layer_norm_eps", self.layer_norm_eps, low=0.0, low_open=True)
        check_choice("BertConfig.activation", self.activation, tuple(ACTIVATIONS))
        check_choice("BertConfig.embedding_norm", self.embedding_norm, (True, False))

    @property
    def head_size(self) -> int:  # d
        return self.hidden_size // self.num_heads


# --------------------------------------------------------------------------------------------------------
# Embeddings


class BertEmbeddings(nn.Module):
    """token + segment + learned position embeddings, then LayerNorm and dropout. Built in chapter 02."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.hidden_size)  # [V, n]
        self.segment_embedding = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)  # [2, n]
        self.position_embedding = nn.Embedding(cfg.max_len, cfg.hidden_size)  # [max_len, n]
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps) if cfg.embedding_norm else nn.Identity()
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, tokens, segments):
        m = tokens.shape[1]
        positions = torch.arange(m, device=tokens.device)  # [m]
        X = self.token_embedding(tokens) + self.segment_embedding(segments)  # [B, m, n]
        X = X + self.position_embedding(positions)  # [B, m, n] + [m, n] broadcasts over the batch
        return self.dropout(self.norm(X))  # [B, m, n]


def sinusoidal_table(max_len: int, n: int, dtype=torch.float32) -> torch.Tensor:
    """The Transformer's fixed position table (Vaswani et al., 2017), [max_len, n], n even, computed in float64:
    PE[i, 2k] = sin(i / 10000^(2k/n)), PE[i, 2k+1] = cos(i / 10000^(2k/n)). BERT learns its table instead;
    pretraining can start it here (`bertnb.pretrain.init_positions_sinusoidal`). Built in chapter 02."""
    check_int("n", n, low=2)
    if n % 2:
        raise ValueError(f"n must be even (a sine and a cosine per frequency), got {n}")
    position = torch.arange(max_len, dtype=torch.float64)[:, None]  # [max_len, 1]
    frequency = 10000.0 ** (-torch.arange(0, n, 2, dtype=torch.float64) / n)  # [n / 2]
    table = torch.zeros(max_len, n, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)  # even features
    table[:, 1::2] = torch.cos(position * frequency)  # odd features
    return table.to(dtype)


# --------------------------------------------------------------------------------------------------------
# Attention


def padding_mask(valid_lens, m: int):
    """valid_lens [B] -> boolean mask [B, 1, 1, m]: True where a key is a real token. Built in chapter 03."""
    if valid_lens is None:
        return None
    keys = torch.arange(m, device=valid_lens.device)  # [m]
    return (keys[None, :] < valid_lens[:, None])[:, None, None, :]  # [B, 1, 1, m], broadcast over h, queries


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product self-attention with a key padding mask from `valid_lens`. Built in
    chapter 03.

    `F.scaled_dot_product_attention` (fused) computes it; when the weights are wanted for plotting,
    `attention_with_weights` computes the same thing written out.
    """

    def __init__(self, cfg: BertConfig):
        super().__init__()
        n = cfg.hidden_size
        self.num_heads = cfg.num_heads
        self.W_q = nn.Linear(n, n)
        self.W_k = nn.Linear(n, n)
        self.W_v = nn.Linear(n, n)
        self.W_o = nn.Linear(n, n)
        self.dropout = nn.Dropout(cfg.dropout)  # on the attention weights, as in BERT

    def split_heads(self, X):  # [B, m, n] -> [B, h, m, d]
        B, m, n = X.shape
        return X.view(B, m, self.num_heads, n // self.num_heads).transpose(1, 2)

    @staticmethod
    def merge_heads(X):  # [B, h, m, d] -> [B, m, n]
        B, h, m, d = X.shape
        return X.transpose(1, 2).reshape(B, m, h * d)

    def forward(self, X, valid_lens=None, return_attention: bool = False):
        """X [B, m, n] -> (Y [B, m, n], weights [B, h, m, m] when return_attention, else None)."""
        Q, K, V = self.split_heads(self.W_q(X)), self.split_heads(self.W_k(X)), self.split_heads(self.W_v(X))
        mask = padding_mask(valid_lens, X.shape[1])  # [B, 1, 1, m] or None
        if return_attention:
            out, weights = attention_with_weights(Q, K, V, mask, self.dropout)  # [B, h, m, d], [B, h, m, m]
        else:
            dropout_p = self.dropout.p if self.training else 0.0
            out = F.scaled_dot_product_attention(Q, K, V, attn_mask=mask, dropout_p=dropout_p)  # [B, h, m, d]
            weights = None
        return self.W_o(self.merge_heads(out)), weights  # [B, m, n]


def attention_with_weights(Q, K, V, mask=None, dropout=None):
    """The explicit path, softmax(Q K^T / sqrt(d)) V: Q [B, h, q, d], K, V [B, h, m, d], mask [B, 1, 1, m] ->
    (out [B, h, q, d], weights [B, h, q, m]). `dropout` (a module or function) acts on the weights that
    multiply V; the weights returned are before it. Built in chapter 03."""
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])  # [B, h, q, m]
    if mask is not None:
        scores.masked_fill_(~mask, float("-inf"))  # padded keys get zero weight after softmax (in place: ours)
    weights = scores.softmax(dim=-1)  # [B, h, q, m], each row sums to 1 over the real keys
    dropped = weights if dropout is None else dropout(weights)  # training zeroes some weights
    return dropped @ V, weights  # [B, h, q, d]


# --------------------------------------------------------------------------------------------------------
# Encoder


class PositionWiseFFN(nn.Module):
    """dense (n -> f), activation, dense (f -> n), the same at every position. Built in chapter 04."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense1 = nn.Linear(cfg.hidden_size, cfg.ffn_size)
        self.activation = ACTIVATIONS[cfg.activation]()
        self.dense2 = nn.Linear(cfg.ffn_size, cfg.hidden_size)

    def forward(self, X):  # [B, m, n]
        return self.dense2(self.activation(self.dense1(X)))  # [B, m, f] -> [B, m, n]


class EncoderLayer(nn.Module):
    """Post-LN Transformer encoder layer, as BERT: X = LN(X + Attn(X)); X = LN(X + FFN(X)). Built in chapter 04."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attention = MultiHeadAttention(cfg)
        self.norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ffn = PositionWiseFFN(cfg)
        self.norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, X, valid_lens=None, return_attention: bool = False):
        """X [B, m, n] -> (X [B, m, n], attention weights [B, h, m, m] or None)."""
        Y, weights = self.attention(X, valid_lens, return_attention)  # [B, m, n]
        X = self.norm1(X + self.dropout(Y))  # [B, m, n]
        X = self.norm2(X + self.dropout(self.ffn(X)))  # [B, m, n]
        return X, weights


class BertModel(nn.Module):
    """The BERT encoder: embeddings, L encoder layers, and the pooler (dense + tanh on the <cls> vector).
    Built in chapter 04."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        self.embeddings = BertEmbeddings(cfg)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_layers))
        self.pooler = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.apply(init_bert_weights)

    def forward(self, tokens, segments=None, valid_lens=None, return_attention: bool = False):
        """tokens, segments [B, m], valid_lens [B] -> X [B, m, n] (and the L attention maps [B, h, m, m])."""
        if not exporting():  # data-dependent checks cannot be traced by torch.export / torch.onnx
            check_model_inputs(self.cfg, tokens, segments, valid_lens)
        if segments is None:
            segments = torch.zeros_like(tokens)  # a single sentence is all segment A
        X = self.embeddings(tokens, segments)  # [B, m, n]
        attentions = []
        for layer in self.layers:
            X, weights = layer(X, valid_lens, return_attention)  # [B, m, n], [B, h, m, m] or None
            attentions.append(weights)
        return (X, attentions) if return_attention else X  # [B, m, n], L x [B, h, m, m]

    def pool(self, X):
        """X [B, m, n] -> [B, n]: the pooled <cls> vector the NSP and classification heads read. Built in
        chapter 06."""
        return torch.tanh(self.pooler(X[:, 0]))  # [B, n]


def init_bert_weights(module: nn.Module) -> None:
    """BERT's initialisation: weights ~ normal(0, 0.02), biases 0, LayerNorm scale 1 and shift 0. Built in
    chapter 04."""
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
    Built in chapter 05.

    `X[batch_idx, P]` with batch_idx [B, 1] broadcast against P [B, p] picks row P[i, j] of sequence i.
    """
    batch_idx = torch.arange(X.shape[0], device=X.device)[:, None]  # [B, 1]
    return X[batch_idx, pred_positions]  # [B, p, n]


class MaskLM(nn.Module):
    """Masked-language-model head: dense + activation + LayerNorm, then a decoder whose weight is the token
    embedding (tied, as in the original BERT) plus its own bias. Built in chapter 05.

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

    def transform(self, H):
        """H [B, p, n] -> [B, p, n]: dense, activation, LayerNorm (what comes before the vocabulary)."""
        return self.norm(self.activation(self.dense(H)))

    def forward(self, X, pred_positions):
        """X [B, m, n], pred_positions [B, p] -> logits [B, p, V]."""
        H = self.transform(gather_positions(X, pred_positions))  # [B, p, n]
        return F.linear(H, self.decoder_weight, self.bias)  # [B, p, V]


class NextSentencePred(nn.Module):
    """Two-way classifier on the pooled <cls> vector: 0 = IsNext, 1 = NotNext (Hugging Face's labels).
    Built in chapter 06."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.output = nn.Linear(cfg.hidden_size, 2)

    def forward(self, pooled):  # [B, n]
        return self.output(pooled)  # [B, 2]


class BertForPreTraining(nn.Module):
    """BertModel + MaskLM + NextSentencePred: the model of the pretraining chapters. Built in chapter 06."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        self.bert = BertModel(cfg)
        self.mlm = MaskLM(cfg, self.bert.embeddings.token_embedding)
        self.nsp = NextSentencePred(cfg)
        self.mlm.apply(init_bert_weights)
        self.nsp.apply(init_bert_weights)

    def forward(self, tokens, segments=None, valid_lens=None, pred_positions=None):
        """-> (X [B, m, n], mlm_logits [B, p, V] or None when pred_positions is None, nsp_logits [B, 2])."""
        if pred_positions is not None and not exporting():  # before the encoder's work, not after it
            check_model_inputs(self.cfg, tokens, segments, valid_lens)
            check_pred_positions(pred_positions, tokens)
        X = self.bert(tokens, segments, valid_lens)  # [B, m, n]
        mlm_logits = None if pred_positions is None else self.mlm(X, pred_positions)  # [B, p, V]
        nsp_logits = self.nsp(self.bert.pool(X))  # [B, 2]
        return X, mlm_logits, nsp_logits


def count_parameters(model: nn.Module) -> int:
    """Parameters counted once each (the tied decoder weight is the token embedding). Built in chapter 00."""
    return sum(p.numel() for p in model.parameters())
