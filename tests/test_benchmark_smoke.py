"""benchmarks/pretrain_step.py times ours against Hugging Face; these tests prove the two timed setups compute the
same thing (no timing here: wall-clock is never asserted in unit tests)."""

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bertnb.model import mlm_cross_entropy

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "pretrain_step.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("pretrain_step", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_step0_loss_gradients_and_step1_loss_equal_hf(bench):
    loss_ours, loss_hf = bench.check_same_computation(layers=2, hidden=32, heads=2, ffn=64, vocab=200, B=4, m=24, p=5)
    assert loss_ours == pytest.approx(loss_hf, abs=1e-4)
    assert loss_ours == pytest.approx(torch.log(torch.tensor(200.0)).item() + torch.log(torch.tensor(2.0)).item(),
                                      abs=0.5)  # random init: about log V + log 2


def test_the_two_batch_forms_say_the_same(bench):
    batch = bench.make_batch(vocab=300, B=6, m=40, p=7, seed=3)
    B, m = batch["tokens"].shape
    assert (batch["labels"] != -100).sum(1).tolist() == [7] * B  # p labelled positions per row, all distinct
    for i in range(B):
        assert batch["labels"][i, batch["pred_positions"][i]].tolist() == batch["mlm_labels"][i].tolist()
        v = batch["valid_lens"][i]
        assert batch["attention_mask"][i].sum() == v and batch["pred_positions"][i].max() < v
        assert batch["pred_positions"][i].min() >= 1  # never <cls>
    assert batch["valid_lens"][-1] < m  # at least one padded row, so both padding masks are exercised


def test_mlm_cross_entropy_equals_weighted_f_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 50, requires_grad=True)  # [B, p, V]
    labels = torch.randint(0, 50, (3, 5))
    weights = torch.tensor([[1.0, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])  # padded predictions weigh 0
    expected = (F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")
                * weights.flatten()).sum() / weights.sum()
    grad_expected, = torch.autograd.grad(expected, logits)
    loss = mlm_cross_entropy(logits, labels, weights)
    grad, = torch.autograd.grad(loss, logits)
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(grad, grad_expected, atol=1e-7, rtol=0)
    assert grad[0, 3].abs().max() == 0  # a padded prediction gets no gradient
    # no weights = all 1; all weights 0 gives 0, not NaN
    torch.testing.assert_close(mlm_cross_entropy(logits, labels), F.cross_entropy(logits.flatten(0, 1),
                                                                                  labels.flatten()))
    assert mlm_cross_entropy(logits, labels, torch.zeros(3, 5)).item() == 0.0


def test_mlm_cross_entropy_refuses_a_second_backward():
    logits = torch.randn(4, 10, requires_grad=True)
    loss = mlm_cross_entropy(logits[None], torch.zeros(1, 4, dtype=torch.long))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="ran twice"):
        loss.backward()
