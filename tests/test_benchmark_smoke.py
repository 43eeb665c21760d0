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


ABLATIONS = ("ours_loss_full_last_layer", "ours_loss_unfused", "ours_loss_torch_dropout", "ours_loss_plain")


def test_ablation_rows_compute_the_same_loss_and_gradients(bench):
    """The ablation rows change how ours computes, not what: in training mode with dropout 0 (the training code
    runs, deterministically), the same loss and the same gradients as the timed row."""
    ours, _ = bench.make_pretraining_pair(2, 32, 2, 64, vocab=200, dropout=0.0)
    assert ours.training
    batch = bench.make_batch(vocab=200, B=4, m=24, p=5)
    params = list(ours.parameters())
    loss = bench.ours_loss(ours, batch)
    grads = torch.autograd.grad(loss, params)
    for name in ABLATIONS:
        other = getattr(bench, name)(ours, batch)
        torch.testing.assert_close(other, loss, atol=1e-5, rtol=0, msg=name)
        for grad, other_grad in zip(grads, torch.autograd.grad(other, params)):
            torch.testing.assert_close(other_grad, grad, atol=1e-5, rtol=1e-4, msg=name)


def test_the_dropout_rows_differ_only_in_whose_mask_they_draw(bench, monkeypatch):
    """Training mode, dropout 0.1: the timed row draws our mask, the ablation row torch's (it still runs when
    ours is made to fail), and both really drop (the loss moves away from the eval-mode loss)."""
    from bertnb import fastpath

    ours, _ = bench.make_pretraining_pair(2, 32, 2, 64, vocab=200, dropout=0.1)
    batch = bench.make_batch(vocab=200, B=4, m=24, p=5)
    with torch.no_grad():
        ours.eval()
        eval_loss = bench.ours_loss(ours, batch)
        ours.train()
        for row in (bench.ours_loss, bench.ours_loss_torch_dropout):
            assert abs(row(ours, batch) - eval_loss) > 1e-4, row.__name__

        def no_cheap_mask(*args, **kwargs):
            raise AssertionError("the cheap mask was drawn")

        monkeypatch.setattr(fastpath, "dropout_keep_mask", no_cheap_mask)
        bench.ours_loss_torch_dropout(ours, batch)  # torch's masks only
        with pytest.raises(AssertionError, match="cheap mask"):
            bench.ours_loss(ours, batch)
