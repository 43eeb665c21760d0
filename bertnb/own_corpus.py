"""Pretraining on your own text: a UTF-8 file or a folder of them, tokenized once into a memory-mapped cache.
Going further, chapter 07.

    python -m bertnb.pretrain --corpus my_texts/ --total-steps 5000 --out runs/mine                 # English WordPiece
    python -m bertnb.pretrain --corpus my_texts/ --vocab wordpiece --vocab-size 8000 ...            # trained on it
    python -m bertnb.pretrain --corpus zh.txt --vocab char ...                                      # characters

**The format** is the original BERT's: one sentence (or paragraph) per line, a blank line between documents;
the end of a file ends a document, so a folder of files with no blank lines is one document per file. Long lines
are cut into sentences (`bertnb.corpus`'s English and Chinese rules). NSP needs at least 2 documents.

**The cache.** Tokenizing is the slow part (pure Python), so it happens once per (corpus content, vocabulary),
into `cache_dir`: the token ids of every sentence end to end in one file (uint16 when V <= 65,536), with the
start of each sentence and of each document beside it. NSP pairs are then made document by document from that
file and written to a second one. Training reads both through `numpy.memmap`: the operating system pages in
the examples a batch needs, so a corpus of several GB never has to fit in memory. A cache folder appears in one
rename when complete, so an interrupted build leaves nothing half-written to trip over.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from array import array
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bertnb.corpus import split_chinese_sentences, split_english_sentences
from bertnb.data import (NspExample, PretrainingDataset, SpecialTokens, _examples_from_document,
                         build_char_vocab, english_tokenizer, split_documents)
from bertnb.tokenization import BertTokenizer
from bertnb.validation import check_int

VOCAB_KINDS = ("english", "char", "wordpiece")  # or the path of a vocab.txt
CACHE_FORMAT = 1
DEFAULT_CACHE_DIR = Path("runs") / "cache"


# --------------------------------------------------------------------------------------------------------
# Reading: files -> documents of sentences, streamed


def corpus_files(path) -> list[Path]:
    """The text files of a corpus: the file itself, or every file under the folder (hidden ones skipped), in
    sorted order. Going further, chapter 07."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ValueError(f"--corpus {path}: no such file or folder (give a UTF-8 text file, a folder of them, "
                         f"or a built-in corpus: python-docs, peoples-daily)")
    files = sorted(p for p in path.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise ValueError(f"--corpus {path}: the folder holds no files (expected UTF-8 text files, one document "
                         f"per file or documents separated by blank lines)")
    return files


def _check_not_binary(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(8192)
    if b"\x00" in head:
        raise ValueError(f"--corpus: {path} looks like a binary file (it contains NUL bytes), not UTF-8 text")


def _sentences(line: str) -> list[str]:
    return [piece for sentence in split_english_sentences(line) for piece in split_chinese_sentences(sentence)]


def iter_documents(files: list[Path]) -> Iterator[list[str]]:
    """Stream the documents (lists of sentences) of `files`, one line in memory at a time.
    Going further, chapter 07."""
    for path in files:
        _check_not_binary(path)
        document = []
        with open(path, "rb") as f:  # bytes, decoded line by line: an error can name its line
            for line_number, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8").strip()
                except UnicodeDecodeError as err:
                    raise ValueError(f"--corpus: {path} is not UTF-8 text (undecodable byte "
                                     f"{raw[err.start:err.start + 1]!r} on line {line_number}); convert it, e.g. "
                                     f"iconv -f latin1 -t utf-8") from None
                if line:
                    document.extend(_sentences(line))
                elif document:
                    yield document
                    document = []
        if document:
            yield document


def fingerprint(files: list[Path]) -> str:
    """sha256 of the files' names and contents: the cache's key (a changed file gets a new cache).
    Going further, chapter 07."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------------
# The vocabulary


def corpus_vocabulary(vocab: str, files: list[Path], train_doc_ids: set[int], vocab_size: int,
                      min_count: int = 2) -> BertTokenizer:
    """"english" (the course's WordPiece, 30,522 tokens), "char" or "wordpiece" (built from the TRAINING
    documents only: a vocabulary that saw the held-out text leaks it), or the path of a vocab.txt.
    Going further, chapter 07."""
    from bertnb.wordpiece import train_wordpiece

    if vocab == "english":
        return english_tokenizer()
    training_docs = (doc for i, doc in enumerate(iter_documents(files)) if i in train_doc_ids)
    if vocab == "char":
        return BertTokenizer.from_vocab(build_char_vocab(training_docs, min_count=min_count, max_size=vocab_size))
    if vocab == "wordpiece":
        sentences = (sentence for doc in training_docs for sentence in doc)
        return BertTokenizer.from_vocab(train_wordpiece(sentences, vocab_size, min_frequency=min_count))
    if not Path(vocab).is_file():
        raise ValueError(f"--vocab {vocab}: choose one of {', '.join(VOCAB_KINDS)} or give an existing vocab.txt")
    return BertTokenizer(vocab, do_lower_case=True)


# --------------------------------------------------------------------------------------------------------
# Cache folders: written aside, then renamed into place


def _publish(tmp: Path, final: Path) -> Path:
    try:
        os.replace(tmp, final)
    except OSError:  # another process (another rank) published the same cache first: use it
        shutil.rmtree(tmp, ignore_errors=True)
        if not (final / "meta.json").is_file():
            raise
    return final


class _Int64File:
    """Append int64s to a binary file through a small buffer (offsets of millions of sentences stay on disk)."""

    def __init__(self, path: Path):
        self.file, self.buffer, self.count = open(path, "wb"), array("q"), 0

    def append(self, value: int) -> None:
        self.buffer.append(value)
        self.count += 1
        if len(self.buffer) >= 1 << 16:
            self.flush()

    def flush(self) -> None:
        self.buffer.tofile(self.file)
        self.buffer = array("q")

    def close(self) -> None:
        self.flush()
        self.file.close()


def _memmap(path: Path, dtype, count: int, shape=None):
    if count == 0:  # numpy cannot map an empty file
        return np.zeros(shape or (0,), dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=shape or (count,))


class TokenCache:
    """The tokenized corpus on disk: `document(d)` -> its sentences as lists of token ids. Going further, chapter 07."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "meta.json").read_text(encoding="utf-8"))
        self.ids = _memmap(self.folder / "ids.bin", self.meta["dtype"], self.meta["num_tokens"])  # [tokens]
        self.sentence_starts = _memmap(self.folder / "sentence_starts.bin", np.int64, self.meta["num_sentences"] + 1)
        self.doc_starts = _memmap(self.folder / "doc_starts.bin", np.int64, self.meta["num_documents"] + 1)

    def __len__(self) -> int:
        return self.meta["num_documents"]

    def num_sentences(self, d: int) -> int:
        return int(self.doc_starts[d + 1] - self.doc_starts[d])

    def document(self, d: int) -> list[list[int]]:
        starts = self.sentence_starts[self.doc_starts[d]:self.doc_starts[d + 1] + 1]
        return [self.ids[a:b].tolist() for a, b in zip(starts[:-1], starts[1:])]


def tokenize_to_cache(files: list[Path], tokenizer, cache_dir, key: str) -> TokenCache:
    """Tokenize every document once into `cache_dir/tokens-<key>` (reused when it exists).
    Going further, chapter 07."""
    final = Path(cache_dir) / f"tokens-{key}"
    if (final / "meta.json").is_file():
        return TokenCache(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    dtype = "uint16" if len(tokenizer) <= 1 << 16 else "uint32"
    sentence_starts, doc_starts = _Int64File(tmp / "sentence_starts.bin"), _Int64File(tmp / "doc_starts.bin")
    num_tokens = 0
    sentence_starts.append(0)
    doc_starts.append(0)
    with open(tmp / "ids.bin", "wb") as ids_file:
        for document in iter_documents(files):
            for sentence in document:
                ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(sentence))
                if ids:  # a sentence that tokenizes to nothing is dropped, as in bertnb.data
                    np.asarray(ids, dtype=dtype).tofile(ids_file)
                    num_tokens += len(ids)
                    sentence_starts.append(num_tokens)
            doc_starts.append(sentence_starts.count - 1)  # a document may end up empty: kept, skipped later
    meta = {"format": CACHE_FORMAT, "dtype": dtype, "num_tokens": num_tokens,
            "num_sentences": sentence_starts.count - 1, "num_documents": doc_starts.count - 1,
            "files": [str(p) for p in files], "vocab_size": len(tokenizer)}
    sentence_starts.close()
    doc_starts.close()
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return TokenCache(_publish(tmp, final))


# --------------------------------------------------------------------------------------------------------
# NSP examples, made document by document and kept on disk


class _Documents:
    """A list-like view of some of the cache's documents, read on demand: what `_examples_from_document` needs."""

    def __init__(self, cache: TokenCache, doc_ids: list[int]):
        self.cache, self.doc_ids = cache, doc_ids

    def __len__(self) -> int:
        return len(self.doc_ids)

    def __getitem__(self, i: int) -> list[list[int]]:
        return self.cache.document(self.doc_ids[i])


class ExampleCache:
    """NSP examples on disk, a list-like of `NspExample` for `PretrainingDataset`. Going further, chapter 07."""

    RECORD = ("start", "a_length", "b_length", "nsp_label", "doc_a", "doc_b")

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "meta.json").read_text(encoding="utf-8"))
        self.longest = self.meta["longest"]  # PretrainingDataset checks it against max_len without a full pass
        self.tokens = _memmap(self.folder / "tokens.bin", self.meta["dtype"], self.meta["num_tokens"])
        n = self.meta["num_examples"]
        self.records = _memmap(self.folder / "records.bin", np.int64, n * len(self.RECORD), (n, len(self.RECORD)))

    def __len__(self) -> int:
        return self.meta["num_examples"]

    def __getitem__(self, i: int) -> NspExample:
        if not 0 <= i < len(self):
            raise IndexError(f"example {i} of {len(self)}")
        start, a_length, b_length, label, doc_a, doc_b = (int(x) for x in self.records[i])
        tokens = self.tokens[start:start + a_length + b_length].tolist()
        return NspExample(tokens[:a_length], tokens[a_length:], label, doc_a, doc_b)


def examples_to_cache(cache: TokenCache, doc_ids: list[int], max_len: int, rng_name: str, cache_dir,
                      key: str, short_seq_prob: float = 0.1) -> ExampleCache:
    """`bertnb.data.make_nsp_examples` over the cache's documents `doc_ids` (the same pairs, from one
    random.Random(rng_name)), written to `cache_dir/examples-<key>` document by document.
    Going further, chapter 07."""
    final = Path(cache_dir) / f"examples-{key}"
    if (final / "meta.json").is_file():
        return ExampleCache(final)
    docs = _Documents(cache, [d for d in doc_ids if cache.num_sentences(d) > 0])
    if len(docs) < 2:
        raise ValueError(f"the corpus has {len(docs)} document(s) with text in this part; NSP needs at least 2: "
                         f"separate documents by blank lines, or give a folder with one document per file")
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    rng = random.Random(rng_name)
    records, num_tokens, longest = _Int64File(tmp / "records.bin"), 0, 0
    with open(tmp / "tokens.bin", "wb") as tokens_file:
        for doc_index in range(len(docs)):
            for example in _examples_from_document(docs, doc_index, max_len, rng, short_seq_prob):
                np.asarray(example.tokens_a + example.tokens_b, dtype=cache.meta["dtype"]).tofile(tokens_file)
                for value in (num_tokens, len(example.tokens_a), len(example.tokens_b), example.nsp_label,
                              example.doc_a, example.doc_b):
                    records.append(value)
                num_tokens += len(example.tokens_a) + len(example.tokens_b)
                longest = max(longest, len(example.tokens_a) + len(example.tokens_b) + 3)
    records.close()
    meta = {"format": CACHE_FORMAT, "dtype": cache.meta["dtype"], "num_tokens": num_tokens, "longest": longest,
            "num_examples": records.count // len(ExampleCache.RECORD), "max_len": max_len, "rng": rng_name}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return ExampleCache(_publish(tmp, final))


# --------------------------------------------------------------------------------------------------------
# Everything in one call, as bertnb.data.build_pretraining_data for the built-in corpora


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def _cached_vocabulary(vocab, files, corpus_key, train_ids, vocab_size, min_count, cache_dir) -> BertTokenizer:
    # Building a vocabulary reads the whole training text: keep the result beside the token cache.
    if vocab not in ("char", "wordpiece"):
        return corpus_vocabulary(vocab, files, set(train_ids), vocab_size, min_count)
    path = Path(cache_dir) / f"vocab-{_key(CACHE_FORMAT, corpus_key, vocab, vocab_size, min_count, train_ids)}.txt"
    if not path.is_file():
        tokenizer = corpus_vocabulary(vocab, files, set(train_ids), vocab_size, min_count)
        tokens = [token for token, _ in sorted(tokenizer.vocab.items(), key=lambda item: item[1])]
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(tokens) + "\n")
        os.replace(tmp, path)
    return BertTokenizer(str(path), do_lower_case=True)


def build_own_corpus_data(corpus, vocab: str = "english", vocab_size: int = 8000, max_len: int = 128,
                          max_pred: int = 20, held_out_fraction: float = 0.1, seed: int = 0,
                          cache_dir=DEFAULT_CACHE_DIR, min_count: int = 2):
    """Your corpus -> (train_dataset, heldout_dataset, tokenizer), like `bertnb.data.build_pretraining_data`:
    documents held out whole, the vocabulary (when built) from the training documents, NSP pairs within
    each part, masks drawn per epoch. Going further, chapter 07.

    Only the first call tokenizes; later calls (and the other ranks of a data-parallel run, once rank 0 has
    built it) read the cache.
    """
    check_int("vocab_size", vocab_size, low=6)
    files = corpus_files(corpus)
    corpus_key = fingerprint(files)
    num_docs = sum(1 for _ in iter_documents(files))  # one streaming pass; the split needs the count
    if num_docs < 2:
        raise ValueError(f"--corpus {corpus}: found {num_docs} document(s); NSP needs at least 2 (separate "
                         f"documents by blank lines, or give a folder with one document per file)")
    train_ids, heldout_ids = split_documents(list(range(num_docs)), held_out_fraction, seed)
    tokenizer = _cached_vocabulary(vocab, files, corpus_key, train_ids, vocab_size, min_count, cache_dir)
    vocab_list = [token for token, _ in sorted(tokenizer.vocab.items(), key=lambda item: item[1])]
    tokens_key = _key(CACHE_FORMAT, corpus_key, vocab_list, tokenizer.do_lower_case)
    cache = tokenize_to_cache(files, tokenizer, cache_dir, tokens_key)
    special = SpecialTokens.from_tokenizer(tokenizer)
    parts = []
    for name, doc_ids, nsp_seed, mask_seed in (("train", train_ids, f"nsp-train-{seed}", seed),
                                               ("heldout", heldout_ids, f"nsp-heldout-{seed}", seed + 1)):
        key = _key(tokens_key, name, doc_ids, max_len, nsp_seed)
        usable = sum(cache.num_sentences(d) > 0 for d in doc_ids)
        examples = (examples_to_cache(cache, doc_ids, max_len, nsp_seed, cache_dir, key) if usable >= 2 or
                    name == "train" else [])
        parts.append(PretrainingDataset(examples, special, max_len, max_pred, mask_seed))
    return parts[0], parts[1], tokenizer
