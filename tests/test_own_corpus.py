"""bertnb.own_corpus: your own corpus, on a generated one (real sentences from the Python docs written to
tmp_path, about 200 KB): the same examples as the in-memory pipeline, a cache that is built once and memory-mapped,
the three vocabularies, clear errors for bad input, and the command line under torchrun with 2 processes."""

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from bertnb.corpus import load_english_corpus
from bertnb.data import PretrainingDataset, make_nsp_examples, split_documents, tokenize_documents
from bertnb.own_corpus import build_own_corpus_data, corpus_files, iter_documents
from bertnb.pretrain import PretrainConfig
from bertnb.tokenization import BertTokenizer

SETTINGS = dict(max_len=48, max_pred=6, held_out_fraction=0.2, seed=4)


def generated_documents(num_docs=60, seed=0):
    """Documents of real sentences, shuffled: the corpus's own documents, in a seeded random order."""
    docs = [doc for doc in load_english_corpus()[:num_docs] if len(doc) >= 2]
    random.Random(seed).shuffle(docs)
    return docs


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n\n".join("\n".join(doc) for doc in generated_documents()) + "\n", encoding="utf-8")
    return path


def test_a_file_and_a_folder_of_one_document_per_file_read_the_same(corpus_file, tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    docs = generated_documents()
    for i, doc in enumerate(docs):  # no blank lines: each file is one document; sorted by name
        (folder / ("sub" if i % 2 else "") / f"{i:03d}.txt").write_text("\n".join(doc), encoding="utf-8")
    (folder / ".hidden").write_bytes(b"\x00\xff skipped")
    from_file = list(iter_documents(corpus_files(corpus_file)))
    by_name = sorted(range(len(docs)), key=lambda i: (f"sub/{i:03d}.txt" if i % 2 else f"{i:03d}.txt"))
    assert list(iter_documents(corpus_files(folder))) == [from_file[i] for i in by_name]
    assert len(from_file) == len(docs) and corpus_file.stat().st_size > 100_000


def test_the_cache_gives_the_in_memory_pipelines_examples(corpus_file, tmp_path):
    train, heldout, tokenizer = build_own_corpus_data(corpus_file, cache_dir=tmp_path, **SETTINGS)
    assert len(tokenizer) == 30522  # the course's English WordPiece by default

    # the same pipeline, in memory, as bertnb.data.build_pretraining_data does it
    docs = list(iter_documents(corpus_files(corpus_file)))
    train_docs, heldout_docs = split_documents(tokenize_documents(docs, tokenizer), SETTINGS["held_out_fraction"], 4)
    expected = [PretrainingDataset(make_nsp_examples([d for d in part if d], 48, random.Random(f"nsp-{name}-4")),
                                   tokenizer, 48, 6, seed)
                for part, name, seed in ((train_docs, "train", 4), (heldout_docs, "heldout", 5))]
    for got, want in zip((train, heldout), expected):
        assert len(got) == len(want) > 10
        for epoch in (0, 3):  # masks drawn per epoch, the same way
            got.set_epoch(epoch)
            want.set_epoch(epoch)
            assert [got[i] for i in range(len(got))] == [want[i] for i in range(len(want))]
    assert isinstance(train.examples.tokens, np.memmap)  # read from disk on demand, not loaded

    # Built once: a second call reads the cache and never tokenizes.
    def no_tokenizing(*args, **kwargs):
        raise AssertionError("tokenized again")

    original = BertTokenizer.tokenize
    BertTokenizer.tokenize = no_tokenizing
    try:
        again, _, _ = build_own_corpus_data(corpus_file, cache_dir=tmp_path, **SETTINGS)
    finally:
        BertTokenizer.tokenize = original
    train.set_epoch(0)
    assert again[7] == train[7] and len(again) == len(train)


@pytest.mark.parametrize("vocab, size", [("char", 300), ("wordpiece", 600)])
def test_vocabularies_built_from_the_training_documents(corpus_file, tmp_path, vocab, size):
    train, heldout, tokenizer = build_own_corpus_data(corpus_file, vocab=vocab, vocab_size=size, cache_dir=tmp_path,
                                                      **SETTINGS)
    assert len(tokenizer) <= size and tokenizer.convert_ids_to_tokens([0, 1, 2, 3, 4]) == \
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert train.examples.meta["dtype"] == "uint16" and len(heldout) > 0
    item = train[0]
    assert max(item["tokens"]) < len(tokenizer) and item["tokens"][0] == tokenizer.cls_id
    # a vocabulary path works as well, and gives the same ids
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))) + "\n")
    again, _, _ = build_own_corpus_data(corpus_file, vocab=str(vocab_file), cache_dir=tmp_path / "other", **SETTINGS)
    assert again[0] == item


def test_bad_corpora_get_clear_errors(tmp_path):
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("first line\n\nna\u00efve caf\u00e9\n".encode("latin-1"))
    one_doc = tmp_path / "one.txt"
    one_doc.write_text("Only one document here.\nNo blank line separates anything.\n", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    cases = [(binary, r"looks like a binary file \(it contains NUL bytes\), not UTF-8 text"),
             (latin1, r"is not UTF-8 text \(undecodable byte b'\\xef' on line 3\)"),
             (tmp_path / "empty", "the folder holds no files"),
             (tmp_path / "missing.txt", "no such file or folder"),
             (one_doc, r"found 1 document\(s\); NSP needs at least 2")]
    for path, message in cases:
        with pytest.raises(ValueError, match=message):
            build_own_corpus_data(path, cache_dir=tmp_path / "cache", **SETTINGS)
    two_docs = tmp_path / "two.txt"
    two_docs.write_text("The first document.\n\nThe second one.\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"--vocab bpe: choose one of english, char, wordpiece"):
        build_own_corpus_data(two_docs, vocab="bpe", cache_dir=tmp_path / "cache")


def test_the_config_takes_a_corpus_path_and_checks_the_vocabulary(corpus_file):
    cfg = PretrainConfig(corpus=str(corpus_file), vocab="wordpiece", vocab_size=500)
    assert cfg.corpus == str(corpus_file.resolve())
    with pytest.raises(ValueError, match=r"vocab must be one of 'auto', 'english', 'char', 'wordpiece' or the path"):
        PretrainConfig(corpus=str(corpus_file), vocab="bpe")
    assert PretrainConfig(corpus="python-docs", vocab="wordpiece").vocab == "wordpiece"  # read as text


def test_the_command_under_torchrun_with_two_processes(corpus_file, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "bertnb.pretrain", "--corpus", str(corpus_file), "--vocab", "char", "--vocab-size", "300",
               "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--total-steps", "4", "--eval-every", "2",
               "--layers", "1", "--hidden", "16", "--heads", "2", "--ffn", "32", "--max-len", "48", "--max-pred", "6",
               "--batch-size", "8", "--eval-examples", "16", "--bf16", "off", "--device", "cpu", "--dropout", "0"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("done: 4 of 4 steps") == 1  # rank 0 alone prints
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 4 and len(metrics["train_loss"]["per_step"]) == 4
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "loss.png", "metrics.json", "model.safetensors",
                                                      "vocab.txt"]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 4


def test_a_built_in_corpus_is_written_once_as_text(tmp_path):
    from bertnb.corpus import load_english_corpus, write_corpus_text

    path = write_corpus_text("python-docs", tmp_path)
    documents = path.read_text(encoding="utf-8").rstrip("\n").split("\n\n")  # a blank line between documents
    corpus = load_english_corpus()
    assert len(documents) == len(corpus) and documents[0].split("\n")[0] == corpus[0][0].replace("\n", " ")
    stamp = path.stat().st_mtime_ns
    assert write_corpus_text("python-docs", tmp_path) == path and path.stat().st_mtime_ns == stamp  # not rewritten
    with pytest.raises(ValueError, match="name must be one of 'python-docs', 'peoples-daily'"):
        write_corpus_text("klingon", tmp_path)
