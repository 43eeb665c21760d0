"""bertnb.train and bertnb.pretrain: losses, optimizer, schedule, checkpoints, the loop, exact resume, the CLI.

Tiny models on a tiny slice of the real English corpus (a word-level vocabulary built from it, so V stays
small), one torch thread: the whole file runs in seconds.
"""

import json
import math
import os
import pickle
import random

import pytest
import torch

from bertnb import train
from bertnb.data import (PretrainingDataset, load_english_corpus, make_nsp_examples, split_documents,
                         tokenize_documents)
from bertnb.model import BertConfig, BertForPreTraining
from bertnb.tokenization import BertTokenizer, basic_tokenize

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny ops: one thread is faster, and immune to a busy machine's other processes.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny_data():
    """Real sentences (the first 60 documents of the Python docs), a word vocabulary, m = 32, p = 5."""
    docs = load_english_corpus()[:60]
    words = sorted({w for doc in docs for s in doc for w in basic_tokenize(s)})
    tokenizer = BertTokenizer.from_vocab(SPECIALS + words)
    train_docs, heldout_docs = split_documents(tokenize_documents(docs, tokenizer), 0.2, 0)
    train_data = PretrainingDataset(make_nsp_examples(train_docs, 32, random.Random(0)), tokenizer, 32, 5, 0)
    heldout_data = PretrainingDataset(make_nsp_examples(heldout_docs, 32, random.Random(1)), tokenizer, 32, 5, 1)
    return train_data, heldout_data, tokenizer


def tiny_model(vocab_size, seed=0, dropout=0.1):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=32, num_layers=2, num_heads=2, ffn_size=64, max_len=32,
                     dropout=dropout)
    return BertForPreTraining(cfg)


def run(model, data, **kwargs):
    train_data, heldout_data, _ = data
    options = dict(total_steps=12, batch_size=8, lr=3e-3, eval_every=4, eval_examples=16, seed=3,
                   progress=False, verbose=False)
    options.update(kwargs)
    return train.pretrain(model, train_data, heldout_data, **options)


# --------------------------------------------------------------------------------------------------------
# Exact resume


def test_resumed_run_reproduces_the_uninterrupted_losses_exactly(tiny_data, tmp_path):
    V = len(tiny_data[2])
    straight = run(tiny_model(V), tiny_data)  # 12 steps, dropout on, 2 epochs' worth of shuffles and masks

    path = tmp_path / "half.pt"
    first = run(tiny_model(V), tiny_data, checkpoint_path=path, stop_at=6)
    assert len(first["losses"]) == 6 and path.exists()
    torch.manual_seed(999)  # a different global RNG state, and fresh objects: only the checkpoint carries over
    resumed_model = tiny_model(V, seed=123)
    resumed = run(resumed_model, tiny_data, checkpoint_path=tmp_path / "end.pt", resume=path)

    assert [r["loss"] for r in resumed["losses"]] == [r["loss"] for r in straight["losses"]]  # bit for bit
    assert resumed["losses"] == straight["losses"]  # also mlm/nsp parts, lr and gradient norms
    assert resumed["history"] == straight["history"]
    assert resumed["final"] == straight["final"]


def test_resume_refuses_a_different_run(tiny_data, tmp_path):
    V = len(tiny_data[2])
    path = tmp_path / "half.pt"
    run(tiny_model(V), tiny_data, checkpoint_path=path, stop_at=3)
    with pytest.raises(ValueError, match="total_steps"):
        run(tiny_model(V), tiny_data, total_steps=20, resume=path)


def test_batches_are_a_fixed_function_of_seed_and_step():
    n, B = 50, 8
    per_epoch = train.steps_per_epoch(n, B)
    assert per_epoch == 6  # the last partial batch is dropped
    epoch0 = [train.batch_indices(n, B, 0, s) for s in range(per_epoch)]
    assert all(e == 0 for e, _ in epoch0)
    seen = [i for _, idx in epoch0 for i in idx]
    assert len(seen) == len(set(seen)) == 48  # a permutation, without repeats within an epoch
    assert train.batch_indices(n, B, 0, per_epoch)[0] == 1
    assert train.batch_indices(n, B, 0, per_epoch)[1] != epoch0[0][1]  # reshuffled each epoch
    assert train.batch_indices(n, B, 0, 7) == train.batch_indices(n, B, 0, 7)
    assert train.batch_indices(n, B, 1, 0) != train.batch_indices(n, B, 0, 0)


# --------------------------------------------------------------------------------------------------------
# Checkpoints


def test_checkpoint_round_trip(tiny_data, tmp_path):
    V = len(tiny_data[2])
    model = tiny_model(V)
    optimizer = train.make_optimizer(model)
    scheduler = train.warmup_linear_decay(optimizer, 2, 10)
    batch = train.make_batch(tiny_data[0], range(4))
    train.train_step(model, batch, optimizer, scheduler)
    train.save_checkpoint(tmp_path / "c.pt", model, optimizer, scheduler, step=1, extra={"note": [1.5, "x"]})

    other = tiny_model(V, seed=5)
    other_optimizer = train.make_optimizer(other)
    other_scheduler = train.warmup_linear_decay(other_optimizer, 2, 10)
    state = train.load_checkpoint(tmp_path / "c.pt", other, other_optimizer, other_scheduler)
    assert state["step"] == 1 and state["extra"] == {"note": [1.5, "x"]}
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    assert other_scheduler.get_last_lr() == scheduler.get_last_lr()
    assert other.mlm.decoder_weight is other.bert.embeddings.token_embedding.weight  # still tied


def test_checkpoint_write_is_atomic(tiny_data, tmp_path):
    model = tiny_model(len(tiny_data[2]))
    path = tmp_path / "checkpoint.pt"
    train.save_checkpoint(path, model, step=1)
    before = path.read_bytes()

    def broken_write(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half a checkpoint")  # the crash comes after some bytes are already written
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        train.atomic_write(path, broken_write)
    assert path.read_bytes() == before  # the old checkpoint is intact
    assert os.listdir(tmp_path) == ["checkpoint.pt"]  # and no temp file is left behind

    original_save = torch.save

    def save_then_crash(obj, f, *args, **kwargs):
        original_save({"partial": True}, f)
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of writing

    torch.save = save_then_crash
    try:
        with pytest.raises(KeyboardInterrupt):
            train.save_checkpoint(path, model, step=2)
    finally:
        torch.save = original_save
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["checkpoint.pt"]
    assert train.load_checkpoint(path, model)["step"] == 1


class _Payload:
    def __reduce__(self):  # what a malicious pickle does: call something on load
        return (print, ("code ran while loading",))


def test_checkpoints_load_with_weights_only(tiny_data, tmp_path, monkeypatch):
    model = tiny_model(len(tiny_data[2]))
    path = tmp_path / "c.pt"
    train.save_checkpoint(path, model, train.make_optimizer(model), step=3)

    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real_load(*a, **k))
    train.load_checkpoint(path, model)
    assert calls and calls[0].get("weights_only") is True
    monkeypatch.undo()

    evil = tmp_path / "evil.pt"
    torch.save({"model": model.state_dict(), "step": 0, "rng": train.rng_states(), "payload": _Payload()}, evil)
    with pytest.raises(pickle.UnpicklingError):
        train.load_checkpoint(evil, model)


def test_weights_only_safetensors_round_trip(tiny_data, tmp_path):
    V = len(tiny_data[2])
    model = tiny_model(V)
    train.save_weights(tmp_path / "m.safetensors", model, {"command": "test"})
    other = train.load_weights(tmp_path / "m.safetensors", tiny_model(V, seed=1))
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------------------------------------
# Schedule, optimizer groups, losses


def test_warmup_then_linear_decay_to_zero():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=2.0)
    scheduler = train.warmup_linear_decay(optimizer, warmup_steps=4, total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(scheduler.get_last_lr()[0])  # the lr of the step about to be taken
        optimizer.step()
        scheduler.step()
    final = scheduler.get_last_lr()[0]
    # warmup from near 0 to the peak at step 3 (the first step already moves: lr 0 would waste it) ...
    assert lrs[:4] == pytest.approx([0.5, 1.0, 1.5, 2.0])
    # ... then straight down, reaching exactly 0 when the run ends
    assert lrs[4:] == pytest.approx([2.0 * (10 - s) / 6 for s in range(4, 10)])
    assert max(lrs) == pytest.approx(2.0) and final == 0.0


@pytest.mark.parametrize("warmup, total", [(10, 10), (-1, 10), (3, 0)])
def test_schedule_rejects_bad_arguments(warmup, total):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match=r"warmup_steps must be in \[0, total_steps\)"):
        train.warmup_linear_decay(optimizer, warmup, total)


def test_no_weight_decay_on_biases_and_layernorm():
    model = tiny_model(50)
    optimizer = train.make_optimizer(model, weight_decay=0.01)
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    names = {id(p): name for name, p in model.named_parameters()}  # the tied weight appears once
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    decay_names = {names[id(p)] for p in decay["params"]}
    assert no_decay_names == {name for name, p in model.named_parameters()
                              if name.endswith("bias") or ".norm" in name}
    assert all(name.endswith("weight") and ".norm" not in name for name in decay_names)
    assert "bert.embeddings.token_embedding.weight" in decay_names
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_mlm_loss_ignores_weight_zero_slots_and_equals_a_manual_computation():
    torch.manual_seed(0)
    B, p, V = 2, 3, 11
    logits = torch.randn(B, p, V, requires_grad=True)
    labels = torch.tensor([[1, 2, 0], [4, 0, 0]])
    weights = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    loss = train.mlm_loss(logits, labels, weights)
    log_probs = logits.log_softmax(-1)
    manual = -(log_probs[0, 0, 1] + log_probs[0, 1, 2] + log_probs[1, 0, 4]) / 3  # 3 real slots, not B * p = 6
    assert torch.allclose(loss, manual)
    loss.backward()
    assert torch.all(logits.grad[weights == 0] == 0)  # padded slots get no gradient
    changed = logits.detach().clone()
    changed[weights == 0] = 100.0  # whatever the padded slots hold, the loss does not move
    assert torch.allclose(train.mlm_loss(changed, labels.masked_fill(weights == 0, 7), weights), manual)


def test_nsp_loss_is_mean_cross_entropy():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5], [-3.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    manual = -(logits.log_softmax(-1)[torch.arange(3), labels]).mean()
    assert torch.allclose(train.nsp_loss(logits, labels), manual)


def test_one_optimizer_step_equals_manual_adamw(tiny_data):
    """The notebook's "equal to bertnb" check: one step from the same state, by hand and by train_step."""
    V = len(tiny_data[2])
    batch = train.make_batch(tiny_data[0], range(8))
    lr, wd, (b1, b2), eps, clip = 1e-2, 0.01, (0.9, 0.999), 1e-6, 1.0
    model = tiny_model(V, dropout=0.0)
    reference = tiny_model(V, dropout=0.0)
    twin = tiny_model(V, dropout=0.0)
    optimizer = train.make_optimizer(model, lr=lr, weight_decay=wd, betas=(b1, b2), eps=eps)
    twin_optimizer = train.make_optimizer(twin, lr=lr, weight_decay=wd, betas=(b1, b2), eps=eps)
    train.train_step(model, batch, optimizer, clip_norm=clip)
    train.train_step(twin, batch, twin_optimizer, clip_norm=clip)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)  # a second identical model takes exactly the same step

    # By hand: loss, gradients, clipping to total norm `clip`, then AdamW's first step. (The same loss function
    # as train_step: a first Adam step is ~lr * sign(gradient), so a gradient that is 0 up to rounding would
    # move by lr either way; that `losses` equals `pretraining_loss` is tested in test_model.)
    mlm, nsp = reference.losses(**batch)
    (mlm + nsp).backward()
    params = list(reference.parameters())
    total_norm = torch.sqrt(sum((p.grad ** 2).sum() for p in params))
    scale = min(1.0, clip / (total_norm.item() + 1e-6))
    with torch.no_grad():
        for p in params:
            g = p.grad * scale
            decay = wd if p.dim() >= 2 else 0.0  # no decay on biases and LayerNorm
            p.mul_(1 - lr * decay)  # decoupled weight decay
            m_hat = (1 - b1) * g / (1 - b1)  # bias-corrected first moment after one step
            v_hat = (1 - b2) * g * g / (1 - b2)  # ... and second moment
            p.sub_(lr * m_hat / (v_hat.sqrt() + eps))
    for (name, a), b in zip(model.named_parameters(), reference.parameters()):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5), name


# --------------------------------------------------------------------------------------------------------
# The loop


def test_pretrain_lowers_the_training_loss(tiny_data):
    result = run(tiny_model(len(tiny_data[2])), tiny_data, total_steps=30, eval_every=15)
    losses = [r["loss"] for r in result["losses"]]
    assert len(losses) == 30 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3
    assert [h["step"] for h in result["history"]] == [15, 30]
    assert result["final"] is result["history"][-1]
    for key in ("mlm_accuracy", "nsp_accuracy", "mlm_loss"):
        assert key in result["final"]
    base = result["baselines"]
    assert base["nsp_accuracy"] == 0.5
    assert 0 < base["mlm_most_frequent_accuracy"] < 1 and base["mlm_unigram_entropy"] > 0
    assert result["losses"][0]["lr"] > 0 and result["losses"][-1]["lr"] < result["losses"][2]["lr"]


def test_baselines_come_from_the_training_masks():
    counts = {7: 6, 8: 3, 9: 1}
    base = train.mlm_baselines(counts)
    assert base["most_frequent_accuracy"] == pytest.approx(0.6)
    assert base["unigram_entropy"] == pytest.approx(-(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1)))


def test_unigram_bias_init_starts_the_mlm_loss_at_the_unigram_entropy(tiny_data):
    train_data = tiny_data[0]
    counts = train.masked_label_counts(train_data)
    model = tiny_model(len(tiny_data[2]), dropout=0.0).eval()
    train.init_mlm_bias_to_unigram(model, counts, smoothing=1e-6)
    batch = train.make_batch(train_data, range(len(train_data)))  # epoch 0: the masks the counts came from
    with torch.no_grad():
        loss = train.pretraining_loss(model, batch)["mlm_loss"].item()
    entropy = train.mlm_baselines(counts)["unigram_entropy"]
    assert loss == pytest.approx(entropy, abs=0.05)  # the context barely moves the logits at initialisation
    assert math.log(len(tiny_data[2])) > entropy + 1  # against ~ln V without the init


def test_callback_and_live_plot_outside_a_notebook(tiny_data):
    events = []
    plot = train.LiveLossPlot(every=2)
    assert plot.enabled is False  # no notebook kernel here: drawing is skipped, nothing is displayed

    def callback(event):
        events.append((event["event"], event["step"]))
        plot(event)

    run(tiny_model(len(tiny_data[2])), tiny_data, total_steps=4, eval_every=2, callback=callback)
    assert events == [("step", 1), ("step", 2), ("eval", 2), ("step", 3), ("step", 4), ("eval", 4), ("end", 4)]
    fig = plot.figure()  # still draws the last state on request (the CLI saves it as loss.png)
    ax_loss, ax_acc = fig.axes
    assert len(ax_loss.lines) >= 3 and len(ax_acc.lines) >= 2


def test_time_budget_to_steps():
    calls = []

    def step():
        calls.append(1)
        torch.ones(100, 100) @ torch.ones(100, 100)

    assert train.time_budget_to_steps(step, minutes=1e-6) == 1  # a budget shorter than one step: still 1
    assert len(calls) == 3  # the timed warm-up: 3 real steps, the first discarded
    assert train.time_budget_to_steps(step, minutes=1.0) >= 1
    with pytest.raises(ValueError, match="minutes must be > 0"):
        train.time_budget_to_steps(step, minutes=0)
    with pytest.raises(ValueError, match="warmup_steps must be an int >= 2"):
        train.time_budget_to_steps(step, minutes=1, warmup_steps=1)


# --------------------------------------------------------------------------------------------------------
# The command line


@pytest.mark.parametrize("argv, message", [
    (["--minutes", "0"], "--minutes 0.0 is out of range: allowed (0, 1440]"),
    (["--minutes", "5", "--layers", "0"], "--layers 0 is out of range: allowed [1, 48]"),
    (["--minutes", "5", "--hidden", "251"], "--hidden 251 must be divisible by --heads 2"),
    (["--minutes", "5", "--max-pred", "70"], "--max-pred 70 is out of range: allowed [1, 61]"),
    (["--minutes", "5", "--lr", "-0.1"], "--lr -0.1 is out of range: allowed (0, 1]"),
    (["--minutes", "5", "--warmup-frac", "0.9"], "--warmup-frac 0.9 is out of range: allowed [0, 0.5]"),
    (["--minutes", "5", "--batch-size", "0"], "--batch-size 0 is out of range: allowed [1, 4096]"),
    (["--minutes", "5", "--threads", "many"], "--threads 'many' must be auto or an int"),
    (["--minutes", "5", "--bf16", "maybe"], "invalid choice: 'maybe'"),
    (["--steps", "0"], "--steps 0 is out of range: allowed [1, 10000000]"),
    ([], "give a budget: --minutes M (wall clock) or --steps N"),
])
def test_cli_rejects_bad_arguments_before_any_work(argv, message, tmp_path, capsys, monkeypatch):
    from bertnb import data, pretrain

    monkeypatch.setattr(data, "build_pretraining_data", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(SystemExit) as exit_info:
        pretrain.main(["--corpus", "python-docs", "--out", str(tmp_path / "run"), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cli_rejects_an_unknown_corpus_and_a_missing_checkpoint(tmp_path, capsys):
    from bertnb import pretrain

    with pytest.raises(SystemExit):
        pretrain.main(["--corpus", "klingon", "--minutes", "1", "--out", str(tmp_path)])
    assert "invalid choice: 'klingon'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        pretrain.main(["--resume", str(tmp_path / "nope.pt"), "--out", str(tmp_path)])
    assert "no such checkpoint file" in capsys.readouterr().err


def test_cli_end_to_end_on_the_real_english_corpus(tmp_path):
    from bertnb import pretrain

    def cli(out, *more):
        return pretrain.main(["--corpus", "python-docs", "--steps", "4", "--eval-every", "2", "--out", str(out),
                              "--threads", "1", "--layers", "1", "--hidden", "16", "--heads", "2", "--ffn", "32",
                              "--max-len", "32", "--max-pred", "5", "--batch-size", "8", "--eval-examples", "16",
                              "--bf16", "off", *more])

    out = tmp_path / "run"
    metrics = cli(out)
    for name in ("checkpoint.pt", "model.safetensors", "vocab.txt", "metrics.json", "loss.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["steps"] == 4 and saved["command"].startswith("python -m bertnb.pretrain --corpus python-docs")
    assert set(saved["final"]) == {"step", "mlm_accuracy", "nsp_accuracy", "mlm_loss"}
    assert [h["step"] for h in saved["history"]] == [2, 4]
    assert saved["baselines"]["nsp_accuracy"] == 0.5
    assert saved["machine"]["torch_threads"] == 1 and saved["machine"]["cpu"]
    assert metrics["final"] == saved["final"]

    model, tokenizer, metadata = pretrain.load_run(out)
    assert len(tokenizer) == 30522 and model.cfg.hidden_size == 16 and "--steps 4" in metadata["command"]
    with pytest.raises(SystemExit):  # the folder holds a run now: no silent overwrite
        cli(out)

    # Stopped after step 3, then resumed by the command: the same losses, bit for bit.
    half = tmp_path / "half"
    assert cli(half, "--stop-at", "3")["steps"] == 3
    resumed = pretrain.main(["--resume", str(half / "checkpoint.pt"), "--out", str(half)])
    assert resumed["steps"] == 4 and resumed["history"] == saved["history"]

    def losses(run_dir):
        return torch.load(run_dir / "checkpoint.pt", weights_only=True)["extra"]["losses"]

    assert losses(half) == losses(out)

    # Published as a small float16 checkpoint folder; one over the size limit is refused before anything is written.
    published = pretrain.publish_run(out, tmp_path / "checkpoint")
    again, _, _ = pretrain.load_run(tmp_path / "checkpoint")
    assert next(again.parameters()).dtype == torch.float32
    assert abs(published["final_after_float16_storage"]["mlm_loss"] - saved["final"]["mlm_loss"]) < 0.01
    with pytest.raises(ValueError, match="over the 1,000-byte limit"):
        pretrain.publish_run(out, tmp_path / "too-big", max_bytes=1000)
    assert not (tmp_path / "too-big").exists()
