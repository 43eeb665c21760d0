"""Data-parallel pretraining over several processes: torchrun + DistributedDataParallel (DDP).
Going further, chapter 07.

    torchrun --standalone --nproc_per_node 2 -m bertnb.pretrain --total-steps 2000 --out runs/ddp   # 2 CPU ranks
    torchrun --standalone --nproc_per_node 8 -m bertnb.pretrain --device cuda ... # 8 GPUs, one machine

What N processes do, and why they reproduce one process:

- **The same global batch.** Step s's batch is still `bertnb.data.batch_indices(..., s)` (B examples); rank r
  takes the rows `indices[r::N]` (`shard`). Strided rather than contiguous: `DistributedSampler` does the same,
  and it works for any B (the shards differ by at most one example).
- **The global loss, not the mean of the ranks' losses.** The MLM loss is a weighted mean over the real
  prediction slots, and shards hold different slot counts, so a plain mean of the ranks' means is not the
  global mean. `shard_weighted_losses` scales each rank's loss by its share of the global slot count (and of
  the B NSP examples); DDP then averages the gradients, which is exactly the gradient of the global loss.
- **The same update.** Clipping runs after backward, on the averaged gradient, so every rank clips and steps
  alike; the optimizer states stay equal without ever being sent.
- **Dropout** draws its masks per rank (seeded by seed, step and rank), so with dropout > 0 N processes are the
  same training statistically, not bit for bit; with dropout 0 they give the one-process losses up to float
  rounding (tests/test_distributed.py).
- **Only rank 0 writes** (checkpoints, metrics, plots, evaluations). The checkpoint does not depend on N, so a
  run resumes under any number of processes.
"""

from __future__ import annotations

import datetime
import os
import signal
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from bertnb.validation import check_int

# The dropout seed of rank r adds r << 52 to rank 0's seed, which stays below 2**52 (seed < 2**31 times 10**6
# plus the step): every (seed, step, rank) gets its own seed up to 4096 ranks, and rank 0 keeps the
# one-process seed.
MAX_WORLD_SIZE = 4096


@dataclass(frozen=True)
class Ranks:
    """Who this process is: its rank among `world_size` processes, and its rank on its own machine.
    Going further, chapter 07."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world_size > 1


SINGLE_PROCESS = Ranks()


def launched_by_torchrun() -> bool:
    """True inside a process that torchrun started with more than one process in all. Going further, chapter 07."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_environment(device_type: str = "cpu", timeout_s: float = 600.0) -> Ranks:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT); a plain `python -m` run is the single process. Going further, chapter 07.

    gloo carries the gradients between CPU processes, NCCL between GPUs. `timeout_s` bounds how long a rank
    waits for the others in one collective before it gives up with an error.
    """
    if not launched_by_torchrun():
        return SINGLE_PROCESS
    return init(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)),
                device_type=device_type, init_method="env://", timeout_s=timeout_s)


def init(rank: int, world_size: int, local_rank: int = 0, *, device_type: str = "cpu", init_method: str,
         timeout_s: float = 600.0) -> Ranks:
    """Join a process group explicitly (the tests use a file:// rendezvous: no port to pick).
    Going further, chapter 07."""
    check_int("world_size", world_size, 1, MAX_WORLD_SIZE)
    check_int("rank", rank, 0, world_size - 1)
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)  # one GPU per process: rank k of a machine takes GPU k
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=timeout_s))
    return Ranks(rank, world_size, local_rank)


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """The device of this rank: its own GPU on a CUDA machine, else `device`. Going further, chapter 07."""
    if device.type == "cuda" and ranks.parallel:
        return torch.device("cuda", ranks.local_rank)
    return device


def finish(ranks: Ranks) -> None:
    """Wait for every rank (rank 0 may still be writing its files), then leave the group. Going further, chapter 07."""
    if ranks.parallel and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    """Every rank waits here until all have arrived (e.g. rank 0 builds a cache the others then read)."""
    if ranks.parallel:
        dist.barrier()


# --------------------------------------------------------------------------------------------------------
# The shard of the global batch, and its share of the global loss


def shard(indices: list[int], ranks: Ranks) -> list[int]:
    """Rank r's rows of a global batch: indices[r::N]. Going further, chapter 07."""
    if len(indices) < ranks.world_size:
        raise ValueError(f"a batch of {len(indices)} examples cannot be shared by {ranks.world_size} processes: "
                         f"use --batch-size >= {ranks.world_size} (the global batch) or fewer processes")
    return indices[ranks.rank::ranks.world_size]


def shard_weighted_losses(model, batch: dict, world_size: int) -> dict:
    """This rank's pretraining loss, weighted so that DDP's gradient average is the global batch's gradient.
    Going further, chapter 07.

    One process computes mlm = sum(w * CE) / W over the W real slots of the global batch, and nsp = the mean
    over its B examples. Rank r sees W_r slots and B_r examples: its loss mlm_r = sum_r(w * CE) / W_r. So the
    global mlm = sum over ranks of (W_r / W) * mlm_r, and likewise nsp = sum of (B_r / B) * nsp_r. DDP divides the
    summed gradients by N: each rank back-propagates N times its share.
    """
    from bertnb.train import pretraining_step_losses

    counts = torch.stack([batch["mlm_weights"].sum(),  # W_r: real prediction slots (padded slots weigh 0)
                          torch.tensor(float(len(batch["nsp_labels"])), device=batch["mlm_weights"].device)])
    totals = counts.clone()
    dist.all_reduce(totals)  # [W, B]
    shares = counts / totals.clamp(min=1.0)  # the MLM loss divides by max(W, 1) too
    losses = pretraining_step_losses(model, batch)
    parts = torch.stack([shares[0] * losses["mlm_loss"], shares[1] * losses["nsp_loss"]])  # [2]
    global_parts = parts.detach().clone()
    dist.all_reduce(global_parts)  # the global batch's MLM and NSP losses, for the record
    local = world_size * parts.sum()
    # Its value is the global loss (what one process would report); its gradient is this rank's share.
    loss = local + (global_parts.sum() - local).detach()
    return {"loss": loss, "mlm_loss": global_parts[0], "nsp_loss": global_parts[1]}


class _LossOfModel(nn.Module):
    """DDP synchronises the gradients of what runs through its forward: this module's forward is the loss."""

    def __init__(self, model, world_size: int):
        super().__init__()
        self.model, self.world_size = model, world_size

    def forward(self, batch: dict) -> dict:
        return shard_weighted_losses(self.model, batch, self.world_size)


def data_parallel_loss_fn(model, ranks: Ranks):
    """A `loss_fn(model, batch)` for `bertnb.train.train_step` whose backward averages the gradients over the
    ranks (DistributedDataParallel's buckets, overlapped with the backward pass). Going further, chapter 07.

    Wrapping broadcasts rank 0's weights to every rank, so the ranks start equal even if their seeds differed.
    """
    device = next(model.parameters()).device
    wrapped = DistributedDataParallel(_LossOfModel(model, ranks.world_size),
                                      device_ids=[device.index] if device.type == "cuda" else None)

    def loss_fn(_model, batch: dict) -> dict:
        return wrapped(batch)

    return loss_fn


# --------------------------------------------------------------------------------------------------------
# When a rank fails


class RankFailure(RuntimeError):
    """Another rank failed (or torchrun stopped this one): the run ends; the last checkpoint is intact."""


def stop_cleanly_on_sigterm() -> None:
    """When one rank dies, torchrun's agent sends SIGTERM to the others. Turn it into an exception, so the
    process says why it stops instead of vanishing. A checkpoint write in progress is abandoned (its temporary
    file removed); the previous checkpoint is untouched, because checkpoints are replaced in one rename.
    Going further, chapter 07."""
    def handler(signum, frame):
        raise RankFailure("stopped by torchrun (SIGTERM): another rank failed or the run was cancelled")

    signal.signal(signal.SIGTERM, handler)


def is_communication_error(err: BaseException) -> bool:
    """True for the errors a collective raises when a peer is gone (gloo: connection closed or reset, a
    timeout; NCCL: a DistBackendError). Going further, chapter 07."""
    if isinstance(err, (RankFailure, dist.DistError)):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and any(
        sign in text for sign in ("gloo", "nccl", "connection closed", "connection reset", "timed out", "peer"))


def rank_failure_message(err: BaseException, ranks: Ranks, checkpoint_path) -> str:
    """One clear line for a rank that lost its peers: what happened, and how to continue. Going further,
    chapter 07."""
    from pathlib import Path

    from bertnb.checkpoint import read_checkpoint

    where = "no checkpoint was written yet: start the run again"
    if checkpoint_path is not None and Path(checkpoint_path).is_file():
        step = read_checkpoint(checkpoint_path)["step"]
        where = (f"the last checkpoint, {checkpoint_path} (step {step}), is intact (checkpoints are replaced in "
                 f"one rename): resume with --resume {checkpoint_path}, under any number of processes")
    first_line = (str(err).splitlines() or [type(err).__name__])[0][:160]
    return (f"error: rank {ranks.rank} of {ranks.world_size} lost contact with another process "
            f"({type(err).__name__}: {first_line}); {where}")


def exit_after_failure(err: BaseException, ranks: Ranks, checkpoint_path):
    """Say why this rank stops (`rank_failure_message`), then exit with status 1. Going further, chapter 07.

    torchrun sends SIGTERM to the survivors a moment later: it is ignored from here on, so it cannot interrupt
    the exit half-way and bury the message under a traceback."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(rank_failure_message(err, ranks, checkpoint_path), file=sys.stderr, flush=True)
    sys.exit(1)
