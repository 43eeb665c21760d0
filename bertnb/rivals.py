"""The rivals a pretrained model must beat: n-gram lookup tables and a text-blind NSP guess, fitted on the
TRAINING data only (the unmasked training sequences) and scored on exactly the held-out slots and pairs the
model is scored on. Built in chapter 07.

A BERT that has learned something from the context must do better than counting. Each MLM rival is a
probability distribution over the vocabulary given what it sees of the slot's neighbourhood, the same
(masked) input the model sees; its guess is the most probable token (ties: the smallest id), its loss the
cross-entropy of the right token:

- **unigram**: token frequencies, add-0.1 smoothed (`bertnb.metrics.UNIGRAM_SMOOTHING`); its guess is always
  the most frequent token;
- **left bigram**: p(token | the visible token on the left);
- **two-sided**: p(token | left and right visible neighbours), because BERT sees both sides;
- **copy-aware X**: where the slot does not show [MASK], the visible token is the answer half of the time
  (10 % unchanged against 10 % random, chapter 05): put probability 1/2 on it and 1/2 on rival X.

The n-gram tables back off with Witten-Bell interpolation: p(x | c) = (count(c, x) + T(c) p_lower(x)) /
(count(c) + T(c)), T(c) the number of distinct tokens seen after context c; an unseen context (e.g. a
neighbour that is itself [MASK]) falls back to p_lower entirely. The two-sided table backs off to the mean
of the left and right bigrams, those to the unigram. No rival ever predicts a special token (labels never
are one). Notation: S held-out prediction slots, V vocabulary size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bertnb.metrics import MASK, SLOT_KINDS, UNIGRAM_SMOOTHING, real_slots, slot_kinds
from bertnb.tokenization import is_punctuation
from bertnb.validation import check_float, check_int

# On a slot that does not show [MASK], the chance that the visible token is the answer: 10 % unchanged out of
# the 20 % of slots that are not [MASK] (chapter 05's 80 / 10 / 10 rule, not a fitted number).
COPY_PROBABILITY = 0.5


# --------------------------------------------------------------------------------------------------------
# The held-out slots, as the rivals see them


@dataclass
class HeldoutSlots:
    """Every real prediction slot of a held-out set, in `bertnb.metrics.predict_slots`' order ([S] arrays):
    the right token, the visible token there and on each side (what the model sees), and the slot's kind
    (`bertnb.metrics.SLOT_KINDS` index). Built in chapter 07."""

    label: np.ndarray
    visible: np.ndarray
    left: np.ndarray
    right: np.ndarray
    kind: np.ndarray

    def __len__(self) -> int:
        return len(self.label)


def heldout_slots(batches, mask_id: int) -> HeldoutSlots:
    """The held-out batches -> `HeldoutSlots`. A slot's neighbours always exist: position 0 is [CLS] and the
    last real position [SEP], and neither is ever predicted. Built in chapter 07."""
    columns = {"label": [], "visible": [], "left": [], "right": [], "kind": []}
    for batch in batches:
        real = real_slots(batch)  # [B, p]
        positions = batch["pred_positions"]  # [B, p]
        tokens = batch["tokens"]  # [B, m]
        columns["label"].append(batch["mlm_labels"][real])
        columns["visible"].append(tokens.gather(1, positions)[real])
        # Padding slots sit at position 0: clamp so their (discarded) left neighbour is a valid index.
        columns["left"].append(tokens.gather(1, (positions - 1).clamp(min=0))[real])
        columns["right"].append(tokens.gather(1, positions + 1)[real])
        columns["kind"].append(slot_kinds(batch, mask_id)[real])
    return HeldoutSlots(**{name: np.concatenate([part.numpy() for part in parts]) if parts
                           else np.zeros(0, dtype=np.int64) for name, parts in columns.items()})


# --------------------------------------------------------------------------------------------------------
# Counting the training text


class ContextCounts:
    """How often each token follows each context, from parallel arrays contexts [N] and tokens [N] (one row per
    occurrence). Stored sorted, so a context's counts are one slice (`lookup`). Built in chapter 07."""

    def __init__(self, contexts: np.ndarray, tokens: np.ndarray):
        pairs, counts = np.unique(np.stack([contexts, tokens], axis=1), axis=0, return_counts=True)  # sorted
        self.contexts, self.tokens, self.counts = pairs[:, 0], pairs[:, 1], counts.astype(np.float64)

    def lookup(self, context: int) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, counts) seen after `context`; both empty for an unseen context."""
        start, end = np.searchsorted(self.contexts, [context, context + 1])
        return self.tokens[start:end], self.counts[start:end]


class NgramCounts:
    """Unigram, left, right and two-sided counts of the non-special tokens of training sequences.

    sequences: packed training sequences ([CLS] A [SEP] B [SEP] as ids, unmasked: the text the model trained
    on). Every non-special token is counted with its left and right neighbours (specials included as
    context: a [CLS] or [SEP] on the left says "sentence start"). Built in chapter 07.
    """

    def __init__(self, sequences, special_ids, vocab_size: int):
        check_int("vocab_size", vocab_size, low=1)
        flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])  # all tokens, one after another
        if len(flat) and (flat.min() < 0 or flat.max() >= vocab_size):
            raise ValueError(f"token ids must lie in [0, vocab_size={vocab_size}), got [{flat.min()}, {flat.max()}]")
        self.vocab_size = vocab_size
        self.special = np.zeros(vocab_size, dtype=bool)  # [V]
        self.special[sorted(special_ids)] = True
        # Each sequence starts with [CLS] and ends with [SEP], so a non-special token's neighbours are always
        # within its own sequence, even in the concatenation.
        where = np.flatnonzero(~self.special[flat])  # positions of the countable tokens
        middle, left, right = flat[where], flat[where - 1], flat[where + 1]
        self.unigram = np.bincount(middle, minlength=vocab_size).astype(np.float64)  # [V]
        self.left = ContextCounts(left, middle)
        self.right = ContextCounts(right, middle)
        self.both = ContextCounts(left * vocab_size + right, middle)  # the pair (l, r) as one number


# --------------------------------------------------------------------------------------------------------
# The rivals: each a distribution over the vocabulary given (left, visible, right, is the slot [MASK])


def witten_bell(counts: ContextCounts, context: int, lower: np.ndarray) -> np.ndarray:
    """p(x | context) = (count(context, x) + T p_lower(x)) / (count(context) + T), T = distinct x seen after
    the context; `lower` itself when the context was never seen. Returns [V]. Built in chapter 07."""
    tokens, token_counts = counts.lookup(context)
    if len(tokens) == 0:
        return lower
    total, types = token_counts.sum(), len(tokens)
    probs = lower * (types / (total + types))  # [V]
    probs[tokens] += token_counts / (total + types)
    return probs


class NgramRivals:
    """The MLM rivals of one training text: `distribution(name, left, visible, right, is_mask)` -> [V].
    Built in chapter 07."""

    NAMES = ("unigram", "left bigram", "two-sided", "copy + unigram", "copy + left bigram", "copy + two-sided")

    def __init__(self, counts: NgramCounts, smoothing: float = UNIGRAM_SMOOTHING):
        check_float("smoothing", smoothing, 0.0, 1e6, low_open=True)
        self.counts = counts
        smoothed = np.where(counts.special, 0.0, counts.unigram + smoothing)  # [V] specials get nothing
        self.unigram = smoothed / smoothed.sum()  # [V]

    def left_bigram(self, left: int) -> np.ndarray:
        return witten_bell(self.counts.left, left, self.unigram)

    def right_bigram(self, right: int) -> np.ndarray:
        return witten_bell(self.counts.right, right, self.unigram)

    def two_sided(self, left: int, right: int) -> np.ndarray:
        lower = (self.left_bigram(left) + self.right_bigram(right)) / 2
        return witten_bell(self.counts.both, left * self.counts.vocab_size + right, lower)

    def distribution(self, name: str, left: int, visible: int, right: int, is_mask: bool) -> np.ndarray:
        """The rival `name`'s probabilities [V] for one slot."""
        base_name = name.removeprefix("copy + ")
        if base_name == "unigram":
            probs = self.unigram
        elif base_name == "left bigram":
            probs = self.left_bigram(left)
        elif base_name == "two-sided":
            probs = self.two_sided(left, right)
        else:
            raise ValueError(f"unknown rival {name!r}: allowed {', '.join(self.NAMES)}")
        if name.startswith("copy + ") and not is_mask:
            probs = (1 - COPY_PROBABILITY) * probs  # a new array: the tables' own arrays stay untouched
            probs[visible] += COPY_PROBABILITY
        return probs


def score_rivals(rivals: NgramRivals, slots: HeldoutSlots, names=NgramRivals.NAMES) -> dict:
    """Each rival's guess and loss on every held-out slot -> {name: {"accuracy", "accuracy_mask",
    "accuracy_random", "accuracy_unchanged", "cross_entropy", "cross_entropy_mask", "predicted": [S]}}
    (a kind with no slot: None). Built in chapter 07."""
    scores = {}
    for name in names:
        predicted = np.zeros(len(slots), dtype=np.int64)  # [S]
        log_loss = np.zeros(len(slots))  # [S]
        for i in range(len(slots)):
            probs = rivals.distribution(name, slots.left[i], slots.visible[i], slots.right[i],
                                        slots.kind[i] == MASK)  # [V]
            predicted[i] = np.argmax(probs)  # the first (smallest id) of equally likely tokens
            log_loss[i] = -math.log(probs[slots.label[i]])
        correct = predicted == slots.label  # [S]
        scores[name] = {"accuracy": _mean(correct), "cross_entropy": _mean(log_loss), "predicted": predicted}
        for kind_id, kind in enumerate(SLOT_KINDS):
            scores[name][f"accuracy_{kind}"] = _mean(correct[slots.kind == kind_id])
        scores[name]["cross_entropy_mask"] = _mean(log_loss[slots.kind == MASK])
    return scores


def _mean(values: np.ndarray):
    return float(values.mean()) if len(values) else None


# --------------------------------------------------------------------------------------------------------
# NSP: what lengths and punctuation alone say about "B follows A"


def punctuation_ids(vocab: dict) -> set[int]:
    """Ids of the tokens made only of punctuation ("." "，" "##)" ...; BERT's own test, chapter 01's
    `is_punctuation`), from a token -> id dict such as `tokenizer.vocab`. Built in chapter 07."""
    def all_punctuation(token: str) -> bool:
        text = token.removeprefix("##")
        return bool(text) and all(is_punctuation(ch) for ch in text)

    return {i for token, i in vocab.items() if all_punctuation(token)}


NSP_FEATURES = ("length of A", "length of B", "A's share of the length", "total length",
                "A ends with punctuation", "B ends with punctuation", "A starts with punctuation",
                "B starts with punctuation", "punctuation share of A", "punctuation share of B")


def pair_features(tokens, segments, punctuation: set[int]) -> np.ndarray:
    """Text-blind features of one packed pair [CLS] A [SEP] B [SEP] (ids and segment ids, no padding):
    lengths and where punctuation is, never which words (`NSP_FEATURES`). Returns [F]. Built in chapter 07."""
    tokens, segments = list(tokens), list(segments)
    a_end = segments.index(1) - 1 if 1 in segments else len(tokens) - 1  # the position of the first [SEP]
    a, b = tokens[1:a_end], tokens[a_end + 1:-1]
    is_punct = [[t in punctuation for t in part] for part in (a, b)]
    return np.array([len(a), len(b), len(a) / max(len(a) + len(b), 1), len(a) + len(b),
                     bool(a) and is_punct[0][-1], bool(b) and is_punct[1][-1],
                     bool(a) and is_punct[0][0], bool(b) and is_punct[1][0],
                     np.mean(is_punct[0]) if a else 0.0, np.mean(is_punct[1]) if b else 0.0], dtype=np.float64)


def batch_pair_features(batches, punctuation: set[int]) -> tuple[np.ndarray, np.ndarray]:
    """Features [N, F] and NSP labels [N] of every sequence of the held-out batches, in order.
    Built in chapter 07."""
    features, labels = [], []
    for batch in batches:
        for row, length in enumerate(batch["valid_lens"].tolist()):
            features.append(pair_features(batch["tokens"][row, :length].tolist(),
                                          batch["segments"][row, :length].tolist(), punctuation))
        labels.extend(batch["nsp_labels"].tolist())
    return np.array(features).reshape(-1, len(NSP_FEATURES)), np.array(labels, dtype=np.int64)


class TextBlindNsp:
    """Logistic regression on `pair_features` and their pairwise products (a length matters differently when A
    ends a sentence), fitted by Newton's method (deterministic, no solver settings) with a small L2 penalty on
    standardised features. Built in chapter 07."""

    def __init__(self, l2: float = 1e-3, iterations: int = 25):
        self.l2, self.iterations = check_float("l2", l2, 0.0, 1e6), check_int("iterations", iterations, low=1)

    def fit(self, features: np.ndarray, labels: np.ndarray) -> TextBlindNsp:
        self.mean = features.mean(0)
        self.scale = np.where(features.std(0) > 0, features.std(0), 1.0)
        X = self._design(features)  # [N, 1 + F + F(F+1)/2]
        w = np.zeros(X.shape[1])
        penalty = self.l2 * len(X) * np.diag([0.0] + [1.0] * (X.shape[1] - 1))  # no penalty on the intercept
        for _ in range(self.iterations):
            p = 1 / (1 + np.exp(-X @ w))  # [N] probability of label 1 (NotNext)
            gradient = X.T @ (p - labels) + penalty @ w
            hessian = (X * (p * (1 - p))[:, None]).T @ X + penalty + 1e-9 * np.eye(len(w))
            w -= np.linalg.solve(hessian, gradient)
        self.weights = w
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        return (self._design(features) @ self.weights > 0).astype(np.int64)  # [N]

    def _design(self, features: np.ndarray) -> np.ndarray:
        z = (features - self.mean) / self.scale  # [N, F]
        i, j = np.triu_indices(z.shape[1])  # every pair of features, each with itself too
        return np.hstack([np.ones((len(z), 1)), z, z[:, i] * z[:, j]])


def training_pair_features(dataset, punctuation: set[int], epoch: int = 0,
                           max_examples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features [N, F] and labels [N] of the training pairs as the model saw them at `epoch` (masked: the same
    view as the held-out batches); all of them, or an evenly spread `max_examples`. Built in chapter 07."""
    previous_epoch = getattr(dataset, "epoch", None)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    items = [dataset[i] for i in spread_indices(len(dataset), max_examples)]
    if previous_epoch is not None:
        dataset.set_epoch(previous_epoch)  # leave the dataset as it was: a training loop may be using it
    features = np.array([pair_features(item["tokens"], item["segments"], punctuation) for item in items])
    return features.reshape(-1, len(NSP_FEATURES)), np.array([item["nsp_label"] for item in items], dtype=np.int64)


# --------------------------------------------------------------------------------------------------------
# Everything at once


# A corpus of millions of pairs (your own) estimates the tables as well from an evenly spread sample, in a
# fraction of the memory; the built-in corpora (6,242 and 25,598 pairs) are used whole.
MAX_TRAINING_EXAMPLES = 200_000


def spread_indices(n: int, max_examples: int | None) -> list[int]:
    """range(n), or `max_examples` indices spread evenly over it. Built in chapter 07."""
    if max_examples is None or n <= max_examples:
        return list(range(n))
    return [i * n // max_examples for i in range(max_examples)]


def packed_training_sequences(dataset, max_examples: int | None = MAX_TRAINING_EXAMPLES):
    """The unmasked packed sequences of a `bertnb.data.PretrainingDataset` (the text the model trained on), all
    of them or an evenly spread `max_examples`. Built in chapter 07."""
    from bertnb.data import pack_pair

    special = dataset.special
    for i in spread_indices(len(dataset.examples), max_examples):
        example = dataset.examples[i]
        yield pack_pair(example.tokens_a, example.tokens_b, special.cls_id, special.sep_id)[0]


def rival_baselines(train_data, eval_batches, tokenizer=None) -> dict:
    """The rivals a pretraining run is read against, as flat numbers for the loop's "baselines" (metrics.json,
    `bertnb.plots.LiveLossPlot`): fitted on `train_data` (a PretrainingDataset), scored on the held-out
    `eval_batches`. Keys "mlm_<rival>_mask_accuracy", "mlm_<rival>_accuracy" and "mlm_<rival>_cross_entropy" for
    rival in unigram, left_bigram, two_sided, copy_two_sided; with `tokenizer` (it names the punctuation) also
    "nsp_text_blind_accuracy". 10-20 s for the English corpus on one CPU core. Built in chapter 07."""
    special = train_data.special
    counts = NgramCounts(packed_training_sequences(train_data), special.special_ids, special.vocab_size)
    slots = heldout_slots(eval_batches, special.mask_id)
    names = ("unigram", "left bigram", "two-sided", "copy + two-sided")
    flat = {}
    for name, scores in score_rivals(NgramRivals(counts), slots, names).items():
        key = "mlm_" + name.replace("copy + ", "copy_").replace(" ", "_").replace("-", "_")
        flat.update({f"{key}_mask_accuracy": scores["accuracy_mask"], f"{key}_accuracy": scores["accuracy"],
                     f"{key}_cross_entropy": scores["cross_entropy"]})
    if tokenizer is not None:
        flat["nsp_text_blind_accuracy"] = nsp_rivals(train_data, eval_batches,
                                                     punctuation_ids(tokenizer.vocab))["nsp_text_blind_accuracy"]
    return flat


def nsp_rivals(train_data, eval_batches, punctuation: set[int]) -> dict:
    """Held-out accuracy of the text-blind NSP logistic regression (fitted on the training pairs) and of the
    majority class of the training labels. Built in chapter 07."""
    train_x, train_y = training_pair_features(train_data, punctuation, max_examples=MAX_TRAINING_EXAMPLES)
    heldout_x, heldout_y = batch_pair_features(eval_batches, punctuation)
    model = TextBlindNsp().fit(train_x, train_y)
    majority = int(train_y.mean() > 0.5)
    return {"nsp_text_blind_accuracy": _mean(model.predict(heldout_x) == heldout_y),
            "nsp_majority_accuracy": _mean(heldout_y == majority)}
