"""From a wall-clock budget to a step count, and what the run's machine was. Built in chapter 07.

The learning-rate schedule needs its total number of steps in advance, so "train for 10 minutes" becomes a
fixed step count before training: a few real steps are timed, the evaluations' and checkpoints' time is set
aside, and the rest is divided by the time per step. The timing takes a clock argument, so the planning can
be tested with a fake clock (no wall-clock assertion in a test).
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import torch

from bertnb.validation import check_float, check_int


def interleaved_seconds(step_fns: dict, rounds: int = 4, clock=time.perf_counter) -> dict:
    """Time several candidates fairly: call each `step_fns[name](round)` once per round, round-robin, so a
    neighbour's burst of work slows every candidate alike. The first round pays one-off costs (allocations,
    kernel selection) and is dropped; returns {name: median seconds of the other rounds}.
    Built in chapter 07."""
    check_int("rounds", rounds, low=2)
    times = {name: [] for name in step_fns}
    for round_ in range(rounds):
        for name, step_fn in step_fns.items():
            start = clock()
            step_fn(round_)
            times[name].append(clock() - start)
    return {name: statistics.median(t[1:]) for name, t in times.items()}


def steps_in_budget(step_seconds: float, minutes: float, overhead_seconds: float = 0.0) -> int:
    """floor((budget - overhead) / seconds per step), at least 1. Built in chapter 07."""
    check_float("minutes", minutes, low=0, low_open=True)
    check_float("step_seconds", step_seconds, low=0, low_open=True)
    return max(1, int((minutes * 60 - overhead_seconds) / step_seconds))


def plan_steps(minutes: float, step_seconds: float, eval_seconds: float, checkpoint_seconds: float,
               eval_every: int | None = None, evaluations: int = 5) -> int:
    """The step count for a budget: each evaluation (and the checkpoint written with it) is set aside first.
    With `eval_every` unset a run evaluates `evaluations` times.
    Built in chapter 07."""
    rough_steps = minutes * 60 / step_seconds
    num_evals = -(-int(rough_steps) // eval_every) if eval_every else evaluations  # ceil
    return steps_in_budget(step_seconds, minutes, num_evals * (eval_seconds + checkpoint_seconds))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info(device, threads: int, bf16: bool) -> dict:
    """What ran a measurement: the figures it gives are only meaningful beside this. Built in chapter 07."""
    from bertnb.device import cpu_has_bf16

    device = torch.device(device)
    info = {"device": str(device), "cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": threads,
            "cpu_has_bf16": cpu_has_bf16(), "bf16_autocast": bf16, "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
