"""Pretraining: losses, AdamW with warmup, one training step, evaluation and atomic checkpoints.

A batch is a dict of tensors (what `bertnb.data.collate` yields):
    tokens [B, m], segments [B, m], valid_lens [B], pred_positions [B, p], mlm_weights [B, p],
    mlm_labels [B, p], nsp_labels [B]   (0 = IsNext, 1 = NotNext)
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

BATCH_KEYS = ("tokens", "segments", "valid_lens", "pred_positions", "mlm_weights", "mlm_labels", "nsp_labels")


# --------------------------------------------------------------------------------------------------------
# Losses


def mlm_loss(mlm_logits, mlm_labels, mlm_weights):
    """Cross-entropy over the predicted slots only: mlm_logits [B, p, V], labels and weights [B, p].

    Padded slots (weight 0) must not count, neither in the sum nor in the mean's denominator: averaging over
    all B * p slots would shrink the loss of short sequences (the bug of d2l issue #2582).
    """
    per_slot = F.cross_entropy(mlm_logits.flatten(0, 1), mlm_labels.flatten(), reduction="none")  # [B * p]
    weights = mlm_weights.flatten().to(per_slot.dtype)  # [B * p]
    return (per_slot * weights).sum() / weights.sum().clamp(min=1.0)


def nsp_loss(nsp_logits, nsp_labels):
    """nsp_logits [B, 2], nsp_labels [B] -> mean cross-entropy."""
    return F.cross_entropy(nsp_logits, nsp_labels)


def pretraining_loss(model, batch: dict) -> dict:
    """One forward pass of BertForPreTraining; returns the losses (the total is MLM + NSP, as in BERT)."""
    _, mlm_logits, nsp_logits = model(batch["tokens"], batch["segments"], batch["valid_lens"],
                                      batch["pred_positions"])  # [B, p, V], [B, 2]
    mlm = mlm_loss(mlm_logits.float(), batch["mlm_labels"], batch["mlm_weights"])
    nsp = nsp_loss(nsp_logits.float(), batch["nsp_labels"])
    return {"loss": mlm + nsp, "mlm_loss": mlm, "nsp_loss": nsp, "mlm_logits": mlm_logits,
            "nsp_logits": nsp_logits}


# --------------------------------------------------------------------------------------------------------
# Optimizer and schedule


def make_optimizer(model: nn.Module, lr: float = 1e-3, weight_decay: float = 0.01,
                   betas=(0.9, 0.999), eps: float = 1e-6) -> torch.optim.AdamW:
    """AdamW with no weight decay on biases and LayerNorm parameters (as the original BERT).

    One-dimensional parameters are exactly the biases and LayerNorm scales/shifts here.
    """
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    decay, no_decay = [], []
    for param in model.parameters():  # .parameters() yields the tied embedding/decoder weight once
        if param.requires_grad:
            (no_decay if param.dim() < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=True)


def warmup_linear_decay(optimizer, warmup_steps: int, total_steps: int):
    """Learning rate rises linearly from 0 over `warmup_steps`, then falls linearly to 0 at `total_steps`.

    The step count is fixed in advance (from a time budget, see bertnb.pretrain), so the schedule is known.
    """
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps) = [0, {total_steps}), got {warmup_steps}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# --------------------------------------------------------------------------------------------------------
# One step, evaluation


def autocast_context(bf16: bool):
    """bfloat16 autocast on the CPU when asked (fast only where the CPU has avx512_bf16 or AMX)."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def train_step(model, batch: dict, optimizer, scheduler=None, clip_norm: float = 1.0, bf16: bool = False) -> dict:
    """Forward, backward, clip, step. Returns the losses as floats and the gradient norm before clipping."""
    model.train()
    with autocast_context(bf16):
        losses = pretraining_loss(model, batch)
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return {"loss": losses["loss"].item(), "mlm_loss": losses["mlm_loss"].item(),
            "nsp_loss": losses["nsp_loss"].item(), "grad_norm": grad_norm.item()}


@torch.no_grad()
def evaluate(model, batches) -> dict:
    """Held-out MLM accuracy (over weighted slots), NSP accuracy and the MLM loss."""
    model.eval()
    mlm_correct = mlm_count = nsp_correct = nsp_count = 0
    mlm_loss_sum = 0.0
    for batch in batches:
        losses = pretraining_loss(model, batch)
        weights = batch["mlm_weights"]  # [B, p]
        predicted = losses["mlm_logits"].argmax(-1)  # [B, p]
        mlm_correct += ((predicted == batch["mlm_labels"]).float() * weights).sum().item()
        mlm_count += weights.sum().item()
        mlm_loss_sum += losses["mlm_loss"].item() * weights.sum().item()
        nsp_correct += (losses["nsp_logits"].argmax(-1) == batch["nsp_labels"]).sum().item()
        nsp_count += len(batch["nsp_labels"])
    return {"mlm_accuracy": mlm_correct / max(mlm_count, 1), "nsp_accuracy": nsp_correct / max(nsp_count, 1),
            "mlm_loss": mlm_loss_sum / max(mlm_count, 1)}


def mlm_baselines(label_counts: dict) -> dict:
    """What a model that ignores the context scores: always guessing the most frequent masked token, and the
    unigram entropy (the cross-entropy of predicting every token by its corpus frequency), in nats."""
    total = sum(label_counts.values())
    probs = np.array([c / total for c in label_counts.values()])
    return {"most_frequent_accuracy": float(probs.max()), "unigram_entropy": float(-(probs * np.log(probs)).sum())}


# --------------------------------------------------------------------------------------------------------
# Checkpoints: model, optimizer, scheduler, RNG states and step in one file, written atomically


def rng_states() -> dict:
    """Python, NumPy and torch RNG states, in types `torch.load(weights_only=True)` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}


def set_rng_states(states: dict) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def atomic_write(path, write) -> None:
    """Call write(tmp_path), then move it over `path` in one step: a crash mid-write never leaves a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)  # atomic on POSIX and Windows when both are on the same filesystem
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def save_checkpoint(path, model, optimizer=None, scheduler=None, step: int = 0, extra: dict | None = None) -> None:
    """Everything needed to resume exactly: weights, optimizer and scheduler state, RNG states, step."""
    state = {"model": model.state_dict(), "step": step, "rng": rng_states(), "extra": extra or {}}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path, model, optimizer=None, scheduler=None, restore_rng: bool = True) -> dict:
    """Load a checkpoint written by save_checkpoint; `weights_only=True` so no pickled code can run."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng:
        set_rng_states(state["rng"])
    return state


def save_weights(path, model, metadata: dict | None = None) -> None:
    """Model weights only, as safetensors (the small committed checkpoints under checkpoints/)."""
    from safetensors.torch import save_model

    atomic_write(path, lambda tmp: save_model(model, tmp, metadata={k: str(v) for k, v in (metadata or {}).items()}))


def load_weights(path, model) -> nn.Module:
    from safetensors.torch import load_model

    missing, unexpected = load_model(model, str(path), strict=True)
    return model


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))
