"""Exercise checks for chapter 08, fine-tuning.

Each check runs the student's answer on small inputs and compares it with `bertnb` (the finished code),
printing "correct", what is wrong, or "not solved yet". None of them raises.
"""

from __future__ import annotations

import math

import torch

from bertnb.checks import expect, run_check


def _tiny_classifier(num_layers: int = 3):
    from bertnb.finetune import BertClassifier
    from bertnb.model import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=20, hidden_size=8, num_layers=num_layers, num_heads=2, ffn_size=16, max_len=16)
    return BertClassifier(BertModel(cfg), num_classes=3)


def _frozen_parts(model) -> dict:
    """Which named part of a BertClassifier is frozen: {"embeddings": bool, "layer 0": bool, ...}."""
    parts = {"embeddings": model.bert.embeddings, "pooler": model.bert.pooler, "head": model.classifier}
    parts.update({f"layer {i}": layer for i, layer in enumerate(model.bert.layers)})
    frozen = {}
    for name, module in parts.items():
        flags = {p.requires_grad for p in module.parameters()}
        frozen[name] = "mixed" if len(flags) == 2 else not flags.pop()
    return frozen


def check_freeze_bottom(freeze_bottom) -> bool:
    """freeze_bottom(model, k): in a BertClassifier, stop training the embeddings and the first k encoder
    layers (requires_grad = False); everything above (the other layers, the pooler, the head) keeps training."""

    def test(fn):
        for k in (0, 1, 3):
            model = _tiny_classifier(num_layers=3)
            fn(model, k)
            frozen = _frozen_parts(model)
            mixed = [name for name, value in frozen.items() if value == "mixed"]
            expect(not mixed, f"with k = {k}, {mixed} are half frozen: set requires_grad on every parameter of "
                   "a part (module.parameters() yields them all)")
            expect(frozen["embeddings"], f"with k = {k} the embeddings still train: they sit below layer 0, "
                   "freeze them too")
            expect(not frozen["head"], "the classifier head is frozen: it starts random, it must train")
            expect(not frozen["pooler"], "the pooler is frozen: it reads the top layer's [CLS]; keep it training")
            wrong = [i for i in range(3) if frozen[f"layer {i}"] != (i < k)]
            expect(not wrong, f"with k = {k}, layers {[i for i in range(3) if frozen[f'layer {i}']]} are frozen; "
                   f"expected the first k: {list(range(k))} (model.bert.layers[:k])")

    return run_check("freeze_bottom", freeze_bottom, test)


def check_encode_pairs(encode_pairs) -> bool:
    """encode_pairs(tokenizer, pairs, max_len) -> (tokens [B, m], segments [B, m], valid_lens [B]) for a list
    of (text_a, text_b): "[CLS] A [SEP] B [SEP]", segment 0 up to the first [SEP], 1 after it, padded on the
    right with the tokenizer's pad id to the longest pair."""
    from bertnb.finetune import collate_encoded, encode_examples
    from bertnb.tokenization import SPECIAL_TOKENS, BertTokenizer

    def test(fn):
        words = "the cat sat on a mat it was warm and the dog slept".split()
        tokenizer = BertTokenizer.from_vocab(list(SPECIAL_TOKENS) + sorted(set(words)))
        pairs = [("the cat sat", "on a mat"), ("it was warm", "the dog slept on a warm mat and the cat sat"),
                 ("a cat", "a dog")]
        for max_len in (32, 8):
            got = fn(tokenizer, pairs, max_len)
            expect(isinstance(got, tuple) and len(got) == 3, "return a tuple (tokens, segments, valid_lens)")
            tokens, segments, valid_lens = (torch.as_tensor(x) for x in got)
            want = collate_encoded(encode_examples(tokenizer, [(pair, 0) for pair in pairs], max_len),
                                   range(len(pairs)), tokenizer.pad_id)
            if valid_lens.shape == want["valid_lens"].shape and torch.equal(valid_lens + 1, want["valid_lens"]):
                expect(False, "every row is one token short: a pair has two [SEP], one after A and one after B. "
                       "Pass B as the second text: tokenizer.encode(text_a, text_b, ...)")
            expect(tuple(tokens.shape) == tuple(want["tokens"].shape), f"with max_len = {max_len} tokens should "
                   f"be [B, m] = {tuple(want['tokens'].shape)}, got {tuple(tokens.shape)}")
            expect(torch.equal(valid_lens, want["valid_lens"]), f"valid_lens should be {want['valid_lens'].tolist()}"
                   f" (real tokens per row, [CLS] and both [SEP] included), got {valid_lens.tolist()}")
            expect(torch.equal(tokens, want["tokens"]), f"with max_len = {max_len} the token ids differ: "
                   "tokenizer.encode(text_a, text_b, max_len=max_len) packs and truncates a pair")
            if not torch.equal(segments, want["segments"]):
                hint = (" Padding positions get segment 0." if torch.equal(segments[tokens != tokenizer.pad_id],
                                                                          want["segments"][tokens != tokenizer.pad_id])
                        else " B and its [SEP] are segment 1, [CLS] A [SEP] segment 0.")
                expect(False, f"the segments differ.{hint}")

    return run_check("encode_pairs", encode_pairs, test)


def check_initial_loss(initial_loss) -> bool:
    """The cross-entropy (in nats) of a freshly built 8-class BertClassifier, before any step: its head's
    weights are normal(0, 0.02), so its logits are all near 0. A number, to within 0.01."""

    def test(answer):
        expect(isinstance(answer, (int, float)) and not isinstance(answer, bool), f"give a number, got {answer!r}")
        want = math.log(8)
        if abs(answer - math.log2(8)) < 0.01:
            expect(False, "that is in bits (log base 2); cross-entropy here uses the natural log")
        if abs(answer - 1 / 8) < 0.01:
            expect(False, "1/8 is the probability each class gets; the loss is -log of the true class's probability")
        expect(abs(answer - want) < 0.01, f"{answer} is off: near-zero logits give every class the same "
               "probability; what is -log of it?")

    return run_check("initial_loss", initial_loss, test)
