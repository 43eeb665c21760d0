"""The committed checkpoints re-evaluated honestly, beside the n-gram rivals they must beat.

    python benchmarks/honest_metrics.py                       # both checkpoints: JSON to runs/, markdown printed
    python benchmarks/honest_metrics.py --checkpoints en --json runs/honest_en.json
    python benchmarks/honest_metrics.py --run runs/en-30min   # any run folder written by bertnb.pretrain

For each checkpoint, from its own metrics.json (corpus, seed, m, p, held-out fraction, B, examples
evaluated; the vocabulary from its vocab.txt), the held-out set is rebuilt exactly as the run evaluated it
(`bertnb.pretrain.run_heldout_batches`), and
on exactly those slots and pairs it reports:

- the model: MLM accuracy and loss over all slots and split by kind ([MASK] / random / unchanged, with each
  kind's share: `bertnb.metrics.evaluate(..., mask_id=...)`), NSP accuracy; how varied its guesses are (the
  most predicted token and its share, distinct tokens predicted) and its accuracy on [MASK] slots whose
  answer is not one of the 100 most frequent training tokens ("content" tokens);
- the rivals, fitted on the run's training split only (`bertnb.rivals`): unigram (always the most frequent
  token), left bigram, two-sided (left and right neighbour) with Witten-Bell back-off, each also copy-aware
  (copies the visible token where the slot is not [MASK]); accuracy overall, on [MASK] slots, and
  cross-entropy; NSP: majority class and a text-blind logistic regression on lengths and punctuation;
- the numbers the run itself recorded (metrics.json's "final" and "baselines"), to show they reproduce.

Runs on CPU in about a minute per checkpoint (tokenizing the corpus is most of it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clone without installing

from _common import write_json  # noqa: E402
from bertnb.checkpoint import load_run  # noqa: E402
from bertnb.pretrain import run_heldout_batches, saved_run_config  # noqa: E402
from bertnb.data import heldout_batches  # noqa: E402
from bertnb.metrics import (evaluate, frequent_token_ids, masked_label_counts, predict_slots,  # noqa: E402
                            prediction_profile, pretraining_baselines, summarize_slots)
from bertnb.resources import CHECKPOINTS, checkpoint_dir  # noqa: E402
from bertnb.rivals import (NgramCounts, NgramRivals, heldout_slots, nsp_rivals,  # noqa: E402
                           packed_training_sequences, punctuation_ids, score_rivals)

CONTENT_TOP_K = 100  # labels outside the 100 most frequent training tokens count as content tokens


def evaluate_run(run_dir: Path) -> dict:
    """Everything this script reports, for one run folder."""
    recorded = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    cfg = saved_run_config(run_dir)
    model, tokenizer, _ = load_run(run_dir)
    train_data, batches, data_tokenizer = run_heldout_batches(run_dir)  # as the run saw them
    if data_tokenizer.vocab != tokenizer.vocab:
        raise ValueError(f"{run_dir}/vocab.txt is not the vocabulary the corpus builds today: the held-out set "
                         f"cannot be rebuilt as the run saw it")
    mask_id = tokenizer.mask_id

    slots = predict_slots(model, batches, mask_id)
    model_metrics = summarize_slots(slots)
    label_counts = masked_label_counts(train_data)
    frequent = frequent_token_ids(label_counts, CONTENT_TOP_K)
    model_metrics.update(prediction_profile(slots["predicted"], slots["label"], slots["kind"], frequent))

    special = train_data.special
    counts = NgramCounts(packed_training_sequences(train_data), special.special_ids, special.vocab_size)
    held = heldout_slots(batches, mask_id)
    assert np.array_equal(held.label, slots["label"].numpy()), "rivals and model must score the same slots"
    rivals = score_rivals(NgramRivals(counts), held)
    for scores in rivals.values():
        scores.update(prediction_profile(scores.pop("predicted"), held.label, held.kind, frequent))

    def token(i):
        return tokenizer.convert_ids_to_tokens([int(i)])[0]

    most_frequent = int(np.argmax(NgramRivals(counts).unigram))
    most_frequent_label = max(label_counts, key=lambda t: (label_counts[t], -t))
    model_metrics["most_predicted_token_text"] = token(model_metrics["most_predicted_token"])
    return {
        "run": str(run_dir), "corpus": cfg.corpus, "steps": recorded["steps"],
        "minutes": round(recorded.get("seconds", {}).get("training_this_process", float("nan")) / 60, 1),
        "heldout_sequences": sum(len(b["nsp_labels"]) for b in batches), "heldout_slots": len(held),
        "model": model_metrics,
        "rivals": rivals,
        "most_frequent_token": {"id": most_frequent, "text": token(most_frequent)},
        "nsp": nsp_rivals(train_data, batches, punctuation_ids(tokenizer.vocab)),
        "training_pairs": on_training_pairs(model, train_data, cfg, mask_id),
        "recorded": {"final": recorded.get("final"), "baselines": recorded.get("baselines")},
        "baselines_now": {**pretraining_baselines(label_counts, batches, len(tokenizer)),
                          "mlm_most_frequent_label_text": token(most_frequent_label)},
    }


def on_training_pairs(model, train_data, cfg, mask_id: int) -> dict:
    """The model on as many training pairs as it was evaluated on held out (masks of the first pass): the gap to
    the held-out figures is what it memorised rather than learned."""
    train_data.set_epoch(0)
    m = evaluate(model, heldout_batches(train_data, cfg.batch_size, cfg.eval_examples, cfg.seed), mask_id=mask_id)
    return {k: m[k] for k in ("mlm_accuracy_mask", "mlm_accuracy", "mlm_loss", "nsp_accuracy")}


def _pct(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def markdown(name: str, r: dict) -> str:
    """One checkpoint's table: [MASK]-slot accuracy first, the model then its rivals."""
    m, rivals = r["model"], r["rivals"]
    lines = [f"### {name}: {r['corpus']}, {r['steps']:,} steps ({r['heldout_sequences']} held-out sequences, "
             f"{r['heldout_slots']:,} slots: {m['mlm_share_mask']:.1%} [MASK], {m['mlm_share_random']:.1%} random, "
             f"{m['mlm_share_unchanged']:.1%} unchanged)", "",
             "| predictor | [MASK]-slot accuracy | all slots | random | unchanged | [MASK] content tokens | "
             "cross-entropy, all (nats) | [MASK] slots (nats) |",
             "|---|---|---|---|---|---|---|---|",
             f"| **model** | **{_pct(m['mlm_accuracy_mask'])}** | {_pct(m['mlm_accuracy'])} | "
             f"{_pct(m['mlm_accuracy_random'])} | {_pct(m['mlm_accuracy_unchanged'])} | "
             f"{_pct(m['mask_content_accuracy'])} | {m['mlm_loss']:.3f} | {m['mlm_loss_mask']:.3f} |"]
    for rival, s in rivals.items():
        label = f"unigram (always {r['most_frequent_token']['text']!r})" if rival == "unigram" else rival
        lines.append(f"| {label} | {_pct(s['accuracy_mask'])} | {_pct(s['accuracy'])} | {_pct(s['accuracy_random'])} | "
                     f"{_pct(s['accuracy_unchanged'])} | {_pct(s['mask_content_accuracy'])} | "
                     f"{s['cross_entropy']:.3f} | {s['cross_entropy_mask']:.3f} |")
    best = max(rivals, key=lambda k: rivals[k]["accuracy_mask"])
    verdict = "beats" if m["mlm_accuracy_mask"] > rivals[best]["accuracy_mask"] else "does NOT beat"
    nsp = r["nsp"]
    lines += ["", f"On [MASK] slots the model {verdict} the best rival ({best}: "
              f"{rivals[best]['accuracy_mask']:.3f} against {m['mlm_accuracy_mask']:.3f}). It predicts "
              f"{m['most_predicted_token_text']!r} at {m['most_predicted_share']:.0%} of the slots and uses "
              f"{m['distinct_predicted']} distinct tokens; content-token slots: the {m['mask_content_slots']} [MASK] "
              f"slots whose answer is not among the {CONTENT_TOP_K} most frequent training tokens.",
              f"NSP accuracy {m['nsp_accuracy']:.3f}; text-blind logistic regression (lengths, punctuation) "
              f"{nsp['nsp_text_blind_accuracy']:.3f}; majority class {nsp['nsp_majority_accuracy']:.3f}.",
              f"On {r['heldout_sequences']} training pairs instead (seen in training): [MASK]-slot accuracy "
              f"{r['training_pairs']['mlm_accuracy_mask']:.3f}, MLM loss {r['training_pairs']['mlm_loss']:.3f}, NSP "
              f"accuracy {r['training_pairs']['nsp_accuracy']:.3f}: the gap to the held-out figures is fitted to the training pairs, not learned.", ""]
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoints", nargs="+", default=list(CHECKPOINTS), choices=list(CHECKPOINTS),
                   help="committed checkpoints to evaluate")
    p.add_argument("--run", nargs="*", default=[], help="run folders (python -m bertnb.pretrain --out ...) instead")
    p.add_argument("--json", default="runs/honest_metrics.json", help="where the JSON goes")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    targets = {name: checkpoint_dir(name) for name in args.checkpoints} if not args.run else \
        {Path(run).name: Path(run) for run in args.run}
    results = {}
    for name, run_dir in targets.items():
        start = time.perf_counter()
        results[name] = evaluate_run(run_dir)
        results[name]["seconds"] = round(time.perf_counter() - start, 1)
        print(markdown(name, results[name]), flush=True)
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
