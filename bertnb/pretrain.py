"""Pretrain a small BERT (MLM + NSP) for a fixed number of minutes: `pretrain()` for notebooks, and the command
line. Built in chapter 07.

    python -m bertnb.pretrain --corpus python-docs --minutes 10 --out runs/en-10min
    python -m bertnb.pretrain --corpus peoples-daily --minutes 10 --out runs/zh-10min
    python -m bertnb.pretrain --resume runs/en-10min/checkpoint.pt --out runs/en-10min   # after an interruption
    python -m bertnb.pretrain --corpus my_texts/ --vocab wordpiece --total-steps 5000 --out runs/mine  # your text
    torchrun --standalone --nproc_per_node 2 -m bertnb.pretrain --total-steps 4000 --out runs/ddp  # data-parallel

Going further (README, "Pretraining at scale"): `--corpus PATH` reads your own text through `bertnb.own_corpus`,
and under torchrun every process trains on its shard of each global batch (`bertnb.distributed`); rank 0 writes.

One run is described by one `PretrainConfig`: the command line builds it (each flag's allowed range is the
field's), checkpoints store it, and `--resume` reads it back. The command: checks every argument, builds the
data (`bertnb.data.build_pretraining_data`), turns the minutes into a step count by timing a few real steps
(`bertnb.timing`), trains with `pretrain()` and writes into --out: `checkpoint.pt` (resumable),
`model.safetensors` (weights; config and command in its metadata), `vocab.txt`, `metrics.json`, `loss.png`.
Why the default size: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from bertnb.checkpoint import (CheckpointError, CheckpointWriteError, load_run, publish_run,  # noqa: F401
                               read_checkpoint, save_weights)
from bertnb.corpus import CORPORA
from bertnb.distributed import launched_by_torchrun
from bertnb.validation import check_choice, check_float, check_int


def _setting(default, help: str, low=None, high=None, low_open: bool = False, choices=None, flag: bool = True,
             check=None):
    """A PretrainConfig field: its default, its allowed values (checked in one place) and its --flag's help.
    `check(name, value)` -> the value to keep, for values that are not a number or a fixed choice."""
    return field(default=default, metadata={"help": help, "low": low, "high": high, "low_open": low_open,
                                            "choices": choices, "flag": flag, "check": check})


def _name_or_path(names: tuple, path_is: str):
    """A check that keeps one of `names`, or an existing path (made absolute: a resumed run finds it)."""
    def check(name: str, value) -> str:
        if value in names:
            return value
        if isinstance(value, (str, Path)) and str(value) and Path(value).exists():
            return str(Path(value).resolve())
        raise ValueError(f"{name} must be one of {', '.join(map(repr, names))} or the path of {path_is}; got "
                         f"{value!r} (no such file or folder)")
    return check


VOCAB_KINDS = ("auto", "english", "char", "wordpiece")
_check_corpus = _name_or_path(CORPORA, "a UTF-8 text file or folder of them")
_check_vocab = _name_or_path(VOCAB_KINDS, "a vocab.txt")


@dataclass
class PretrainConfig:
    """Everything that defines a pretraining run. The defaults are the course's small config, chosen by
    measurement on 2 CPU cores (benchmarks/README.md).
    Built in chapter 07."""

    corpus: str = _setting("python-docs", "python-docs (English), peoples-daily (Chinese), or your own: a UTF-8 "
                           "text file or folder (a sentence per line, a blank line between documents)",
                           check=_check_corpus)
    vocab: str = _setting("auto", "your corpus's vocabulary: english (the course's WordPiece), wordpiece or char "
                          "(built from its training documents), or a vocab.txt; auto = english, or the character "
                          "vocabulary for peoples-daily", check=_check_vocab)
    vocab_size: int = _setting(8000, "size of a vocabulary built with --vocab wordpiece or char", 6, 1_000_000)
    seed: int = _setting(0, "seed of the weights, the data split, the masks and the batch order", 0, 2**31 - 1)
    batch_size: int = _setting(32, "B, sequences per step", 1, 4096)
    max_len: int = _setting(64, "m, tokens per sequence ([CLS] A [SEP] B [SEP])", 8, 512)
    max_pred: int = _setting(10, "p, masked positions per sequence at most (< m - 2)", 1, 509)
    layers: int = _setting(4, "L, encoder layers", 1, 48)
    hidden: int = _setting(128, "n, hidden size (a multiple of --heads)", 1, 4096)
    heads: int = _setting(2, "h, attention heads", 1, 64)
    ffn: int = _setting(512, "f, feed-forward size", 1, 16384)
    dropout: float = _setting(0.1, "dropout probability", 0.0, 0.9)
    lr: float = _setting(1e-3, "peak learning rate of AdamW", 0.0, 1.0, low_open=True)
    warmup_frac: float = _setting(0.06, "share of the steps spent warming up", 0.0, 0.5)
    schedule: str = _setting("warmup-linear", "learning-rate schedule", choices=("warmup-linear", "constant"))
    weight_decay: float = _setting(0.01, "AdamW weight decay (not on biases and LayerNorm)", 0.0, 1.0)
    clip_norm: float = _setting(1.0, "gradient clipping norm", 0.0, 1e6, low_open=True)
    init_mlm_bias: bool = _setting(True, "start the MLM output bias at the training labels' log frequencies",
                                   choices=(True, False))
    total_steps: int | None = _setting(None, "steps of the whole run (the schedule spans them); --minutes "
                                       "sets it by timing", 1, 10_000_000)
    eval_every: int | None = _setting(None, "held-out evaluation every N steps (default: 5 per run)", 1, 10_000_000)
    eval_examples: int = _setting(512, "held-out examples per evaluation (an evenly spread, seeded subset)",
                                  1, 10_000_000)
    held_out_fraction: float = _setting(0.1, "share of the documents held out", 0.0, 0.5, low_open=True)
    bf16: str = _setting("auto", "bfloat16 autocast; auto = on where it is fast (bertnb.device.bf16_is_fast)",
                         choices=("auto", "on", "off"))

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if value is None and f.default is None:
                continue
            if meta["check"] is not None:
                setattr(self, f.name, meta["check"](f.name, value))
                continue
            if isinstance(f.default, bool) and not isinstance(value, bool):
                raise TypeError(f"{f.name} must be True or False, got {value!r}")
            if meta["choices"] is not None:
                check_choice(f.name, value, meta["choices"])
            elif isinstance(f.default, float):
                setattr(self, f.name, check_float(f.name, value, meta["low"], meta["high"], meta["low_open"]))
            else:
                check_int(f.name, value, meta["low"], meta["high"])
        check_int("max_pred", self.max_pred, 1, self.max_len - 3)
        if self.corpus in CORPORA and self.vocab != "auto":
            raise ValueError(f"vocab {self.vocab!r} applies to your own corpus only: the built-in {self.corpus} "
                             f"has its own vocabulary (leave vocab at 'auto')")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} must be divisible by heads {self.heads} "
                             f"(each head gets d = n / h features)")

    @classmethod
    def from_dict(cls, saved: dict) -> PretrainConfig:
        """A config saved by any version: unknown keys are dropped, missing ones take today's defaults, and
        the old "on"/"off" spelling of init_mlm_bias is read."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in saved.items() if k in known}
        if values.get("init_mlm_bias") in ("on", "off"):
            values["init_mlm_bias"] = values["init_mlm_bias"] == "on"
        return cls(**values)

    def model_config(self, vocab_size: int):
        from bertnb.model import BertConfig

        return BertConfig(vocab_size=vocab_size, hidden_size=self.hidden, num_layers=self.layers,
                          num_heads=self.heads, ffn_size=self.ffn, max_len=self.max_len, dropout=self.dropout)

    def run_settings(self) -> dict:
        """What a resumed run must share with the checkpoint, beyond the loop's own settings."""
        return {"config": asdict(self)}


# --------------------------------------------------------------------------------------------------------
# Pretraining: the generic loop with BERT's losses, its held-out metrics and baselines


def init_mlm_bias_to_unigram(model, label_counts: dict, smoothing: float = 0.1) -> None:
    """Start the MLM decoder bias at the log unigram probabilities of the training labels. Built in chapter 07.

    At initialisation the logits are about 0 (a uniform guess, ln V = 10.3 nats for V = 30,522), and AdamW moves
    each bias entry by about lr per step, so learning the token frequencies alone takes thousands of steps.
    Starting at log p(token) (add-`smoothing` counts: unseen tokens get a low but finite score) makes step 0
    score the unigram entropy, and every step goes to learning from the context. Training labels only.
    """
    bias = model.mlm.bias  # [V]
    counts = torch.full((bias.shape[0],), float(smoothing), dtype=torch.float64)  # [V]
    for token, count in label_counts.items():
        counts[token] += count
    with torch.no_grad():
        bias.copy_((counts / counts.sum()).log().to(bias.dtype))


def pretrain(model, train_data, heldout_data, cfg: PretrainConfig, *, checkpoint_path=None, resume=None,
             stop_at: int | None = None, callback=None, progress: bool = True, verbose: bool = True,
             device=None, checkpoint_extras: dict | None = None, ranks=None, rivals: bool = False,
             tokenizer=None) -> dict:
    """Pretrain `model` (a BertForPreTraining) for `cfg.total_steps` steps with `bertnb.train.fit`.
    Built in chapter 07. With `rivals`, the n-gram rivals of `bertnb.rivals` join the baselines (and, given the
    `tokenizer`, the text-blind NSP guess): what the command line records in metrics.json.

    Step s trains on `batch_indices(len(train_data), B, seed, s)` with the masks of its epoch (dynamic
    masking). Held-out MLM / NSP accuracy is measured at each evaluation beside the trivial baselines
    (`bertnb.metrics`). Returns fit's dict plus "baselines".

    `ranks` (a `bertnb.distributed.Ranks`, in a process group): data-parallel, each rank trains on its shard
    of the same global batch; only rank 0 evaluates, writes checkpoints and calls `callback`.
    """
    from bertnb.data import batch_indices, heldout_batches, make_batch
    from bertnb.metrics import evaluate, masked_label_counts, pretraining_baselines
    from bertnb.train import fit, pretraining_step_losses

    if cfg.total_steps is None:
        raise ValueError("cfg.total_steps is not set: give a step count (bertnb.timing turns minutes into steps)")
    if len(train_data) == 0:
        raise ValueError("train_data is empty")
    from bertnb.device import resolve_device

    from bertnb.distributed import SINGLE_PROCESS, data_parallel_loss_fn, shard

    ranks = ranks or SINGLE_PROCESS
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    bf16 = resolve_bf16(cfg.bf16, device)
    eval_batches = heldout_batches(heldout_data, cfg.batch_size, cfg.eval_examples, cfg.seed) if heldout_data else []
    label_counts = masked_label_counts(label_count_sample(train_data))
    baselines = pretraining_baselines(label_counts, eval_batches, train_data.special.vocab_size)
    if rivals and eval_batches and ranks.is_main:  # the n-gram rivals on the same held-out slots (10-20 s)
        from bertnb.rivals import rival_baselines

        baselines.update(rival_baselines(train_data, eval_batches, tokenizer))
    if cfg.init_mlm_bias and resume is None:
        init_mlm_bias_to_unigram(model, label_counts)

    def batch_for_step(step: int) -> dict:
        epoch, indices = batch_indices(len(train_data), cfg.batch_size, cfg.seed, step)
        return make_batch(train_data, shard(indices, ranks) if ranks.parallel else indices, epoch)

    loss_fn = pretraining_step_losses
    if ranks.parallel:
        model.to(device)  # DDP wraps the model where it will train
        loss_fn = data_parallel_loss_fn(model, ranks)
        if not ranks.is_main:  # rank 0 alone measures, writes and draws
            eval_batches, checkpoint_path, callback, progress, verbose = [], None, None, False, False

    def evaluate_fn(model) -> dict:
        metrics = evaluate(model, eval_batches, bf16, mask_id=train_data.special.mask_id)
        if verbose:
            print(f"held-out MLM accuracy on [MASK] slots {metrics['mlm_accuracy_mask']:.3f}"
                  + (f" (two-sided n-gram {baselines['mlm_two_sided_mask_accuracy']:.3f})"
                     if "mlm_two_sided_mask_accuracy" in baselines else "") + ", all slots "
                  f"{metrics['mlm_accuracy']:.3f} (most-frequent baseline "
                  f"{baselines['mlm_most_frequent_heldout_accuracy']:.3f})  MLM loss {metrics['mlm_loss']:.3f} "
                  f"(held-out unigram {baselines['mlm_unigram_heldout_cross_entropy']:.3f})  NSP accuracy "
                  f"{metrics['nsp_accuracy']:.3f} "
                  f"(baseline 0.5)", flush=True)
        return metrics

    result = fit(model, loss_fn, batch_for_step, total_steps=cfg.total_steps, lr=cfg.lr,
                 warmup_steps=round(cfg.warmup_frac * cfg.total_steps), weight_decay=cfg.weight_decay,
                 clip_norm=cfg.clip_norm, schedule=cfg.schedule, seed=cfg.seed,
                 evaluate_fn=evaluate_fn if eval_batches else None, eval_every=cfg.eval_every,
                 checkpoint_path=checkpoint_path, resume=resume, stop_at=stop_at,
                 run_settings={**cfg.run_settings(), "num_train_examples": len(train_data)},
                 callback=callback, progress=progress, desc="pretraining", device=device, bf16=bf16,
                 event_extras={"baselines": baselines}, checkpoint_extras=checkpoint_extras, rank=ranks.rank)
    return {**result, "baselines": baselines}


# Counting the masked labels of every training example is one pass of masking in Python: for a corpus of
# millions of examples (your own corpus), an evenly spread sample estimates the frequencies as well.
LABEL_COUNT_SAMPLE = 200_000


def label_count_sample(dataset, max_examples: int = LABEL_COUNT_SAMPLE):
    """`dataset` itself, or an evenly spread view of `max_examples` of its items (with its `set_epoch`).
    Built in chapter 07."""
    if len(dataset) <= max_examples:
        return dataset
    return _EvenlySpread(dataset, max_examples)


class _EvenlySpread:
    def __init__(self, dataset, size: int):
        self.dataset, self.size = dataset, size
        self.epoch = getattr(dataset, "epoch", 0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict:
        return self.dataset[i * len(self.dataset) // self.size]


def resolve_bf16(setting: str, device) -> bool:
    """"auto" | "on" | "off" -> whether to autocast to bfloat16 on `device`. Built in chapter 07."""
    from bertnb.device import bf16_is_fast

    check_choice("bf16", setting, ("auto", "on", "off"))
    return bf16_is_fast(device) if setting == "auto" else setting == "on"


# --------------------------------------------------------------------------------------------------------
# The command line: every PretrainConfig field is a flag


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
    p.add_argument("--cache-dir", default=str(Path("runs") / "cache"),
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
    from bertnb.data import build_pretraining_data, heldout_batches
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
    train_data, heldout_data, tokenizer = pretraining_data(cfg, args.cache_dir, ranks)
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
    if resume_state is not None and resume_state["step"] >= (args.stop_at or cfg.total_steps):
        sys.exit(f"error: {args.resume} is already at step {resume_state['step']}: nothing left to train")

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


def pretraining_data(cfg: PretrainConfig, cache_dir, ranks):
    """(train, held-out, tokenizer) of cfg.corpus: a built-in corpus, or your own, tokenized once into
    `cache_dir` (the first process of each machine builds the cache, the others then read it).
    Built in chapter 07 (your own corpus: going further)."""
    from bertnb import distributed
    from bertnb.data import build_pretraining_data

    if cfg.corpus in CORPORA:
        return build_pretraining_data(corpus=cfg.corpus, max_len=cfg.max_len, max_pred=cfg.max_pred,
                                      held_out_fraction=cfg.held_out_fraction, seed=cfg.seed)
    from bertnb.own_corpus import build_own_corpus_data

    def build():
        return build_own_corpus_data(cfg.corpus, vocab="english" if cfg.vocab == "auto" else cfg.vocab,
                                     vocab_size=cfg.vocab_size, max_len=cfg.max_len, max_pred=cfg.max_pred,
                                     held_out_fraction=cfg.held_out_fraction, seed=cfg.seed, cache_dir=cache_dir)

    if ranks.local_rank == 0:
        data = build()
    distributed.barrier(ranks)
    return data if ranks.local_rank == 0 else build()


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
    if args.resume and read_checkpoint(args.resume)["step"] >= (args.stop_at or cfg.total_steps):
        sys.exit(0)  # rank 0 says why
    train_data, heldout_data, tokenizer = pretraining_data(cfg, args.cache_dir, ranks)
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
