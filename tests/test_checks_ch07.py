"""Chapter 07: the exercise checks accept the reference solutions (kept here, not in the notebook), reject
wrong answers with a message and without raising, and say "not solved yet" for the notebook's stub. Also
`bertnb.demo.fill_mask`, which the chapter's fill-mask demo uses."""

import math
from collections import Counter

import pytest
import torch
from torch import nn

from bertnb.checks import ch07
from bertnb.model import BertConfig, BertForPreTraining
from bertnb.metrics import mlm_baselines
from bertnb.train import make_optimizer, warmup_linear_decay
from tests.check_contract import assert_accepted, assert_rejected, assert_not_solved


# ---------------------------------------------------------------------------------------------------------
# Reference solutions


def cosine_factor(step, warmup_steps, total_steps):
    if step < warmup_steps:
        return (step + 1) / warmup_steps  # step 0 already moves; the last warmup step reaches the peak
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))  # capped: 0 from total on
    return 0.5 * (1 + math.cos(math.pi * progress))


def split_decay(model):
    decay, no_decay = [], []
    for param in model.parameters():  # each parameter once, the tied decoder weight included
        (decay if param.dim() >= 2 else no_decay).append(param)  # 1-D: biases and LayerNorm scales/shifts
    return decay, no_decay


def split_decay_by_module(model):  # also right: by the kind of module, each parameter once
    no_decay_ids = set()
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    for name, param in model.named_parameters():
        if name.endswith("bias"):
            no_decay_ids.add(id(param))
    params = list(model.parameters())
    return [p for p in params if id(p) not in no_decay_ids], [p for p in params if id(p) in no_decay_ids]


def heldout_cross_entropy(train_counts, heldout_counts, vocab_size, smoothing=0.1):
    total = sum(train_counts.values()) + smoothing * vocab_size  # every token of V gets `smoothing` extra
    n = sum(heldout_counts.values())
    return -sum(count / n * math.log((train_counts.get(token, 0) + smoothing) / total)
                for token, count in heldout_counts.items())  # -log p(t), averaged over the held-out labels


def unigram_entropy(label_counts):
    total = sum(label_counts.values())
    return -sum(c / total * math.log(c / total) for c in label_counts.values())


# ---------------------------------------------------------------------------------------------------------
# Wrong answers


def cosine_factor_hf_warmup(step, warmup_steps, total_steps):  # Hugging Face's: step 0 gets lr 0
    if step < warmup_steps:
        return step / warmup_steps
    return cosine_factor(step, warmup_steps, total_steps)


def cosine_factor_linear(step, warmup_steps, total_steps):
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / (total_steps - warmup_steps))


def cosine_factor_uncapped(step, warmup_steps, total_steps):  # climbs back up after total_steps
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / (total_steps - warmup_steps)))


def cosine_factor_progress_over_total(step, warmup_steps, total_steps):
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return 0.5 * (1 + math.cos(math.pi * min(1.0, step / total_steps)))


def cosine_factor_no_zero_warmup(step, warmup_steps, total_steps):
    if step < warmup_steps or warmup_steps == 0:  # and 1 / 0 ...
        return (step + 1) / warmup_steps
    return cosine_factor(step, warmup_steps, total_steps)


def split_decay_by_name(model):  # works for BertForPreTraining's names, not for a LayerNorm called "1"
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if name.endswith("bias") or "norm" in name else decay).append(param)
    return decay, no_decay


def split_decay_module_walk(model):  # finds the tied decoder weight twice (in the embedding and in MaskLM)
    decay, no_decay = [], []
    for module in model.modules():
        for param in module.parameters(recurse=False):
            (decay if param.dim() >= 2 else no_decay).append(param)
    return decay, no_decay


def split_decay_all(model):
    return list(model.parameters()), []


def split_decay_names(model):
    decay, no_decay = split_decay(model)
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for p in decay], [names[id(p)] for p in no_decay]


def split_decay_flipped(model):
    decay, no_decay = split_decay(model)
    return no_decay, decay


def split_decay_one_list(model):
    return list(model.parameters())


def heldout_cross_entropy_train_entropy(train_counts, heldout_counts, vocab_size, smoothing=0.1):
    return unigram_entropy(train_counts)  # the training labels' entropy: the misleading baseline


def heldout_cross_entropy_heldout_entropy(train_counts, heldout_counts, vocab_size, smoothing=0.1):
    return unigram_entropy(heldout_counts)  # uses the held-out frequencies themselves


def heldout_cross_entropy_unsmoothed(train_counts, heldout_counts, vocab_size, smoothing=0.1):
    total, n = sum(train_counts.values()), sum(heldout_counts.values())
    return -sum(c / n * (math.log(train_counts[t] / total) if train_counts.get(t) else -math.inf)
                for t, c in heldout_counts.items())


def unigram_entropy_bits(label_counts):
    total = sum(label_counts.values())
    return -sum(c / total * math.log2(c / total) for c in label_counts.values())


def unigram_entropy_positive_sum(label_counts):
    total = sum(label_counts.values())
    return sum(c / total * math.log(c / total) for c in label_counts.values())


def unigram_entropy_uniform(label_counts):
    return math.log(len(label_counts))


def unigram_entropy_counts(label_counts):
    return -sum(c * math.log(c) for c in label_counts.values())


# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("check, reference", [
    (ch07.check_cosine_factor, cosine_factor),
    (ch07.check_split_decay, split_decay),
    (ch07.check_split_decay, split_decay_by_module),
    (ch07.check_heldout_cross_entropy, heldout_cross_entropy),
    (ch07.check_unigram_entropy, unigram_entropy),
])
def test_reference_is_accepted(check, reference, capsys):
    assert_accepted(check, reference, capsys)


@pytest.mark.parametrize("check, wrong, hint", [
    (ch07.check_cosine_factor, cosine_factor_hf_warmup, "(s + 1) / warmup_steps"),
    (ch07.check_cosine_factor, cosine_factor_linear, "linear decay"),
    (ch07.check_cosine_factor, cosine_factor_uncapped, "stays 0"),
    (ch07.check_cosine_factor, cosine_factor_progress_over_total, "progress ="),
    (ch07.check_cosine_factor, lambda s, w, t: str(cosine_factor(s, w, t)), "a number"),
    (ch07.check_split_decay, split_decay_by_name, "not by a name"),
    (ch07.check_split_decay, split_decay_module_walk, "IS the token embedding"),
    (ch07.check_split_decay, split_decay_all, "LayerNorm parameter"),
    (ch07.check_split_decay, split_decay_names, "not their names"),
    (ch07.check_split_decay, split_decay_flipped, "LayerNorm parameter"),
    (ch07.check_split_decay, split_decay_one_list, "two lists"),
    (ch07.check_heldout_cross_entropy, heldout_cross_entropy_train_entropy, "training labels' entropy"),
    (ch07.check_heldout_cross_entropy, heldout_cross_entropy_heldout_entropy, "held-out labels' own entropy"),
    (ch07.check_heldout_cross_entropy, heldout_cross_entropy_unsmoothed, "smoothing"),
    (ch07.check_unigram_entropy, unigram_entropy_bits, "bits"),
    (ch07.check_unigram_entropy, unigram_entropy_positive_sum, ">= 0"),
    (ch07.check_unigram_entropy, unigram_entropy_uniform, "uniform"),
    (ch07.check_unigram_entropy, unigram_entropy_counts, "nats"),
])
def test_wrong_answer_is_rejected(check, wrong, hint, capsys):
    assert_rejected(check, wrong, hint, capsys)


@pytest.mark.parametrize("check", [ch07.check_cosine_factor, ch07.check_split_decay, ch07.check_heldout_cross_entropy,
                                   ch07.check_unigram_entropy])
def test_unsolved_stub_says_not_solved(check, capsys):
    assert_not_solved(check, capsys)


@pytest.mark.parametrize("check", [ch07.check_cosine_factor, ch07.check_split_decay, ch07.check_heldout_cross_entropy,
                                   ch07.check_unigram_entropy])
def test_a_crashing_answer_is_reported_not_raised(check, capsys):
    assert check(lambda *args: 1 / 0) is False
    assert "ZeroDivisionError" in capsys.readouterr().out


def test_zero_warmup_is_checked(capsys):
    assert ch07.check_cosine_factor(cosine_factor_no_zero_warmup) is False
    assert "ZeroDivisionError" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------
# The reference solutions agree with bertnb itself


def test_reference_solutions_equal_bertnb():
    model = BertForPreTraining(BertConfig(vocab_size=50, hidden_size=8, num_layers=2, num_heads=2, ffn_size=16,
                                          max_len=16))
    decay, no_decay = split_decay(model)
    groups = make_optimizer(model).param_groups
    assert [id(p) for p in decay] == [id(p) for p in groups[0]["params"]] and groups[0]["weight_decay"] > 0
    assert [id(p) for p in no_decay] == [id(p) for p in groups[1]["params"]] and groups[1]["weight_decay"] == 0

    counts = Counter({3: 10, 4: 5, 7: 1})
    baselines = mlm_baselines(counts)
    assert math.isclose(unigram_entropy(counts), baselines["unigram_entropy"])
    # the frequencies-only model of the chapter scores exactly this cross-entropy when its encoder adds nothing
    model = BertForPreTraining(BertConfig(vocab_size=12, hidden_size=8, num_layers=1, num_heads=2, ffn_size=16,
                                          max_len=8))
    from bertnb.pretrain import init_mlm_bias_to_unigram

    init_mlm_bias_to_unigram(model, counts)
    heldout = Counter({3: 2, 4: 1, 9: 1})
    labels = torch.tensor([3, 3, 4, 9])
    log_p = model.mlm.bias.detach().log_softmax(-1)  # [V]: the bias alone, the context ignored
    assert math.isclose(-log_p[labels].mean().item(), heldout_cross_entropy(counts, heldout, 12), rel_tol=1e-5)

    # the cosine schedule shares the linear one's warmup and its ends
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    linear = warmup_linear_decay(optimizer, 6, 100)
    factors = []
    for _ in range(100):
        factors.append(linear.get_last_lr()[0])
        optimizer.step()
        linear.step()
    assert all(math.isclose(factors[s], cosine_factor(s, 6, 100)) for s in range(7))
    assert cosine_factor(100, 6, 100) == 0.0 and linear.get_last_lr()[0] == 0.0


# ---------------------------------------------------------------------------------------------------------
# bertnb.demo.fill_mask


class _Tokenizer:  # the smallest tokenizer fill_mask needs
    mask_id = 4
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(25)]

    def encode(self, text, text_b=None, max_len=None):
        ids = [2] + [self.tokens.index(word) for word in text.split()] + [3]
        return ids[:max_len], [0] * len(ids[:max_len])

    def convert_ids_to_tokens(self, ids):
        return [self.tokens[i] for i in ids]


def test_fill_mask_returns_top_k_per_mask_and_keeps_the_mode():
    from bertnb.demo import fill_mask

    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig(vocab_size=30, hidden_size=8, num_layers=1, num_heads=2, ffn_size=16,
                                          max_len=10))
    with torch.no_grad():
        model.mlm.bias[12] = 20.0  # "w7" wins everywhere
    model.train()
    tokenizer = _Tokenizer()
    out = fill_mask(model, tokenizer, "w1 [MASK] w2 [MASK]", top_k=3)
    assert model.training  # restored
    assert len(out) == 2 and all(len(predictions) == 3 for predictions in out)
    for predictions in out:
        assert predictions[0][0] == "w7" and predictions[0][1] > 0.99
        probs = [p for _, p in predictions]
        assert probs == sorted(probs, reverse=True)
    assert fill_mask(model.eval(), tokenizer, "[MASK]", top_k=1)[0][0][0] == "w7" and not model.training
    with pytest.raises(ValueError, match="no \\[MASK\\]"):
        fill_mask(model, tokenizer, "w1 w2")
    with pytest.raises(ValueError, match="no \\[MASK\\]"):
        fill_mask(model, tokenizer, "w1 w2 w3 w4 w5 w6 w7 w8 w9 [MASK]")  # cut off by max_len = 10
    with pytest.raises(ValueError, match="top_k"):
        fill_mask(model, tokenizer, "[MASK]", top_k=0)


def test_mask_probabilities_and_rank_of():
    from bertnb.demo import mask_probabilities, rank_of

    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig(vocab_size=30, hidden_size=8, num_layers=1, num_heads=2, ffn_size=16,
                                          max_len=10)).eval()
    probs = mask_probabilities(model, _Tokenizer(), "[MASK] w3 [MASK]")
    assert probs.shape == (2, 30)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    order = probs[1].argsort(descending=True)
    assert rank_of(probs[1], int(order[0])) == 1 and rank_of(probs[1], int(order[-1])) == 30
    assert rank_of(torch.tensor([0.2, 0.5, 0.2, 0.1]), 0) == 2  # ties share the better rank


# ---------------------------------------------------------------------------------------------------------
# bertnb.demo: the kinds of token, accuracy by kind, and the held-out sample of section 10


def test_token_kind_by_hand():
    from bertnb.demo import token_kind

    assert [token_kind(t) for t in (",", "(", "...")] == ["punctuation"] * 3
    assert [token_kind(t) for t in ("the", "of", "is", "in", "a")] == ["function word"] * 5
    assert [token_kind(t) for t in ("str", "none", "len", "##ing", "x2", "__init__", "0", "x")] == ["identifier"] * 8
    assert [token_kind(t) for t in ("module", "exception", "dictionary", "thread")] == ["content word"] * 4


class _Vocab:
    tokens = ["[PAD]", "the", ",", "str", "module", "of"]

    def convert_ids_to_tokens(self, ids):
        return [self.tokens[i] for i in ids]


def test_accuracy_by_kind_counts_hits_per_kind():
    from bertnb.demo import accuracy_by_kind

    labels = torch.tensor([1, 1, 2, 3, 4, 4, 5])  # the the , str module module of
    predicted = torch.tensor([1, 2, 2, 1, 4, 1, 1])  # hit miss hit miss hit miss miss
    table = accuracy_by_kind(labels, predicted, _Vocab())
    assert table["function word"] == (1 / 3, 3)  # the, the, of
    assert table["punctuation"] == (1.0, 1)
    assert table["identifier"] == (0.0, 1)
    assert table["content word"] == (0.5, 2)
    assert table["all"] == (3 / 7, 7)
    assert accuracy_by_kind([], [], _Vocab())["all"] == (None, 0)


def test_slot_contexts_follow_predict_slots_order_and_the_sample_is_fixed():
    from bertnb.demo import context_window, sample_slots, slot_contexts

    batch = {"tokens": torch.tensor([[2, 5, 4, 3, 0], [2, 4, 5, 5, 3]]), "valid_lens": torch.tensor([4, 5]),
             "pred_positions": torch.tensor([[2, 0], [1, 3]]), "mlm_weights": torch.tensor([[1.0, 0.0], [1.0, 1.0]])}
    contexts = slot_contexts([batch])
    assert contexts == [([2, 5, 4, 3], 2), ([2, 4, 5, 5, 3], 1), ([2, 4, 5, 5, 3], 3)]  # padding slot skipped

    class Vocab:
        def convert_ids_to_tokens(self, ids):
            return [["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "word"][i] for i in ids]

    assert context_window(Vocab(), [2, 5, 5, 5, 5, 3], 3, width=1) == "... word [MASK] word ..."
    assert sample_slots(range(100), 5, seed=0) == sample_slots(range(100), 5, seed=0)
    assert sample_slots(range(100), 5, seed=0) == sorted(sample_slots(range(100), 5, seed=0))
    with pytest.raises(ValueError, match=r"k \(slots to sample\) must be an int in \[1, 3\], got 4"):
        sample_slots(range(3), 4)
    with pytest.raises(ValueError, match=r"position must be an int in \[0, 5\], got 6"):
        context_window(Vocab(), [2, 5, 5, 5, 5, 3], 6)
