"""Pretraining: losses, AdamW with warmup, one training step, evaluation, atomic checkpoints, and the loop.

Read top to bottom: the two losses, the optimizer and its schedule, one training step and the held-out
evaluation, the trivial baselines, checkpoints, then `pretrain` (the loop the notebooks and
`python -m bertnb.pretrain` run), the live loss plot and the helper that turns minutes into steps.

A batch is a dict of tensors (what `bertnb.data.collate` yields):
    tokens [B, m], segments [B, m], valid_lens [B], pred_positions [B, p], mlm_weights [B, p],
    mlm_labels [B, p], nsp_labels [B]   (0 = IsNext, 1 = NotNext)
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import statistics
import tempfile
import time
from collections import Counter
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
    """One forward pass of BertForPreTraining; returns the losses (the total is MLM + NSP, as in BERT) and the
    logits. `train_step` gets the same losses from `model.losses(**batch)`, which computes only what they read."""
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
    # fused: one kernel updates every tensor; on the CPU it beats the default loop over tensors and foreach
    # (measured in benchmarks/pretrain_step.py), and gives the same update up to float rounding
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)


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
    """Forward, backward, clip, step. Returns the losses as floats and the gradient norm before clipping.

    The losses come from `model.losses`: the same values and gradients as `pretraining_loss`, without the
    last layer's work at positions no loss reads (bertnb.model.BertForPreTraining.losses).
    """
    model.train()
    with autocast_context(bf16):
        mlm, nsp = model.losses(**batch)  # the batch's keys are the argument names
    loss = mlm + nsp
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return {"loss": loss.item(), "mlm_loss": mlm.item(), "nsp_loss": nsp.item(), "grad_norm": grad_norm.item()}


@torch.no_grad()
def evaluate(model, batches, bf16: bool = False) -> dict:
    """Held-out MLM accuracy (over weighted slots), NSP accuracy and the MLM loss (nats per masked token).

    Leaves the model in eval mode (dropout off), which is what a demo after training wants.
    """
    model.eval()
    mlm_correct = mlm_count = nsp_correct = nsp_count = 0
    mlm_loss_sum = 0.0
    for batch in batches:
        with autocast_context(bf16):
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
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them the checkpoint
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private (0600); give it the usual mode
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


# --------------------------------------------------------------------------------------------------------
# Which examples each step sees: a fixed function of (seed, step), so resuming needs only the step


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch; the last, partial batch is dropped so every step sees B examples."""
    return max(1, num_examples // batch_size)


def epoch_order(num_examples: int, seed: int, epoch: int) -> list[int]:
    """The shuffled example order of one epoch, from its own generator: the same on every run and machine."""
    generator = torch.Generator().manual_seed(1_000_000 * seed + epoch)  # distinct per (seed, epoch < 10^6)
    return torch.randperm(num_examples, generator=generator).tolist()


def batch_indices(num_examples: int, batch_size: int, seed: int, step: int) -> tuple[int, list[int]]:
    """Step s -> (epoch, the example indices of its batch). No state: step s always gets the same batch."""
    epoch, index = divmod(step, steps_per_epoch(num_examples, batch_size))
    order = epoch_order(num_examples, seed, epoch)
    return epoch, order[index * batch_size:(index + 1) * batch_size]


def make_batch(dataset, indices, epoch: int | None = None) -> dict:
    """Collate dataset[i] for i in indices. With `epoch`, switch the dataset's masks first (dynamic masking:
    `bertnb.data.PretrainingDataset.set_epoch`); a dataset without `set_epoch` keeps its items."""
    if epoch is not None and hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    collate = getattr(dataset, "collate", None) or torch.utils.data.default_collate
    return collate([dataset[i] for i in indices])


def heldout_batches(dataset, batch_size: int, max_examples: int | None = None, seed: int = 0) -> list[dict]:
    """The held-out set as a fixed list of batches (its masks stay those of epoch 0, so every evaluation
    scores the same predictions). With `max_examples`, an evenly spread, seeded subset: the first N examples
    would all come from the first few documents."""
    n = len(dataset)
    indices = list(range(n))
    if max_examples is not None and max_examples < n:
        indices = sorted(random.Random(f"heldout-{seed}").sample(indices, max_examples))
    return [make_batch(dataset, indices[i:i + batch_size]) for i in range(0, len(indices), batch_size)]


# --------------------------------------------------------------------------------------------------------
# The trivial baselines the held-out accuracies are plotted against


def masked_label_counts(dataset, epoch: int = 0) -> Counter:
    """How often each token id is a masked (weight > 0) label in `dataset` at `epoch`."""
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


def init_mlm_bias_to_unigram(model, label_counts: dict, smoothing: float = 0.1) -> None:
    """Start the MLM decoder bias at the log unigram probabilities of the training labels.

    At initialisation the logits are about 0 (a uniform guess, ln V = 10.3 nats for V = 30,522), and AdamW
    moves each bias entry by about lr per step, so learning the token frequencies alone takes thousands of
    steps. Starting the bias at log p(token) (add-`smoothing` counts, so unseen tokens get a low but finite
    score) makes step 0 score the unigram entropy, and every step goes to learning from the context: the
    "initialise the output bias to the data's prior" trick. It uses training labels only.
    """
    bias = model.mlm.bias  # [V]
    counts = torch.full((bias.shape[0],), float(smoothing), dtype=torch.float64)  # [V]
    for token, count in label_counts.items():
        counts[token] += count
    with torch.no_grad():
        bias.copy_((counts / counts.sum()).log().to(bias.dtype))


# --------------------------------------------------------------------------------------------------------
# The pretraining loop


def _step_seed(seed: int, step: int) -> int:
    return 1_000_000 * seed + step + 7_919  # dropout masks of step s: fixed by (seed, s)


SCHEDULES = ("warmup-linear", "constant")
# Run settings added after the first checkpoints were written, with the value those checkpoints used.
RUN_SETTING_DEFAULTS = {"schedule": "warmup-linear"}


def pretrain(model, train_data, heldout_data=None, *, total_steps: int, batch_size: int = 32, lr: float = 1e-3,
             warmup_steps: int | None = None, weight_decay: float = 0.01, clip_norm: float = 1.0,
             bf16: bool = False, seed: int = 0, eval_every: int | None = None, eval_examples: int | None = None,
             checkpoint_path=None, checkpoint_every: int | None = None, resume=None, stop_at: int | None = None,
             init_mlm_bias: bool = False, schedule: str = "warmup-linear", callback=None, progress: bool = True,
             verbose: bool = True, extra: dict | None = None) -> dict:
    """Pretrain `model` (a BertForPreTraining) for `total_steps` steps of `batch_size` examples.

    The number of steps is fixed in advance because the learning-rate schedule (warmup, then linear decay to
    0 at `total_steps`) needs it; `time_budget_to_steps` turns minutes into steps. `warmup_steps` defaults to
    6 % of the steps.

    Reproducible and resumable. Step s trains on the batch `batch_indices(len(train_data), batch_size, seed,
    s)` with the masks of its epoch, and its dropout masks come from a generator seeded with (seed, s). So a
    run is a fixed function of the seed, and resuming needs only the model, optimizer and scheduler states
    and the step: a resumed run gives the same losses as an uninterrupted one, bit for bit (on the same
    machine and torch; kernels can differ between CPUs).

    `schedule="constant"` keeps the learning rate at `lr` throughout (the d2l chapter's recipe, compared in
    benchmarks/recipe_comparison.py); the default is BERT's warmup then linear decay.

    `init_mlm_bias` starts the MLM output bias at the training labels' log unigram probabilities (see
    `init_mlm_bias_to_unigram`; off by default, as in the original BERT).

    Held-out MLM and NSP accuracy are measured every `eval_every` steps (default: 5 times per run) and at the
    end, on at most `eval_examples` held-out examples (default: all). With `checkpoint_path`, a checkpoint is
    written every `checkpoint_every` steps (default: at each evaluation) and at the end. `resume` is a path to
    such a checkpoint; the run continues from its step. `stop_at` stops early at that step, writing the
    checkpoint but no extra evaluation (the schedule still runs to `total_steps`): how a run is interrupted
    on purpose, e.g. a notebook that resumes later.

    `callback(event)` is called after every step, evaluation and at the end with a dict: "event" ("step",
    "eval" or "end"), "step" (steps done), "total_steps", "losses", "history", "baselines" (see
    `LiveLossPlot`). `progress` shows a tqdm bar (TQDM_DISABLE=1 turns it off too); `verbose` prints a line
    per evaluation.

    Returns a dict: "losses" (one dict per step: step, loss, mlm_loss, nsp_loss, lr, grad_norm), "history"
    (one dict per evaluation: step, mlm_accuracy, nsp_accuracy, mlm_loss), "final" (the last evaluation),
    "baselines" (see `pretraining_baselines`), "steps", "total_steps", "warmup_steps" and "seconds" (this
    call's training time, evaluations included).
    """
    from tqdm.auto import tqdm

    if not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be an int >= 1, got {total_steps!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if len(train_data) == 0:
        raise ValueError("train_data is empty")
    warmup_steps = round(0.06 * total_steps) if warmup_steps is None else warmup_steps
    eval_every = max(1, math.ceil(total_steps / 5)) if eval_every is None else eval_every
    checkpoint_every = eval_every if checkpoint_every is None else checkpoint_every
    stop_at = total_steps if stop_at is None else stop_at
    for name, value in (("eval_every", eval_every), ("checkpoint_every", checkpoint_every)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not isinstance(stop_at, int) or not 1 <= stop_at <= total_steps:
        raise ValueError(f"stop_at must be in [1, total_steps] = [1, {total_steps}], got {stop_at!r}")

    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    optimizer = make_optimizer(model, lr=lr, weight_decay=weight_decay)
    scheduler = (warmup_linear_decay(optimizer, warmup_steps, total_steps) if schedule == "warmup-linear"
                 else torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0))
    # What must match for a checkpoint to continue this run exactly.
    run = {"total_steps": total_steps, "batch_size": batch_size, "lr": lr, "warmup_steps": warmup_steps,
           "schedule": schedule,
           "weight_decay": weight_decay, "clip_norm": clip_norm, "bf16": bf16, "seed": seed,
           "num_train_examples": len(train_data)}
    losses, history, start = [], [], 0
    if resume is not None:
        # The global RNG is not restored: this loop never draws from it (see the fork_rng below).
        state = load_checkpoint(resume, model, optimizer, scheduler, restore_rng=False)
        saved_run = state["extra"].get("run", {})
        saved_run = {**RUN_SETTING_DEFAULTS, **saved_run}  # checkpoints written before a setting existed
        different = {k: (saved_run.get(k), v) for k, v in run.items() if saved_run.get(k) != v}
        if different:
            raise ValueError(f"cannot resume {resume}: these settings differ from the run that wrote it "
                             f"(checkpoint, now): {different}")
        losses, history, start = list(state["extra"]["losses"]), list(state["extra"]["history"]), state["step"]
        if start >= stop_at:
            raise ValueError(f"{resume} is at step {start}; nothing to do up to step {stop_at}")

    eval_batches = heldout_batches(heldout_data, batch_size, eval_examples, seed) if heldout_data else []
    label_counts = masked_label_counts(train_data)
    baselines = pretraining_baselines(label_counts, eval_batches)
    if init_mlm_bias and resume is None:
        init_mlm_bias_to_unigram(model, label_counts)

    def notify(event: str, step: int) -> None:
        if callback is not None:
            callback({"event": event, "step": step, "total_steps": total_steps, "losses": losses,
                      "history": history, "baselines": baselines})

    def run_evaluation(step: int) -> None:
        if eval_batches:
            history.append({"step": step, **evaluate(model, eval_batches, bf16)})
            if verbose:
                h = history[-1]
                bar.write(f"step {step:>6}/{total_steps}  held-out MLM accuracy {h['mlm_accuracy']:.3f} "
                          f"(most-frequent baseline {baselines['mlm_most_frequent_heldout_accuracy']:.3f})  "
                          f"MLM loss {h['mlm_loss']:.3f} (unigram {baselines['mlm_unigram_entropy']:.3f})  "
                          f"NSP accuracy {h['nsp_accuracy']:.3f} (baseline 0.5)")
            notify("eval", step)

    def write_checkpoint(step: int) -> None:
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, model, optimizer, scheduler, step,
                            extra={**(extra or {}), "run": run, "losses": losses, "history": history})

    bar = tqdm(total=total_steps, initial=start, desc="pretraining", unit="step", dynamic_ncols=True,
               **({} if progress else {"disable": True}))  # TQDM_DISABLE=1 in the environment also hides it
    started = time.perf_counter()
    epoch, order = None, None
    for step in range(start, stop_at):
        step_epoch, index = divmod(step, steps_per_epoch(len(train_data), batch_size))
        if step_epoch != epoch:  # a new epoch: a new shuffle, and new masks (dynamic masking)
            epoch, order = step_epoch, epoch_order(len(train_data), seed, step_epoch)
        batch = make_batch(train_data, order[index * batch_size:(index + 1) * batch_size], epoch)
        with torch.random.fork_rng(devices=[]):  # the global RNG is left as it was
            torch.manual_seed(_step_seed(seed, step))  # dropout masks of this step
            lr_now = scheduler.get_last_lr()[0]
            record = train_step(model, batch, optimizer, scheduler, clip_norm, bf16)
        losses.append({"step": step + 1, **record, "lr": lr_now})
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.3f}", mlm=f"{record['mlm_loss']:.3f}",
                        nsp=f"{record['nsp_loss']:.3f}", refresh=False)
        notify("step", step + 1)
        done = step + 1
        if done % eval_every == 0 or done == total_steps:
            run_evaluation(done)
        if done % checkpoint_every == 0 and done != stop_at:
            write_checkpoint(done)
    write_checkpoint(stop_at)  # (the loop evaluated at the last step if it was total_steps)
    bar.close()
    seconds = time.perf_counter() - started
    notify("end", stop_at)
    return {"losses": losses, "history": history, "final": history[-1] if history else None,
            "baselines": baselines, "steps": stop_at, "total_steps": total_steps, "warmup_steps": warmup_steps,
            "seconds": seconds}


# --------------------------------------------------------------------------------------------------------
# A live loss plot for notebooks


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None  # Jupyter and Colab kernels


def _moving_average(values: list[float], window: int) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if len(values) < 2 or window < 2:
        return values
    cumsum = np.cumsum(np.insert(values, 0, 0.0))
    out = np.empty_like(values)
    for i in range(len(values)):  # the mean of the last `window` values (fewer at the start)
        lo = max(0, i + 1 - window)
        out[i] = (cumsum[i + 1] - cumsum[lo]) / (i + 1 - lo)
    return out


class LiveLossPlot:
    """A `pretrain` callback that redraws one small figure in the notebook while training runs.

    Left: the training MLM loss per step (faint) and its moving average, the held-out MLM loss at each
    evaluation, and the unigram entropy a context-blind model would score. Right: held-out MLM and NSP
    accuracy against their trivial baselines. Redrawn every `every` steps, after each evaluation and at the
    end, in place (`display(..., display_id=True)` then `handle.update(fig)`). Outside a notebook kernel it
    does nothing; `figure()` still draws the current state (e.g. to save it).
    """

    def __init__(self, every: int = 10, figsize=(8.0, 2.8), dpi: int = 72, smoothing: int = 20):
        self.every, self.figsize, self.dpi, self.smoothing = every, figsize, dpi, smoothing
        self.enabled = _in_notebook()
        self.last_event = None
        self._handle = None

    def __call__(self, event: dict) -> None:
        self.last_event = event
        if not self.enabled:
            return
        if event["event"] == "step" and event["step"] % self.every:
            return
        import io

        from IPython.display import Image, display

        buffer = io.BytesIO()  # a PNG made here, so it shows whatever matplotlib backend the kernel has
        self.figure().savefig(buffer, format="png")
        image = Image(data=buffer.getvalue(), format="png")
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)

    def figure(self, event: dict | None = None):
        """Draw the state of `event` (default: the last one received) on a new matplotlib Figure."""
        from matplotlib.figure import Figure

        event = event or self.last_event
        fig = Figure(figsize=self.figsize, dpi=self.dpi, layout="constrained")
        ax_loss, ax_acc = fig.subplots(1, 2)
        if event is None:
            return fig
        total, losses, history, base = event["total_steps"], event["losses"], event["history"], event["baselines"]
        steps = [r["step"] for r in losses]
        if losses:
            values = [r["mlm_loss"] for r in losses]
            ax_loss.plot(steps, values, color="tab:blue", alpha=0.25, linewidth=0.8)
            ax_loss.plot(steps, _moving_average(values, self.smoothing), color="tab:blue",
                         label="train MLM loss")
        if history:
            ax_loss.plot([h["step"] for h in history], [h["mlm_loss"] for h in history], "o-", color="black",
                         markersize=3, label="held-out MLM loss")
        if base:
            ax_loss.axhline(base["mlm_unigram_entropy"], color="black", linestyle=":", linewidth=1,
                            label="unigram entropy")
        ax_loss.set(xlim=(0, total), xlabel="step", ylabel="nats per masked token", title="MLM loss")
        ax_loss.legend(fontsize=7, loc="upper right")

        if history:
            hs = [h["step"] for h in history]
            ax_acc.plot(hs, [h["mlm_accuracy"] for h in history], "o-", color="tab:orange", markersize=3,
                        label="MLM (held-out)")
            ax_acc.plot(hs, [h["nsp_accuracy"] for h in history], "o-", color="tab:green", markersize=3,
                        label="NSP (held-out)")
        if base:
            ax_acc.axhline(base["mlm_most_frequent_heldout_accuracy"], color="tab:orange", linestyle=":",
                           linewidth=1, label="MLM: most frequent token")
            ax_acc.axhline(base["nsp_accuracy"], color="tab:green", linestyle=":", linewidth=1,
                           label="NSP: chance")
        ax_acc.set(xlim=(0, total), ylim=(0, 1), xlabel="step", ylabel="accuracy", title="held-out accuracy")
        ax_acc.legend(fontsize=7, loc="upper left")
        return fig


# --------------------------------------------------------------------------------------------------------
# From a wall-clock budget to a step count


def seconds_per_step(step_fn, warmup_steps: int = 3) -> float:
    """Run `step_fn()` `warmup_steps` times and return the median time of all but the first (which pays for
    one-off costs: allocations, kernel selection)."""
    if not isinstance(warmup_steps, int) or warmup_steps < 2:
        raise ValueError(f"warmup_steps must be an int >= 2 (the first run is discarded), got {warmup_steps!r}")
    return interleaved_seconds({"step": lambda round_: step_fn()}, rounds=warmup_steps)["step"]


def interleaved_seconds(step_fns: dict, rounds: int = 4) -> dict:
    """Time several candidates fairly: call each `step_fns[name](round)` once per round, round-robin, so a
    neighbour's burst of work slows every candidate alike. The first round pays one-off costs and is dropped;
    returns {name: median seconds of the other rounds}."""
    if not isinstance(rounds, int) or rounds < 2:
        raise ValueError(f"rounds must be an int >= 2 (the first is discarded), got {rounds!r}")
    times = {name: [] for name in step_fns}
    for round_ in range(rounds):
        for name, step_fn in step_fns.items():
            start = time.perf_counter()
            step_fn(round_)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t[1:]) for name, t in times.items()}


def time_budget_to_steps(step_fn, minutes: float, warmup_steps: int = 3, overhead_seconds: float = 0.0) -> int:
    """How many steps fit in `minutes` of wall clock: time a few real steps with `step_fn()` (see
    `seconds_per_step`), subtract `overhead_seconds` (evaluations, checkpoints) and divide. At least 1.

    The schedule needs its total in advance, so a time budget becomes a fixed step count before training.
    On a busy machine the estimate is only as good as the moment it was measured.
    """
    if not minutes > 0:
        raise ValueError(f"minutes must be > 0, got {minutes!r}")
    return steps_in_budget(seconds_per_step(step_fn, warmup_steps), minutes, overhead_seconds)


def steps_in_budget(step_seconds: float, minutes: float, overhead_seconds: float = 0.0) -> int:
    """floor((budget - overhead) / seconds per step), at least 1."""
    return max(1, int((minutes * 60 - overhead_seconds) / max(step_seconds, 1e-9)))
