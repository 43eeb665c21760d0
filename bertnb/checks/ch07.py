"""Exercise checks for chapter 07, pretraining.

Each check runs the student's function on small inputs and compares it with the expected values, printing
"correct", what is wrong, or "not solved yet". None of them raises.
"""

from __future__ import annotations

import math
from collections import Counter

import torch
from torch import nn

from bertnb.checks import expect, run_check


# ---------------------------------------------------------------------------------------------------------
# Exercise 1: warmup, then cosine decay


def cosine_factor_reference(step: int, warmup_steps: int, total_steps: int) -> float:
    """The multiplier of the peak learning rate at (0-based) optimizer step `step`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if step >= total_steps:
        return 0.0
    progress = (step - warmup_steps) / (total_steps - warmup_steps)  # 0 -> 1 over the decay
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _as_float(value, where: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    expect(isinstance(value, (int, float)) and not isinstance(value, bool),
           f"{where} returned {value!r}: return a number (a float)")
    return float(value)


def check_cosine_factor(cosine_factor) -> bool:
    """cosine_factor(step, warmup_steps, total_steps) -> float: (step + 1) / warmup_steps during the warmup,
    then 0.5 * (1 + cos(pi * progress)) with progress = (step - warmup) / (total - warmup), and 0 from
    total_steps on."""

    def test(fn):
        def value(step, warmup, total):
            return _as_float(fn(step, warmup, total), f"cosine_factor({step}, {warmup}, {total})")

        warmup, total = 6, 100
        got = [value(s, warmup, total) for s in range(warmup)]
        if math.isclose(got[0], 0.0, abs_tol=1e-9) and math.isclose(got[1], 1 / warmup, rel_tol=1e-6):
            expect(False, "the warmup starts at 0 (step / warmup_steps), so the first step does nothing: here "
                   "step s uses (s + 1) / warmup_steps, so step 0 already moves the weights and the last "
                   "warmup step reaches the peak")
        for s in range(warmup):
            expect(math.isclose(got[s], (s + 1) / warmup, rel_tol=1e-6),
                   f"warmup: cosine_factor({s}, {warmup}, {total}) should be ({s} + 1) / {warmup} = "
                   f"{(s + 1) / warmup:.4f}, got {got[s]:.4f}")
        quarter = warmup + (total - warmup) // 4  # where linear (0.755) and cosine (0.860) differ
        linear = (total - quarter) / (total - warmup)
        if math.isclose(value(quarter, warmup, total), linear, rel_tol=1e-6):
            expect(False, "that is the linear decay of the chapter; the cosine decay is "
                   "0.5 * (1 + cos(pi * progress))")
        for s in range(warmup, total):
            want = cosine_factor_reference(s, warmup, total)
            got_s = value(s, warmup, total)
            expect(math.isclose(got_s, want, rel_tol=1e-6, abs_tol=1e-9),
                   f"decay: cosine_factor({s}, {warmup}, {total}) should be {want:.4f}, got {got_s:.4f} "
                   f"(progress = ({s} - {warmup}) / ({total} - {warmup}) = "
                   f"{(s - warmup) / (total - warmup):.3f})")
        for s in (total, total + 1, total + 10, 2 * total - warmup):
            got_s = value(s, warmup, total)
            expect(math.isclose(got_s, 0.0, abs_tol=1e-9),
                   f"cosine_factor({s}, {warmup}, {total}) = {got_s:.4f}: from step total_steps on the factor "
                   "stays 0 (the cosine would climb back up: cap the progress, or return 0)")
        for warmup, total in ((0, 20), (1, 7), (10, 50)):
            for s in range(total + 2):
                want = cosine_factor_reference(s, warmup, total)
                got_s = value(s, warmup, total)
                expect(math.isclose(got_s, want, rel_tol=1e-6, abs_tol=1e-9),
                       f"cosine_factor({s}, {warmup}, {total}) should be {want:.4f}, got {got_s:.4f}"
                       + (" (with warmup_steps = 0 there is no warmup: step 0 is at the peak)"
                          if warmup == 0 else ""))

    return run_check("cosine_factor", cosine_factor, test)


# ---------------------------------------------------------------------------------------------------------
# Exercise 2: decay and no-decay parameter groups, for any model


def _test_models() -> list[tuple[str, nn.Module]]:
    from bertnb.model import BertConfig, BertForPreTraining

    torch.manual_seed(7)
    bert = BertForPreTraining(BertConfig(vocab_size=40, hidden_size=8, num_layers=1, num_heads=2, ffn_size=16,
                                         max_len=12))
    plain = nn.Sequential(nn.Embedding(10, 4), nn.LayerNorm(4), nn.Linear(4, 4))  # names "0.weight", "1.weight", ...
    return [("a tiny BertForPreTraining", bert), ("nn.Sequential(Embedding, LayerNorm, Linear)", plain)]


def check_split_decay(split_decay) -> bool:
    """split_decay(model) -> (decay, no_decay): two lists of the model's parameters, every parameter in
    exactly one, once. Weight decay for weight matrices and embeddings; none for biases and LayerNorm
    parameters. Must work for any model, whatever its parameters are called."""

    def test(fn):
        for label, model in _test_models():
            names = {}
            for name, param in model.named_parameters():  # the first name of each (tied) parameter
                names.setdefault(id(param), name)
            got = fn(model)
            expect(isinstance(got, (tuple, list)) and len(got) == 2,
                   f"return two lists, (decay, no_decay); got {type(got).__name__}"
                   + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""))
            decay, no_decay = (list(group) for group in got)
            for group_name, group in (("decay", decay), ("no_decay", no_decay)):
                for param in group:
                    expect(isinstance(param, torch.Tensor),
                           f"the {group_name} list should hold parameters (tensors), found {type(param).__name__}"
                           " (return the parameters themselves, not their names)")
                    expect(id(param) in names, f"the {group_name} list holds a tensor that is not a parameter "
                           f"of {label} (return the parameters themselves, not copies)")
            listed = Counter(id(param) for param in decay + no_decay)
            twice = [names[i] for i, count in listed.items() if count > 1]
            if twice:
                tied = any("token_embedding" in name for name in twice)
                expect(False, f"{label}: listed more than once: {', '.join(twice)}"
                       + (". The MLM decoder weight IS the token embedding (tied): iterate over "
                          "model.parameters() or model.named_parameters(), which yield it once; going module "
                          "by module finds it in both the embedding and the MLM head" if tied else "")
                       + ". torch refuses a parameter in two groups")
            missing = [name for i, name in names.items() if i not in listed]
            expect(not missing, f"{label}: in neither group: {', '.join(missing)}")
            decay_ids = {id(param) for param in decay}
            for module_name, module in model.named_modules():
                if isinstance(module, nn.LayerNorm):
                    for param_name, param in module.named_parameters(recurse=False):
                        full = f"{module_name}.{param_name}"
                        expect(id(param) not in decay_ids,
                               f"{label}: the LayerNorm parameter {full} is in the decay group. Decay pulls "
                               "its scale towards 0 and fights the normalisation. Decide by the kind of "
                               "parameter (a LayerNorm's, or a 1-D tensor), not by a name like 'norm': "
                               f"here it is called {full!r}")
            for i, name in names.items():
                param = dict(model.named_parameters())[name]
                if i in decay_ids and param.dim() < 2:
                    expect(False, f"{label}: the bias {name} is in the decay group: biases get no weight decay")
                if i not in decay_ids and param.dim() >= 2:
                    expect(False, f"{label}: the weight matrix {name} {tuple(param.shape)} is in the no-decay "
                           "group: weight matrices and embeddings get weight decay")

    return run_check("split_decay", split_decay, test)


# ---------------------------------------------------------------------------------------------------------
# Exercises 3 and 4: the trivial MLM baselines from the counts of the masked labels


_COUNTS = [
    Counter({1012: 50, 1996: 30, 1010: 12, 2003: 5, 7: 3}),  # "." is the most frequent
    Counter({5: 1, 9: 7, 3: 2}),
    Counter({42: 4}),
    Counter({i: i + 1 for i in range(100, 140)}),
]



def _entropy(counts, log=math.log) -> float:
    total = sum(counts.values())
    return -sum(c / total * log(c / total) for c in counts.values())


def check_unigram_entropy(unigram_entropy) -> bool:
    """unigram_entropy(label_counts) -> float: -sum p log p over the tokens, p = count / total, in nats
    (natural log), what a model that predicts every masked token by its frequency scores."""

    def test(fn):
        for counts in _COUNTS:
            want = _entropy(counts)
            got = _as_float(fn(Counter(counts)), "unigram_entropy")
            if len(counts) > 1:
                if math.isclose(got, _entropy(counts, math.log2), rel_tol=1e-6):
                    expect(False, "that is in bits (log2); the losses are in nats: use the natural log")
                if math.isclose(got, -want, rel_tol=1e-6):
                    expect(False, f"got {got:.4f}, minus the entropy: H = -sum p log p is >= 0")
                if math.isclose(got, math.log(len(counts)), rel_tol=1e-6) and not math.isclose(want, got):
                    expect(False, "that is ln(number of distinct tokens), the entropy of a uniform guess: weight "
                           "each token by its frequency p = count / total")
            expect(math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9),
                   f"for counts {dict(counts)} the entropy is {want:.4f} nats, got {got:.4f}")

    return run_check("unigram_entropy", unigram_entropy, test)


def _cross_entropy(train_counts, heldout_counts, vocab_size, smoothing) -> float:
    total = sum(train_counts.values()) + smoothing * vocab_size
    n = sum(heldout_counts.values())
    return -sum(c / n * math.log((train_counts.get(t, 0) + smoothing) / total) for t, c in heldout_counts.items())


_HELDOUT = [  # (training label counts, held-out label counts, V): held-out text has tokens training never saw
    (Counter({1012: 50, 1996: 30, 1010: 12, 2003: 5, 7: 3}), Counter({1012: 9, 1996: 3, 4242: 2, 7: 1}), 30522),
    (Counter({0: 3, 1: 1}), Counter({0: 1, 1: 1}), 2),
    (Counter({i: i + 1 for i in range(10, 30)}), Counter({i: 2 for i in range(20, 40)}), 50),
]


def check_heldout_cross_entropy(heldout_cross_entropy) -> bool:
    """heldout_cross_entropy(train_counts, heldout_counts, vocab_size, smoothing=0.1) -> float: the MLM loss,
    in nats, on held-out labels of a model that predicts token t with the training frequency
    p(t) = (train_counts[t] + smoothing) / (sum of the counts + smoothing · V), as `init_mlm_bias_to_unigram`."""

    def test(fn):
        for train_counts, heldout_counts, V in _HELDOUT:
            want = _cross_entropy(train_counts, heldout_counts, V, 0.1)
            got = _as_float(fn(Counter(train_counts), Counter(heldout_counts), V, 0.1), "heldout_cross_entropy")
            if math.isinf(got):
                expect(False, "infinite: a held-out token that training never masked gets probability 0 "
                       "without the smoothing; add `smoothing` to every count (and smoothing · V to the total)")
            if math.isclose(got, _entropy(heldout_counts), rel_tol=1e-6) and not math.isclose(got, want):
                expect(False, "that is the held-out labels' own entropy: it uses the held-out frequencies, "
                       "which a model trained on the training labels cannot know")
            if math.isclose(got, _entropy(train_counts), rel_tol=1e-6) and not math.isclose(got, want):
                expect(False, "that is the training labels' entropy, the number the chapter's first plot "
                       "wrongly compared with a held-out curve: average -log p(t) over the HELD-OUT labels")
            unweighted = -sum(math.log((train_counts.get(t, 0) + 0.1) / (sum(train_counts.values()) + 0.1 * V))
                              for t in heldout_counts) / len(heldout_counts)
            if math.isclose(got, unweighted, rel_tol=1e-6) and not math.isclose(got, want, rel_tol=1e-6):
                expect(False, "each distinct held-out token counted once: weight -log p(t) by how often t is a "
                       "held-out label")
            expect(math.isclose(got, want, rel_tol=1e-6),
                   f"for training counts {dict(train_counts)}, held-out counts {dict(heldout_counts)}, V = {V}: "
                   f"expected {want:.4f} nats, got {got:.4f}")

    return run_check("heldout_cross_entropy", heldout_cross_entropy, test)
