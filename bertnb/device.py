"""Which device runs the model, and the mixed precision that is fast there. Built in chapter 07.

`resolve_device("auto")` is CUDA when present, then Apple's MPS, else the CPU. Batches follow the model
(`to_device`). bfloat16 autocast is the norm on GPUs that support it; on a CPU it is fast only with native
bf16 instructions (avx512_bf16 or AMX): elsewhere it is emulated and several times slower than float32.
"""

from __future__ import annotations

import contextlib

import torch

from bertnb.validation import check_choice

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """"auto" | "cpu" | "cuda" | "mps" (or a torch.device) -> a torch.device that exists on this machine.
    Built in chapter 07."""
    if isinstance(name, torch.device):
        return name
    check_choice("device", name, DEVICES)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if not available[name]:
        raise ValueError(f"device {name!r} is not available on this machine; use 'auto' or 'cpu'")
    return torch.device(name)


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def to_device(batch: dict, device) -> dict:
    """A batch (a dict of tensors) on `device`; the tensors already there are not copied. Built in chapter 07."""
    return {key: value.to(device, non_blocking=True) if torch.is_tensor(value) else value
            for key, value in batch.items()}


def cpu_has_bf16() -> bool:
    """True where the CPU has native bfloat16 arithmetic (avx512_bf16 or AMX), so bf16 autocast is fast.
    Built in chapter 07."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_is_fast(device) -> bool:
    """Whether bfloat16 autocast pays off on `device`: GPUs that support it, CPUs with native bf16.
    Built in chapter 07."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_bf16()


def autocast_context(device, bf16: bool):
    """bfloat16 autocast on `device` when asked; a no-op context otherwise. Built in chapter 07."""
    device = torch.device(device)
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
