"""Pretrain a small BERT from scratch on a CPU for a fixed number of minutes, from the command line.

    python -m bertnb.pretrain --corpus python-docs --minutes 10 --out runs/en-10min
    python -m bertnb.pretrain --corpus peoples-daily --minutes 10 --out runs/zh-10min
    python -m bertnb.pretrain --resume runs/en-10min/checkpoint.pt --out runs/en-10min   # after an interruption

What it does, in order:
1. checks every argument (a bad one stops it here, naming the value and the allowed range);
2. builds the data (`bertnb.data.build_pretraining_data`): English uses MiniLM's WordPiece vocabulary, Chinese a
   character vocabulary built from the training documents;
3. turns the time budget into a step count: a few real steps are timed (at 1 thread and at torch's default
   thread count, keeping the faster: on a busy or quota-limited machine, such as Binder, more threads can be
   much slower), and the time of the evaluations and checkpoints is set aside. The learning-rate schedule needs
   the total in advance; `--steps N` skips the timing;
4. trains with `bertnb.train.pretrain`, showing a progress bar and a line per held-out evaluation;
5. writes into --out: `checkpoint.pt` (resumable: weights, optimizer, scheduler, step), `model.safetensors`
   (weights only; the config and the command in its metadata), `vocab.txt`, `metrics.json` (config, command,
   steps, seconds, held-out MLM / NSP accuracy over time against the trivial baselines, the machine) and
   `loss.png`.

`load_run(out)` gives back (model, tokenizer, metadata) from such a folder.

The default small config: L = 4, n = 128, h = 2 (d = 64, as BERT's), f = 512, m = 64, p = 10, B = 32, AdamW
lr 1e-3 with 6 % warmup then linear decay, dropout 0.1, the MLM output bias started at the log unigram
frequencies. Chosen by measurement on 2 CPU cores (AVX2, no native bf16), at equal CPU time, 150 s per config:
- With V = 30,522, the vocabulary dominates a small model's step: at 2 / 128, the tied decoder's
  [B * p, n] @ [n, V] product and the log-softmax over V are more than half the time, so 4 layers cost only
  ~1.3 x 2 layers, while n = 256 costs ~2.5 x n = 128 per step (and 4 / 256 is 11.2 M parameters, 45 MB of
  float32; 4 / 128 is 4.8 M, of which 3.9 M are the token embedding).
- In minutes, steps matter most: 4 / 256 at m = 128 (the lead's first suggestion, ~60 steps in 150 CPU
  seconds) and at m = 64 (~120 steps) never got past always guessing "."; 4 / 128 and 2 / 128 at m = 64
  (~260-300 steps) did, slightly. 4 layers keep more capacity for the 10- and 30-minute runs.
- m = 64 halves the step (attention and p both shrink) and gives more NSP pairs (6,242 English training
  pairs at m = 64 against 3,547 at m = 128).
- lr 3e-3 and dropout 0 were not better at this budget. Starting the output bias at the unigram log
  frequencies was (held-out MLM accuracy 9.7 % against 7.0 %, MLM loss 6.16 against 6.37 nats): otherwise the
  first few hundred steps go to learning token frequencies, which AdamW moves by about lr per step.
- bf16 autocast was 8-10 x slower than float32 on this CPU (emulated): `--bf16 auto` turns it on only where
  `bertnb.notebook.cpu_has_bf16()` finds avx512_bf16 or AMX.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

# The default small config, chosen by measurement on 2 CPU cores (see the module docstring).
DEFAULTS = dict(seed=0, batch_size=32, max_len=64, max_pred=10, layers=4, hidden=128, heads=2, ffn=512,
                lr=1e-3, warmup_frac=0.06, dropout=0.1, init_mlm_bias="on", bf16="auto", threads="auto",
                eval_examples=512,
                held_out_fraction=0.1, weight_decay=0.01, clip_norm=1.0)

# What defines a run: on --resume these are read back from the checkpoint.
RUN_ARGS = ("corpus", "seed", "batch_size", "max_len", "max_pred", "layers", "hidden", "heads", "ffn", "lr",
            "warmup_frac", "dropout", "init_mlm_bias", "bf16", "eval_every", "eval_examples", "held_out_fraction",
            "weight_decay", "clip_norm")

CORPORA = ("python-docs", "peoples-daily")


# --------------------------------------------------------------------------------------------------------
# Arguments


def build_parser() -> argparse.ArgumentParser:
    d = DEFAULTS
    p = argparse.ArgumentParser(prog="python -m bertnb.pretrain",
                                description="Pretrain a small BERT (MLM + NSP) on a CPU for a time budget.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--corpus", choices=CORPORA, help="python-docs (English) or peoples-daily (Chinese); "
                   "required unless --resume")
    p.add_argument("--minutes", type=float, help="wall-clock training budget; required unless --steps or --resume")
    p.add_argument("--steps", type=int, help="train exactly this many steps (overrides --minutes)")
    p.add_argument("--stop-at", type=int, help="stop after this step (the schedule still spans the whole run); "
                   "continue later with --resume")
    p.add_argument("--out", required=True, help="output folder, e.g. runs/NAME")
    p.add_argument("--resume", help="a checkpoint.pt to continue (its run settings are used)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished or stopped run already in --out")
    p.add_argument("--seed", type=int, default=d["seed"])
    p.add_argument("--batch-size", type=int, default=d["batch_size"], help="B, sequences per step")
    p.add_argument("--max-len", type=int, default=d["max_len"], help="m, tokens per sequence ([CLS] A [SEP] B [SEP])")
    p.add_argument("--max-pred", type=int, default=d["max_pred"], help="p, masked positions per sequence at most")
    p.add_argument("--layers", type=int, default=d["layers"], help="L")
    p.add_argument("--hidden", type=int, default=d["hidden"], help="n")
    p.add_argument("--heads", type=int, default=d["heads"], help="h (must divide n)")
    p.add_argument("--ffn", type=int, default=d["ffn"], help="f")
    p.add_argument("--lr", type=float, default=d["lr"], help="peak learning rate of AdamW")
    p.add_argument("--warmup-frac", type=float, default=d["warmup_frac"], help="share of the steps spent warming up")
    p.add_argument("--dropout", type=float, default=d["dropout"])
    p.add_argument("--weight-decay", type=float, default=d["weight_decay"])
    p.add_argument("--clip-norm", type=float, default=d["clip_norm"])
    p.add_argument("--init-mlm-bias", choices=("on", "off"), default=d["init_mlm_bias"],
                   help="start the MLM output bias at the training labels' log unigram frequencies")
    p.add_argument("--bf16", choices=("auto", "on", "off"), default=d["bf16"],
                   help="bfloat16 autocast; auto = on where the CPU has native bf16 (avx512_bf16 / AMX)")
    p.add_argument("--threads", default=d["threads"], help="torch threads, or auto (time both 1 and the default)")
    p.add_argument("--eval-every", type=int, help="held-out evaluation every N steps (default: 5 per run)")
    p.add_argument("--eval-examples", type=int, default=d["eval_examples"],
                   help="held-out examples per evaluation (an evenly spread, seeded subset)")
    p.add_argument("--held-out-fraction", type=float, default=d["held_out_fraction"],
                   help="share of the documents held out")
    return p


def _check_range(parser, flag: str, value, low, high, low_open: bool = False) -> None:
    ok = (value > low if low_open else value >= low) and value <= high
    if not ok or (isinstance(value, float) and not math.isfinite(value)):
        bracket = "(" if low_open else "["
        parser.error(f"{flag} {value} is out of range: allowed {bracket}{low}, {high}]")


def parse_args(argv=None) -> argparse.Namespace:
    """Parse and check everything before any work; a bad value exits (status 2) naming the allowed range."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume is None:
        if args.corpus is None:
            parser.error("--corpus is required (python-docs or peoples-daily) unless --resume is given")
        if args.minutes is None and args.steps is None:
            parser.error("give a budget: --minutes M (wall clock) or --steps N")
    elif not Path(args.resume).is_file():
        parser.error(f"--resume {args.resume}: no such checkpoint file")
    if args.minutes is not None:
        _check_range(parser, "--minutes", args.minutes, 0, 24 * 60, low_open=True)
    if args.steps is not None:
        _check_range(parser, "--steps", args.steps, 1, 10_000_000)
    if args.stop_at is not None:
        _check_range(parser, "--stop-at", args.stop_at, 1, args.steps or 10_000_000)
    _check_range(parser, "--seed", args.seed, 0, 2**31 - 1)
    _check_range(parser, "--batch-size", args.batch_size, 1, 4096)
    _check_range(parser, "--max-len", args.max_len, 8, 512)
    _check_range(parser, "--max-pred", args.max_pred, 1, args.max_len - 3)
    _check_range(parser, "--layers", args.layers, 1, 48)
    _check_range(parser, "--heads", args.heads, 1, 64)
    _check_range(parser, "--hidden", args.hidden, args.heads, 4096)
    if args.hidden % args.heads:
        parser.error(f"--hidden {args.hidden} must be divisible by --heads {args.heads} "
                     f"(each head gets d = n / h features)")
    _check_range(parser, "--ffn", args.ffn, 1, 16384)
    _check_range(parser, "--lr", args.lr, 0, 1, low_open=True)
    _check_range(parser, "--warmup-frac", args.warmup_frac, 0, 0.5)
    _check_range(parser, "--dropout", args.dropout, 0, 0.9)
    _check_range(parser, "--weight-decay", args.weight_decay, 0, 1)
    _check_range(parser, "--clip-norm", args.clip_norm, 0, 1e6, low_open=True)
    if args.eval_every is not None:
        _check_range(parser, "--eval-every", args.eval_every, 1, 10_000_000)
    _check_range(parser, "--eval-examples", args.eval_examples, 1, 10_000_000)
    _check_range(parser, "--held-out-fraction", args.held_out_fraction, 0, 0.5, low_open=True)
    if args.threads != "auto":
        try:
            args.threads = int(args.threads)
        except ValueError:
            parser.error(f"--threads {args.threads!r} must be auto or an int in [1, {os.cpu_count()}]")
        _check_range(parser, "--threads", args.threads, 1, os.cpu_count() or 1)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"--out {args.out} exists and is not a folder")
    if args.resume is None and (out / "checkpoint.pt").exists() and not args.overwrite:
        parser.error(f"--out {args.out} already holds a run (checkpoint.pt): continue it with "
                     f"--resume {out / 'checkpoint.pt'}, or pass --overwrite, or choose another --out")
    return args


# --------------------------------------------------------------------------------------------------------
# Building blocks


def build_model(args, vocab_size: int):
    from bertnb.model import BertConfig, BertForPreTraining

    cfg = BertConfig(vocab_size=vocab_size, hidden_size=args.hidden, num_layers=args.layers, num_heads=args.heads,
                     ffn_size=args.ffn, max_len=args.max_len, dropout=args.dropout)
    torch.manual_seed(args.seed)  # the initial weights depend only on the seed
    return BertForPreTraining(cfg)


def write_vocab(path: Path, tokenizer) -> None:
    tokens = [token for token, _ in sorted(tokenizer.vocab.items(), key=lambda item: item[1])]
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(threads: int, bf16: bool) -> dict:
    from bertnb.notebook import cpu_has_bf16

    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": threads,
            "cpu_has_bf16": cpu_has_bf16(), "bf16_autocast": bf16, "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def measure_costs(model, train_data, eval_batches, args, bf16: bool, out: Path, threads_to_try: list[int]) -> dict:
    """Time real steps (on a copy of the model) at each thread count, one held-out evaluation and one
    checkpoint write. Returns the fastest thread count and the seconds each thing takes."""
    from bertnb.train import (batch_indices, evaluate, interleaved_seconds, make_batch, make_optimizer,
                              save_checkpoint, train_step)

    trial = copy.deepcopy(model)
    optimizer = make_optimizer(trial, lr=args.lr)
    batches = [make_batch(train_data, idx, epoch)
               for epoch, idx in (batch_indices(len(train_data), args.batch_size, args.seed, s) for s in range(3))]

    def step_at(threads):
        def step(round_):
            torch.set_num_threads(threads)
            train_step(trial, batches[round_ % 3], optimizer, None, args.clip_norm, bf16)
        return step

    # Interleaved (1, 2, 1, 2, ...), so a neighbour's burst of work slows every candidate alike.
    with torch.random.fork_rng(devices=[]):
        step_seconds = interleaved_seconds({threads: step_at(threads) for threads in threads_to_try}, rounds=4)
    best = min(step_seconds, key=step_seconds.get)
    torch.set_num_threads(best)
    start = time.perf_counter()
    evaluate(trial, eval_batches, bf16)
    eval_seconds = time.perf_counter() - start
    start = time.perf_counter()
    probe = out / ".timing-checkpoint.pt"
    save_checkpoint(probe, trial, optimizer)
    checkpoint_seconds = time.perf_counter() - start
    probe.unlink()
    return {"threads": best, "seconds_per_step": step_seconds[best],
            "seconds_per_step_by_threads": {str(k): v for k, v in step_seconds.items()},
            "eval_seconds": eval_seconds, "checkpoint_seconds": checkpoint_seconds}


# --------------------------------------------------------------------------------------------------------
# The command


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    command = "python -m bertnb.pretrain " + shlex.join(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_start = load_average()

    from bertnb.data import build_pretraining_data
    from bertnb.notebook import cpu_has_bf16
    from bertnb.train import LiveLossPlot, heldout_batches, pretrain, save_weights, steps_in_budget

    resume_state = None
    if args.resume is not None:
        resume_state = torch.load(args.resume, map_location="cpu", weights_only=True)
        saved = resume_state["extra"]["args"]
        for name in RUN_ARGS:  # the run continues exactly as it started
            setattr(args, name, saved[name])
        args.total_steps, args.threads = saved["total_steps"], saved["threads"]
        command = resume_state["extra"].get("command", command)  # the command that started the run
        print(f"resuming {args.resume} at step {resume_state['step']} of {args.total_steps}")

    bf16 = {"auto": cpu_has_bf16(), "on": True, "off": False}[args.bf16]
    if bf16 and not cpu_has_bf16():
        print("warning: this CPU has no native bfloat16 (avx512_bf16 / AMX): bf16 autocast is emulated and "
              "much slower than float32 here", file=sys.stderr)

    start = time.perf_counter()
    train_data, heldout_data, tokenizer = build_pretraining_data(
        corpus=args.corpus, max_len=args.max_len, max_pred=args.max_pred,
        held_out_fraction=args.held_out_fraction, seed=args.seed)
    data_seconds = time.perf_counter() - start
    print(f"data: {args.corpus}, {len(train_data)} training / {len(heldout_data)} held-out NSP examples, "
          f"V = {len(tokenizer)}, m = {args.max_len}, p = {args.max_pred} ({data_seconds:.1f} s)")
    write_vocab(out / "vocab.txt", tokenizer)

    model = build_model(args, len(tokenizer))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: L = {args.layers}, n = {args.hidden}, h = {args.heads}, f = {args.ffn}, "
          f"{n_params / 1e6:.1f} M parameters ({len(tokenizer) * args.hidden / 1e6:.1f} M in the token embedding)")

    start = time.perf_counter()
    costs = None
    if resume_state is None:
        default_threads = torch.get_num_threads()
        to_try = ([default_threads, 1] if default_threads > 1 else [1]) if args.threads == "auto" else [args.threads]
        if args.steps is not None and args.threads != "auto":
            torch.set_num_threads(args.threads)
        else:  # a time budget, or a thread count to choose: measure
            eval_batches = heldout_batches(heldout_data, args.batch_size, args.eval_examples, args.seed)
            costs = measure_costs(model, train_data, eval_batches, args, bf16, out, to_try)
            args.threads = costs["threads"]
            by_threads = ", ".join(f"{k} thread(s): {v:.2f} s" for k, v in costs["seconds_per_step_by_threads"].items())
            print(f"timing: {costs['seconds_per_step']:.2f} s/step at {costs['threads']} thread(s) ({by_threads}); "
                  f"an evaluation {costs['eval_seconds']:.1f} s, a checkpoint {costs['checkpoint_seconds']:.1f} s")
            busy = load_average()
            if busy and busy[0] > (os.cpu_count() or 1):
                print(f"note: the machine is busy (load average {busy[0]} on {os.cpu_count()} cores): the step "
                      f"count is fixed now, so the run may take longer than the budget")
        if args.steps is not None:
            args.total_steps = args.steps
        else:
            # eval_every defaults to a fifth of the run; each evaluation also writes a checkpoint
            rough_steps = args.minutes * 60 / costs["seconds_per_step"]
            num_evals = math.ceil(rough_steps / args.eval_every) if args.eval_every else 5
            overhead = num_evals * (costs["eval_seconds"] + costs["checkpoint_seconds"])
            args.total_steps = steps_in_budget(costs["seconds_per_step"], args.minutes, overhead)
            print(f"budget: {args.minutes:g} min -> {args.total_steps} steps "
                  f"({overhead:.0f} s set aside for evaluations and checkpoints)")
    else:
        torch.set_num_threads(args.threads)
    timing_seconds = time.perf_counter() - start

    eval_every = args.eval_every or max(1, math.ceil(args.total_steps / 5))
    stop_at = min(args.stop_at, args.total_steps) if args.stop_at else None
    if resume_state is not None and resume_state["step"] >= (stop_at or args.total_steps):
        sys.exit(f"error: {args.resume} is already at step {resume_state['step']}: nothing left to train")
    warmup_steps = round(args.warmup_frac * args.total_steps)
    extra = {"args": {**{name: getattr(args, name) for name in RUN_ARGS}, "total_steps": args.total_steps,
                      "threads": args.threads},
             "command": command, "config": asdict(model.cfg)}
    result = pretrain(model, train_data, heldout_data, total_steps=args.total_steps, batch_size=args.batch_size,
                      lr=args.lr, warmup_steps=warmup_steps, weight_decay=args.weight_decay,
                      clip_norm=args.clip_norm, bf16=bf16, seed=args.seed, eval_every=eval_every,
                      eval_examples=args.eval_examples, init_mlm_bias=args.init_mlm_bias == "on",
                      checkpoint_path=out / "checkpoint.pt",
                      checkpoint_every=eval_every, resume=args.resume, stop_at=stop_at, extra=extra)

    metadata = {"format": "bertnb.model.BertForPreTraining", "config": json.dumps(asdict(model.cfg)),
                "command": command, "corpus": args.corpus, "vocab": "vocab.txt", "do_lower_case": "true",
                "steps": str(result["steps"]),
                "final": json.dumps(result["final"])}
    save_weights(out / "model.safetensors", model, metadata)
    plot = LiveLossPlot()
    plot.figure({"event": "end", **{k: result[k] for k in ("total_steps", "losses", "history", "baselines")},
                 "step": result["steps"]}).savefig(out / "loss.png")

    losses = [r["loss"] for r in result["losses"]]
    head = losses[:20]
    tail = losses[-20:]
    metrics = {
        "command": command,
        "corpus": args.corpus,
        "config": asdict(model.cfg),
        "parameters": n_params,
        "args": extra["args"],
        "steps": result["steps"],
        "total_steps": result["total_steps"],
        "warmup_steps": result["warmup_steps"],
        "examples_seen": result["steps"] * args.batch_size,
        "epochs": result["steps"] * args.batch_size / len(train_data),
        "train_examples": len(train_data),
        "heldout_examples_evaluated": min(len(heldout_data), args.eval_examples),
        "seconds": {"data": round(data_seconds, 2), "timing": round(timing_seconds, 2),
                    "training_this_process": round(result["seconds"], 2),
                    "per_step_this_process": round(result["seconds"] / max(1, len(losses) - (
                        resume_state["step"] if resume_state else 0)), 4)},
        "timing": costs,
        "final": result["final"],
        "baselines": result["baselines"],
        "history": result["history"],
        "train_loss": {"first_20_mean": sum(head) / len(head), "last_20_mean": sum(tail) / len(tail),
                       "per_step": [round(x, 4) for x in losses]},
        "machine": {**machine_info(torch.get_num_threads(), bf16), "load_average_start": load_start,
                    "load_average_end": load_average()},
        "resumed_from": args.resume,
        "resume_command": "python -m bertnb.pretrain " + shlex.join(argv) if args.resume else None,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    final, base = result["final"], result["baselines"]
    print(f"done: {result['steps']} of {result['total_steps']} steps in {result['seconds']:.0f} s.")
    if final is not None:
        print(f"held-out (step {final['step']}): MLM accuracy {final['mlm_accuracy']:.3f} (most-frequent-token "
              f"baseline {base['mlm_most_frequent_heldout_accuracy']:.3f}), MLM loss {final['mlm_loss']:.3f} nats "
              f"(unigram entropy {base['mlm_unigram_entropy']:.3f}), NSP accuracy {final['nsp_accuracy']:.3f} "
              f"(baseline 0.5)")
    if result["steps"] < result["total_steps"]:
        print(f"stopped early; continue with: python -m bertnb.pretrain --resume {out / 'checkpoint.pt'} "
              f"--out {out}")
    print(f"wrote {out}/checkpoint.pt, model.safetensors, vocab.txt, metrics.json, loss.png")
    return metrics


def load_run(path):
    """A folder written by this command (or its model.safetensors) -> (model in eval mode, tokenizer, metadata)."""
    from safetensors import safe_open

    from bertnb.model import BertConfig, BertForPreTraining
    from bertnb.tokenization import BertTokenizer
    from bertnb.train import load_weights

    path = Path(path)
    weights = path / "model.safetensors" if path.is_dir() else path
    with safe_open(str(weights), framework="pt") as f:
        metadata = dict(f.metadata() or {})
    model = BertForPreTraining(BertConfig(**json.loads(metadata["config"])))
    load_weights(weights, model)
    tokenizer = BertTokenizer(str(weights.parent / metadata.get("vocab", "vocab.txt")),
                              do_lower_case=metadata.get("do_lower_case", "true") == "true")
    return model.eval(), tokenizer, metadata


def publish_run(run_dir, out_dir, max_bytes: int = 10_000_000) -> dict:
    """Copy a finished run into a small committable checkpoint folder (checkpoints/NAME): the weights stored
    as float16 safetensors (half the size; `load_run` reads them back into a float32 model), vocab.txt,
    metrics.json and loss.png. The held-out metrics are measured again after the float16 rounding and
    recorded beside the float32 ones, so the rounding's cost is shown, not assumed.

        python -c "from bertnb.pretrain import publish_run; publish_run('runs/en-30min', 'checkpoints/en-python-docs')"
    """
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    from bertnb.data import build_pretraining_data
    from bertnb.train import atomic_write, evaluate, heldout_batches

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    with safe_open(str(run_dir / "model.safetensors"), framework="pt") as f:
        metadata = dict(f.metadata() or {})
        weights = {name: f.get_tensor(name) for name in f.keys()}
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
    model, _, _ = load_run(out_dir)
    args = metrics["args"]
    _, heldout, _ = build_pretraining_data(args["corpus"], max_len=args["max_len"], max_pred=args["max_pred"],
                                           held_out_fraction=args["held_out_fraction"], seed=args["seed"])
    batches = heldout_batches(heldout, args["batch_size"], args["eval_examples"], args["seed"])
    metrics["final_after_float16_storage"] = evaluate(model, batches)
    metrics["train_loss"].pop("per_step", None)  # keep the committed file small; the run folder has it
    metrics["published_from"] = str(run_dir)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    size = (out_dir / "model.safetensors").stat().st_size
    if size > max_bytes:
        raise ValueError(f"{out_dir}/model.safetensors is {size:,} bytes: over the {max_bytes:,}-byte limit for "
                         f"committed checkpoints")
    return metrics


if __name__ == "__main__":
    main()
