"""Data-parallel pretraining on this machine: 1 process against N processes (torchrun, gloo or NCCL), one run.

    python benchmarks/ddp_scaling.py                      # 1 process (1 thread, all threads), 2 processes x 1 thread
    python benchmarks/ddp_scaling.py --steps 20 --processes 2 4 --device cuda    # on a machine with 4 GPUs

The course's default model (L = 4, n = 128, h = 2, f = 512, V = 30,522, B = 32 global, m = 64, p = 10), dropout 0,
trained for --steps steps on the English corpus written out as "your own corpus" (the memory-mapped cache of
bertnb.own_corpus, built once before any timing). Each rank reports its training seconds (bertnb.train.fit's clock,
no evaluation, no checkpoint) and its peak resident memory (ru_maxrss); the row gives the slowest rank and the
largest memory. The first 3 steps are run and discarded as warm-up in each process. Printed as markdown rows, the
way README's "Pretraining at scale" shows them. Not a test: timings depend on what else the machine runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 3


def corpus_file(folder: Path) -> Path:
    from bertnb.corpus import write_corpus_text

    return write_corpus_text("python-docs", folder)


def worker(args) -> None:
    """One rank (or the one process): warm up, train --steps steps, write its figures to --run-dir."""
    import torch

    from bertnb import distributed
    from bertnb.model import BertForPreTraining
    from bertnb.own_corpus import build_own_corpus_data
    from bertnb.pretrain import PretrainConfig, pretrain

    device = torch.device(args.device)
    ranks = distributed.init_from_environment(device.type)
    device = distributed.rank_device(device, ranks)
    if args.threads:
        torch.set_num_threads(args.threads)
    train, _, tokenizer = build_own_corpus_data(args.corpus, max_len=64, max_pred=10, cache_dir=args.cache_dir)
    cfg = PretrainConfig(total_steps=WARMUP + args.steps, dropout=0.0, bf16="off", init_mlm_bias=False)
    torch.manual_seed(0)
    model = BertForPreTraining(cfg.model_config(len(tokenizer))).to(device)
    # Warm-up steps, then every rank resumes from rank 0's checkpoint of them: the timed steps start warm.
    warm_checkpoint = Path(args.run_dir) / "warm.pt"
    pretrain(model, train, None, cfg, stop_at=WARMUP, progress=False, verbose=False, device=device, ranks=ranks,
             checkpoint_path=warm_checkpoint)
    distributed.barrier(ranks)
    timed = pretrain(model, train, None, cfg, resume=warm_checkpoint, progress=False, verbose=False, device=device,
                     ranks=ranks)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes
    gpu_mb = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    report = {"rank": ranks.rank, "world_size": ranks.world_size, "seconds": timed["seconds"], "steps": args.steps,
              "peak_rss_mb": round(peak_mb), "gpu_peak_mb": gpu_mb, "threads": torch.get_num_threads(),
              "loss": timed["losses"][-1]["loss"]}
    (Path(args.run_dir) / f"rank-{ranks.rank}.json").write_text(json.dumps(report))  # one file each: no interleaving
    distributed.finish(ranks)


def launch(processes: int, threads: int, args) -> list[dict]:
    run_dir = Path(tempfile.mkdtemp(dir=args.cache_dir, prefix="ddp-bench-"))
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--corpus", str(args.corpus),
               "--cache-dir", str(args.cache_dir), "--steps", str(args.steps), "--device", args.device,
               "--threads", str(threads), "--run-dir", str(run_dir)]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                   str(processes)] + command[1:]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads or os.cpu_count()), "TQDM_DISABLE": "1",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{processes} process(es) failed:\n{done.stderr[-3000:]}")
    reports = [json.loads(path.read_text()) for path in sorted(run_dir.glob("rank-*.json"))]
    shutil.rmtree(run_dir)
    return reports


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--processes", type=int, nargs="+", default=[2])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", default=str(ROOT / "runs" / "cache"))
    p.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)

    sys.path.insert(0, str(ROOT))
    from bertnb.own_corpus import build_own_corpus_data

    Path(args.cache_dir).mkdir(parents=True, exist_ok=True)
    args.corpus = corpus_file(Path(args.cache_dir))
    build_own_corpus_data(args.corpus, max_len=64, max_pred=10, cache_dir=args.cache_dir)  # the cache, once
    cores = os.cpu_count()
    runs = [(1, 1), (1, cores)] if args.device == "cpu" else [(1, 1)]  # ratios against 1 process x 1 thread
    runs += [(n, 1) for n in args.processes]
    from bertnb.timing import load_average

    print(f"{platform.processor() or platform.machine()}, {cores} CPU cores, device {args.device}, global B = 32, "
          f"{args.steps} timed steps after {WARMUP} warm-up steps; load average {load_average()} at the start\n")
    print("| processes x threads | steps/s | examples/s | peak RSS per rank (MB) | final loss |")
    print("|---|---|---|---|---|")
    baseline = None
    for processes, threads in runs:
        ranks = launch(processes, threads, args)
        seconds = max(r["seconds"] for r in ranks)
        steps_per_s = args.steps / seconds
        baseline = baseline or steps_per_s
        gpu = f", GPU {max(r['gpu_peak_mb'] for r in ranks):.0f} MB" if ranks[0]["gpu_peak_mb"] else ""
        print(f"| {processes} x {threads} | {steps_per_s:.2f} ({steps_per_s / baseline:.2f}x) | {32 * steps_per_s:.0f} | "
              f"{max(r['peak_rss_mb'] for r in ranks)}{gpu} | {ranks[0]['loss']:.4f} |", flush=True)
    print(f"\nload average {load_average()} at the end (other work on the machine slows some rows more than others)")


if __name__ == "__main__":
    main()
