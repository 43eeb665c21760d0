"""Chapter 08: the datasets are disjoint, the metrics match hand-computed values, the classifier reads the
pooled [CLS], fine-tuning runs through the shared loop and resumes exactly, the bag-of-words baseline reaches
the optimum of its loss."""

import re

import pytest
import torch
import torch.nn.functional as F

from bertnb.finetune import (BertClassifier, classification_metrics, collate_encoded, confusion_matrix,
                             encode_examples, fine_tune, load_encoder, macro_f1, predict, predict_proba)
from bertnb.finetune_baselines import (BagOfWords, bag_of_words_baseline, fit_logistic_regression,
                                       majority_class, text_features)
from bertnb.finetune_data import (DOCS_TOPIC_LABELS, assign_documents, docs_topic_splits, giveaway_words,
                                  labelled_reviews, normalize_whitespace, remove_words, sentiment_splits)
from bertnb.model import BertConfig, BertModel
from bertnb.tokenization import SPECIAL_TOKENS, BertTokenizer


# ---------------------------------------------------------------------------------------------------------
# Data


def test_sentiment_splits_are_disjoint_after_whitespace_normalisation():
    train, dev, test = sentiment_splits(seed=0)
    keys = [{normalize_whitespace(text) for text, _ in split} for split in (train, dev, test)]
    assert not keys[0] & keys[1] and not keys[0] & keys[2] and not keys[1] & keys[2]
    assert sum(map(len, keys)) == len(train) + len(dev) + len(test)  # no repeat inside a split either
    assert len(train) + len(dev) + len(test) == len(labelled_reviews())
    assert abs(len(dev) / len(train) - 0.125) < 0.01 and abs(len(test) - len(dev)) <= 1


def test_sentiment_data_drops_texts_found_in_both_files_and_is_balanced():
    labels_of = {}
    for text, label in labelled_reviews():
        labels_of.setdefault(text, set()).add(label)
    assert all(len(labels) == 1 for labels in labels_of.values())
    share_positive = sum(label for _, label in labelled_reviews()) / len(labelled_reviews())
    assert 0.4 < share_positive < 0.6  # about 8.3k positive, 9.0k negative distinct reviews


def test_sentiment_splits_are_fixed_by_the_seed():
    assert sentiment_splits(seed=0)[2] == sentiment_splits(seed=0)[2]
    assert sentiment_splits(seed=0)[2] != sentiment_splits(seed=1)[2]
    with pytest.raises(ValueError, match="seed"):
        sentiment_splits(seed=-1)


def test_assign_documents_keeps_documents_whole_and_near_the_fractions():
    sizes = {"big": 240, **{f"doc{i}": 10 for i in range(20)}, "mid": 60}
    assignment = assign_documents(sizes, seed=0)
    assert set(assignment) == set(sizes)  # every document in exactly one split (a dict: one value each)
    filled = [sum(sizes[d] for d, s in assignment.items() if s == split) for split in range(3)]
    assert filled == [400, 50, 50]  # exactly 80 / 10 / 10 % here


def test_docs_topic_splits_disjoint_every_class_everywhere_and_no_giveaway_words():
    train, dev, test = docs_topic_splits(seed=0)
    texts = [{text for text, _ in split} for split in (train, dev, test)]
    assert not texts[0] & texts[1] and not texts[0] & texts[2] and not texts[1] & texts[2]
    for split in (train, dev, test):
        assert {label for _, label in split} == set(range(len(DOCS_TOPIC_LABELS)))
    banned = {"asyncio", "tkinter", "distutils", "importlib", "unittest", "email", "xml", "ttk", "mime", "sax"}
    for text, _ in train + dev + test:
        words = set(re.findall(r"[a-z0-9_]+", text.lower()))
        assert not words & banned, (words & banned, text)


def test_remove_words_is_whole_word_and_case_insensitive():
    words = giveaway_words(["stdlib:email.mime.text", "reference:assert"])
    assert words == {"email", "mime", "text"}
    assert remove_words("Email.mime.Text parses emails; see the text.", words) == ".. parses emails; see the ."


# ---------------------------------------------------------------------------------------------------------
# Metrics


def test_macro_f1_matches_a_hand_computed_example():
    labels = [0, 0, 0, 1, 1, 2]
    predictions = [0, 0, 1, 1, 2, 2]
    confusion = confusion_matrix(labels, predictions, 3)
    assert confusion.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # class 0: TP 2, FP 0, FN 1 -> F1 = 4/5;  class 1: TP 1, FP 1, FN 1 -> 1/2;  class 2: TP 1, FP 1, FN 0 -> 2/3
    assert macro_f1(confusion) == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3, abs=1e-12)
    metrics = classification_metrics(labels, predictions, 3)
    assert metrics["accuracy"] == pytest.approx(4 / 6)


def test_macro_f1_punishes_the_majority_class_and_counts_absent_classes_as_zero():
    labels = [0] * 9 + [1]
    assert classification_metrics(labels, [0] * 10, 2)["accuracy"] == pytest.approx(0.9)
    assert macro_f1(confusion_matrix(labels, [0] * 10, 2)) == pytest.approx((2 * 9 / (18 + 1)) / 2)


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match=r"class ids in \[0, 1\]"):
        confusion_matrix([0, 2], [0, 1], 2)
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix([0, 1], [0], 2)


# ---------------------------------------------------------------------------------------------------------
# The classifier and the loop, on a tiny model with a character vocabulary of real reviews


@pytest.fixture(scope="module")
def tiny_setup():
    train, dev, _ = sentiment_splits(seed=0)
    train, dev = train[:256], dev[:64]
    chars = sorted({c for text, _ in train + dev for c in text if not c.isspace()})
    tokenizer = BertTokenizer.from_vocab(list(SPECIAL_TOKENS) + chars)
    return train, dev, tokenizer


def tiny_classifier(vocab_size, seed=0, num_classes=2):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=32, num_layers=2, num_heads=2, ffn_size=64, max_len=32)
    return BertClassifier(BertModel(cfg), num_classes)


def test_classifier_is_dropout_and_linear_on_the_pooled_cls(tiny_setup):
    train, _, tokenizer = tiny_setup
    model = tiny_classifier(len(tokenizer)).eval()
    batch = collate_encoded(encode_examples(tokenizer, train[:5], 32), range(5), tokenizer.pad_id)
    logits = model(batch["tokens"], batch["segments"], batch["valid_lens"])  # [B, C]
    X = model.bert(batch["tokens"], batch["segments"], batch["valid_lens"])  # [B, m, n]
    expected = torch.tanh(X[:, 0] @ model.bert.pooler.weight.T + model.bert.pooler.bias) @ \
        model.classifier.weight.T + model.classifier.bias
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-6)
    assert logits.shape == (5, 2)


def test_pairs_are_packed_with_segments_and_padding_is_ignored(tiny_setup):
    train, _, tokenizer = tiny_setup
    (a, label), (b, _) = train[0], train[1]
    encoded = encode_examples(tokenizer, [((a[:5], b[:5]), label), (a[:5], label)], 32)
    ids, segments, _ = encoded[0]
    assert segments.count(1) == len(tokenizer.tokenize(b[:5])) + 1  # B and its [SEP]
    model = tiny_classifier(len(tokenizer)).eval()
    alone = predict_proba(model, tokenizer, [a[:5]])
    beside_long = predict_proba(model, tokenizer, [a[:5], a[:30]])  # padded to the longer text
    torch.testing.assert_close(alone[0], beside_long[0], rtol=1e-5, atol=1e-6)


def test_predict_returns_label_names_and_probabilities(tiny_setup):
    _, dev, tokenizer = tiny_setup
    model = tiny_classifier(len(tokenizer))
    out = predict(model, tokenizer, [text for text, _ in dev[:3]], ["negative", "positive"], max_len=32)
    assert [label in ("negative", "positive") for label, _ in out] == [True] * 3
    assert all(0.5 <= p <= 1 for _, p in out)
    with pytest.raises(TypeError, match="single str"):
        predict(model, tokenizer, "好", ["negative", "positive"])
    with pytest.raises(ValueError, match="2 classes but 3 label names"):
        predict(model, tokenizer, ["好"], ["a", "b", "c"])


def test_fine_tune_learns_the_training_batches_and_reports_dev_metrics(tiny_setup):
    train, dev, tokenizer = tiny_setup
    model = tiny_classifier(len(tokenizer))
    result = fine_tune(model, tokenizer, train[:32], dev, steps=40, batch_size=16, max_len=32, lr=3e-3, seed=0,
                       eval_every=20, progress=False)  # 32 reviews seen 20 times: it can learn them by heart
    first = sum(r["loss"] for r in result["losses"][:8]) / 8
    last = sum(r["loss"] for r in result["losses"][-8:]) / 8
    assert last < first - 0.05  # the loss falls (deterministic: fixed seed, fixed batches)
    assert [h["step"] for h in result["history"]] == [20, 40]
    assert set(result["final"]) >= {"dev_accuracy", "dev_macro_f1"}
    assert 0 <= result["final"]["dev_macro_f1"] <= 1


def test_fine_tune_resumes_exactly(tiny_setup, tmp_path):
    train, dev, tokenizer = tiny_setup
    options = dict(steps=12, batch_size=16, max_len=32, lr=1e-3, seed=2, progress=False)
    whole = fine_tune(tiny_classifier(len(tokenizer)), tokenizer, train, **options)
    path = tmp_path / "finetune.pt"
    fine_tune(tiny_classifier(len(tokenizer)), tokenizer, train, checkpoint_path=path, stop_at=5, **options)
    resumed_model = tiny_classifier(len(tokenizer), seed=99)  # other weights: the checkpoint must replace them
    resumed = fine_tune(resumed_model, tokenizer, train, resume=path, **options)
    assert [r["loss"] for r in resumed["losses"]] == [r["loss"] for r in whole["losses"]]


def test_fine_tune_rejects_a_train_set_smaller_than_a_batch(tiny_setup):
    train, _, tokenizer = tiny_setup
    with pytest.raises(ValueError, match="fewer than batch_size"):
        fine_tune(tiny_classifier(len(tokenizer)), tokenizer, train[:3], steps=2, batch_size=8, max_len=32,
                  progress=False)


def test_minilm_is_refused_for_chinese():
    with pytest.raises(ValueError, match="minilm.*'en'"):
        load_encoder("minilm", "zh")
    with pytest.raises(ValueError, match="must be one of"):
        load_encoder("bert-large", "en")


def test_random_encoder_has_the_checkpoints_config_but_other_weights():
    pretrained, _ = load_encoder("checkpoint", "zh")
    torch.manual_seed(0)
    random_init, tokenizer = load_encoder("random", "zh")
    assert random_init.cfg == pretrained.cfg and len(tokenizer) == pretrained.cfg.vocab_size
    assert not torch.equal(random_init.embeddings.token_embedding.weight,
                           pretrained.embeddings.token_embedding.weight)


# ---------------------------------------------------------------------------------------------------------
# Bag-of-words baseline


def test_text_features():
    assert text_features("不错 很好", "chars") == ["不", "错", "很", "好", "不错", "错很", "很好"]
    assert text_features("Return the Value.", "words") == ["return", "the", "value", "."]
    with pytest.raises(ValueError, match="'words', 'chars'"):
        text_features("x", "bigrams")


def test_logistic_regression_reaches_the_optimum_of_its_loss():
    texts = ["good fine nice", "bad awful", "nice good", "awful bad bad", "fine", "bad"] * 3
    labels = torch.tensor([1, 0, 1, 0, 1, 0] * 3)
    bag = BagOfWords(texts, "words")
    X = bag.transform(texts)
    l2 = 1e-2
    W, b = fit_logistic_regression(X, labels, 2, l2)
    W, b = W.requires_grad_(), b.requires_grad_()
    loss = F.cross_entropy(torch.sparse.mm(X, W) + b, labels) + 0.5 * l2 * (W * W).sum()
    grad_W, grad_b = torch.autograd.grad(loss, (W, b))
    assert grad_W.abs().max() < 1e-4 and grad_b.abs().max() < 1e-4  # a stationary point of a convex loss


def test_bag_of_words_baseline_and_majority_on_real_reviews():
    train, dev, test = sentiment_splits(seed=0)
    train, dev, test = train[:1500], dev[:300], test[:300]
    result = bag_of_words_baseline(train, dev, test, "chars", 2, l2_grid=(1e-3,))
    majority = majority_class(train)
    majority_accuracy = sum(label == majority for _, label in test) / len(test)
    assert result["test"]["accuracy"] > majority_accuracy + 0.15  # words carry sentiment; measured 0.76 vs 0.54
