"""Held-out metrics of a pretraining run and the trivial baselines they are read against. Built in chapter 07.

A number means little alone: the held-out MLM accuracy is shown beside what always guessing the most
frequent token scores, the MLM loss beside the unigram entropy, NSP accuracy beside chance.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from bertnb.device import autocast_context, to_device
from bertnb.losses import pretraining_loss


@torch.no_grad()
def evaluate(model, batches, bf16: bool = False) -> dict:
    """Held-out MLM accuracy (over weighted slots), NSP accuracy and the MLM loss (nats per masked token).

    Leaves the model in eval mode (dropout off), which is what a demo after training wants.
    Built in chapter 07.
    """
    model.eval()
    device = next(model.parameters()).device
    mlm_correct = mlm_count = nsp_correct = nsp_count = 0
    mlm_loss_sum = 0.0
    for batch in batches:
        batch = to_device(batch, device)
        with autocast_context(device, bf16):
            losses = pretraining_loss(model, batch)
        weights = batch["mlm_weights"]  # [B, p]
        predicted = losses["mlm_logits"].argmax(-1)  # [B, p]
        real = weights.sum().item()  # the batch's real prediction slots
        mlm_correct += ((predicted == batch["mlm_labels"]).float() * weights).sum().item()
        mlm_count += real
        mlm_loss_sum += losses["mlm_loss"].item() * real
        nsp_correct += (losses["nsp_logits"].argmax(-1) == batch["nsp_labels"]).sum().item()
        nsp_count += len(batch["nsp_labels"])
    return {"mlm_accuracy": mlm_correct / max(mlm_count, 1), "nsp_accuracy": nsp_correct / max(nsp_count, 1),
            "mlm_loss": mlm_loss_sum / max(mlm_count, 1)}


def mlm_baselines(label_counts: dict) -> dict:
    """What a model that ignores the context scores: always guessing the most frequent masked token, and the
    unigram entropy (the cross-entropy of predicting every token by its corpus frequency), in nats.
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


def pretraining_baselines(label_counts: dict, eval_batches) -> dict:
    """What a model that ignores its input scores.

    MLM: always guess the token most often masked in the TRAINING data (its accuracy on the training labels,
    and on the held-out labels, which is the fair comparison for held-out accuracy), and the unigram entropy
    of the training labels in nats (compare it with the held-out MLM loss). NSP: 50 % (the labels are
    balanced; a constant guess scores the share of its class, reported too).
    Built in chapter 07.
    """
    counts = label_counts  # masked_label_counts(train_data): the training labels, epoch 0
    baselines = mlm_baselines(counts)
    most_frequent = max(counts, key=lambda token: (counts[token], -token))
    heldout_hits = heldout_total = nsp_ones = nsp_total = 0
    for batch in eval_batches:
        weights = batch["mlm_weights"] > 0  # [B, p]
        heldout_hits += int(((batch["mlm_labels"] == most_frequent) & weights).sum())
        heldout_total += int(weights.sum())
        nsp_ones += int(batch["nsp_labels"].sum())
        nsp_total += len(batch["nsp_labels"])
    return {
        "mlm_most_frequent_token": int(most_frequent),
        "mlm_most_frequent_accuracy": baselines["most_frequent_accuracy"],  # on the training labels
        "mlm_most_frequent_heldout_accuracy": heldout_hits / max(heldout_total, 1),
        "mlm_unigram_entropy": baselines["unigram_entropy"],
        "nsp_accuracy": 0.5,
        "nsp_majority_heldout_accuracy": max(nsp_ones, nsp_total - nsp_ones) / max(nsp_total, 1),
    }
