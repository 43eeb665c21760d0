"""benchmarks/pretrain_step.py times ours against Hugging Face; these tests prove the two timed setups compute the
same thing (no timing here: wall-clock is never asserted in unit tests)."""

import importlib.util
from pathlib import Path

import pytest
import torch

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


def test_ablation_rows_compute_the_same_loss(bench):
    """The ablation rows change how ours computes, not what: the same loss with dropout off."""
    import bertnb.model

    ours, _ = bench.make_pretraining_pair(2, 32, 2, 64, vocab=200)
    ours.eval()
    batch = bench.make_batch(vocab=200, B=4, m=24, p=5)
    cheap = bertnb.model.dropout
    with torch.no_grad():
        loss = bench.ours_loss(ours, batch)
        torch.testing.assert_close(bench.ours_loss_chapters(ours, batch), loss, atol=1e-5, rtol=0)
        torch.testing.assert_close(bench.ours_loss_torch_dropout(ours, batch), loss, atol=1e-5, rtol=0)
    assert bertnb.model.dropout is cheap  # the swap is undone
