"""Demos on a pretrained model: what does it put in the blanks?

    from bertnb.demo import fill_mask, mask_probabilities, rank_of
    text = "The interpreter raises an [MASK] when it detects an error."
    fill_mask(model, tokenizer, text, top_k=3)   # one list per [MASK]: [(token, probability)] x 3, best first
    probs = mask_probabilities(model, tokenizer, text)   # [k, V]: k masks
    rank_of(probs[0], tokenizer.vocab["exception"])      # 1 if "exception" is the model's first guess
    token_kind("the"), token_kind(","), token_kind("##ing")  # "function word", "punctuation", "identifier"
    accuracy_by_kind(labels, predicted, tokenizer)       # held-out accuracy per kind of token

The model is a `bertnb.model.BertForPreTraining` (its MLM head scores every vocabulary entry at the masked
positions); the tokenizer a `bertnb.tokenization.BertTokenizer`, which keeps a "[MASK]" typed into the text
whole.
"""

from __future__ import annotations

import builtins
import keyword
import random

import torch

from bertnb.validation import check_int


@torch.no_grad()
def mask_probabilities(model, tokenizer, text: str, text_b: str | None = None) -> torch.Tensor:
    """The model's probability of every vocabulary entry at each [MASK] of `text`: [k, V] for k masks.

    The text is encoded as `[CLS] text [SEP]` (or `[CLS] text [SEP] text_b [SEP]`), cut to the model's
    `max_len`, and run once in eval mode (no dropout); the model's train/eval mode is restored afterwards.
    Built in chapter 07.
    """
    ids, segments = tokenizer.encode(text, text_b, max_len=model.cfg.max_len)
    positions = [i for i, token in enumerate(ids) if token == tokenizer.mask_id]
    if not positions:
        raise ValueError(f"no {tokenizer.convert_ids_to_tokens([tokenizer.mask_id])[0]} in the first "
                         f"{model.cfg.max_len} tokens of {text!r}")
    device = next(model.parameters()).device
    tokens = torch.tensor([ids], device=device)  # [1, m]
    segments = torch.tensor([segments], device=device)  # [1, m]
    valid_lens = torch.tensor([len(ids)], device=device)  # [1]
    pred_positions = torch.tensor([positions], device=device)  # [1, k]
    was_training = model.training
    model.eval()
    try:
        _, mlm_logits, _ = model(tokens, segments, valid_lens, pred_positions)  # [1, k, V]
    finally:
        model.train(was_training)
    return mlm_logits[0].float().softmax(-1)  # [k, V]


def fill_mask(model, tokenizer, text: str, top_k: int = 3, text_b: str | None = None) -> list[list[tuple[str, float]]]:
    """The `top_k` most probable tokens for each [MASK] in `text`, left to right, with their probabilities.

    Returns one list per [MASK]: [(token, probability), ...], most probable first (see `mask_probabilities`).
    Built in chapter 07.
    """
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
    probs = mask_probabilities(model, tokenizer, text, text_b)  # [k, V]
    top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)  # values, indices: [k, top_k]
    return [list(zip(tokenizer.convert_ids_to_tokens(indices.tolist()), values.tolist()))
            for values, indices in zip(top.values, top.indices)]


def rank_of(probs: torch.Tensor, token_id: int) -> int:
    """1 + the number of entries more probable than `token_id` in probs [V]: 1 means the model's first guess.
    Built in chapter 07."""
    return int((probs > probs[token_id]).sum()) + 1


# ---------------------------------------------------------------------------------------------------------
# Which kind of token was masked? A crude rule, written to be read, for splitting accuracy by kind.

PUNCTUATION, FUNCTION_WORD, IDENTIFIER, CONTENT_WORD = "punctuation", "function word", "identifier", "content word"
TOKEN_KINDS = (PUNCTUATION, FUNCTION_WORD, IDENTIFIER, CONTENT_WORD)

# English words that carry grammar rather than meaning (articles, prepositions, pronouns, auxiliaries, ...).
FUNCTION_WORDS = frozenset("""
a an the this that these those it its they them their there here we you he she his her i me my our your
of to in on at by for from with as into onto about over under between through during before after above below
up down out off than then so such also only just not no nor and or but if else when where while which who whom
whose what how why whether because although though until unless since once
is are was were be been being am has have had having do does did done can could may might must shall should
will would each every all any some more most other another same both either neither few many much several
""".split())

# Python's keywords, lower-cased (the uncased vocabulary writes None as "none"), and its lower-case built-in
# names (`str`, `len`, `open`; not the exception classes, which would make "exception" and "warning" names).
PYTHON_NAMES = frozenset([name.lower() for name in keyword.kwlist]
                         + [name for name in dir(builtins) if name.islower() and not name.startswith("_")])


def token_kind(token: str) -> str:
    """One of TOKEN_KINDS for a WordPiece token, checked in this order:
    punctuation (no letter or digit), function word (FUNCTION_WORDS), identifier (a `##` piece of a longer
    word, a digit or underscore in it, a single letter, or a Python keyword / built-in name such as `str`,
    `none`, `len`),
    content word (everything else). Crude on purpose: `list` and `object` count as identifiers even in prose.
    Built in chapter 07."""
    if not any(char.isalnum() for char in token):
        return PUNCTUATION
    if token in FUNCTION_WORDS:
        return FUNCTION_WORD
    if (token.startswith("##") or "_" in token or any(char.isdigit() for char in token) or token in PYTHON_NAMES
            or len(token) == 1):  # a single letter that is not a word ("a", "i" are caught above): x, n, f
        return IDENTIFIER
    return CONTENT_WORD


def accuracy_by_kind(labels, predicted, tokenizer) -> dict:
    """labels, predicted: [S] token ids (e.g. `bertnb.metrics.predict_slots` at the [MASK] slots) -> {kind:
    (accuracy, number of slots)} for each of TOKEN_KINDS, plus "all". A kind with no slot gets accuracy None.
    Built in chapter 07."""
    labels, predicted = [int(x) for x in labels], [int(x) for x in predicted]
    kinds = [token_kind(token) for token in tokenizer.convert_ids_to_tokens(labels)]
    table = {}
    for kind in (*TOKEN_KINDS, "all"):
        hits = [label == guess for label, guess, k in zip(labels, predicted, kinds) if kind in ("all", k)]
        table[kind] = (sum(hits) / len(hits) if hits else None, len(hits))
    return table


def slot_contexts(batches) -> list[tuple[list[int], int]]:
    """(the sequence's input ids, the slot's position) for every real prediction slot of `batches`, in the
    order of `bertnb.metrics.predict_slots` (batch by batch, row-major over [B, p]). Built in chapter 07."""
    contexts = []
    for batch in batches:
        for row, (positions, weights) in enumerate(zip(batch["pred_positions"].tolist(),
                                                      batch["mlm_weights"].tolist())):
            ids = batch["tokens"][row, : int(batch["valid_lens"][row])].tolist()
            contexts.extend((ids, position) for position, weight in zip(positions, weights) if weight > 0)
    return contexts


def sample_slots(candidates, k: int, seed: int = 0) -> list[int]:
    """`k` of the slot indices `candidates`, drawn without replacement by a `random.Random(seed)`, in
    increasing order: the same sample on every run. Built in chapter 07."""
    candidates = list(candidates)
    k = check_int("k (slots to sample)", k, 1, len(candidates))
    return sorted(random.Random(seed).sample(candidates, k))


def context_window(tokenizer, ids: list[int], position: int, width: int = 6) -> str:
    """The `width` tokens either side of `position` as text, the slot itself shown as [MASK] (whatever the
    input held there), '...' where the sequence goes on. Built in chapter 07."""
    position = check_int("position", position, 0, len(ids) - 1)
    width = check_int("width", width, 0)
    start, end = max(0, position - width), min(len(ids), position + width + 1)
    pieces = tokenizer.convert_ids_to_tokens(ids[start:end])
    pieces[position - start] = "[MASK]"
    text = " ".join(pieces).replace(" ##", "")
    return ("... " if start > 0 else "") + text + (" ..." if end < len(ids) else "")
