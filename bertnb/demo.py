"""Demos on a pretrained model: what does it put in the blanks?

    from bertnb.demo import fill_mask, mask_probabilities, rank_of
    text = "The interpreter raises an [MASK] when it detects an error."
    fill_mask(model, tokenizer, text, top_k=3)   # one list per [MASK]: [(token, probability)] x 3, best first
    probs = mask_probabilities(model, tokenizer, text)   # [k, V]: k masks
    rank_of(probs[0], tokenizer.vocab["exception"])      # 1 if "exception" is the model's first guess

The model is a `bertnb.model.BertForPreTraining` (its MLM head scores every vocabulary entry at the masked
positions); the tokenizer a `bertnb.tokenization.BertTokenizer`, which keeps a "[MASK]" typed into the text
whole.
"""

from __future__ import annotations

import torch


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
