"""Turn a few sentences into one padded batch, to look at a model on real text. Built in chapter 03.

`encode_batch` is what the chapters use to feed MiniLM (or a model of their own) a handful of sentences:
token ids padded to the longest one, segment ids, and `valid_lens`, the number of real tokens per row,
from which the model builds its attention padding mask.
"""

from __future__ import annotations

import torch


def encode_batch(tokenizer, sentences, max_len: int | None = None):
    """Sentences -> (tokens [B, m], segments [B, m], valid_lens [B]), padded with `tokenizer.pad_id`.

    Each item of `sentences` is a text, or a pair (text_a, text_b) for "[CLS] A [SEP] B [SEP]".
    m is the longest encoded sentence (after `max_len` truncation, if given); shorter rows are padded on
    the right with [PAD] ids and segment 0, which the model ignores because `valid_lens` says where the
    real tokens end.
    Built in chapter 03.
    """
    if isinstance(sentences, (str, bytes)):
        raise TypeError("sentences must be a list of texts (or of (text_a, text_b) pairs), got a single str")
    sentences = list(sentences)
    if not sentences:
        raise ValueError("sentences is empty: give at least one text")
    encoded = []
    for item in sentences:
        text_a, text_b = (item, None) if isinstance(item, str) else item
        encoded.append(tokenizer.encode(text_a, text_b, max_len=max_len))  # (ids, segments) with [CLS]/[SEP]
    m = max(len(ids) for ids, _ in encoded)
    tokens = torch.tensor([ids + [tokenizer.pad_id] * (m - len(ids)) for ids, _ in encoded])  # [B, m]
    segments = torch.tensor([segs + [0] * (m - len(segs)) for _, segs in encoded])  # [B, m]
    valid_lens = torch.tensor([len(ids) for ids, _ in encoded])  # [B]
    return tokens, segments, valid_lens


def tokens_of(tokenizer, tokens, valid_len=None) -> list[str]:
    """One row of token ids [m] -> its tokens as text, cut at `valid_len` (the padding dropped), for labels.
    Built in chapter 03."""
    ids = tokens.tolist() if hasattr(tokens, "tolist") else list(tokens)
    if valid_len is not None:
        ids = ids[: int(valid_len)]
    return tokenizer.convert_ids_to_tokens(ids)
