"""The baselines a fine-tuned BERT must beat to be worth its minutes: the majority class, and a bag-of-words
logistic regression (word counts for English, character uni- and bigram counts for Chinese).

Written in torch (no scikit-learn dependency): the features are a sparse [N, F] matrix, the model one
linear layer W [F, C] + b [C] trained to the optimum of the L2-regularised cross-entropy by L-BFGS on the
whole training set (the problem is convex, so the result does not depend on a seed), and the
regularisation strength is picked on the dev split. Built in chapter 08.
"""

from __future__ import annotations

import math
from collections import Counter

import torch
import torch.nn.functional as F

from bertnb.tokenization import basic_tokenize
from bertnb.validation import check_choice, check_int

ANALYZERS = ("words", "chars")
L2_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)


def majority_class(train) -> int:
    """The most frequent training label (ties: the smaller id). Built in chapter 08."""
    counts = Counter(label for _, label in train)
    return max(sorted(counts), key=lambda label: counts[label])


def text_features(text: str, analyzer: str) -> list[str]:
    """A text's bag of features: lower-cased words ("words", the tokenizer's basic split), or its characters
    and pairs of neighbouring characters ("chars": Chinese has no spaces between words, and a bigram like
    不错 "not bad" carries what its characters alone do not). Built in chapter 08."""
    check_choice("analyzer", analyzer, ANALYZERS)
    if analyzer == "words":
        return basic_tokenize(text, do_lower_case=True)
    chars = [c for c in text if not c.isspace()]
    return chars + [a + b for a, b in zip(chars, chars[1:])]


class BagOfWords:
    """Feature vocabulary from the training texts (features seen at least `min_count` times), then texts ->
    a sparse [N, F] matrix of log(1 + count): a review that says 好 ten times is not ten times as positive.
    Built in chapter 08."""

    def __init__(self, texts, analyzer: str, min_count: int = 2):
        check_int("min_count", min_count, low=1)
        self.analyzer = analyzer
        counts = Counter(f for text in texts for f in set(text_features(text, analyzer)))  # document counts
        self.index = {f: i for i, f in enumerate(sorted(f for f, c in counts.items() if c >= min_count))}

    def __len__(self) -> int:
        return len(self.index)

    def transform(self, texts) -> torch.Tensor:
        rows, cols, values = [], [], []
        for row, text in enumerate(texts):
            counts = Counter(self.index[f] for f in text_features(text, self.analyzer) if f in self.index)
            for col, count in counts.items():
                rows.append(row)
                cols.append(col)
                values.append(math.log1p(count))
        return torch.sparse_coo_tensor([rows, cols], values, (len(texts), len(self)),
                                       dtype=torch.float32, check_invariants=False).coalesce()  # [N, F]


def fit_logistic_regression(X, labels, num_classes: int, l2: float, max_iter: int = 200):
    """Multinomial logistic regression: minimise mean cross-entropy + l2 / 2 * ||W||^2 (the bias is not
    penalised) with full-batch L-BFGS. X [N, F] sparse, labels [N] -> (W [F, C], b [C]). Built in chapter 08."""
    labels = torch.as_tensor(labels)
    W = torch.zeros(X.shape[1], num_classes, requires_grad=True)  # [F, C]; zeros: a convex problem
    b = torch.zeros(num_classes, requires_grad=True)  # [C]
    optimizer = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-6,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        logits = torch.sparse.mm(X, W) + b  # [N, C]
        loss = F.cross_entropy(logits, labels) + 0.5 * l2 * (W * W).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return W.detach(), b.detach()


def logistic_regression_predict(X, W, b) -> torch.Tensor:
    """Class probabilities [N, C] of the sparse features X [N, F]. Built in chapter 08."""
    return (torch.sparse.mm(X, W) + b).softmax(-1)


def bag_of_words_baseline(train, dev, test, analyzer: str, num_classes: int, l2_grid=L2_GRID) -> dict:
    """Fit one logistic regression per l2 in `l2_grid` on train, keep the best on dev (macro-F1), score it
    on test. Returns {"l2", "dev", "test", "num_features"} with the metrics of
    `bertnb.finetune.classification_metrics`. Built in chapter 08."""
    from bertnb.finetune import classification_metrics

    bag = BagOfWords([text for text, _ in train], analyzer)
    X = {name: bag.transform([text for text, _ in split]) for name, split in
         (("train", train), ("dev", dev), ("test", test))}
    labels = {name: [label for _, label in split] for name, split in
              (("train", train), ("dev", dev), ("test", test))}
    best = None
    for l2 in l2_grid:
        W, b = fit_logistic_regression(X["train"], labels["train"], num_classes, l2)
        dev_predictions = logistic_regression_predict(X["dev"], W, b).argmax(-1)
        dev_metrics = classification_metrics(labels["dev"], dev_predictions, num_classes)
        if best is None or dev_metrics["macro_f1"] > best["dev"]["macro_f1"]:
            best = {"l2": l2, "dev": dev_metrics, "weights": (W, b)}
    test_predictions = logistic_regression_predict(X["test"], *best.pop("weights")).argmax(-1)
    return {**best, "test": classification_metrics(labels["test"], test_predictions, num_classes),
            "num_features": len(bag)}
