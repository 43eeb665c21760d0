"""Which pretraining recipe learns within the budget? One change at a time, at equal wall clock, over seeds,
each model read against its own n-gram rivals on [MASK] slots.

    python benchmarks/recipe_ablation.py --minutes 5 --seeds 0 1 2 --threads 1 --workers 2   # benchmarks/README.md
    python benchmarks/recipe_ablation.py --minutes 4 --seeds 0 1 2 --threads 1 --workers 2 --around-recipe
    python benchmarks/recipe_ablation.py --minutes 1 --seeds 0 1 2 --threads 1                # a smoke run
    python benchmarks/recipe_ablation.py --list                                               # the variants

Every variant starts from the course's default config (bertnb.pretrain.PretrainConfig: L 4, n 128, h 2, f 512,
m 64, p 10, B 32, AdamW lr 1e-3, 6 % warmup then linear decay, dropout 0.1, the bert-base vocabulary of
30,522 tokens, BERT's normal(0, 0.02) position table) and changes one or more things: a WordPiece vocabulary
fitted to the training split (4,000 or 8,000 entries, `bertnb.wordpiece`), dropout 0 (Cramming's choice for
pretraining), the learned position table started at the sinusoidal table (`sinusoidal_positions`, the
standard deviation it is scaled to), the peak learning rate, the schedule, the sequence length, the batch
size. The default variants are the default, dropout 0 with the fitted vocabulary, the sinusoidal start
alone, and the recipe the committed checkpoints use (all three); `--around-recipe` takes the recipe and changes
one thing at a time: its vocabulary or its dropout undone (without its sinusoidal start it is the variant
"WordPiece 4,000, dropout 0"), the peak learning rate, the schedule, m and B. All variants read the frozen Python-docs
corpus through one pipeline, the own-corpus one (`bertnb.own_corpus`, the corpus written once as text to
runs/cache/ by `bertnb.corpus.write_corpus_text`), so the held-out documents are the same for all; `python -m
bertnb.pretrain --corpus python-docs --vocab wordpiece --vocab-size 4000 --dropout 0 --sinusoidal-positions 0.1
...` trains the recipe for real, on the same split.

Equal wall clock: each variant's seconds per step are timed interleaved at the start, before any run (a
neighbour's burst slows all alike; `bertnb.timing.interleaved_seconds`; variants whose steps cost the same, e.g.
two learning rates, share one timing), and its step count set to fill `--minutes`; the seconds each run really
took are reported, since with --workers the runs share the machine (which changes their wall time, not their
results: a run is a fixed number of steps). A cheaper step (a smaller vocabulary) buys more steps, which is
part of what it is worth. The seed sets the initial weights and the batch order; the data split and the masks
are fixed. Each trained model is evaluated once, on a fixed held-out subset (512 NSP pairs, as the
pretraining runs), split by kind of slot (`bertnb.metrics.evaluate(..., mask_id=...)`), beside the rivals of
`bertnb.rivals` fitted on the same training split and scored on the same slots (a vocabulary changes what a
token is, so each variant is compared with the rivals of its own tokenization: the column that matters is
"[MASK] accuracy minus the best rival's"). Passes over the corpus (epochs) are reported for each run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clone without installing

from _common import mean_std, write_json  # noqa: E402
from bertnb.corpus import write_corpus_text  # noqa: E402
from bertnb.data import batch_indices, heldout_batches, make_batch  # noqa: E402
from bertnb.metrics import evaluate  # noqa: E402
from bertnb.model import BertForPreTraining  # noqa: E402
from bertnb.own_corpus import DEFAULT_CACHE_DIR, build_own_corpus_data  # noqa: E402
from bertnb.pretrain import PretrainConfig, pretrain  # noqa: E402
from bertnb.rivals import rival_baselines  # noqa: E402
from bertnb.timing import interleaved_seconds  # noqa: E402
from bertnb.train import make_optimizer, train_step  # noqa: E402

CACHE = DEFAULT_CACHE_DIR  # runs/cache, where the command line writes it too
CORPUS_FILE = CACHE / "python-docs.txt"  # bertnb.corpus.write_corpus_text, as the command line writes it
EVAL_EXAMPLES, EVAL_BATCH = 512, 32  # the held-out subset every model is scored on (as the pretraining runs)
RIVALS = ("unigram", "left_bigram", "two_sided", "copy_two_sided")

# name -> changes to the default PretrainConfig (the vocabulary: "english" = bert-base's 30,522, "wordpiece")
RECIPE = {"vocab": "wordpiece", "vocab_size": 4000, "dropout": 0.0, "sinusoidal_positions": 0.1}
VARIANTS = {
    "default (bert-base vocab 30,522)": {},
    "WordPiece 4,000 fitted to the corpus": {"vocab": "wordpiece", "vocab_size": 4000},
    "WordPiece 8,000 fitted to the corpus": {"vocab": "wordpiece", "vocab_size": 8000},
    "dropout 0": {"dropout": 0.0},
    "sinusoidal position start 0.1": {"sinusoidal_positions": 0.1},
    "peak lr 5e-4": {"lr": 5e-4},
    "peak lr 2e-3": {"lr": 2e-3},
    "constant lr after warmup": {"schedule": "constant"},
    "m 128, p 20": {"max_len": 128, "max_pred": 20},
    "B 64": {"batch_size": 64},
    "B 16": {"batch_size": 16},
    "combined: WordPiece 4,000, dropout 0, lr 2e-3": {"vocab": "wordpiece", "vocab_size": 4000, "dropout": 0.0,
                                                       "lr": 2e-3},
    "WordPiece 4,000, dropout 0": {"vocab": "wordpiece", "vocab_size": 4000, "dropout": 0.0},
    "recipe: WordPiece 4,000, dropout 0, sinusoidal start 0.1": RECIPE,
    "recipe, sinusoidal start 0.02": {**RECIPE, "sinusoidal_positions": 0.02},
    "recipe, sinusoidal start 0.4": {**RECIPE, "sinusoidal_positions": 0.4},
    "recipe, peak lr 2e-3": {**RECIPE, "lr": 2e-3},
    # one change at a time around the recipe: which of its parts matter, and the knobs it leaves at the default
    "recipe, dropout 0.1": {**RECIPE, "dropout": 0.1},
    "recipe, bert-base vocab 30,522": {"dropout": 0.0, "sinusoidal_positions": 0.1},
    "recipe, peak lr 5e-4": {**RECIPE, "lr": 5e-4},
    "recipe, constant lr after warmup": {**RECIPE, "schedule": "constant"},
    "recipe, m 128, p 20": {**RECIPE, "max_len": 128, "max_pred": 20},
    "recipe, B 64": {**RECIPE, "batch_size": 64},
    "recipe, B 16": {**RECIPE, "batch_size": 16},
}
AROUND_RECIPE = ["recipe: WordPiece 4,000, dropout 0, sinusoidal start 0.1", "recipe, dropout 0.1",
                 "recipe, bert-base vocab 30,522", "recipe, peak lr 5e-4", "recipe, peak lr 2e-3",
                 "recipe, constant lr after warmup", "recipe, m 128, p 20", "recipe, B 64", "recipe, B 16"]
DEFAULT_VARIANTS = ["default (bert-base vocab 30,522)", "WordPiece 4,000, dropout 0", "sinusoidal position start 0.1",
                    "recipe: WordPiece 4,000, dropout 0, sinusoidal start 0.1"]


def variant_config(changes: dict, **run) -> PretrainConfig:
    vocab = changes.get("vocab", "english")
    # float32 everywhere: bf16 "auto" would differ between machines (and is slow on CPUs without native bf16)
    return PretrainConfig(corpus=str(CORPUS_FILE), **{"vocab": vocab, "bf16": "off", **changes, **run})


def data_for(cfg: PretrainConfig, cache: dict):
    """(train, held-out, tokenizer, fixed held-out batches, rivals) of a config's data, built once per data key."""
    key = (cfg.vocab, cfg.vocab_size, cfg.max_len, cfg.max_pred)
    if key not in cache:
        start = time.perf_counter()
        train, heldout, tokenizer = build_own_corpus_data(cfg.corpus, vocab=cfg.vocab, vocab_size=cfg.vocab_size,
                                                          max_len=cfg.max_len, max_pred=cfg.max_pred,
                                                          held_out_fraction=cfg.held_out_fraction, seed=0,
                                                          cache_dir=CACHE)
        batches = heldout_batches(heldout, EVAL_BATCH, EVAL_EXAMPLES, seed=0)
        rivals = rival_baselines(train, batches, tokenizer)
        cache[key] = (train, heldout, tokenizer, batches, rivals)
        print(f"data {key}: V = {len(tokenizer)}, {len(train)} training pairs, two-sided n-gram on [MASK] slots "
              f"{rivals['mlm_two_sided_mask_accuracy']:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
    return cache[key]


def make_model(cfg: PretrainConfig, vocab_size: int, seed: int) -> BertForPreTraining:
    torch.manual_seed(seed)  # as bertnb.pretrain: the initial weights depend only on the seed
    return BertForPreTraining(cfg.model_config(vocab_size))


def compute_key(cfg: PretrainConfig) -> tuple:
    """What sets the cost of a step: variants that differ only in learning rate or schedule share one timing, so
    timing noise cannot hand one of them more steps than the other."""
    return (cfg.vocab, cfg.vocab_size, cfg.max_len, cfg.max_pred, cfg.batch_size, cfg.dropout > 0)


def seconds_per_step(configs: dict, cache: dict, rounds: int = 6) -> dict:
    """Median seconds per train step of each variant (its own data, model and optimizer), timed interleaved,
    once per `compute_key`."""
    def step_fn(cfg):
        train, _, tokenizer, _, _ = data_for(cfg, cache)
        model = make_model(cfg, len(tokenizer), 0)
        optimizer = make_optimizer(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
        batches = [make_batch(train, idx, epoch) for epoch, idx in
                   (batch_indices(len(train), cfg.batch_size, 0, s) for s in range(rounds))]
        return lambda round_: train_step(model, batches[round_], optimizer, None, cfg.clip_norm)

    representatives = {}
    for cfg in configs.values():
        representatives.setdefault(compute_key(cfg), cfg)
    with torch.random.fork_rng(devices=[]):
        timed = interleaved_seconds({key: step_fn(cfg) for key, cfg in representatives.items()}, rounds)
    return {name: timed[compute_key(cfg)] for name, cfg in configs.items()}


_DATA_CACHE: dict = {}  # per process: the data of each vocabulary, built once


def train_and_score(task) -> dict:
    """(variant name, seed, steps, threads) -> the trained model's held-out metrics beside its best rival."""
    name, seed, steps, threads = task
    if threads:
        torch.set_num_threads(threads)
    train, _, tokenizer, batches, rivals = data_for(variant_config(VARIANTS[name]), _DATA_CACHE)
    cfg = variant_config(VARIANTS[name], seed=seed, total_steps=steps, eval_every=steps)
    model = make_model(cfg, len(tokenizer), seed)
    start = time.perf_counter()
    pretrain(model, train, None, cfg, progress=False, verbose=False)  # no evaluation inside the budget
    seconds = time.perf_counter() - start
    metrics = evaluate(model, batches, mask_id=tokenizer.mask_id)
    best_rival = max(rivals[f"mlm_{r}_mask_accuracy"] for r in RIVALS)
    print(f"seed {seed} {name}: {steps} steps in {seconds:.0f} s, [MASK] accuracy "
          f"{metrics['mlm_accuracy_mask']:.3f} (best rival {best_rival:.3f}), all slots "
          f"{metrics['mlm_accuracy']:.3f}, loss {metrics['mlm_loss']:.3f}, NSP {metrics['nsp_accuracy']:.3f}",
          flush=True)
    return {"seed": seed, "steps": steps, "seconds": round(seconds, 1),
            "epochs": steps * cfg.batch_size / len(train), **metrics,
            "mask_accuracy_minus_best_rival": metrics["mlm_accuracy_mask"] - best_rival}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock training budget per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, metavar="NAME",
                        help="variant names (see --list)")
    parser.add_argument("--around-recipe", action="store_true",
                        help="the recipe and one change to it at a time (vocabulary, dropout, lr, schedule, m, B)")
    parser.add_argument("--list", action="store_true", help="print the variants and exit")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--workers", type=int, default=1, help="runs in parallel, one process each (one per core)")
    parser.add_argument("--json", default="runs/recipe_ablation.json")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(f"{name}: {changes or 'the default config'}" for name, changes in VARIANTS.items()))
        return {}
    if args.around_recipe:
        args.variants = AROUND_RECIPE
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}: allowed {list(VARIANTS)}")
    if not 0 < args.minutes <= 24 * 60:
        parser.error(f"--minutes must be in (0, 1440], got {args.minutes}")
    if args.threads:
        torch.set_num_threads(args.threads)

    write_corpus_text("python-docs", CACHE)
    cache = {}
    configs = {name: variant_config(VARIANTS[name]) for name in args.variants}
    step_seconds = seconds_per_step(configs, cache)
    steps = {name: max(1, int(args.minutes * 60 / seconds)) for name, seconds in step_seconds.items()}
    print(f"threads {torch.get_num_threads()}, {args.minutes:g} min per run: "
          + "; ".join(f"{n}: {step_seconds[n]:.3f} s/step -> {steps[n]} steps" for n in configs), flush=True)

    tasks = [(name, seed, steps[name], args.threads) for seed in args.seeds for name in configs]
    if args.workers > 1:  # one process per core: each run is timed by its own steps, not by the others
        with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(train_and_score, tasks))
    else:
        results = [train_and_score(task) for task in tasks]
    runs = {name: [] for name in configs}
    for (name, _, _, _), result in zip(tasks, results):
        runs[name].append(result)

    print(f"\n{args.minutes:g} wall-clock minutes per run, mean ± std over seeds {args.seeds}, "
          f"{torch.get_num_threads()} thread(s); held-out: {EVAL_EXAMPLES} pairs\n")
    print("| recipe | V | steps | seconds | epochs | [MASK] accuracy | best n-gram rival ([MASK]) | model − rival | "
          "all slots | MLM loss | NSP |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, results in runs.items():
        _, _, tokenizer, _, rivals = data_for(configs[name], cache)
        best_rival = max(rivals[f"mlm_{r}_mask_accuracy"] for r in RIVALS)
        print(f"| {name} | {len(tokenizer):,} | {steps[name]} | {statistics.mean(r['seconds'] for r in results):.0f} | "
              f"{results[0]['epochs']:.2f} | "
              f"{mean_std(r['mlm_accuracy_mask'] for r in results)} | {best_rival:.3f} | "
              f"{mean_std(r['mask_accuracy_minus_best_rival'] for r in results)} | "
              f"{mean_std(r['mlm_accuracy'] for r in results)} | {mean_std(r['mlm_loss'] for r in results)} | "
              f"{mean_std(r['nsp_accuracy'] for r in results)} |")
    summary = {"command": "python benchmarks/recipe_ablation.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "minutes": args.minutes, "seeds": args.seeds, "threads": torch.get_num_threads(),
               "seconds_per_step": step_seconds, "steps": steps, "runs": runs,
               "rivals": {name: data_for(cfg, cache)[4] for name, cfg in configs.items()}}
    write_json(args.json, summary)
    return summary


if __name__ == "__main__":
    main()
