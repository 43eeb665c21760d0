"""Does pretraining pay off? The comparison table of chapter 08 and the README, from one command:

    nice .venv/bin/python benchmarks/finetune_table.py --seeds 0 1 2 --threads 1 --out runs/finetune_table.json
    # after replacing a checkpoint: redo the rows that use it, keep the baselines and MiniLM
    python benchmarks/finetune_table.py --encoders random checkpoint --long-steps 300 --reuse runs/old.json --out runs/new.json

For each task (Chinese review sentiment; English: which part of the Python docs a passage comes from) it
scores, on the task's test split: the majority class; a bag-of-words logistic regression (characters and
character bigrams for Chinese, words for English; convex, so one fit, no seed); the same small BERT as the
course's checkpoint from random initialisation and from the checkpoint; and for English MiniLM (6 x 384, real
pretraining). BERT rows are mean ± std (sample std) over the seeds, which set the head's and the random
encoder's initial weights, the batch order and the dropout masks; the data split is fixed (seed 0).

Held equal between random init and checkpoint: config, tokenizer, steps, batch size, max_len, learning rate
and schedule (AdamW, 6 % warmup, linear decay). MiniLM is 5x larger and ~10x slower per step on the CPU, so
it gets fewer steps at a smaller batch (MINILM below): the table shows its steps. Each run's results are
written to --out as they finish, and the markdown table is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from _common import mean_std  # noqa: E402  (benchmarks/, beside this script)
from bertnb.finetune import (TASKS, BertClassifier, classification_metrics, encode_examples, evaluate_classifier,
                             fine_tune, load_encoder)
from bertnb.finetune_baselines import bag_of_words_baseline, majority_class

# The same recipe for random init and the checkpoint; max_len 64 is the checkpoints' longest sequence.
# The learning rate was picked on the dev splits (checkpoint, 150 steps, seed 0: Chinese dev accuracy 0.59 at
# 1e-4, 0.67 at 3e-4); the steps are what fits the table in about half an hour on a shared 2-core machine.
RECIPE = {"sentiment-zh": dict(steps=100, batch_size=32, max_len=64, lr=3e-4),
          "docs-topic-en": dict(steps=100, batch_size=32, max_len=64, lr=3e-4)}
MINILM = dict(steps=40, batch_size=16, max_len=64, lr=1e-4)
ANALYZER = {"sentiment-zh": "chars", "docs-topic-en": "words"}
ENCODERS = {"sentiment-zh": ("random", "checkpoint"), "docs-topic-en": ("random", "checkpoint", "minilm")}


def pretraining_minutes(language: str) -> float:
    """Wall-clock minutes of training behind the course's checkpoint (from its metrics.json)."""
    from bertnb.resources import checkpoint_dir

    metrics = json.loads((checkpoint_dir(language) / "metrics.json").read_text(encoding="utf-8"))
    return metrics["seconds"]["training_this_process"] / 60


def run_bert(task: str, encoder_name: str, seed: int, steps: int | None = None) -> dict:
    spec = TASKS[task]
    recipe = MINILM if encoder_name == "minilm" else RECIPE[task]
    recipe = {**recipe, "steps": steps or recipe["steps"]}
    train, _, test = spec["splits"](seed=0)  # the dev split chose the learning rate; it is not needed here
    torch.manual_seed(seed)  # the random encoder's weights and the head's
    encoder, tokenizer = load_encoder(encoder_name, spec["language"])
    model = BertClassifier(encoder, len(spec["labels"]))
    result = fine_tune(model, tokenizer, train, None, seed=seed, progress=False, **recipe)
    encoded_test = encode_examples(tokenizer, test, recipe["max_len"])
    test_metrics = evaluate_classifier(model, encoded_test, tokenizer.pad_id, len(spec["labels"]))
    return {"task": task, "model": encoder_name if steps is None else f"{encoder_name}-long", "seed": seed,
            **recipe, "test": test_metrics, "fine_tuning_seconds": result["seconds"]}


def run_baselines(task: str) -> list[dict]:
    spec = TASKS[task]
    train, dev, test = spec["splits"](seed=0)
    num_classes = len(spec["labels"])
    majority = majority_class(train)
    rows = [{"task": task, "model": "majority", "test": classification_metrics(
        [label for _, label in test], [majority] * len(test), num_classes)}]
    started = time.perf_counter()
    bow = bag_of_words_baseline(train, dev, test, ANALYZER[task], num_classes)
    rows.append({"task": task, "model": "bag-of-words", **bow, "fit_seconds": time.perf_counter() - started})
    return rows


ROW_NAMES = {"majority": "majority class", "bag-of-words": "bag-of-words logistic regression",
             "random": "small BERT, random init", "checkpoint": "small BERT, course checkpoint",
             "minilm": "MiniLM (6 x 384, real pretraining)", "checkpoint-long": "small BERT, course checkpoint, longer",
             "minilm-long": "MiniLM, longer"}


def markdown_table(rows: list[dict], task: str, pretraining: float | None) -> str:
    lines = ["| model | pretraining (min) | fine-tuning steps x batch | fine-tuning (min, mean) | seeds | "
             "test accuracy | test macro-F1 |", "|---|---|---|---|---|---|---|"]
    for name in ("majority", "bag-of-words", "random", "checkpoint", "checkpoint-long", "minilm", "minilm-long"):
        group = [r for r in rows if r["task"] == task and r["model"] == name]
        if not group:
            continue
        accuracy = mean_std([r["test"]["accuracy"] for r in group])
        f1 = mean_std([r["test"]["macro_f1"] for r in group])
        if name in ("majority", "bag-of-words"):
            fit_minutes = "–" if name == "majority" else f"{group[0]['fit_seconds'] / 60:.1f}"
            lines.append(f"| {ROW_NAMES[name]} | – | – | {fit_minutes} | – | {accuracy} | {f1} |")
            continue
        minutes = statistics.mean(r["fine_tuning_seconds"] for r in group) / 60
        before = "0" if name == "random" else "not ours" if name.startswith("minilm") else f"{pretraining:.0f}"
        lines.append(f"| {ROW_NAMES[name]} | {before} | {group[0]['steps']} x {group[0]['batch_size']} | "
                     f"{minutes:.1f} | {len(group)} | {accuracy} | {f1} |")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=sorted(TASKS, reverse=True))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=Path("runs/finetune_table.json"))
    parser.add_argument("--long-steps", type=int, default=None,
                        help="also fine-tune --long-encoders this many steps, first seed only (does longer pay?)")
    parser.add_argument("--long-encoders", nargs="+", choices=("checkpoint", "minilm"), default=["checkpoint"])
    parser.add_argument("--only-long", action="store_true", help="skip the baselines and the standard rows")
    parser.add_argument("--table-only", action="store_true", help="print the tables of --out and stop")
    parser.add_argument("--encoders", nargs="+", choices=("random", "checkpoint", "minilm"), default=None,
                        help="run only these BERT rows (default: all of each task's)")
    parser.add_argument("--reuse", type=Path, default=None,
                        help="an earlier --out: keep its rows that this run does not redo (after a new checkpoint, "
                             "redo random and checkpoint, which use its config and vocabulary, and keep the rest)")
    args = parser.parse_args(argv)
    if args.table_only:
        return print_tables(json.loads(args.out.read_text())["rows"], args.tasks)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    redone = set() if args.only_long else set(args.encoders or ("random", "checkpoint", "minilm"))
    redone_long = {f"{name}-long" for name in args.long_encoders
                   if not args.encoders or name in args.encoders} if args.long_steps else set()
    reused = json.loads(args.reuse.read_text())["rows"] if args.reuse else []

    def kept(row) -> bool:  # a reused row this run does not redo or make stale (the baselines are always kept)
        return row["task"] in args.tasks and row["model"].removesuffix("-long") not in redone | redone_long

    rows.extend(row for row in reused if kept(row))

    def save() -> None:
        args.out.write_text(json.dumps({"command": "python benchmarks/finetune_table.py " + " ".join(argv or []),
                                        "recipe": RECIPE, "minilm": MINILM, "rows": rows}, indent=1))

    for task in args.tasks:
        rows.extend([] if args.only_long or args.reuse else run_baselines(task))
        save()
        for encoder_name in [e for e in ENCODERS[task] if e in redone]:
            for seed in args.seeds:
                rows.append(run_bert(task, encoder_name, seed))
                r = rows[-1]
                print(f"{task} {encoder_name} seed {seed}: test accuracy {r['test']['accuracy']:.3f} "
                      f"macro-F1 {r['test']['macro_f1']:.3f} ({r['fine_tuning_seconds']:.0f} s)", flush=True)
                save()
        for encoder_name in args.long_encoders if args.long_steps else []:
            if encoder_name not in ENCODERS[task] or (args.encoders and encoder_name not in args.encoders):
                continue
            rows.append(run_bert(task, encoder_name, args.seeds[0], steps=args.long_steps))
            print(f"{task} {encoder_name} {args.long_steps} steps: test accuracy "
                  f"{rows[-1]['test']['accuracy']:.3f}", flush=True)
            save()
    return print_tables(rows, args.tasks)


def print_tables(rows: list[dict], tasks) -> list[dict]:
    for task in tasks:
        print(f"\n{task}\n")
        print(markdown_table(rows, task, pretraining_minutes(TASKS[task]["language"])))
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
