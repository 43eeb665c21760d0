"""The pretraining command line: `python -m bertnb.pretrain ...` (and under torchrun). Built in chapter 07.

Every `PretrainConfig` field is a flag with the field's allowed range; the command checks every argument,
builds the data, turns `--minutes` into a step count by timing real steps, trains with
`bertnb.pretrain.pretrain` and writes the run folder (checkpoint.pt, model.safetensors, vocab.txt,
metrics.json, loss.png). `bertnb/pretrain.py` holds the library half: the config and the loop.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from bertnb.checkpoint import CheckpointError, CheckpointWriteError, read_checkpoint, save_weights
from bertnb.distributed import launched_by_torchrun
from bertnb.pretrain import DEFAULT_CACHE_DIR, PretrainConfig, pretrain, resolve_bf16, run_data
from bertnb.validation import check_int


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bertnb.pretrain", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description="Pretrain a small BERT (MLM + NSP) for a time budget.")
    p.add_argument("--out", required=True, help="output folder, e.g. runs/NAME")
    p.add_argument("--minutes", type=float, help="wall-clock training budget (timed into --total-steps)")
    p.add_argument("--stop-at", type=int, help="stop after this step (the schedule still spans the whole run)")
    p.add_argument("--resume", help="a checkpoint.pt to continue (its run config is used)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                   help="auto = CUDA when present, then MPS, else the CPU")
    p.add_argument("--threads", default="auto", help="torch CPU threads, or auto (time 1 and the default)")
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR),
                   help="where your own corpus is tokenized to, once (memory-mapped afterwards)")
    for f in dataclasses.fields(PretrainConfig):
        meta, name = f.metadata, "--" + f.name.replace("_", "-")
        allowed = (f" (one of {', '.join(map(str, meta['choices']))})" if meta["choices"] else
                   f" (in {'(' if meta['low_open'] else '['}{meta['low']}, {meta['high']}])")
        if f.name == "init_mlm_bias":
            p.add_argument(name, choices=("on", "off"), default="on", help=meta["help"])
            continue
        if meta["choices"]:
            p.add_argument(name, choices=meta["choices"], default=f.default, help=meta["help"])
            continue
        if meta["check"] is not None:  # a name or a path, checked by the config
            p.add_argument(name, default=f.default, help=meta["help"])
            continue
        kind = float if isinstance(f.default, float) else int
        p.add_argument(name, type=kind, default=f.default, help=meta["help"] + allowed)
    p.add_argument("--steps", dest="total_steps", type=int, help=argparse.SUPPRESS)  # the old name
    return p


def parse_args(argv=None):
    """argv -> (PretrainConfig, invocation args). Everything is checked before any work; a bad value exits
    (status 2) naming the allowed values.
    Built in chapter 07."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume is not None:
        try:
            saved = read_checkpoint(args.resume)["extra"]
            cfg = PretrainConfig.from_dict(saved.get("run", {}).get("config") or saved["args"])
        except (OSError, ValueError, KeyError) as err:
            parser.error(f"--resume {args.resume}: {err}")
    else:
        if args.minutes is None and args.total_steps is None:
            parser.error("give a budget: --minutes M (wall clock) or --total-steps N")
        if args.minutes is not None and not 0 < args.minutes <= 24 * 60:
            parser.error(f"--minutes {args.minutes} is out of range: allowed (0, 1440]")
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(PretrainConfig)}
        values["init_mlm_bias"] = args.init_mlm_bias == "on"
        try:
            cfg = PretrainConfig(**values)
        except (TypeError, ValueError) as err:
            parser.error(str(err).replace("_", "-"))
    if args.threads != "auto":
        try:
            args.threads = check_int("--threads", int(args.threads) if args.threads.isdigit() else args.threads,
                                     1, torch.get_num_threads() * 4)
        except (TypeError, ValueError) as err:
            parser.error(str(err))
    if launched_by_torchrun() and args.minutes is not None:
        parser.error("--minutes is not supported under torchrun (each process would time itself): give "
                     "--total-steps N; a one-process run with --minutes tells you the seconds per step")
    if args.stop_at is not None and not 1 <= args.stop_at <= (cfg.total_steps or 10_000_000):
        parser.error(f"--stop-at {args.stop_at} is out of range: allowed [1, total steps]")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"--out {args.out} exists and is not a folder")
    if args.resume is None and (out / "checkpoint.pt").exists() and not args.overwrite:
        parser.error(f"--out {args.out} already holds a run (checkpoint.pt): continue it with "
                     f"--resume {out / 'checkpoint.pt'}, or pass --overwrite, or choose another --out")
    return cfg, args


def measure_costs(model, train_data, eval_batches, cfg: PretrainConfig, bf16: bool, out: Path,
                  threads_to_try: list[int]) -> dict:
    """Time real steps (on a copy of the model) at each thread count, one held-out evaluation and one checkpoint
    write. Returns the fastest thread count and the seconds each thing takes.
    Built in chapter 07."""
    from bertnb.checkpoint import save_checkpoint
    from bertnb.data import batch_indices, make_batch
    from bertnb.metrics import evaluate
    from bertnb.timing import interleaved_seconds
    from bertnb.train import make_optimizer, train_step

    trial = copy.deepcopy(model)
    optimizer = make_optimizer(trial, lr=cfg.lr)
    batches = [make_batch(train_data, idx, epoch) for epoch, idx in
               (batch_indices(len(train_data), cfg.batch_size, cfg.seed, s) for s in range(3))]
    device = next(trial.parameters()).device

    def step_at(threads):
        def step(round_):
            torch.set_num_threads(threads)
            batch = {k: v.to(device) for k, v in batches[round_ % 3].items()}
            train_step(trial, batch, optimizer, None, cfg.clip_norm, bf16=bf16)
        return step

    with torch.random.fork_rng(devices=[]):  # interleaved (1, 2, 1, 2, ...): a neighbour's burst slows all alike
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


def main(argv=None) -> dict:
    from bertnb.data import heldout_batches
    from bertnb.device import resolve_device
    from bertnb.model import BertForPreTraining
    from bertnb.plots import LiveLossPlot
    from bertnb.timing import load_average, machine_info, plan_steps

    from bertnb import distributed

    argv = sys.argv[1:] if argv is None else list(argv)
    cfg, args = parse_args(argv)
    command = "python -m bertnb.pretrain " + shlex.join(argv)
    out = Path(args.out)
    device = resolve_device(args.device)
    ranks = distributed.init_from_environment(device.type)  # one process, or one rank of torchrun's group
    if not ranks.is_main:
        return _run_rank(cfg, args, ranks, device)
    out.mkdir(parents=True, exist_ok=True)
    load_start = load_average()
    device = distributed.rank_device(device, ranks)
    bf16 = resolve_bf16(cfg.bf16, device)
    resume_state = read_checkpoint(args.resume) if args.resume else None
    if resume_state is not None:
        command = resume_state["extra"].get("command", command)  # the command that started the run
        args.threads = resume_state["extra"].get("threads", args.threads)
        print(f"resuming {args.resume} at step {resume_state['step']} of {cfg.total_steps}")

    start = time.perf_counter()
    train_data, heldout_data, tokenizer = run_data(cfg, args.cache_dir, ranks)
    data_seconds = time.perf_counter() - start
    print(f"data: {cfg.corpus}, {len(train_data)} training / {len(heldout_data)} held-out NSP examples, "
          f"V = {len(tokenizer)}, m = {cfg.max_len}, p = {cfg.max_pred} ({data_seconds:.1f} s)")
    write_vocab(out / "vocab.txt", tokenizer)
    torch.manual_seed(cfg.seed)  # the initial weights depend only on the seed
    model = BertForPreTraining(cfg.model_config(len(tokenizer))).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: L = {cfg.layers}, n = {cfg.hidden}, h = {cfg.heads}, f = {cfg.ffn}, {n_params / 1e6:.1f} M "
          f"parameters, on {device}")

    if ranks.parallel:
        print(f"data-parallel: {ranks.world_size} processes, each {cfg.batch_size // ranks.world_size}-"
              f"{-(-cfg.batch_size // ranks.world_size)} of the B = {cfg.batch_size} examples of every step")
    costs = None
    if ranks.parallel:  # torchrun sets OMP_NUM_THREADS (1 by default) for each process
        if args.threads != "auto":
            torch.set_num_threads(args.threads)
    elif resume_state is None and (args.minutes is not None or args.threads == "auto"):
        default = torch.get_num_threads()
        to_try = ([default, 1] if default > 1 else [1]) if args.threads == "auto" else [args.threads]
        if device.type != "cpu":
            to_try = [default]
        eval_batches = heldout_batches(heldout_data, cfg.batch_size, cfg.eval_examples, cfg.seed)
        costs = measure_costs(model, train_data, eval_batches, cfg, bf16, out, to_try)
        args.threads = costs["threads"]
        print(f"timing: {costs['seconds_per_step']:.3f} s/step at {costs['threads']} thread(s); an evaluation "
              f"{costs['eval_seconds']:.1f} s, a checkpoint {costs['checkpoint_seconds']:.1f} s")
        if args.minutes is not None:
            cfg.total_steps = plan_steps(args.minutes, costs["seconds_per_step"], costs["eval_seconds"],
                                         costs["checkpoint_seconds"], cfg.eval_every)
            print(f"budget: {args.minutes:g} min -> {cfg.total_steps} steps")
    elif args.threads != "auto":
        torch.set_num_threads(args.threads)
    if resume_state is not None:
        refuse_or_finish(args.resume, resume_state["step"], args.stop_at or cfg.total_steps)

    result = _train(model, train_data, heldout_data, cfg, args, ranks, device, out / "checkpoint.pt",
                    {"command": command, "threads": torch.get_num_threads()}, tokenizer)
    metadata = {"format": "bertnb.model.BertForPreTraining", "config": json.dumps(asdict(model.cfg)),
                "command": command, "corpus": cfg.corpus, "vocab": "vocab.txt", "do_lower_case": "true",
                "steps": str(result["steps"]), "final": json.dumps(result["final"])}
    save_weights(out / "model.safetensors", model, metadata)
    LiveLossPlot().figure({"event": "end", "step": result["steps"], **{k: result[k] for k in (
        "total_steps", "losses", "history", "baselines")}}).savefig(out / "loss.png")
    metrics = run_metrics(cfg, result, command, n_params, len(train_data), len(heldout_data), costs, data_seconds)
    metrics["machine"] = {**machine_info(device, torch.get_num_threads(), bf16), "load_average_start": load_start,
                          "load_average_end": load_average()}
    metrics["resumed_from"] = args.resume
    metrics["processes"] = ranks.world_size
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    print_summary(result, out)
    distributed.finish(ranks)  # the other ranks wait here until rank 0 has written everything
    return metrics


def refuse_or_finish(checkpoint, step: int, target: int) -> None:
    """A checkpoint past the step asked for cannot go back; one exactly at it trains no step and writes the run's
    files (model.safetensors, metrics.json, loss.png): what is left when a run was killed after its last
    checkpoint but before writing them."""
    if step > target:
        sys.exit(f"error: {checkpoint} is already at step {step}, past step {target}: nothing left to train")
    if step == target:
        print(f"{checkpoint} is already at step {step}: no step left to train, writing the run's files")


def _train(model, train_data, heldout_data, cfg, args, ranks, device, checkpoint_path, extras, tokenizer) -> dict:
    """pretrain(), with the errors that end a run turned into one clear line (and no traceback)."""
    from bertnb import distributed

    if ranks.parallel:
        distributed.stop_cleanly_on_sigterm()
    try:
        return pretrain(model, train_data, heldout_data, cfg, checkpoint_path=checkpoint_path, resume=args.resume,
                        stop_at=args.stop_at, device=device, checkpoint_extras=extras, ranks=ranks,
                        rivals=True, tokenizer=tokenizer)
    except (CheckpointError, CheckpointWriteError) as err:  # damaged, foreign or unwritable: no traceback
        sys.exit(f"error: {err}")
    except Exception as err:
        if ranks.parallel and distributed.is_communication_error(err):
            distributed.exit_after_failure(err, ranks, checkpoint_path)
        raise


def _run_rank(cfg: PretrainConfig, args, ranks, device) -> dict:
    """A rank other than 0: the same data, model and steps on its shard; it writes and prints nothing."""
    from bertnb import distributed
    from bertnb.model import BertForPreTraining

    device = distributed.rank_device(device, ranks)
    if args.resume and read_checkpoint(args.resume)["step"] > (args.stop_at or cfg.total_steps):
        sys.exit(0)  # rank 0 says why
    train_data, heldout_data, tokenizer = run_data(cfg, args.cache_dir, ranks)
    torch.manual_seed(cfg.seed)
    model = BertForPreTraining(cfg.model_config(len(tokenizer))).to(device)
    if args.threads != "auto":
        torch.set_num_threads(args.threads)
    result = _train(model, train_data, heldout_data, cfg, args, ranks, device, Path(args.out) / "checkpoint.pt", {},
                    tokenizer)
    distributed.finish(ranks)
    return {"steps": result["steps"], "rank": ranks.rank}


def write_vocab(path: Path, tokenizer) -> None:
    tokens = [token for token, _ in sorted(tokenizer.vocab.items(), key=lambda item: item[1])]
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")


def run_metrics(cfg, result, command, n_params, num_train, num_heldout, costs, data_seconds) -> dict:
    losses = [r["loss"] for r in result["losses"]]
    return {
        "command": command, "corpus": cfg.corpus, "pretrain_config": asdict(cfg), "parameters": n_params,
        "steps": result["steps"], "total_steps": result["total_steps"], "warmup_steps": result["warmup_steps"],
        "examples_seen": result["steps"] * cfg.batch_size, "epochs": result["steps"] * cfg.batch_size / num_train,
        "train_examples": num_train, "heldout_examples_evaluated": min(num_heldout, cfg.eval_examples),
        "seconds": {"data": round(data_seconds, 2), "training_this_process": round(result["seconds"], 2)},
        "timing": costs, "final": result["final"], "baselines": result["baselines"], "history": result["history"],
        "train_loss": {"first_20_mean": sum(losses[:20]) / max(1, len(losses[:20])),
                       "last_20_mean": sum(losses[-20:]) / max(1, len(losses[-20:])),
                       "per_step": [round(x, 4) for x in losses]},
    }


def print_summary(result: dict, out: Path) -> None:
    final, base = result["final"], result["baselines"]
    print(f"done: {result['steps']} of {result['total_steps']} steps in {result['seconds']:.0f} s.")
    if final is not None:
        if "mlm_accuracy_mask" in final:
            rival = base.get("mlm_two_sided_mask_accuracy")
            print(f"held-out [MASK] slots: MLM accuracy {final['mlm_accuracy_mask']:.3f}"
                  + (f" against the two-sided n-gram's {rival:.3f}" if rival is not None else ""))
        print(f"held-out (step {final['step']}): MLM accuracy {final['mlm_accuracy']:.3f} (most-frequent-token "
              f"baseline {base['mlm_most_frequent_heldout_accuracy']:.3f}), MLM loss {final['mlm_loss']:.3f} nats "
              f"(held-out unigram cross-entropy {base['mlm_unigram_heldout_cross_entropy']:.3f}), NSP accuracy "
              f"{final['nsp_accuracy']:.3f}" + (f" (text-blind guess {base['nsp_text_blind_accuracy']:.3f})"
                                                if "nsp_text_blind_accuracy" in base else ""))
    if result["steps"] < result["total_steps"]:
        print(f"stopped early; continue with: python -m bertnb.pretrain --resume {out / 'checkpoint.pt'} --out {out}")
    print(f"wrote {out}/checkpoint.pt, model.safetensors, vocab.txt, metrics.json, loss.png")


if __name__ == "__main__":
    main()
