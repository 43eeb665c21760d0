"""bertnb.pretrain's PretrainConfig and command line, and bertnb.timing's step planning (with a fake clock)."""

import json

import pytest
import torch

from bertnb import pretrain, timing
from bertnb.pretrain import PretrainConfig


# --------------------------------------------------------------------------------------------------------
# One run configuration


@pytest.mark.parametrize("changes, error, pattern", [
    ({"layers": 0}, ValueError, r"layers must be an int in \[1, 48\], got 0"),
    ({"layers": True}, TypeError, r"layers must be an int"),  # bool is not an int here
    ({"batch_size": 2.0}, TypeError, r"batch_size must be an int"),
    ({"hidden": 251}, ValueError, r"hidden 251 must be divisible by heads 2"),
    ({"max_pred": 70}, ValueError, r"max_pred must be an int in \[1, 61\]"),
    ({"lr": 0.0}, ValueError, r"lr must be a number in \(0.0, 1.0\]"),
    ({"lr": float("nan")}, ValueError, r"lr must be a finite number"),
    ({"corpus": "klingon"}, ValueError, r"corpus must be one of 'python-docs', 'peoples-daily'"),
    ({"bf16": "maybe"}, ValueError, r"bf16 must be one of 'auto', 'on', 'off'"),
    ({"init_mlm_bias": 1}, TypeError, r"init_mlm_bias must be True or False"),
])
def test_config_rejects_bad_values(changes, error, pattern):
    with pytest.raises(error, match=pattern):
        PretrainConfig(**changes)


def test_config_reads_what_older_versions_saved():
    old = {"corpus": "python-docs", "seed": 0, "batch_size": 32, "max_len": 64, "max_pred": 10, "layers": 4,
           "hidden": 128, "heads": 2, "ffn": 512, "lr": 0.001, "warmup_frac": 0.06, "dropout": 0.1,
           "init_mlm_bias": "off", "bf16": "auto", "eval_every": None, "eval_examples": 512,
           "held_out_fraction": 0.1, "weight_decay": 0.01, "clip_norm": 1.0, "total_steps": 3918, "threads": 1}
    cfg = PretrainConfig.from_dict(old)
    assert cfg.init_mlm_bias is False and cfg.total_steps == 3918 and cfg.schedule == "warmup-linear"


def test_the_committed_checkpoints_still_load():
    from bertnb.resources import checkpoint_dir

    for name, V in (("en", 4000), ("zh", 4120)):
        model, tokenizer, metadata = pretrain.load_run(checkpoint_dir(name))
        assert len(tokenizer) == model.cfg.vocab_size == V and "command" in metadata


# --------------------------------------------------------------------------------------------------------
# Planning steps from a time budget: a pure function of the timings, tested with a fake clock


def test_interleaved_seconds_with_a_fake_clock():
    now = [0.0]
    costs = {"a": [5.0, 1.0, 2.0, 3.0], "b": [9.0, 4.0, 4.0, 4.0]}  # the first round pays one-off costs

    def clock():
        return now[0]

    def step(name):
        return lambda round_: now.__setitem__(0, now[0] + costs[name][round_])

    assert timing.interleaved_seconds({"a": step("a"), "b": step("b")}, rounds=4, clock=clock) == {"a": 2.0, "b": 4.0}


def test_plan_steps_sets_the_evaluations_aside():
    # 60 s, 0.5 s a step, five evaluations of 1 s plus a 1 s checkpoint each: (60 - 10) / 0.5 = 100 steps
    assert timing.plan_steps(1.0, 0.5, eval_seconds=1.0, checkpoint_seconds=1.0) == 100
    # an evaluation every 30 of the ~120 rough steps: 4 of them
    assert timing.plan_steps(1.0, 0.5, 1.0, 1.0, eval_every=30) == 104
    assert timing.plan_steps(0.001, 0.5, 1.0, 1.0) == 1  # a budget shorter than the evaluations: still 1 step
    with pytest.raises(ValueError, match="minutes must be a number > 0"):
        timing.steps_in_budget(0.5, 0)


# --------------------------------------------------------------------------------------------------------
# The command line


@pytest.mark.parametrize("argv, message", [
    (["--minutes", "0"], "--minutes 0.0 is out of range: allowed (0, 1440]"),
    (["--minutes", "5", "--layers", "0"], "layers must be an int in [1, 48], got 0"),
    (["--minutes", "5", "--hidden", "251"], "hidden 251 must be divisible by heads 2"),
    (["--minutes", "5", "--max-pred", "70"], "max-pred must be an int in [1, 61], got 70"),
    (["--minutes", "5", "--lr", "-0.1"], "lr must be a number in (0.0, 1.0], got -0.1"),
    (["--minutes", "5", "--warmup-frac", "0.9"], "warmup-frac must be a number in [0.0, 0.5], got 0.9"),
    (["--minutes", "5", "--batch-size", "0"], "batch-size must be an int in [1, 4096], got 0"),
    (["--minutes", "5", "--threads", "many"], "--threads must be an int"),
    (["--minutes", "5", "--bf16", "maybe"], "invalid choice: 'maybe'"),
    (["--minutes", "5", "--device", "tpu"], "invalid choice: 'tpu'"),
    (["--total-steps", "0"], "total-steps must be an int in [1, 10000000], got 0"),
    ([], "give a budget: --minutes M (wall clock) or --total-steps N"),
])
def test_cli_rejects_bad_arguments_before_any_work(argv, message, tmp_path, capsys, monkeypatch):
    from bertnb import data

    monkeypatch.setattr(data, "build_pretraining_data", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(SystemExit) as exit_info:
        pretrain.main(["--corpus", "python-docs", "--out", str(tmp_path / "run"), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cli_rejects_an_unknown_corpus_and_a_missing_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit):
        pretrain.main(["--corpus", "klingon", "--minutes", "1", "--out", str(tmp_path)])
    assert "corpus must be one of 'python-docs', 'peoples-daily' or the path of a UTF-8 text file or folder of " \
           "them; got 'klingon' (no such file or folder)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        pretrain.main(["--resume", str(tmp_path / "nope.pt"), "--out", str(tmp_path)])
    assert "no checkpoint at" in capsys.readouterr().err


def test_cli_end_to_end_on_the_real_english_corpus(tmp_path):
    def cli(out, *more):
        return pretrain.main(["--corpus", "python-docs", "--total-steps", "4", "--eval-every", "2", "--out",
                              str(out), "--threads", "1", "--layers", "1", "--hidden", "16", "--heads", "2",
                              "--ffn", "32", "--max-len", "32", "--max-pred", "5", "--batch-size", "8",
                              "--eval-examples", "16", "--bf16", "off", "--device", "cpu", *more])

    out = tmp_path / "run"
    metrics = cli(out)
    for name in ("checkpoint.pt", "model.safetensors", "vocab.txt", "metrics.json", "loss.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["steps"] == 4 and saved["command"].startswith("python -m bertnb.pretrain --corpus python-docs")
    assert {"step", "mlm_accuracy", "nsp_accuracy", "mlm_loss", "mlm_accuracy_mask", "mlm_loss_mask",
            "mlm_share_mask", "mlm_accuracy_unchanged", "mlm_accuracy_random"} <= set(saved["final"])
    assert saved["final"]["mlm_share_mask"] + saved["final"]["mlm_share_random"] + \
        saved["final"]["mlm_share_unchanged"] == pytest.approx(1.0)
    assert {"mlm_two_sided_mask_accuracy", "mlm_left_bigram_mask_accuracy", "nsp_text_blind_accuracy",
            "mlm_unigram_heldout_cross_entropy"} <= set(saved["baselines"])  # the rivals, in metrics.json
    assert [h["step"] for h in saved["history"]] == [2, 4] and saved["baselines"]["nsp_accuracy"] == 0.5
    assert saved["machine"]["torch_threads"] == 1 and saved["machine"]["device"] == "cpu"
    assert metrics["final"] == saved["final"]

    model, tokenizer, metadata = pretrain.load_run(out)
    assert len(tokenizer) == 30522 and model.cfg.hidden_size == 16 and "--total-steps 4" in metadata["command"]
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

    # Killed after its last checkpoint but before its files were written: resuming trains no step and writes them.
    (half / "model.safetensors").unlink()
    finished = pretrain.main(["--resume", str(half / "checkpoint.pt"), "--out", str(half)])
    assert finished["steps"] == 4 and finished["history"] == saved["history"] and losses(half) == losses(out)
    rewritten = pretrain.load_run(half)[0].state_dict()
    assert all(torch.equal(rewritten[k], v) for k, v in model.state_dict().items())  # the weights of the full run
    with pytest.raises(SystemExit, match="already at step 4, past step 3"):  # a checkpoint cannot go back
        pretrain.main(["--resume", str(half / "checkpoint.pt"), "--out", str(half), "--stop-at", "3"])

    # Published as a small float16 checkpoint folder; one over the size limit is refused before anything is written.
    published = pretrain.publish_run(out, tmp_path / "checkpoint")
    again, _, _ = pretrain.load_run(tmp_path / "checkpoint")
    assert next(again.parameters()).dtype == torch.float32
    assert abs(published["final_after_float16_storage"]["mlm_loss"] - saved["final"]["mlm_loss"]) < 0.01
    with pytest.raises(ValueError, match="over the 1,000-byte limit"):
        pretrain.publish_run(out, tmp_path / "too-big", max_bytes=1000)
    assert not (tmp_path / "too-big").exists()


def test_the_position_table_can_start_sinusoidal_and_stays_learned():
    from bertnb.model import BertConfig, BertForPreTraining, sinusoidal_table

    model = BertForPreTraining(BertConfig(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2, ffn_size=32,
                                          max_len=32))
    pretrain.init_positions_sinusoidal(model, 0.1)
    table = model.bert.embeddings.position_embedding.weight  # [32, 16]
    assert table.std().item() == pytest.approx(0.1, rel=1e-4) and table.requires_grad
    expected = sinusoidal_table(32, 16)
    assert torch.allclose(table, expected / expected.std() * 0.1)
    with pytest.raises(ValueError, match="sinusoidal_positions needs an even hidden size"):
        PretrainConfig(hidden=15, heads=1, sinusoidal_positions=0.1)
    with pytest.raises(ValueError, match=r"sinusoidal_positions must be a number in \[0.0, 10.0\]"):
        PretrainConfig(sinusoidal_positions=-0.1)


def test_cli_fits_a_wordpiece_to_a_built_in_corpus_and_resumes_exactly(tmp_path):
    """--corpus python-docs --vocab wordpiece reads the built-in corpus as text (bertnb.corpus.write_corpus_text);
    a resumed run does not start the position table again."""
    from bertnb.metrics import evaluate


    def cli(out, *more):
        return pretrain.main(["--corpus", "python-docs", "--vocab", "wordpiece", "--vocab-size", "300",
                              "--sinusoidal-positions", "0.1", "--dropout", "0", "--cache-dir", str(tmp_path / "cache"),
                              "--total-steps", "4", "--eval-every", "2", "--out", str(out), "--threads", "1",
                              "--layers", "1", "--hidden", "16", "--heads", "2", "--ffn", "32", "--max-len", "32",
                              "--max-pred", "5", "--batch-size", "8", "--eval-examples", "16", "--bf16", "off",
                              "--device", "cpu", *more])

    full = cli(tmp_path / "full")
    model, tokenizer, metadata = pretrain.load_run(tmp_path / "full")
    assert len(tokenizer) == model.cfg.vocab_size <= 300 and "--vocab wordpiece" in metadata["command"]
    assert (tmp_path / "cache" / "python-docs.txt").is_file()
    # The folder alone rebuilds the held-out slots the run was scored on (its vocabulary read from vocab.txt).
    assert pretrain.saved_run_config(tmp_path / "full").vocab == str(tmp_path / "full" / "vocab.txt")
    _, batches, data_tokenizer = pretrain.run_heldout_batches(tmp_path / "full", tmp_path / "cache")
    assert data_tokenizer.vocab == tokenizer.vocab
    again = evaluate(model, batches, mask_id=tokenizer.mask_id)
    assert again["mlm_loss"] == pytest.approx(full["final"]["mlm_loss"], abs=1e-5)
    assert again["nsp_accuracy"] == full["final"]["nsp_accuracy"]
    cli(tmp_path / "half", "--stop-at", "2")
    resumed = pretrain.main(["--resume", str(tmp_path / "half" / "checkpoint.pt"), "--out", str(tmp_path / "half")])
    assert resumed["history"] == full["history"]
