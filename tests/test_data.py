"""Tests of bertnb.data: corpora, held-out split, character vocabulary, NSP pairs, MLM masking, dataset."""

import json
import random
import re
import shutil
from collections import Counter

import pytest
import torch

from bertnb import corpus, data
from bertnb.data import (IS_NEXT, NOT_NEXT, NspExample, PretrainingDataset, SpecialTokens, build_char_vocab,
                         collate, make_nsp_examples, mask_tokens, num_predictions, split_documents)
from bertnb.tokenization import BertTokenizer
from bertnb.losses import mlm_loss

# A small made-up vocabulary layout: specials 0..4 (the Chinese character vocab's order), the rest ordinary.
PAD, UNK, CLS, SEP, MASK = range(5)
SPECIALS = {PAD, UNK, CLS, SEP, MASK}
SPECIAL = SpecialTokens(cls_id=CLS, sep_id=SEP, pad_id=PAD, mask_id=MASK, special_ids=frozenset(SPECIALS),
                        vocab_size=1000)


def packed(num_a: int, num_b: int = 0, first_id: int = 10) -> list[int]:
    """[CLS] A [SEP] (B [SEP]) with distinct ordinary ids."""
    a = list(range(first_id, first_id + num_a))
    b = list(range(first_id + num_a, first_id + num_a + num_b))
    return [CLS] + a + [SEP] + (b + [SEP] if num_b else [])


# ------------------------------------------------------------------------------------------------------------
# mask_tokens


def test_num_predictions_follows_the_formula_for_every_length():
    # the count is taken over the packed sequence, specials included, and rounded half to even as Python does
    assert [num_predictions(n, 20) for n in (3, 4, 5, 10, 17, 30, 128, 200)] == [1, 1, 1, 2, 3, 4, 19, 20]
    rng = random.Random(0)
    for max_pred in (1, 2, 5, 20, 80):
        for num_a in range(1, 300, 7 if max_pred > 5 else 1):
            for num_b in (0, 1, 2, 3, 50):
                tokens = packed(num_a, num_b)
                _, positions, labels, weights = mask_tokens(tokens, SPECIALS, 1000, max_pred, rng,
                                                            mask_id=MASK)
                expected = min(max_pred, max(1, round(len(tokens) * 0.15)))
                assert sum(weights) == expected, (num_a, num_b, max_pred)
                assert len(positions) == len(labels) == len(weights) == max_pred


def test_one_to_three_ordinary_tokens():
    rng = random.Random(1)
    for tokens in ([CLS, 7, SEP], [CLS, 7, 8, SEP], [CLS, 7, SEP, 8, SEP], [CLS, 7, 8, SEP, 9, SEP]):
        masked, positions, labels, weights = mask_tokens(tokens, SPECIALS, 100, 5, rng, mask_id=MASK)
        assert weights == [1.0, 0.0, 0.0, 0.0, 0.0]
        assert tokens[positions[0]] == labels[0] and tokens[positions[0]] not in SPECIALS
    # nothing to predict when every token is special
    masked, positions, labels, weights = mask_tokens([CLS, SEP], SPECIALS, 100, 3, rng, mask_id=MASK)
    assert masked == [CLS, SEP] and positions == labels == [0, 0, 0] and weights == [0.0, 0.0, 0.0]


def test_padding_slots_and_sorted_positions():
    tokens = packed(30, 20)
    masked, positions, labels, weights = mask_tokens(tokens, SPECIALS, 1000, 20, random.Random(3),
                                                     mask_id=MASK)
    count = int(sum(weights))
    assert count == round(len(tokens) * 0.15) == 8
    assert positions[:count] == sorted(positions[:count]) and len(set(positions[:count])) == count
    assert positions[count:] == [0] * 12 and labels[count:] == [0] * 12 and weights[count:] == [0.0] * 12
    assert labels[:count] == [tokens[p] for p in positions[:count]]
    assert len(masked) == len(tokens)
    assert all(masked[i] == tokens[i] for i in range(len(tokens)) if i not in positions[:count])


def test_80_10_10_split_over_100k_predictions():
    rng = random.Random(0)
    outcome = Counter()
    vocab_size = 30522
    while sum(outcome.values()) < 100_000:
        tokens = packed(60, 64, first_id=1000)  # 128 tokens -> 19 predictions each
        masked, positions, labels, weights = mask_tokens(tokens, SPECIALS, vocab_size, 20, rng, mask_id=MASK)
        for position, weight in zip(positions, weights):
            if weight:
                new = masked[position]
                outcome["mask" if new == MASK else "kept" if new == tokens[position] else "random"] += 1
    total = sum(outcome.values())
    assert abs(outcome["mask"] / total - 0.8) < 0.01
    assert abs(outcome["random"] / total - 0.1) < 0.01
    assert abs(outcome["kept"] / total - 0.1) < 0.01


def test_specials_are_never_chosen_nor_used_as_replacements():
    # a tiny vocabulary: half of it special, so a random replacement that may be special would show up
    vocab_size, specials = 10, {0, 1, 2, 3, 4}
    rng = random.Random(0)
    replacements = Counter()
    for _ in range(3000):
        tokens = [2] + [rng.randrange(5, 10) for _ in range(rng.randrange(1, 30))] + [3, 0, 1, 4]
        masked, positions, labels, weights = mask_tokens(tokens, specials, vocab_size, 10, rng, mask_id=4)
        chosen = positions[:int(sum(weights))]
        assert all(tokens[p] not in specials for p in chosen)
        for i, (old, new) in enumerate(zip(tokens, masked)):
            if i not in chosen:
                assert new == old  # untouched, specials (pad included) among them
            elif new != 4:
                assert new not in specials
                replacements[new] += 1
    assert set(replacements) == {5, 6, 7, 8, 9}  # every ordinary token can be a replacement


def test_masking_is_determined_by_the_rng():
    tokens = packed(100, 20)
    first = mask_tokens(tokens, SPECIALS, 1000, 20, random.Random(42), mask_id=MASK)
    again = mask_tokens(tokens, SPECIALS, 1000, 20, random.Random(42), mask_id=MASK)
    other = mask_tokens(tokens, SPECIALS, 1000, 20, random.Random(43), mask_id=MASK)
    assert first == again and first != other


def test_default_mask_id_is_bert_base_uncased():
    tokens = [101, 2023, 2003, 1037, 3231, 102]  # [CLS] this is a test [SEP]
    specials = {0, 100, 101, 102, 103}  # [PAD] [UNK] [CLS] [SEP] [MASK]
    masked = [mask_tokens(tokens, specials, 30522, 1, random.Random(seed))[0] for seed in range(20)]
    assert data.BERT_BASE_MASK_ID == 103 and any(103 in m for m in masked)


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_pred=0), r"max_pred must be an int >= 1"),
    (dict(max_pred=2.0), r"max_pred must be an int >= 1"),
    (dict(tokens=[CLS, SEP], vocab_size=5), r"vocab_size 5 too small: it leaves no non-special token"),
    (dict(vocab_size=20), r"vocab_size 20 too small: token ids must lie in \[0, vocab_size\)"),
    (dict(rng=0), r"rng must be a random.Random"),
    (dict(rng=random), r"rng must be a random.Random"),
    (dict(mask_id=103), r"mask_id 103 is not one of special_ids \[0, 1, 2, 3, 4\]"),
    (dict(tokens=[]), r"tokens is empty"),
    (dict(tokens=[CLS, -1, SEP]), r"token ids must lie in"),
    (dict(special_ids={"[MASK]"}), r"special_ids must be a set of int"),
])
def test_mask_tokens_rejects_bad_input(kwargs, message):
    arguments = dict(tokens=packed(20), special_ids=SPECIALS, vocab_size=1000, max_pred=5,
                     rng=random.Random(0), mask_id=MASK)
    arguments.update(kwargs)
    with pytest.raises((TypeError, ValueError), match=message):
        mask_tokens(**arguments)


# ------------------------------------------------------------------------------------------------------------
# NSP pairs on synthetic documents: every token id is unique, ids count up through a document, so
# "consecutive text" means "consecutive ids" and the id says which document a token comes from.

def synthetic_docs(num_docs=1000, seed=0):
    rng = random.Random(seed)
    docs = []
    for d in range(num_docs):
        next_id, sentences = 100_000 + 1000 * d, []
        for _ in range(rng.randrange(1, 25)):
            length = rng.randrange(1, 30)
            sentences.append(list(range(next_id, next_id + length)))
            next_id += length
        docs.append(sentences)
    return docs


def doc_of(token_id: int) -> int:
    return (token_id - 100_000) // 1000


def is_run(tokens) -> bool:
    return all(b == a + 1 for a, b in zip(tokens, tokens[1:]))


@pytest.fixture(scope="module")
def synthetic_examples():
    docs = synthetic_docs()
    return docs, make_nsp_examples(docs, max_len=40, rng=random.Random(0))


def test_nsp_labels_are_balanced(synthetic_examples):
    _, examples = synthetic_examples
    assert len(examples) > 5000  # so 2 points is 3 standard deviations of a fair coin
    not_next = sum(e.nsp_label == NOT_NEXT for e in examples) / len(examples)
    assert abs(not_next - 0.5) < 0.02


def test_nsp_pairs_fit_and_come_from_the_right_documents(synthetic_examples):
    _, examples = synthetic_examples
    for e in examples:
        assert isinstance(e, NspExample) and e.nsp_label in (IS_NEXT, NOT_NEXT)
        assert len(e.tokens_a) >= 1 and len(e.tokens_b) >= 1
        assert len(e.tokens_a) + len(e.tokens_b) + 3 <= 40
        assert is_run(e.tokens_a) and is_run(e.tokens_b)  # truncation only cuts the ends
        assert {doc_of(t) for t in e.tokens_a} == {e.doc_a}
        assert {doc_of(t) for t in e.tokens_b} == {e.doc_b}
        if e.nsp_label == NOT_NEXT:
            assert e.doc_b != e.doc_a
        else:
            assert e.doc_b == e.doc_a and e.tokens_b[0] > e.tokens_a[-1]


def test_is_next_pairs_are_consecutive_text(synthetic_examples):
    _, examples = synthetic_examples
    untruncated = [e for e in examples if e.nsp_label == IS_NEXT and len(e.tokens_a) + len(e.tokens_b) < 37]
    assert len(untruncated) > 200
    for e in untruncated:  # nothing was cut, so B starts right where A ends
        assert e.tokens_b[0] == e.tokens_a[-1] + 1


def test_sentences_are_kept_whole_unless_truncated(synthetic_examples):
    docs, examples = synthetic_examples
    sentence_of = {t: (d, i) for d, doc in enumerate(docs) for i, s in enumerate(doc) for t in s}
    sentences = {(d, i): s for d, doc in enumerate(docs) for i, s in enumerate(doc)}
    untruncated = [e for e in examples if len(e.tokens_a) + len(e.tokens_b) < 37]
    cut_sentences = 0
    for e in untruncated:
        first, last = sentences[sentence_of[e.tokens_a[0]]], sentences[sentence_of[e.tokens_a[-1]]]
        assert e.tokens_a[0] == first[0]  # A starts at a sentence start
        if e.tokens_a[-1] != last[-1]:
            # the one exception: a chunk of a single sentence, cut in two to make an IsNext pair
            assert e.nsp_label == IS_NEXT and e.tokens_a + e.tokens_b == first
            cut_sentences += 1
    assert 0 < cut_sentences < len(untruncated)


def test_nsp_examples_are_reproducible():
    docs = synthetic_docs(50)
    first = make_nsp_examples(docs, 32, random.Random(7))
    assert first == make_nsp_examples(docs, 32, random.Random(7))
    assert first != make_nsp_examples(docs, 32, random.Random(8))
    assert docs == synthetic_docs(50)  # the input is not modified


def test_short_targets_give_shorter_pairs():
    docs = synthetic_docs(200)
    def mean_length(short_seq_prob):
        examples = make_nsp_examples(docs, 64, random.Random(0), short_seq_prob)
        return sum(len(e.tokens_a) + len(e.tokens_b) for e in examples) / len(examples)

    assert mean_length(1.0) < mean_length(0.0) - 10


@pytest.mark.parametrize("args, message", [
    (([[[1, 2]]], 32, random.Random(0)), r"at least 2 documents"),
    (([[[1, 2]], []], 32, random.Random(0)), r"every document needs at least one non-empty sentence"),
    (([[[1]], [[2]]], 4, random.Random(0)), r"max_len must be an int >= 5"),
    (([[[1]], [[2]]], 32, 0), r"rng must be a random.Random"),
    (([[[1]], [[2]]], 32, random.Random(0), 1.5), r"short_seq_prob must be in \[0, 1\]"),
])
def test_make_nsp_examples_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        make_nsp_examples(*args)


# ------------------------------------------------------------------------------------------------------------
# Dataset and collate


@pytest.fixture(scope="module")
def small_dataset():
    examples = make_nsp_examples(synthetic_docs(40), 48, random.Random(0))
    special = SpecialTokens(CLS, SEP, PAD, MASK, frozenset(SPECIALS), vocab_size=200_000)
    return PretrainingDataset(examples, special, max_len=48, max_pred=8, seed=5)


def test_dataset_items_pack_and_mask(small_dataset):
    for index in range(len(small_dataset)):
        item, example = small_dataset[index], small_dataset.examples[index]
        a, b = len(example.tokens_a), len(example.tokens_b)
        assert len(item["tokens"]) == a + b + 3 <= 48
        assert item["segments"] == [0] * (a + 2) + [1] * (b + 1)
        assert item["tokens"][0] == CLS and item["tokens"][a + 1] == SEP and item["tokens"][-1] == SEP
        assert item["nsp_label"] == example.nsp_label
        assert sum(item["mlm_weights"]) == min(8, max(1, round((a + b + 3) * 0.15)))


def test_dataset_masks_are_reproducible_and_change_with_the_epoch(small_dataset):
    items = lambda: [small_dataset[i]["tokens"] for i in range(50)]
    small_dataset.set_epoch(0)
    epoch0 = items()
    assert items() == epoch0
    small_dataset.set_epoch(1)
    epoch1 = items()
    assert epoch1 != epoch0
    small_dataset.set_epoch(0)
    assert items() == epoch0
    other_seed = PretrainingDataset(small_dataset.examples, small_dataset.special, 48, 8, seed=6)
    assert [other_seed[i]["tokens"] for i in range(50)] != epoch0


def test_dataset_rejects_examples_longer_than_max_len(small_dataset):
    with pytest.raises(ValueError, match=r"packs to \d+ tokens > max_len 10"):
        PretrainingDataset(small_dataset.examples, small_dataset.special, max_len=10, max_pred=3)


def test_collate_shapes_dtypes_and_padding(small_dataset):
    batch_items = [small_dataset[i] for i in range(6)]
    batch = small_dataset.collate(batch_items)
    lengths = [len(item["tokens"]) for item in batch_items]
    B, m, p = 6, max(lengths), 8
    expected_shapes = {"tokens": (B, m), "segments": (B, m), "valid_lens": (B,), "pred_positions": (B, p),
                       "mlm_weights": (B, p), "mlm_labels": (B, p), "nsp_labels": (B,)}
    assert {k: tuple(v.shape) for k, v in batch.items()} == expected_shapes
    assert all(v.dtype == torch.int64 for k, v in batch.items() if k != "mlm_weights")
    assert batch["mlm_weights"].dtype == torch.float32
    assert batch["valid_lens"].tolist() == lengths
    for row, length in enumerate(lengths):
        assert batch["tokens"][row, :length].tolist() == batch_items[row]["tokens"]
        assert (batch["tokens"][row, length:] == PAD).all() and (batch["segments"][row, length:] == 0).all()
    # every predicted position is inside its row's real tokens
    weighted = batch["mlm_weights"] > 0
    assert (batch["pred_positions"][weighted] < batch["valid_lens"].unsqueeze(1).expand(B, p)[weighted]).all()
    with pytest.raises(ValueError, match="at least one item"):
        collate([])


def test_collate_pads_with_the_given_id():
    items = [{"tokens": [5, 6, 7], "segments": [0, 0, 0], "pred_positions": [1], "mlm_labels": [6],
              "mlm_weights": [1.0], "nsp_label": 0},
             {"tokens": [5, 7], "segments": [0, 0], "pred_positions": [0], "mlm_labels": [0],
              "mlm_weights": [0.0], "nsp_label": 1}]
    assert collate(items, pad_id=9)["tokens"].tolist() == [[5, 6, 7], [5, 7, 9]]


def test_mlm_loss_ignores_padded_slots():
    torch.manual_seed(0)
    B, p, V = 3, 6, 11
    logits, labels = torch.randn(B, p, V), torch.randint(0, V, (B, p))
    weights = torch.tensor([[1.0] * 6, [1.0] * 2 + [0.0] * 4, [1.0] * 4 + [0.0] * 2])
    loss = mlm_loss(logits, labels, weights)
    real = weights.bool()
    expected = torch.nn.functional.cross_entropy(logits[real], labels[real])  # mean over real slots only
    torch.testing.assert_close(loss, expected)
    # whatever sits in the padded slots changes nothing
    logits2, labels2 = logits.clone(), labels.clone()
    logits2[~real] = 100 * torch.randn_like(logits2[~real])
    labels2[~real] = 0
    torch.testing.assert_close(mlm_loss(logits2, labels2, weights), loss)
    assert mlm_loss(logits, labels, torch.zeros(B, p)).item() == 0.0  # no real slot: 0, not NaN


# ------------------------------------------------------------------------------------------------------------
# Corpora, split, vocabulary


def test_english_sentence_splitter():
    text = ("Use os.path.join (e.g. for paths) in Python 3.11. It returns a str. Call x.y() i.e. A method! "
            "Really? \"Yes.\" Done.")
    assert corpus.split_english_sentences(text) == [
        "Use os.path.join (e.g. for paths) in Python 3.11.", "It returns a str.", "Call x.y() i.e. A method!",
        "Really?", "\"Yes.\"", "Done."]


def test_english_paragraphs_drop_code_and_doctests():
    text = ("Title\n*****\n\nThe first sentence is here. The second one follows it.\n\n"
            "   for x in range(3):\n       print(x)\n\n>>> 1 + 1\n2\n\n   rule ::= \"a\" | \"b\"\n\n"
            "   An indented description reads like prose.\n")
    assert corpus.english_sentences(text) == ["The first sentence is here.", "The second one follows it.",
                                            "An indented description reads like prose."]


def test_frozen_english_corpus_matches_its_checksum(tmp_path):
    metadata = corpus.english_corpus_metadata()
    assert corpus._sha256(corpus.ENGLISH_CORPUS_FILE) == metadata["sha256"]
    docs = corpus.load_english_corpus()
    assert len(docs) >= 70 and len(docs) == metadata["documents"]
    assert sum(len(doc) for doc in docs) == metadata["sentences"]
    assert sum(len(s) for doc in docs for s in doc) == metadata["characters"]
    assert metadata["command"] == "python -m bertnb.corpus freeze-english" and metadata["python_version"]
    assert corpus.ENGLISH_CORPUS_FILE.stat().st_size < 3_000_000
    assert all(len(doc) >= 2 for doc in docs)
    sentences = [s for doc in docs for s in doc]
    assert not any(s.startswith(">>>") for s in sentences)
    assert len(set(sentences)) == len(sentences)  # deduplicated
    # a changed file is refused
    changed, meta = tmp_path / "python_docs.jsonl", tmp_path / "python_docs.json"
    shutil.copy(corpus.ENGLISH_METADATA_FILE, meta)
    changed.write_bytes(corpus.ENGLISH_CORPUS_FILE.read_bytes().replace(b"Python", b"Pithon", 1))
    with pytest.raises(ValueError, match="does not match its checksum"):
        corpus._load_english_documents_cached(str(changed), str(meta))


def test_frozen_english_corpus_format():
    with open(corpus.ENGLISH_CORPUS_FILE, encoding="utf-8") as f:
        first = json.loads(f.readline())
    assert first["id"].startswith("reference:") and isinstance(first["sentences"], list)


@pytest.fixture(scope="module")
def chinese_docs():
    return corpus.load_chinese_corpus()


def test_chinese_corpus_loads_without_tags(chinese_docs):
    assert len(chinese_docs) > 2000
    sentences = [s for doc in chinese_docs for s in doc]
    assert len(sentences) > 30_000
    assert not any(re.search(r"/[A-Za-z]", s) for s in sentences)  # no "/n", "/v", "/nr" ...
    assert not any(" " in s for s in sentences[:5000])
    assert chinese_docs[0][0] == "迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）"


def test_chinese_sentences_and_articles():
    assert corpus.split_chinese_sentences("他说：“好。”我们走吧！真的？好") == ["他说：“好。”", "我们走吧！", "真的？", "好"]
    assert corpus.strip_pos_tags("迈向/v  充满/v  希望/n") == "迈向充满希望"
    lines = ["标题一", "副标题", "正文第一句。", "（新华社记者摄）", "正文第二句。", "标题二", "正文。"]
    assert corpus.group_chinese_articles(lines) == [lines[:5], lines[5:]]


def test_split_documents_is_disjoint_and_deterministic():
    docs = [[f"doc {i} sentence"] for i in range(101)]
    train, heldout = split_documents(docs, 0.1, seed=0)
    assert len(heldout) == 10 and len(train) == 91
    assert not {d[0] for d in train} & {d[0] for d in heldout}
    assert sorted(train + heldout) == sorted(docs)
    assert (train, heldout) == split_documents(docs, 0.1, seed=0)
    assert heldout != split_documents(docs, 0.1, seed=1)[1]
    with pytest.raises(ValueError, match=r"held_out_fraction must be a number in \[0, 1\)"):
        split_documents(docs, 1.0)


def test_char_vocab_from_training_documents(chinese_docs):
    train, heldout = split_documents(chinese_docs[:300], 0.2, seed=0)
    vocab = build_char_vocab(train, min_count=1)
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(vocab) == len(set(vocab))
    train_chars = {ch for doc in train for s in doc for ch in s.lower()}
    assert all(piece.removeprefix("##") in train_chars for piece in vocab[5:])
    tokenizer = BertTokenizer.from_vocab(vocab)
    tokens = tokenizer.tokenize(train[0][1])
    assert "[UNK]" not in tokens and "".join(t.removeprefix("##") for t in tokens) == train[0][1].lower()
    assert tokenizer.tokenize("１９９８年") == ["１", "##９", "##９", "##８", "年"]
    assert len(build_char_vocab(train, min_count=1, max_size=100)) == 100
    frequent_only = build_char_vocab(train, min_count=50)
    assert len(frequent_only) < len(vocab)
    with pytest.raises(ValueError, match="min_count must be an int >= 1"):
        build_char_vocab(train, min_count=0)


# ------------------------------------------------------------------------------------------------------------
# The English pretraining data, end to end


@pytest.fixture(scope="module")
def english_data():
    return data.build_pretraining_data("python-docs", max_len=128, max_pred=20, held_out_fraction=0.1, seed=0)


def test_build_english_pretraining_data(english_data):
    train, heldout, tokenizer = english_data
    assert len(tokenizer) == 30522 and len(train) > 3000 and len(heldout) > 200
    for dataset in (train, heldout):
        assert all(len(e.tokens_a) + len(e.tokens_b) + 3 <= 128 for e in dataset.examples)
        assert abs(sum(e.nsp_label for e in dataset.examples) / len(dataset) - 0.5) < 0.05
        assert all(e.doc_a != e.doc_b for e in dataset.examples if e.nsp_label == NOT_NEXT)
    batch = train.collate([train[i] for i in range(8)])
    assert batch["tokens"].shape[0] == 8 and batch["tokens"].shape[1] <= 128
    assert batch["pred_positions"].shape == (8, 20)
    assert (batch["tokens"][:, 0] == tokenizer.cls_id).all()
    with pytest.raises(ValueError, match="corpus must be one of"):
        data.build_pretraining_data("wikipedia")


def test_english_is_next_pairs_are_real_continuations(english_data):
    train, _, tokenizer = english_data
    # the examples' documents are the training part of the split; rebuild it to look the text up
    docs = [[list(ids) for ids in doc] for doc in data._tokenized_english_corpus()]
    train_docs, _ = split_documents(docs, 0.1, seed=0)
    streams = [" ".join(map(str, (t for s in doc for t in s))) for doc in train_docs]
    for e in train.examples[:300]:
        if e.nsp_label == IS_NEXT and len(e.tokens_a) + len(e.tokens_b) < 125:
            pair = " ".join(map(str, e.tokens_a + e.tokens_b))
            assert f" {pair} " in f" {streams[e.doc_a]} "
