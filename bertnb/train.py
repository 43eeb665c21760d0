"""Training: AdamW with warmup, one step, and `fit`, the loop that pretraining and fine-tuning share.
Built in chapter 07 (and reused in chapter 08).

The loop is generic, minGPT-style: it knows nothing about BERT's tasks. The caller hands it a `loss_fn`
(model, batch) -> {"loss": tensor, ...} and a `batch_for_step(step)`; what to measure (`evaluate_fn`) and
what to draw (`callback`, e.g. `bertnb.plots.LiveLossPlot`) hook in from outside.

Reproducible and resumable: step s trains on `batch_for_step(s)` (a fixed function of the step) with dropout
masks from a generator seeded with (seed, s), so a run is a fixed function of its settings and a resumed run
gives the same losses as an uninterrupted one, bit for bit (same machine and torch).
"""

from __future__ import annotations

import time

import torch
from torch import nn

from bertnb.checkpoint import CheckpointError, apply_checkpoint, read_checkpoint, save_checkpoint
from bertnb.device import autocast_context, model_device, resolve_device, to_device
from bertnb.validation import check_choice, check_float, check_int

SCHEDULES = ("warmup-linear", "constant")


# --------------------------------------------------------------------------------------------------------
# Optimizer and schedule


def make_optimizer(model: nn.Module, lr: float = 1e-3, weight_decay: float = 0.01,
                   betas=(0.9, 0.999), eps: float = 1e-6) -> torch.optim.AdamW:
    """AdamW with no weight decay on biases and LayerNorm parameters, as the original BERT. Built in chapter 07.

    One-dimensional parameters are exactly the biases and LayerNorm scales/shifts here.
    """
    check_float("lr", lr, low=0, low_open=True)
    check_float("weight_decay", weight_decay, low=0)
    decay, no_decay = [], []
    for param in model.parameters():  # .parameters() yields the tied embedding/decoder weight once
        if param.requires_grad:
            (no_decay if param.dim() < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel updates every tensor (CPU and CUDA); the same update up to float rounding, faster
    fused = model_device(model).type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused)


def warmup_linear_decay(optimizer, warmup_steps: int, total_steps: int):
    """Learning rate rises linearly from 0 over `warmup_steps`, then falls linearly to 0 at `total_steps`.
    Built in chapter 07."""
    check_int("total_steps", total_steps, low=1)
    check_int("warmup_steps", warmup_steps, low=0, high=total_steps - 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_schedule(optimizer, schedule: str, warmup_steps: int, total_steps: int):
    """"warmup-linear" (BERT's) or "constant" (the d2l chapter's recipe)."""
    check_choice("schedule", schedule, SCHEDULES)
    if schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return warmup_linear_decay(optimizer, warmup_steps, total_steps)


# --------------------------------------------------------------------------------------------------------
# One step


def pretraining_step_losses(model, batch: dict) -> dict:
    """The pretraining loss_fn: MLM + NSP from the fast path (`bertnb.fastpath`), the same values and
    gradients as the chapters' `bertnb.losses.pretraining_loss`, computing only what the losses read."""
    from bertnb.fastpath import pretraining_losses

    mlm, nsp = pretraining_losses(model, **batch)  # the batch's keys are the argument names
    return {"loss": mlm + nsp, "mlm_loss": mlm, "nsp_loss": nsp}


def train_step(model, batch: dict, optimizer, scheduler=None, clip_norm: float = 1.0, loss_fn=None,
               bf16: bool = False) -> dict:
    """Forward, backward, clip, step. Returns every loss as a float and the gradient norm before clipping.
    Built in chapter 07.

    `loss_fn(model, batch)` -> {"loss": tensor, ...}; the default is pretraining (MLM + NSP).
    """
    loss_fn = loss_fn or pretraining_step_losses
    model.train()
    with autocast_context(model_device(model), bf16):
        losses = loss_fn(model, batch)
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    scalars = {name: value.item() for name, value in losses.items() if value.dim() == 0}  # not the logits
    return {**scalars, "grad_norm": grad_norm.item()}


# --------------------------------------------------------------------------------------------------------
# The loop


def _step_seed(seed: int, step: int, rank: int = 0) -> int:
    # dropout masks of step s: fixed by (seed, s). Below 2**52 for seed < 2**31, so rank r's r << 52 never
    # collides with another (seed, step); rank 0 keeps the one-process seed.
    return 1_000_000 * seed + step + 7_919 + (rank << 52)


def fit(model, loss_fn, batch_for_step, *, total_steps: int, lr: float = 1e-3, warmup_steps: int | None = None,
        weight_decay: float = 0.01, clip_norm: float = 1.0, schedule: str = "warmup-linear", seed: int = 0,
        evaluate_fn=None, eval_every: int | None = None, checkpoint_path=None, checkpoint_every: int | None = None,
        resume=None, stop_at: int | None = None, run_settings: dict | None = None, callback=None,
        progress: bool = True, desc: str = "training", device=None, bf16: bool = False,
        event_extras: dict | None = None, checkpoint_extras: dict | None = None, rank: int = 0) -> dict:
    """Train `model` for `total_steps` steps of `loss_fn(model, batch_for_step(step))`. Built in chapter 07.

    - The schedule (`warmup_steps`, default 6 % of the steps, then linear decay to 0) needs the total in
      advance; `stop_at` ends early at that step (a checkpoint is written; continue later with `resume`).
    - `evaluate_fn(model)` -> dict of floats, every `eval_every` steps (default: 5 times a run) and at the end.
    - With `checkpoint_path`, a checkpoint every `checkpoint_every` steps (default: at each evaluation) and at
      the end; `resume` continues from one, refusing a checkpoint whose run settings differ (`run_settings`:
      what else must match, e.g. the data).
    - `device`: "auto" | "cpu" | "cuda" | "mps" or None (keep the model where it is); batches follow the model.
    - `callback(event)` after every step, evaluation and at the end: {"event": "step" | "eval" | "end",
      "step", "total_steps", "losses", "history"} plus `event_extras` (e.g. the baselines a plot draws);
      `checkpoint_extras` are saved in every checkpoint (e.g. the command that started the run).
    - `rank`: this process's rank in a data-parallel run (`bertnb.distributed`); its dropout masks get their
      own seed. Rank 0 (the default) uses the one-process seed.
    Returns {"losses": per-step dicts, "history": per-evaluation dicts, "final": the last evaluation or None,
    "steps", "total_steps", "warmup_steps", "seconds"}.
    """
    from tqdm.auto import tqdm

    check_int("total_steps", total_steps, low=1)
    warmup_steps = round(0.06 * total_steps) if warmup_steps is None else warmup_steps
    eval_every = check_int("eval_every", max(1, -(-total_steps // 5)) if eval_every is None else eval_every, low=1)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every or eval_every, low=1)
    stop_at = check_int("stop_at", total_steps if stop_at is None else stop_at, low=1, high=total_steps)
    if device is not None:
        model.to(resolve_device(device))
    device = model_device(model)
    optimizer = make_optimizer(model, lr=lr, weight_decay=weight_decay)
    scheduler = make_schedule(optimizer, schedule, warmup_steps, total_steps)
    run = {"total_steps": total_steps, "lr": lr, "warmup_steps": warmup_steps, "schedule": schedule,
           "weight_decay": weight_decay, "clip_norm": clip_norm, "bf16": bf16, "seed": seed, **(run_settings or {})}
    losses, history, start = [], [], 0
    if resume is not None:
        losses, history, start = _resume(resume, model, optimizer, scheduler, run, stop_at)

    def notify(event: str, step: int) -> None:
        if callback is not None:
            callback({"event": event, "step": step, "total_steps": total_steps, "losses": losses,
                      "history": history, **(event_extras or {})})

    def write_checkpoint(step: int) -> None:
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, model, optimizer, scheduler, step,
                            extra={**(checkpoint_extras or {}), "run": run, "losses": losses,
                                   "history": history})

    bar = tqdm(total=total_steps, initial=start, desc=desc, unit="step", dynamic_ncols=True,
               disable=not progress or None)  # None: tqdm decides (TQDM_DISABLE=1 hides it too)
    started = time.perf_counter()
    done = start
    try:
        for step in range(start, stop_at):
            batch = to_device(batch_for_step(step), device)
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(_step_seed(seed, step, rank))  # this step's dropout masks; the global RNG is kept
                lr_now = scheduler.get_last_lr()[0]
                record = train_step(model, batch, optimizer, scheduler, clip_norm, loss_fn, bf16)
            losses.append({"step": step + 1, **record, "lr": lr_now})
            done = step + 1
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k.endswith("loss")}, refresh=False)
            notify("step", done)
            if evaluate_fn is not None and (done % eval_every == 0 or done == total_steps):
                history.append({"step": done, **evaluate_fn(model)})
                notify("eval", done)
            if done % checkpoint_every == 0 and done != stop_at:
                write_checkpoint(done)
    except KeyboardInterrupt:
        bar.close()
        where = f"; the last checkpoint, {checkpoint_path}, is intact: continue with resume=it" if checkpoint_path else ""
        print(f"interrupted after step {done} of {total_steps}{where}")
        raise
    write_checkpoint(stop_at)
    bar.close()
    notify("end", stop_at)
    return {"losses": losses, "history": history, "final": history[-1] if history else None, "steps": stop_at,
            "total_steps": total_steps, "warmup_steps": warmup_steps, "seconds": time.perf_counter() - started}


def _resume(path, model, optimizer, scheduler, run: dict, stop_at: int):
    """Load a checkpoint of the same run; returns (losses, history, step). The global RNG is not restored:
    the loop never draws from it."""
    state = read_checkpoint(path)
    saved = state["extra"].get("run", {})
    different = {k: (saved.get(k), v) for k, v in run.items() if saved.get(k) != v}
    if different:
        raise CheckpointError(f"cannot resume {path}: these settings differ from the run that wrote it "
                              f"(checkpoint, now): {different}. Resume with the settings it was written with.")
    apply_checkpoint(path, state, model, optimizer, scheduler, restore_rng=False)
    if state["step"] > stop_at:
        raise ValueError(f"{path} is at step {state['step']}, past stop_at={stop_at}: it cannot go back")
    # At exactly stop_at the loop takes no step: a run killed after its last checkpoint but before its caller
    # wrote the final files resumes into writing them.
    return list(state["extra"]["losses"]), list(state["extra"]["history"]), state["step"]
