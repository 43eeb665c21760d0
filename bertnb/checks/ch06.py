"""Exercise checks for chapter 06, next sentence prediction.

Each check runs the student's function on small inputs and compares it with `bertnb` (the finished code),
printing "correct", what is wrong, or "not solved yet". None of them raises.
"""

from __future__ import annotations

import random
from collections import Counter

import torch
from torch import nn

from bertnb.checks import expect, run_check
from bertnb.data import IS_NEXT, NOT_NEXT


def check_nsp_label(nsp_label) -> bool:
    """nsp_label(doc_a, doc_b) -> int: the label of a pair made by `make_nsp_examples`, whose B comes from
    A's own document exactly when it is A's continuation. Hugging Face's convention: 0 = IsNext, 1 = NotNext."""

    def test(fn):
        for doc_a, doc_b in ((3, 3), (3, 7), (0, 0), (12, 4), (5, 5)):
            got = fn(doc_a, doc_b)
            want = IS_NEXT if doc_a == doc_b else NOT_NEXT
            expect(not isinstance(got, bool), f"nsp_label({doc_a}, {doc_b}) returned the bool {got}: return the "
                   "int 0 or 1. A list of bools becomes a torch.bool tensor, which cross_entropy refuses")
            if isinstance(got, torch.Tensor) and got.numel() == 1:
                got = got.item()
            expect(isinstance(got, int), f"return an int, 0 or 1, got {got!r}")
            if got == 1 - want:
                expect(False, f"nsp_label({doc_a}, {doc_b}) = {got}: the labels are flipped. B from the same "
                       "document is the true continuation, IsNext = 0; NotNext = 1 (Hugging Face's "
                       "BertForPreTraining and the original BERT; d2l uses the opposite)")
            expect(got == want, f"nsp_label({doc_a}, {doc_b}) should be {want}, got {got}")

    return run_check("nsp_label", nsp_label, test)


def check_pooler(pooler) -> bool:
    """pooler(X [B, m, n], dense: nn.Linear(n, n)) -> [B, n]: BERT's pooled vector, tanh(dense(X[:, 0]))."""

    def test(fn):
        g = torch.Generator().manual_seed(6)
        B, m, n = 3, 5, 8
        dense = nn.Linear(n, n)
        with torch.no_grad():
            dense.weight.copy_(torch.randn(n, n, generator=g))  # large weights: tanh saturates visibly
            dense.bias.copy_(torch.randn(n, generator=g))
        X = torch.randn(B, m, n, generator=g)  # [B, m, n]
        with torch.no_grad():
            got = fn(X.clone(), dense)
        expect(isinstance(got, torch.Tensor), f"return a tensor, got {type(got).__name__}")
        with torch.no_grad():
            want = torch.tanh(dense(X[:, 0]))  # [B, n]
            variants = {
                "mean": torch.tanh(dense(X.mean(1))),
                "last": torch.tanh(dense(X[:, -1])),
                "no tanh": dense(X[:, 0]),
                "raw": X[:, 0],
                "relu": torch.relu(dense(X[:, 0])),
            }
        expect(tuple(got.shape) == (B, n), f"X {tuple(X.shape)} should pool to [B, n] = {(B, n)}, got "
               f"{tuple(got.shape)}")
        hints = {
            "mean": "that is mean pooling over all positions (sentence-transformers'); BERT's pooler reads "
                    "only the [CLS] vector X[:, 0]",
            "last": "that reads the last position; [CLS] is the first token: X[:, 0]",
            "no tanh": "the dense layer is right, but the pooler ends with tanh",
            "raw": "that is the raw [CLS] vector: the pooler passes it through the dense layer and tanh",
            "relu": "the pooler's activation is tanh, not ReLU",
        }
        for name, value in variants.items():
            if torch.allclose(got, value, atol=1e-5) and not torch.allclose(got, want, atol=1e-5):
                expect(False, hints[name])
        expect(torch.allclose(got, want, atol=1e-5), "the pooled vectors differ from tanh(dense(X[:, 0]))")

    return run_check("pooler", pooler, test)


def check_other_document(other_document) -> bool:
    """other_document(num_docs, doc_index, rng: random.Random) -> int: a document for a NotNext B, uniform
    over the num_docs - 1 documents that are not doc_index, drawn with `rng`."""

    def test(fn):
        draws = 3000
        for num_docs in (2, 5):
            for doc_index in range(num_docs):
                rng = random.Random(f"{num_docs}-{doc_index}")
                got = [fn(num_docs, doc_index, rng) for _ in range(draws)]
                for value in got:
                    expect(isinstance(value, int) and not isinstance(value, bool),
                           f"return a document index (an int), got {value!r}")
                    expect(0 <= value < num_docs, f"with num_docs = {num_docs} the index must be in [0, "
                           f"{num_docs - 1}], got {value}")
                counts = Counter(got)
                same = counts.get(doc_index, 0)
                expect(same == 0, f"with num_docs = {num_docs}, doc_index = {doc_index}: {same} of {draws} "
                       "draws returned A's own document. A NotNext B from A's document may well be its real "
                       "continuation, and the label would be a lie")
                others = [d for d in range(num_docs) if d != doc_index]
                for d in others:
                    share = counts.get(d, 0) / draws
                    expect(abs(share - 1 / len(others)) < 0.05, f"with num_docs = {num_docs}, doc_index = "
                           f"{doc_index}: document {d} came {share:.0%} of the time; each of the "
                           f"{len(others)} others should come about {1 / len(others):.0%}")
        rng_a, rng_b = random.Random(1), random.Random(1)
        expect([fn(10, 3, rng_a) for _ in range(20)] == [fn(10, 3, rng_b) for _ in range(20)],
               "two rngs with the same seed gave different documents: draw only from the rng you are given")

    return run_check("other_document", other_document, test)
