"""Exercise checks for chapter 06, next sentence prediction.

Each check runs the student's function on small inputs and compares it with `bertnb` (the finished code),
printing "correct", what is wrong, or "not solved yet". None of them raises.
"""

from __future__ import annotations

import random
from collections import Counter

import torch

from bertnb.checks import expect, run_check



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


# ---------------------------------------------------------------------------------------------------------
# The three-document toy corpus: how often does d2l's NotNext rule lie?

TOY_CORPUS = [["a1", "a2", "a3", "a4"], ["b1", "b2"], ["c1", "c2", "c3"]]  # 3 documents of 4, 2 and 3 sentences


def toy_notnext_shares(documents=TOY_CORPUS) -> tuple[float, float]:
    """Exact probabilities for a NotNext pair made the d2l way: A is a sentence drawn uniformly from those that
    have a next sentence, B = random.choice(random.choice(documents)). Returns (P[B from A's document],
    P[B is the very sentence that follows A])."""
    firsts = [(d, i) for d, doc in enumerate(documents) for i in range(len(doc) - 1)]  # every possible A
    same_document = sum(1 / len(documents) for _ in firsts) / len(firsts)
    true_next = sum(1 / len(documents) / len(documents[d]) for d, _ in firsts) / len(firsts)
    return same_document, true_next


def check_toy_notnext(answer) -> bool:
    """answer = (share of NotNext pairs whose B is from A's own document, share whose B is A's real next
    sentence) for the toy corpus TOY_CORPUS, with d2l's rule (see `toy_notnext_shares`); as two numbers
    (fractions like 1 / 3 are fine), within 0.001."""

    def test(answer):
        expect(isinstance(answer, (tuple, list)) and len(answer) == 2,
               f"give two numbers, (same document, true next sentence), got {answer!r}")
        same, true_next = (float(x) for x in answer)
        want_same, want_next = toy_notnext_shares()
        sentences = sum(map(len, TOY_CORPUS))
        if abs(same - want_same) > 0.001:
            by_size = sum((len(doc) / sentences) ** 2 for doc in TOY_CORPUS)
            if abs(same - by_size) < 0.001 or abs(same - 0.5 * by_size) < 0.001:
                expect(False, f"{same:.3f} assumes B is a uniform draw over all {sentences} sentences; "
                       "random.choice(random.choice(documents)) first picks a document, each with odds 1/3, "
                       "whatever its size")
            expect(False, f"the share of B from A's document: {same:.3f} is not it. Which document does the "
                   "first random.choice pick, and with what odds?")
        if abs(true_next - want_next) > 0.001:
            if abs(true_next - 1 / sentences) < 0.001:
                expect(False, f"1/{sentences} would hold if B were uniform over the sentences; here it is "
                       "(1/3) x (1/size of A's document), averaged over the 6 possible A")
            if abs(true_next - 1 / 9) < 0.001 or abs(true_next - 1 / len(TOY_CORPUS) / 3) < 0.001:
                expect(False, "the chance depends on A's document: 1/3 to pick it, then 1/4, 1/2 or 1/3 to pick "
                       "the right sentence; average over the 6 possible A (3 of them are in the first document)")
            expect(False, f"the share of B that is A's true next sentence: {true_next:.3f} is not it")

    return run_check("toy NotNext shares", answer, test)


# ---------------------------------------------------------------------------------------------------------
# Break the initialisation: nn.Embedding's default N(0, 1) in a tied model


def check_break_init(break_init) -> bool:
    """break_init(model): re-initialise the token embedding of a BertForPreTraining IN PLACE with N(0, 1)
    (nn.Embedding's default), leaving every other parameter and the tie with the MLM decoder as they are."""

    def test(fn):
        from bertnb.model import BertConfig, BertForPreTraining

        torch.manual_seed(0)
        model = BertForPreTraining(BertConfig(vocab_size=500, hidden_size=32, num_layers=1, num_heads=2,
                                              ffn_size=64, max_len=16))
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        table_before = model.bert.embeddings.token_embedding.weight
        fn(model)  # changes the model in place; whatever it returns is ignored
        table = model.bert.embeddings.token_embedding.weight
        expect(model.mlm.decoder_weight is table,
               "the MLM decoder no longer shares the token table: a new nn.Embedding (or a new Parameter) "
               "replaced it, so the decoder still holds the old N(0, 0.02²) weights. Change the numbers in "
               "place instead, e.g. with nn.init.normal_ or .copy_ under torch.no_grad()")
        expect(table is table_before, "the table is a new Parameter object: an optimizer made before would not "
               "see it. Change the numbers in place")
        std, mean = table.detach().std().item(), table.detach().mean().item()
        expect(abs(std - 1.0) < 0.05 and abs(mean) < 0.05,
               f"the token table should now have mean 0 and standard deviation 1, got mean {mean:.3f}, "
               f"std {std:.3f}")
        for name, p in model.named_parameters():
            if p is not table:
                expect(torch.equal(p.detach(), before[name]), f"{name} changed: only the token table should")

    return run_check("break_init", break_init, test)
