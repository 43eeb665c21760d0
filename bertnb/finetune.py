"""Fine-tuning: a classifier on BERT's pooled `[CLS]` vector, trained by the course's one training loop.

Read top to bottom: the pretrained encoders (the course's two checkpoints, MiniLM, or random init), the
classifier head, turning labelled texts into batches, the loss the loop backpropagates, the loop itself
(`fine_tune`, a thin call of `bertnb.train.fit`: AdamW with warmup, clipping, device, tqdm, checkpoint and
resume live there, once), then evaluation (accuracy, macro-F1, the confusion matrix) and `predict`.

The datasets are in `bertnb.finetune_data` (re-exported here), the bag-of-words baseline in
`bertnb.finetune_baselines`. Built in chapter 08.

Notation: B batch, m length, n hidden, C classes. A batch is a dict of tensors:
    tokens [B, m], segments [B, m], valid_lens [B], labels [B]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bertnb.finetune_data import (DOCS_TOPIC_LABELS, SENTIMENT_LABELS, docs_topic_splits,  # noqa: F401
                                  sentiment_splits)
from bertnb.model import BertConfig, BertModel, init_bert_weights
from bertnb.validation import check_choice, check_float, check_int

# Which encoder fine-tunes each task, by name: "checkpoint" is the course's own 30-minute pretrained model for
# the task's language (bertnb.resources.CHECKPOINTS: the one place its folder is named).
TASKS = {"sentiment-zh": {"language": "zh", "labels": SENTIMENT_LABELS, "splits": sentiment_splits},
         "docs-topic-en": {"language": "en", "labels": DOCS_TOPIC_LABELS, "splits": docs_topic_splits}}
ENCODERS = ("checkpoint", "random", "minilm")


# --------------------------------------------------------------------------------------------------------
# Encoders to start from


def course_checkpoint(language: str):
    """The course's committed pretrained model for "en" or "zh" -> (BertModel encoder, tokenizer, metadata).
    Only the encoder is kept: the MLM and NSP heads were for pretraining. Built in chapter 08."""
    from bertnb.checkpoint import load_run
    from bertnb.resources import checkpoint_dir

    check_choice("language", language, ("en", "zh"))
    pretraining_model, tokenizer, metadata = load_run(checkpoint_dir(language))
    return pretraining_model.bert, tokenizer, metadata


def load_encoder(name: str, language: str):
    """("checkpoint" | "random" | "minilm", "en" | "zh") -> (BertModel, tokenizer).

    "random" has the checkpoint's config and tokenizer but fresh weights (BERT's initialisation, seeded by
    the caller), so the two differ only in pretraining. MiniLM has an English vocabulary (244 CJK characters
    only), so it is refused for Chinese. Built in chapter 08.
    """
    check_choice("encoder", name, ENCODERS)
    if name == "minilm":
        if language != "en":
            raise ValueError(f"encoder 'minilm' needs language 'en' (its vocabulary has almost no Chinese "
                             f"characters), got {language!r}")
        from bertnb.pretrained import load_minilm

        return load_minilm()
    encoder, tokenizer, _ = course_checkpoint(language)
    if name == "random":
        encoder = BertModel(encoder.cfg)  # the same shapes, weights from init_bert_weights
    return encoder, tokenizer


# --------------------------------------------------------------------------------------------------------
# The classifier


class BertClassifier(nn.Module):
    """BERT + dropout + one linear layer on the pooled `[CLS]` vector -> class logits [B, C].

    The same head serves single texts and sentence pairs: a pair is packed `[CLS] A [SEP] B [SEP]` with
    segments 0 / 1 by the tokenizer, and `[CLS]` attends to both. Built in chapter 08.
    """

    def __init__(self, encoder: BertModel, num_classes: int, dropout: float = 0.1):
        super().__init__()
        check_int("num_classes", num_classes, low=2)
        check_float("dropout", dropout, low=0.0, high=1.0, high_open=True)
        self.bert = encoder
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.cfg.hidden_size, num_classes)
        self.classifier.apply(init_bert_weights)  # normal(0, 0.02), bias 0: the head starts near uniform

    @property
    def cfg(self) -> BertConfig:
        return self.bert.cfg

    def forward(self, tokens, segments=None, valid_lens=None):
        X = self.bert(tokens, segments, valid_lens)  # [B, m, n]
        pooled = self.bert.pool(X)  # [B, n]: dense + tanh on X[:, 0], the [CLS] vector
        return self.classifier(self.dropout(pooled))  # [B, C]


# --------------------------------------------------------------------------------------------------------
# Labelled texts -> batches


def encode_examples(tokenizer, examples, max_len: int) -> list[tuple[list[int], list[int], int]]:
    """[(text, label) or ((text_a, text_b), label)] -> [(token ids, segments, label)], each cut to `max_len`
    tokens, specials included. Tokenized once: every epoch reuses it. Built in chapter 08."""
    check_int("max_len", max_len, low=4)
    encoded = []
    for text, label in examples:
        text_a, text_b = (text, None) if isinstance(text, str) else text
        ids, segments = tokenizer.encode(text_a, text_b, max_len=max_len)
        encoded.append((ids, segments, int(label)))
    return encoded


def collate_encoded(encoded, indices, pad_id: int) -> dict:
    """The examples at `indices` as one batch, padded on the right to the longest of them (not to max_len:
    short reviews make short, cheap batches). Built in chapter 08."""
    rows = [encoded[i] for i in indices]
    m = max(len(ids) for ids, _, _ in rows)
    return {"tokens": torch.tensor([ids + [pad_id] * (m - len(ids)) for ids, _, _ in rows]),  # [B, m]
            "segments": torch.tensor([segs + [0] * (m - len(segs)) for _, segs, _ in rows]),  # [B, m]
            "valid_lens": torch.tensor([len(ids) for ids, _, _ in rows]),  # [B]
            "labels": torch.tensor([label for _, _, label in rows])}  # [B]


def classification_loss(model, batch: dict) -> dict:
    """Mean cross-entropy of the batch (what `fit` backpropagates) and its accuracy (logged). Built in
    chapter 08."""
    logits = model(batch["tokens"], batch["segments"], batch["valid_lens"])  # [B, C]
    loss = F.cross_entropy(logits.float(), batch["labels"])
    accuracy = (logits.argmax(-1) == batch["labels"]).float().mean()
    return {"loss": loss, "accuracy": accuracy.detach()}


# --------------------------------------------------------------------------------------------------------
# Metrics


def confusion_matrix(labels, predictions, num_classes: int) -> torch.Tensor:
    """[C, C] counts: row = true class, column = predicted class. Built in chapter 08."""
    labels, predictions = torch.as_tensor(labels).long(), torch.as_tensor(predictions).long()
    if labels.shape != predictions.shape:
        raise ValueError(f"labels and predictions must have the same shape, got {tuple(labels.shape)} and "
                         f"{tuple(predictions.shape)}")
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.numel() and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} must be class ids in [0, {num_classes - 1}], got values from "
                             f"{values.min().item()} to {values.max().item()}")
    flat = labels * num_classes + predictions  # one bin per (true, predicted) pair
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def macro_f1(confusion) -> float:
    """The mean over classes of F1 = 2 TP / (2 TP + FP + FN). A class never predicted and never present
    scores 0 (the convention of scikit-learn's zero_division=0). Built in chapter 08.

    Unlike accuracy, every class counts the same: always answering the majority class scores high accuracy
    on an unbalanced set, but F1 = 0 on every other class."""
    confusion = torch.as_tensor(confusion).double()
    true_positives = confusion.diag()  # [C]
    false_positives = confusion.sum(0) - true_positives  # predicted c, was not c
    false_negatives = confusion.sum(1) - true_positives  # was c, predicted something else
    denominator = 2 * true_positives + false_positives + false_negatives
    f1 = torch.where(denominator > 0, 2 * true_positives / denominator.clamp(min=1), torch.zeros_like(denominator))
    return f1.mean().item()


def classification_metrics(labels, predictions, num_classes: int) -> dict:
    """{"accuracy", "macro_f1", "confusion"} (confusion as nested lists, so it saves as JSON). Built in
    chapter 08."""
    confusion = confusion_matrix(labels, predictions, num_classes)
    return {"accuracy": (confusion.diag().sum() / confusion.sum().clamp(min=1)).item(),
            "macro_f1": macro_f1(confusion), "confusion": confusion.tolist()}


# --------------------------------------------------------------------------------------------------------
# Inference and evaluation


@torch.no_grad()
def predict_encoded(model, encoded, pad_id: int, batch_size: int = 64) -> torch.Tensor:
    """Class probabilities [N, C] for encoded examples, in eval mode (dropout off), on the model's device.
    Built in chapter 08."""
    model.eval()
    device = next(model.parameters()).device
    probabilities = []
    for start in range(0, len(encoded), batch_size):
        batch = collate_encoded(encoded, range(start, min(start + batch_size, len(encoded))), pad_id)
        logits = model(batch["tokens"].to(device), batch["segments"].to(device),
                       batch["valid_lens"].to(device))  # [B, C]
        probabilities.append(logits.float().softmax(-1).cpu())
    return torch.cat(probabilities)  # [N, C]


def predict_proba(model, tokenizer, texts, max_len: int = 128, batch_size: int = 64) -> torch.Tensor:
    """New texts (or (text_a, text_b) pairs) -> class probabilities [N, C]. Built in chapter 08."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of texts, got a single str: wrap it in a list")
    encoded = encode_examples(tokenizer, [(text, 0) for text in texts], max_len)
    return predict_encoded(model, encoded, tokenizer.pad_id, batch_size)


def predict(model, tokenizer, texts, label_names, max_len: int = 128) -> list[tuple[str, float]]:
    """New texts -> [(predicted label name, its probability)]. Built in chapter 08."""
    probabilities = predict_proba(model, tokenizer, texts, max_len)  # [N, C]
    if probabilities.shape[1] != len(label_names):
        raise ValueError(f"the model has {probabilities.shape[1]} classes but {len(label_names)} label names "
                         f"were given: {list(label_names)}")
    best, index = probabilities.max(-1)  # [N], [N]
    return [(label_names[i], p) for i, p in zip(index.tolist(), best.tolist())]


def evaluate_classifier(model, encoded, pad_id: int, num_classes: int) -> dict:
    """Accuracy, macro-F1 and the confusion matrix of `model` on encoded examples. Built in chapter 08."""
    probabilities = predict_encoded(model, encoded, pad_id)  # [N, C]
    labels = [label for _, _, label in encoded]
    return classification_metrics(labels, probabilities.argmax(-1), num_classes)


# --------------------------------------------------------------------------------------------------------
# The loop: the course's one training loop, `bertnb.train.fit`, with a classification loss


def fine_tune(model: BertClassifier, tokenizer, train, dev=None, steps: int = 300, batch_size: int = 32,
              max_len: int = 64, lr: float = 5e-5, seed: int = 0, eval_every: int | None = None, **fit_options):
    """Fine-tune `model` on `train` (a list of (text, label)), scoring `dev` during training. Built in
    chapter 08.

    Step s takes the examples `bertnb.data.batch_indices` gives it (a fixed function of seed and step, so a
    resumed run sees the same batches). Everything else is `bertnb.train.fit`'s: AdamW with 6 % warmup and
    linear decay, clipping, the device, tqdm, checkpoint and resume; `fit_options` go to it unchanged
    (`callback`, `checkpoint_path`, `resume`, `stop_at`, `device`, `progress` ...). Returns fit's result, its
    "history" holding dev accuracy and macro-F1.
    """
    from bertnb.data import batch_indices
    from bertnb.train import fit

    check_int("steps", steps, low=1)
    check_int("batch_size", batch_size, low=1)
    num_classes = model.classifier.out_features
    encoded_train = encode_examples(tokenizer, train, max_len)
    if len(encoded_train) < batch_size:
        raise ValueError(f"train has {len(encoded_train)} examples, fewer than batch_size = {batch_size}")
    encoded_dev = encode_examples(tokenizer, dev, max_len) if dev else None

    def batch_for_step(step: int) -> dict:
        _, indices = batch_indices(len(encoded_train), batch_size, seed, step)
        return collate_encoded(encoded_train, indices, tokenizer.pad_id)

    def evaluate_dev(model) -> dict:
        metrics = evaluate_classifier(model, encoded_dev, tokenizer.pad_id, num_classes)
        return {"dev_accuracy": metrics["accuracy"], "dev_macro_f1": metrics["macro_f1"]}

    settings = {"task": "classification", "num_classes": num_classes, "batch_size": batch_size,
                "max_len": max_len, "num_train_examples": len(encoded_train)}
    return fit(model, classification_loss, batch_for_step, total_steps=steps, lr=lr, seed=seed,
               evaluate_fn=evaluate_dev if encoded_dev else None, eval_every=eval_every,
               run_settings={**settings, **fit_options.pop("run_settings", {})},
               desc=fit_options.pop("desc", "fine-tuning"), **fit_options)
