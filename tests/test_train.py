"""bertnb.train: the optimizer and its schedule, one step, and the loop (via bertnb.pretrain.pretrain), with
exact resume. Tiny models on a slice of the real English corpus, one torch thread: seconds."""

import math

import pytest
import torch

from bertnb import train
from bertnb.checkpoint import CheckpointError
from bertnb.data import make_batch
from bertnb.metrics import masked_label_counts, mlm_baselines
from bertnb.losses import pretraining_loss
from bertnb.plots import LiveLossPlot
from bertnb.pretrain import init_mlm_bias_to_unigram
from tests.tiny import run, tiny_config, tiny_data as make_tiny_data, tiny_model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()  # tiny ops: one thread is faster and immune to a busy machine
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny_data():
    return make_tiny_data()


# --------------------------------------------------------------------------------------------------------
# Exact resume


def test_resumed_run_reproduces_the_uninterrupted_losses_exactly(tiny_data, tmp_path):
    V = len(tiny_data[2])
    straight = run(tiny_model(V), tiny_data)  # 12 steps, dropout on, 2 epochs' worth of shuffles and masks

    path = tmp_path / "half.pt"
    first = run(tiny_model(V), tiny_data, checkpoint_path=path, stop_at=6)
    assert len(first["losses"]) == 6 and path.exists()
    torch.manual_seed(999)  # a different global RNG state, and fresh objects: only the checkpoint carries over
    resumed = run(tiny_model(V, seed=123), tiny_data, checkpoint_path=tmp_path / "end.pt", resume=path)

    assert resumed["losses"] == straight["losses"]  # bit for bit: losses, lr and gradient norms
    assert resumed["history"] == straight["history"] and resumed["final"] == straight["final"]


def test_resume_refuses_a_different_run_before_touching_the_model(tiny_data, tmp_path):
    V = len(tiny_data[2])
    path = tmp_path / "half.pt"
    run(tiny_model(V), tiny_data, checkpoint_path=path, stop_at=3)
    model = tiny_model(V, seed=7)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="total_steps"):
        run(model, tiny_data, tiny_config(total_steps=20), resume=path)
    with pytest.raises(CheckpointError, match="lr"):
        run(model, tiny_data, tiny_config(lr=1e-2), resume=path)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# --------------------------------------------------------------------------------------------------------
# Schedule, optimizer groups, one step


def test_warmup_then_linear_decay_to_zero():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=2.0)
    scheduler = train.warmup_linear_decay(optimizer, warmup_steps=4, total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(scheduler.get_last_lr()[0])  # the lr of the step about to be taken
        optimizer.step()
        scheduler.step()
    # warmup from near 0 to the peak at step 3 (the first step already moves: lr 0 would waste it) ...
    assert lrs[:4] == pytest.approx([0.5, 1.0, 1.5, 2.0])
    # ... then straight down, reaching exactly 0 when the run ends
    assert lrs[4:] == pytest.approx([2.0 * (10 - s) / 6 for s in range(4, 10)])
    assert scheduler.get_last_lr()[0] == 0.0


@pytest.mark.parametrize("warmup, total, pattern", [(10, 10, r"warmup_steps must be an int in \[0, 9\]"),
                                                    (-1, 10, r"warmup_steps must be an int in \[0, 9\]"),
                                                    (3, 0, r"total_steps must be an int >= 1"),
                                                    (True, 10, r"warmup_steps must be an int")])
def test_schedule_rejects_bad_arguments(warmup, total, pattern):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises((TypeError, ValueError), match=pattern):
        train.warmup_linear_decay(optimizer, warmup, total)


def test_no_weight_decay_on_biases_and_layernorm():
    model = tiny_model(50)
    decay, no_decay = train.make_optimizer(model, weight_decay=0.01).param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    names = {id(p): name for name, p in model.named_parameters()}  # the tied weight appears once
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert no_decay_names == {name for name, p in model.named_parameters() if p.dim() < 2}
    assert all(name.endswith("bias") or "norm" in name for name in no_decay_names)
    assert "bert.embeddings.token_embedding.weight" in {names[id(p)] for p in decay["params"]}
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_two_optimizer_steps_equal_manual_adamw(tiny_data):
    """Two steps, so the moment estimates carry over: a one-step test cannot see them (a first Adam step is
    about lr * sign(gradient) whatever the moments hold)."""
    V = len(tiny_data[2])
    batches = [make_batch(tiny_data[0], range(8)), make_batch(tiny_data[0], range(8, 16))]
    lr, wd, (b1, b2), eps, clip = 1e-2, 0.01, (0.9, 0.999), 1e-6, 1.0
    model, reference = tiny_model(V, dropout=0.0), tiny_model(V, dropout=0.0)
    optimizer = train.make_optimizer(model, lr=lr, weight_decay=wd, betas=(b1, b2), eps=eps)
    for batch in batches:
        train.train_step(model, batch, optimizer, clip_norm=clip)

    params = list(reference.parameters())
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for t, batch in enumerate(batches, start=1):
        reference.zero_grad()
        # the same loss function as train_step: where a gradient is 0 up to rounding, Adam's normalised step
        # is still ~lr * sign(g), so two functions equal only up to rounding would not give the same step
        train.pretraining_step_losses(reference, batch)["loss"].backward()
        total_norm = torch.sqrt(sum((p.grad ** 2).sum() for p in params))
        scale = min(1.0, clip / (total_norm.item() + 1e-6))
        with torch.no_grad():
            for p, m_i, v_i in zip(params, m, v):
                g = p.grad * scale
                p.mul_(1 - lr * (wd if p.dim() >= 2 else 0.0))  # decoupled weight decay, none on 1-D params
                m_i.mul_(b1).add_((1 - b1) * g)
                v_i.mul_(b2).add_((1 - b2) * g * g)
                p.sub_(lr * (m_i / (1 - b1 ** t)) / ((v_i / (1 - b2 ** t)).sqrt() + eps))
    for (name, a), b in zip(model.named_parameters(), reference.parameters()):
        assert torch.allclose(a, b, atol=2e-6, rtol=1e-5), name


# --------------------------------------------------------------------------------------------------------
# The loop


def test_pretrain_lowers_the_training_loss_and_reports_against_baselines(tiny_data):
    result = run(tiny_model(len(tiny_data[2])), tiny_data, tiny_config(total_steps=30, eval_every=15))
    losses = [r["loss"] for r in result["losses"]]
    assert len(losses) == 30 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3
    assert [h["step"] for h in result["history"]] == [15, 30] and result["final"] is result["history"][-1]
    assert {"step", "mlm_accuracy", "nsp_accuracy", "mlm_loss", "mlm_accuracy_mask"} <= set(result["final"])
    assert result["baselines"]["nsp_accuracy"] == 0.5
    assert result["losses"][0]["lr"] > 0 and result["losses"][-1]["lr"] < result["losses"][2]["lr"]


def test_fit_is_generic_any_loss_any_batches():
    """fit knows nothing of BERT: a linear regression trains with it (the loop chapter 08 reuses)."""
    torch.manual_seed(0)
    X = torch.randn(64, 3)
    y = X @ torch.tensor([1.0, -2.0, 0.5])
    model = torch.nn.Linear(3, 1)

    def loss_fn(model, batch):
        return {"loss": ((model(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()}

    result = train.fit(model, loss_fn, lambda step: {"x": X, "y": y}, total_steps=200, lr=0.05, weight_decay=0.0,
                       evaluate_fn=lambda m: {"mse": loss_fn(m, {"x": X, "y": y})["loss"].item()}, progress=False)
    assert result["final"]["mse"] < 1e-3 < result["losses"][0]["loss"]


def test_unigram_bias_init_starts_the_mlm_loss_at_the_unigram_entropy(tiny_data):
    train_data = tiny_data[0]
    counts = masked_label_counts(train_data)
    model = tiny_model(len(tiny_data[2]), dropout=0.0).eval()
    init_mlm_bias_to_unigram(model, counts, smoothing=1e-6)
    batch = make_batch(train_data, range(len(train_data)))  # epoch 0: the masks the counts came from
    with torch.no_grad():
        loss = pretraining_loss(model, batch)["mlm_loss"].item()
    entropy = mlm_baselines(counts)["unigram_entropy"]
    assert loss == pytest.approx(entropy, abs=0.05)  # the context barely moves the logits at initialisation
    assert math.log(len(tiny_data[2])) > entropy + 1  # against ~ln V without the init


def test_baselines_of_known_counts():
    base = mlm_baselines({7: 6, 8: 3, 9: 1})
    assert base["most_frequent_accuracy"] == pytest.approx(0.6)
    assert base["unigram_entropy"] == pytest.approx(-(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1)))


def test_callback_and_live_plot_outside_a_notebook(tiny_data):
    events = []
    plot = LiveLossPlot(every=2)
    assert plot.enabled is False  # no notebook kernel here: drawing is skipped, nothing is displayed

    def callback(event):
        events.append((event["event"], event["step"]))
        plot(event)

    run(tiny_model(len(tiny_data[2])), tiny_data, tiny_config(total_steps=4, eval_every=2), callback=callback)
    assert events == [("step", 1), ("step", 2), ("eval", 2), ("step", 3), ("step", 4), ("eval", 4), ("end", 4)]
    ax_loss, ax_acc = plot.figure().axes  # still draws the last state on request (the CLI saves loss.png)
    assert len(ax_loss.lines) >= 3 and len(ax_acc.lines) >= 2


def test_interrupting_a_run_keeps_the_last_checkpoint(tiny_data, tmp_path, capsys):
    """Ctrl-C in a notebook cell: the exception goes through, the last checkpoint stays usable."""
    V = len(tiny_data[2])
    path = tmp_path / "c.pt"

    def interrupt_at_step_7(event):
        if event["event"] == "step" and event["step"] == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tiny_model(V), tiny_data, checkpoint_path=path, callback=interrupt_at_step_7)
    assert "interrupted after step 7" in capsys.readouterr().out
    resumed = run(tiny_model(V), tiny_data, resume=path)  # written at step 4 (eval_every = 4)
    assert resumed["losses"] == run(tiny_model(V), tiny_data)["losses"]


def test_the_device_is_followed(tiny_data):
    """device="cpu" moves nothing elsewhere; every parameter and optimizer state stays on the CPU."""
    model = tiny_model(len(tiny_data[2]))
    run(model, tiny_data, tiny_config(total_steps=2), device="cpu")
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    with pytest.raises(ValueError, match="device must be one of"):
        run(tiny_model(len(tiny_data[2])), tiny_data, device="tpu")
