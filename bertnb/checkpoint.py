"""Checkpoints: everything needed to resume a run exactly, written atomically so a crash never leaves a torn
file; and the small weights-only files the course commits. Built in chapter 07.

- `save_checkpoint` / `load_checkpoint`: weights, optimizer and scheduler state, RNG states, the step and
  the run's settings, in one `torch.save` file, read back with `weights_only=True` (no pickled code runs).
- `save_weights` / `load_weights`: weights only, as safetensors; `load_run` rebuilds (model, tokenizer,
  metadata) from a run folder, `publish_run` turns a run into a small committed checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn


def rng_states() -> dict:
    """Python, NumPy and torch RNG states, in types `torch.load(weights_only=True)` accepts. Built in chapter 07."""
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
    """Call write(tmp_path), then move it over `path` in one step: a crash mid-write never leaves a torn file.
    Built in chapter 07."""
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


# The checkpoint format's version: a file from a newer bertnb (a higher number) is refused with a clear error
# instead of failing somewhere inside `load_state_dict`.
CHECKPOINT_FORMAT = "bertnb-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: damaged, not a checkpoint, or from another run. The message names
    the file, what is wrong and what to do.
    Built in chapter 07."""


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (a full disk, a read-only folder); the previous checkpoint is untouched."""


def save_checkpoint(path, model, optimizer=None, scheduler=None, step: int = 0, extra: dict | None = None) -> None:
    """Everything needed to resume exactly: weights, optimizer and scheduler state, RNG states, step.
    Built in chapter 07."""
    state = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "model": model.state_dict(),
             "step": step, "rng": rng_states(), "extra": extra or {}}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    try:
        atomic_write(path, lambda tmp: torch.save(state, tmp))
    except (OSError, RuntimeError) as err:  # torch.save reports a failed write as a RuntimeError
        raise CheckpointWriteError(f"could not write the checkpoint {path} at step {step} "
                                   f"({type(err).__name__}: {str(err).splitlines()[0][:160]}). The previous "
                                   f"checkpoint there is untouched: free disk space or choose another folder, then "
                                   f"resume from it.") from err


def read_checkpoint(path) -> dict:
    """The checkpoint's contents, or a CheckpointError naming what is wrong. `weights_only=True`: no pickled
    code can run, so a file from elsewhere cannot execute anything while being read.
    Built in chapter 07."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError (torn zip), UnpicklingError, EOFError, ...
        raise CheckpointError(
            f"{path} is damaged or not a bertnb checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:120]}). "
            f"Nothing was loaded. Resume from another checkpoint, or start the run again "
            f"(`python -m bertnb.pretrain ... --overwrite`).") from None
    if not isinstance(state, dict) or not {"model", "step"} <= state.keys():
        raise CheckpointError(f"{path} is a torch file but not a bertnb checkpoint (it has no model weights and "
                              f"step). Pass the checkpoint.pt that `bertnb.pretrain` wrote.")
    version = state.get("version", 1)  # files written before the version field are version 1
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} was written by a newer bertnb (checkpoint format {version}; this one reads "
                              f"up to {CHECKPOINT_VERSION}). Upgrade bertnb to resume it.")
    return state


def load_checkpoint(path, model, optimizer=None, scheduler=None, restore_rng: bool = True) -> dict:
    """Load a checkpoint written by save_checkpoint into `model` (and optimizer, scheduler). Built in chapter 07."""
    return apply_checkpoint(path, read_checkpoint(path), model, optimizer, scheduler, restore_rng)


def apply_checkpoint(path, state: dict, model, optimizer=None, scheduler=None, restore_rng: bool = True) -> dict:
    """Copy a read checkpoint into the model (and optimizer, scheduler). The weights are checked against the
    model before anything is copied, so a mismatch leaves the model as it was.
    Built in chapter 07."""
    check_same_shapes(path, model.state_dict(), state["model"])
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng:
        set_rng_states(state["rng"])
    return state


def check_same_shapes(path, expected: dict, found: dict) -> None:
    """Refuse weights of another model (other names or shapes) with the first differences named. Built in chapter 07."""
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    reshaped = [f"{k} {tuple(found[k].shape)} (model: {tuple(expected[k].shape)})"
                for k in expected.keys() & found.keys() if found[k].shape != expected[k].shape]
    if missing or unexpected or reshaped:
        details = "; ".join(part for part in (
            f"missing {missing[:3]}" if missing else "", f"unexpected {unexpected[:3]}" if unexpected else "",
            f"other shapes: {', '.join(sorted(reshaped)[:3])}" if reshaped else "") if part)
        raise CheckpointError(f"{path} holds the weights of another model or vocabulary ({details}). Build the "
                              f"model with the config and corpus of the run that wrote it.")


def save_weights(path, model, metadata: dict | None = None) -> None:
    """Model weights only, as safetensors (the small committed checkpoints under checkpoints/). Built in chapter 07."""
    from safetensors.torch import save_model

    atomic_write(path, lambda tmp: save_model(model, tmp, metadata={k: str(v) for k, v in (metadata or {}).items()}))


def load_weights(path, model) -> nn.Module:
    """Weights from a safetensors file into `model` (float16 files are cast to the model's dtype), checked
    against the model first: other names or shapes raise before anything is copied.
    Built in chapter 07."""
    found, _ = read_safetensors(path)
    state = model.state_dict()
    by_storage = {}  # tied weights (the MLM decoder is the token embedding) are stored once, under one name
    for name, tensor in state.items():
        by_storage.setdefault(tensor.data_ptr(), []).append(name)
    expected = {}
    for names in by_storage.values():
        present = [name for name in names if name in found]
        expected[(present or names)[0]] = state[names[0]]
    check_same_shapes(path, expected, found)
    with torch.no_grad():
        for name, tensor in found.items():
            state[name].copy_(tensor)  # state_dict tensors share storage with the parameters
    return model


def read_safetensors(path) -> tuple[dict, dict]:
    """(tensors, metadata) of a safetensors file, or a CheckpointError naming what is wrong. Built in chapter 07."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {name: f.get_tensor(name) for name in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is damaged or not a safetensors file ({str(err)[:120]}). Restore it "
                              f"(`git checkout -- {path}` for a committed checkpoint) or write it again.") from None


def load_run(path):
    """A run folder (or its model.safetensors) -> (BertForPreTraining in eval mode, tokenizer, metadata).

    The folder is what `python -m bertnb.pretrain` writes (and what `bertnb.resources.checkpoint_dir` finds
    for the committed checkpoints): model.safetensors with the config in its metadata, and vocab.txt.
    Built in chapter 07.
    """
    from bertnb.model import BertConfig, BertForPreTraining
    from bertnb.tokenization import BertTokenizer

    path = Path(path)
    weights = path / "model.safetensors" if path.is_dir() else path
    _, metadata = read_safetensors(weights)
    if "config" not in metadata:
        raise CheckpointError(f"{weights} has no model config in its metadata, so the model it belongs to is "
                              f"unknown: load it into a model you build yourself with "
                              f"bertnb.checkpoint.load_weights(path, model).")
    model = BertForPreTraining(BertConfig(**json.loads(metadata["config"])))
    load_weights(weights, model)
    vocab = weights.parent / metadata.get("vocab", "vocab.txt")
    if not vocab.is_file():
        raise FileNotFoundError(f"{vocab}, the vocabulary of {weights}, is missing: copy it from the run folder")
    tokenizer = BertTokenizer(str(vocab), do_lower_case=metadata.get("do_lower_case", "true") == "true")
    if len(tokenizer) != model.cfg.vocab_size:
        raise CheckpointError(f"{vocab} has {len(tokenizer)} tokens but {weights} was trained with V = "
                              f"{model.cfg.vocab_size}: the vocabulary belongs to another run")
    return model.eval(), tokenizer, metadata


def publish_run(run_dir, out_dir, max_bytes: int = 10_000_000) -> dict:
    """Copy a finished run into a small committable checkpoint folder (checkpoints/NAME): the weights stored
    as float16 safetensors (half the size; `load_run` reads them back into a float32 model), vocab.txt,
    metrics.json and loss.png. The held-out metrics are measured again after the float16 rounding and
    recorded beside the float32 ones, so the rounding's cost is shown, not assumed.

        python -c "from bertnb.checkpoint import publish_run; publish_run('runs/en-30min', 'bertnb/assets/checkpoints/en-python-docs')"
    Built in chapter 07.
    """
    import shutil

    from safetensors.torch import save_file

    from bertnb.metrics import evaluate
    from bertnb.pretrain import run_heldout_batches

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    weights, metadata = read_safetensors(run_dir / "model.safetensors")
    half = {name: tensor.half() if tensor.is_floating_point() else tensor for name, tensor in weights.items()}
    tensor_bytes = sum(tensor.numel() * tensor.element_size() for tensor in half.values())
    if tensor_bytes > max_bytes:  # refuse before anything in out_dir is replaced
        raise ValueError(f"{run_dir}'s weights are {tensor_bytes:,} bytes in float16: over the {max_bytes:,}-byte "
                         f"limit for committed checkpoints")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "model.safetensors",
                 lambda tmp: save_file(half, tmp, metadata={**metadata, "stored_dtype": "float16"}))
    for name in ("vocab.txt", "loss.png"):
        shutil.copyfile(run_dir / name, out_dir / name)
    model, tokenizer, _ = load_run(out_dir)
    _, batches, data_tokenizer = run_heldout_batches(run_dir)  # the held-out set the run was evaluated on
    if data_tokenizer.vocab != tokenizer.vocab:
        raise ValueError(f"{run_dir}: the corpus no longer builds the run's vocabulary; its held-out set cannot "
                         f"be rebuilt")
    metrics["final_after_float16_storage"] = evaluate(model, batches, mask_id=tokenizer.mask_id)
    metrics["train_loss"].pop("per_step", None)  # keep the committed file small; the run folder has it
    metrics["published_from"] = str(run_dir)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    size = (out_dir / "model.safetensors").stat().st_size
    if size > max_bytes:
        raise ValueError(f"{out_dir}/model.safetensors is {size:,} bytes: over the {max_bytes:,}-byte limit for "
                         f"committed checkpoints")
    return metrics
