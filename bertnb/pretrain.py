"""Pretrain a small BERT (MLM + NSP) for a fixed number of minutes: `PretrainConfig` and `pretrain()`, for
notebooks and for the command line (whose code is in `bertnb.pretrain_cli`). Built in chapter 07.

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

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from bertnb.checkpoint import load_run, publish_run  # noqa: F401 (where chapter 07 and the README find them)
from bertnb.corpus import CORPORA
from bertnb.own_corpus import DEFAULT_CACHE_DIR  # where a corpus read as text is tokenized to
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
                          "vocabulary for peoples-daily (a built-in corpus with another vocabulary is read as text, "
                          "as your own)", check=_check_vocab)
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
    sinusoidal_positions: float = _setting(0.0, "start the learned position table at chapter 02's sinusoidal "
                                           "table scaled to this standard deviation (0 = BERT's normal(0, 0.02))",
                                           0.0, 10.0)
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
        if self.sinusoidal_positions and self.hidden % 2:
            raise ValueError(f"sinusoidal_positions needs an even hidden size (a sine and a cosine per "
                             f"frequency), got hidden {self.hidden}")
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
# A run's data: built from its config, or rebuilt from its folder exactly as the run saw it


def run_data(cfg: PretrainConfig, cache_dir=DEFAULT_CACHE_DIR, ranks=None):
    """(train, held-out, tokenizer) of cfg.corpus: a built-in corpus with its own vocabulary
    (`bertnb.data.build_pretraining_data`), or text (your own corpus, or a built-in one with another vocabulary,
    e.g. a WordPiece fitted to it) tokenized once into `cache_dir`. Under torchrun the first process of each
    machine builds the cache and the others then read it. Built in chapter 07 (your own corpus: going further).
    """
    from bertnb import distributed
    from bertnb.data import build_pretraining_data

    if cfg.corpus in CORPORA and cfg.vocab == "auto":
        return build_pretraining_data(corpus=cfg.corpus, max_len=cfg.max_len, max_pred=cfg.max_pred,
                                      held_out_fraction=cfg.held_out_fraction, seed=cfg.seed)
    from bertnb.corpus import write_corpus_text
    from bertnb.own_corpus import build_own_corpus_data

    def build():
        corpus = write_corpus_text(cfg.corpus, cache_dir) if cfg.corpus in CORPORA else cfg.corpus
        return build_own_corpus_data(corpus, vocab="english" if cfg.vocab == "auto" else cfg.vocab,
                                     vocab_size=cfg.vocab_size, max_len=cfg.max_len, max_pred=cfg.max_pred,
                                     held_out_fraction=cfg.held_out_fraction, seed=cfg.seed, cache_dir=cache_dir)

    ranks = ranks or distributed.SINGLE_PROCESS
    if ranks.local_rank == 0:
        data = build()
    distributed.barrier(ranks)
    return data if ranks.local_rank == 0 else build()


def saved_run_config(run_dir) -> PretrainConfig:
    """The PretrainConfig a run folder (or a committed checkpoint) was trained with. A vocabulary the run built
    (wordpiece, char) is read back from the folder's vocab.txt, so `run_data` rebuilds the same tokens and the
    same held-out slots without fitting it again. Built in chapter 07."""
    import json

    run_dir = Path(run_dir)
    recorded = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    cfg = PretrainConfig.from_dict(recorded.get("pretrain_config") or recorded["args"])  # "args": older runs
    if cfg.vocab != "auto":
        cfg = dataclasses.replace(cfg, vocab=str(run_dir / "vocab.txt"))
    return cfg


def run_heldout_batches(run_dir, cache_dir=DEFAULT_CACHE_DIR):
    """(training data, the held-out batches the run was evaluated on, tokenizer) of a run folder.
    Built in chapter 07."""
    from bertnb.data import heldout_batches

    cfg = saved_run_config(run_dir)
    train, heldout, tokenizer = run_data(cfg, cache_dir)
    return train, heldout_batches(heldout, cfg.batch_size, cfg.eval_examples, cfg.seed), tokenizer


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


def init_positions_sinusoidal(model, std: float) -> None:
    """Start the learned position table at the sinusoidal table of chapter 02, scaled to standard deviation
    `std`; it is still learned (the model stays BERT). Built in chapter 07.

    Why: BERT's table starts as noise (normal(0, 0.02)), so at first no head can tell the token next door
    from one 30 positions away, and the model guesses from token frequencies alone until the table has
    learned where neighbours are (the long flat start of the loss curve). In the sinusoidal table, position
    i + k is a rotation of position i (the same for every i), so one query/key map can look "one to the left"
    from step 0. The scale matters: 0.02 (the size of BERT's own entries) is drowned by the token embeddings
    in the LayerNorm that follows; 0.1 is what benchmarks/recipe_ablation.py measured best.
    """
    from bertnb.model import sinusoidal_table

    table = model.bert.embeddings.position_embedding.weight  # [max_len, n]
    sinusoids = sinusoidal_table(*table.shape)  # [max_len, n], entries in [-1, 1]
    with torch.no_grad():
        table.copy_((sinusoids / sinusoids.std() * std).to(table.dtype))


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
    if cfg.sinusoidal_positions and resume is None:
        init_positions_sinusoidal(model, cfg.sinusoidal_positions)

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


def main(argv=None) -> dict:
    """`python -m bertnb.pretrain ...`: the command line, in `bertnb.pretrain_cli`."""
    from bertnb.pretrain_cli import main as command_line

    return command_line(argv)


if __name__ == "__main__":
    main()
