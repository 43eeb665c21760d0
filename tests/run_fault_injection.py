"""Fault injection: a small pretraining run killed with SIGKILL again and again, resumed each time, must end
bit-identical to an uninterrupted run; and a run whose checkpoint cannot be written stops with a clear message.

- Kills come at seeded random moments, and some exactly while a checkpoint is being written (the script
  waits for the atomic writer's temporary file to appear, then kills).
- After every kill the checkpoint on disk must load: the previous one is intact, never a torn file.
- A file-size limit (`ulimit -f`) makes the checkpoint write fail: the run must exit with a clear message,
  no traceback, and leave the previous checkpoint as it was.

    python -m tests.run_fault_injection        (what `make test-faults` runs; CI runs it)
"""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--corpus", "python-docs", "--total-steps", "80", "--eval-every", "4", "--eval-examples", "16",
        "--layers", "1", "--hidden", "32", "--heads", "2", "--ffn", "64", "--max-len", "32", "--max-pred", "5",
        "--batch-size", "8", "--threads", "1", "--bf16", "off", "--device", "cpu"]


ENV = {**os.environ, "TQDM_DISABLE": "1"}  # no progress bar filling a pipe nobody reads while it runs


def command(*more: str) -> list[str]:
    return [sys.executable, "-m", "bertnb.pretrain", *more]


def checkpoint_state(path: Path):
    """(step, losses) of a checkpoint, or None when there is none yet. Raises if the file is torn."""
    if not path.exists():
        return None
    from bertnb.checkpoint import read_checkpoint

    state = read_checkpoint(path)
    return state["step"], state["extra"]["losses"]


def weights(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "model.safetensors"))


def run_with_kills(out: Path, rng: random.Random, kills: int) -> tuple[int, int]:
    """Start, kill, resume until `kills` kills were done and the run then finished. Returns (kills, of them
    during a checkpoint write)."""
    checkpoint = out / "checkpoint.pt"
    done = during_write = 0
    while True:
        argv = (command("--resume", str(checkpoint), "--out", str(out)) if checkpoint.exists()
                else command(*TINY, "--out", str(out), "--overwrite"))
        before = checkpoint_state(checkpoint)
        process = subprocess.Popen(argv, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done == kills:
            _, errors = process.communicate(timeout=600)
            if process.returncode:
                sys.exit(f"the final resume failed:\n{errors[-2000:]}")
            return done, during_write
        aim_at_write = done % 2 == 1  # every other kill waits for a checkpoint write in progress
        hit_write = wait_for_moment(process, checkpoint, aim_at_write, rng)
        if process.poll() is not None:  # it finished before the kill: the run is complete
            if process.returncode:
                sys.exit(f"run ended with status {process.returncode}:\n{process.stderr.read()[-2000:]}")
            return done, during_write
        process.send_signal(signal.SIGKILL)
        process.wait()
        done += 1
        during_write += hit_write
        after = checkpoint_state(checkpoint)  # must load: intact, never torn
        if before is not None and (after is None or after[0] < before[0]):
            sys.exit(f"kill {done}: the checkpoint went back from step {before[0]} to {after and after[0]}")
        print(f"kill {done}{' (during a checkpoint write)' if hit_write else ''}: checkpoint at step "
              f"{after[0] if after else '-'} loads intact", flush=True)


def wait_for_moment(process, checkpoint: Path, aim_at_write: bool, rng: random.Random) -> bool:
    """Let the run make progress (a new checkpoint after the one it started from, so a kill costs work), then
    return at a random moment, or as soon as a checkpoint write is under way. True if it caught a write."""
    def stamp():
        return checkpoint.stat().st_mtime_ns if checkpoint.exists() else None

    start, deadline = stamp(), time.monotonic() + 300
    while process.poll() is None and stamp() == start and time.monotonic() < deadline:
        time.sleep(0.01)
    if not aim_at_write:
        time.sleep(rng.uniform(0.0, 0.6))
        return False
    while process.poll() is None and time.monotonic() < deadline:
        if any(checkpoint.parent.glob(".checkpoint.pt.*.tmp")):
            return True
        time.sleep(0.0005)
    return False


def failing_write(out: Path) -> None:
    """A file-size limit lets the first checkpoint through, then makes a later write fail."""
    first = subprocess.run(command(*TINY, "--out", str(out), "--stop-at", "4"), cwd=ROOT, env=ENV, capture_output=True,
                           text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    before = (out / "checkpoint.pt").read_bytes()
    limit = len(before) // 2  # a fresh checkpoint is as large as the last: it cannot fit

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so the write fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    second = subprocess.run(command("--resume", str(out / "checkpoint.pt"), "--out", str(out)), cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=600, preexec_fn=limit_file_size)
    assert second.returncode != 0, "the run went on although its checkpoint could not be written"
    assert "could not write the checkpoint" in second.stderr and "Traceback" not in second.stderr, second.stderr[-2000:]
    assert (out / "checkpoint.pt").read_bytes() == before, "the last good checkpoint changed"
    assert not list(out.glob(".checkpoint.pt.*.tmp")), "a temporary file was left behind"
    print("write failure (file-size limit): clear message, no traceback, last checkpoint untouched", flush=True)


def main(kills: int = 6, seed: int = 0) -> int:
    with tempfile.TemporaryDirectory(prefix="bertnb-faults-") as folder:
        straight, killed = Path(folder) / "straight", Path(folder) / "killed"
        subprocess.run(command(*TINY, "--out", str(straight)), cwd=ROOT, env=ENV, check=True, stdout=subprocess.DEVNULL)
        count, during_write = run_with_kills(killed, random.Random(seed), kills)
        a, b = weights(straight), weights(killed)
        difference = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
        same_losses = checkpoint_state(straight / "checkpoint.pt")[1] == checkpoint_state(killed / "checkpoint.pt")[1]
        print(f"{count} kills ({during_write} during a checkpoint write), resumed each time: max abs weight "
              f"difference to the uninterrupted run {difference}, losses identical: {same_losses}", flush=True)
        if difference != 0.0 or not same_losses or a.keys() != b.keys():
            print("1 failed: the killed-and-resumed run differs from the uninterrupted one")
            return 1
        failing_write(Path(folder) / "full-disk")
    print("2 passed, 0 failed")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
