"""Held-out metrics of a pretraining run, honestly split, and the trivial baselines they are read against.
Built in chapter 07.

A number means little alone. BERT's masking hides a chosen token in three ways (chapter 05): 80 % of the
slots show `[MASK]`, 10 % a random token, 10 % the token itself. On that last tenth the answer is in the input,
and a model that learns to copy scores there almost for free: one accuracy over all slots mixes "filled in a
blank" with "copied what it saw". So `evaluate(..., mask_id=...)` also reports accuracy and loss per kind of
slot, `[MASK]` first: the number to compare with the n-gram rivals of `bertnb.rivals`.

Notation: B batch size · p prediction slots per sequence · S real (weight > 0) slots of a whole held-out set.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F

from bertnb.device import autocast_context, to_device
from bertnb.losses import pretraining_loss

# The three kinds of prediction slot, in the order the masking draws them (80 / 10 / 10).
SLOT_KINDS = ("mask", "random", "unchanged")
MASK, RANDOM, UNCHANGED = range(3)


def slot_kinds(batch: dict, mask_id: int) -> torch.Tensor:
    """What the model saw at each prediction slot: 0 = `[MASK]`, 1 = a random token, 2 = the answer itself.
    Returns kinds [B, p] (padding slots get a kind too: select real ones with mlm_weights > 0).

    The masking does not record the kind, but the batch shows it: the input token at the slot is `mask_id`
    ([MASK]), or equal to the label (unchanged), or else a random replacement. A random draw that happens to
    hit the label (probability 0.1 / (V - specials) per slot: about 1 slot in 300,000 for V = 30,522) is
    counted as unchanged, because what the model saw there is the answer.
    Built in chapter 07.
    """
    visible = batch["tokens"].gather(1, batch["pred_positions"])  # [B, p] the input token at each slot
    kinds = torch.full_like(visible, RANDOM)  # [B, p]
    kinds[visible == batch["mlm_labels"]] = UNCHANGED
    kinds[visible == mask_id] = MASK  # [MASK] is special, so it is never a label: no overlap with UNCHANGED
    return kinds


def real_slots(batch: dict) -> torch.Tensor:
    """[B, p] bool: the slots that are real predictions (weight > 0), not padding. Selecting with it reads
    them in row-major order, the one order every slot array of this module and `bertnb.rivals` uses.
    Built in chapter 07."""
    return batch["mlm_weights"] > 0


@torch.no_grad()
def predict_slots(model, batches, mask_id: int | None = None, bf16: bool = False) -> dict:
    """Run `model` over held-out `batches` and keep, for every real prediction slot (S of them, in order):
    "label", "predicted" (argmax), "loss" (cross-entropy in nats), "kind" (`slot_kinds`; None without
    `mask_id`), as 1-D tensors [S]; and per sequence "nsp_predicted", "nsp_labels" [N].

    Leaves the model in eval mode (dropout off), which is what a demo after training wants.
    Built in chapter 07.
    """
    model.eval()
    device = next(model.parameters()).device
    parts = {"label": [], "predicted": [], "loss": [], "kind": [], "nsp_predicted": [], "nsp_labels": []}
    for batch in batches:
        batch = to_device(batch, device)
        with autocast_context(device, bf16):
            out = pretraining_loss(model, batch)
        logits = out["mlm_logits"].float()  # [B, p, V]
        real = real_slots(batch)  # [B, p]
        per_slot_loss = F.cross_entropy(logits.flatten(0, 1), batch["mlm_labels"].flatten(),
                                        reduction="none").view_as(real)  # [B, p]
        parts["label"].append(batch["mlm_labels"][real].cpu())
        parts["predicted"].append(logits.argmax(-1)[real].cpu())
        parts["loss"].append(per_slot_loss[real].cpu())
        if mask_id is not None:
            parts["kind"].append(slot_kinds(batch, mask_id)[real].cpu())
        parts["nsp_predicted"].append(out["nsp_logits"].argmax(-1).cpu())
        parts["nsp_labels"].append(batch["nsp_labels"].cpu())
    slots = {k: torch.cat(v) if v else torch.zeros(0, dtype=torch.long) for k, v in parts.items()}
    if mask_id is None:
        slots["kind"] = None
    return slots


def summarize_slots(slots: dict) -> dict:
    """`predict_slots`' arrays -> the metrics: "mlm_accuracy", "mlm_loss" (mean nats per slot) and
    "nsp_accuracy" over everything; with kinds also, for each kind K in ("mask", "random", "unchanged"),
    "mlm_accuracy_K", "mlm_loss_K" (None when no slot is of that kind) and "mlm_share_K" (its share of the
    slots), and "mlm_slots" (S). Built in chapter 07."""
    correct = (slots["predicted"] == slots["label"]).double()  # [S]
    loss = slots["loss"].double()  # [S]
    nsp_correct = (slots["nsp_predicted"] == slots["nsp_labels"]).double()  # [N]
    metrics = {"mlm_accuracy": _mean(correct, 0.0), "nsp_accuracy": _mean(nsp_correct, 0.0),
               "mlm_loss": _mean(loss, 0.0)}
    if slots.get("kind") is None:
        return metrics
    for kind_id, kind in enumerate(SLOT_KINDS):
        of_kind = slots["kind"] == kind_id  # [S]
        metrics[f"mlm_accuracy_{kind}"] = _mean(correct[of_kind], None)
        metrics[f"mlm_loss_{kind}"] = _mean(loss[of_kind], None)
        metrics[f"mlm_share_{kind}"] = _mean(of_kind.double(), 0.0)
    metrics["mlm_slots"] = len(correct)
    return metrics


def _mean(values: torch.Tensor, empty):
    return values.mean().item() if len(values) else empty


def evaluate(model, batches, bf16: bool = False, mask_id: int | None = None) -> dict:
    """Held-out MLM accuracy and loss (nats per prediction slot) and NSP accuracy.

    With `mask_id` (the vocabulary's [MASK] id, `tokenizer.mask_id`), also the same per kind of slot
    ("mlm_accuracy_mask", "mlm_loss_mask", "mlm_share_mask", likewise "random" and "unchanged"): read
    "mlm_accuracy_mask" against the rivals of `bertnb.rivals`, since on unchanged slots the answer is in the
    input. Leaves the model in eval mode (dropout off), which is what a demo after training wants.
    Built in chapter 07.
    """
    return summarize_slots(predict_slots(model, batches, mask_id, bf16))


def prediction_profile(predicted, labels, kinds, frequent_tokens: set[int]) -> dict:
    """How varied a model's guesses are, and whether it recovers words that are not among the most frequent.

    predicted, labels, kinds: [S] arrays (`predict_slots`). `frequent_tokens`: the ids of the K most frequent
    training tokens (`frequent_token_ids`); a label outside it is a "content" token. Returns the most
    predicted id and its share of the slots, the number of distinct ids predicted, and the accuracy on
    [MASK] slots whose label is a content token (with how many such slots there are).
    Built in chapter 07.
    """
    predicted, labels, kinds = (np.asarray(x) for x in (predicted, labels, kinds))
    top_id, top_count = Counter(predicted.tolist()).most_common(1)[0] if len(predicted) else (None, 0)
    content = np.array([label not in frequent_tokens for label in labels.tolist()], dtype=bool)  # [S]
    masked_content = content & (kinds == MASK)  # [S]
    hits = (predicted == labels) & masked_content
    return {"most_predicted_token": None if top_id is None else int(top_id),
            "most_predicted_share": top_count / max(len(predicted), 1),
            "distinct_predicted": len(set(predicted.tolist())),
            "mask_content_slots": int(masked_content.sum()),
            "mask_content_accuracy": float(hits.sum() / max(masked_content.sum(), 1))}


def frequent_token_ids(label_counts: dict, k: int = 100) -> set[int]:
    """The ids of the `k` most frequent tokens (ties by id): punctuation and function words, mostly.
    Built in chapter 07."""
    ranked = sorted(label_counts.items(), key=lambda item: (-item[1], item[0]))
    return {token for token, _ in ranked[:k]}


def mlm_baselines(label_counts: dict) -> dict:
    """What a model that ignores the context scores: always guessing the most frequent masked token, and the
    unigram entropy (the cross-entropy of predicting every token by its corpus frequency), in nats.
    The entropy is in-sample (the same labels fit and score it): `pretraining_baselines`' held-out unigram
    cross-entropy is the fair rival of a held-out loss.
    Built in chapter 07."""
    total = sum(label_counts.values())
    probs = np.array([c / total for c in label_counts.values()])
    return {"most_frequent_accuracy": float(probs.max()), "unigram_entropy": float(-(probs * np.log(probs)).sum())}


def masked_label_counts(dataset, epoch: int = 0) -> Counter:
    """How often each token id is a masked (weight > 0) label in `dataset` at `epoch`. Built in chapter 07."""
    counts = Counter()
    previous_epoch = getattr(dataset, "epoch", None)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    for i in range(len(dataset)):
        item = dataset[i]
        counts.update(label for label, weight in zip(item["mlm_labels"], item["mlm_weights"]) if weight > 0)
    if previous_epoch is not None:
        dataset.set_epoch(previous_epoch)
    return counts


# Add-k smoothing of the unigram scored on held-out labels: a token never masked in training must still get
# some probability, or one unseen held-out label makes the cross-entropy infinite. 0.1, as the MLM bias's
# initialisation (bertnb.pretrain.init_mlm_bias_to_unigram).
UNIGRAM_SMOOTHING = 0.1


def heldout_unigram_cross_entropy(label_counts: dict, heldout_labels, vocab_size: int,
                                  smoothing: float = UNIGRAM_SMOOTHING) -> float:
    """Cross-entropy (nats) on `heldout_labels` of the unigram fitted on the training `label_counts`, add-
    `smoothing` over `vocab_size` ids: the held-out loss of a model that ignores the context, the fair
    rival of a held-out MLM loss (the in-sample entropy is lower: it scores the labels it was fitted on).
    Built in chapter 07."""
    total = sum(label_counts.values()) + smoothing * vocab_size
    log_probs = [math.log((label_counts.get(int(label), 0) + smoothing) / total) for label in heldout_labels]
    return -sum(log_probs) / max(len(log_probs), 1)


def pretraining_baselines(label_counts: dict, eval_batches, vocab_size: int | None = None) -> dict:
    """What a model that ignores its input scores.

    MLM: always guess the token most often masked in the TRAINING data (its accuracy on the training labels,
    and on the held-out labels, which is the fair comparison for held-out accuracy); the unigram entropy of
    the training labels in nats (in-sample, kept for old runs) and the held-out cross-entropy of that
    unigram (add-0.1 smoothed over `vocab_size` ids, default: the largest id seen + 1), the fair rival of
    the held-out MLM loss. NSP: 50 % (the labels are balanced; a constant guess scores the share of its
    class, reported too). The context-aware rivals (n-grams, [MASK] slots) are `bertnb.rivals`'.
    Built in chapter 07.
    """
    counts = label_counts  # masked_label_counts(train_data): the training labels, epoch 0
    baselines = mlm_baselines(counts)
    most_frequent = max(counts, key=lambda token: (counts[token], -token))
    heldout_labels, nsp_ones, nsp_total = [], 0, 0
    for batch in eval_batches:
        heldout_labels.extend(batch["mlm_labels"][real_slots(batch)].tolist())
        nsp_ones += int(batch["nsp_labels"].sum())
        nsp_total += len(batch["nsp_labels"])
    heldout_hits = sum(label == most_frequent for label in heldout_labels)
    if vocab_size is None:
        vocab_size = max([*counts, *heldout_labels]) + 1
    return {
        "mlm_most_frequent_token": int(most_frequent),
        "mlm_most_frequent_accuracy": baselines["most_frequent_accuracy"],  # on the training labels
        "mlm_most_frequent_heldout_accuracy": heldout_hits / max(len(heldout_labels), 1),
        "mlm_unigram_entropy": baselines["unigram_entropy"],
        "mlm_unigram_heldout_cross_entropy": heldout_unigram_cross_entropy(counts, heldout_labels, vocab_size),
        "nsp_accuracy": 0.5,
        "nsp_majority_heldout_accuracy": max(nsp_ones, nsp_total - nsp_ones) / max(nsp_total, 1),
    }
