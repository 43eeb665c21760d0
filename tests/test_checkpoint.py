"""bertnb.checkpoint: round trip, atomic writes, weights_only loading, and a clear error for every damaged or
foreign file, raised before anything is overwritten."""

import os
import pickle

import pytest
import torch

from bertnb import checkpoint
from bertnb.checkpoint import CheckpointError
from bertnb.train import make_optimizer, warmup_linear_decay
from tests.tiny import tiny_model

V = 60


def test_checkpoint_round_trip(tmp_path):
    model = tiny_model(V)
    optimizer = make_optimizer(model)
    scheduler = warmup_linear_decay(optimizer, 2, 10)
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    checkpoint.save_checkpoint(tmp_path / "c.pt", model, optimizer, scheduler, step=1, extra={"note": [1.5, "x"]})

    other = tiny_model(V, seed=5)
    other_optimizer = make_optimizer(other)
    other_scheduler = warmup_linear_decay(other_optimizer, 2, 10)
    state = checkpoint.load_checkpoint(tmp_path / "c.pt", other, other_optimizer, other_scheduler)
    assert state["step"] == 1 and state["extra"] == {"note": [1.5, "x"]}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    assert other_scheduler.get_last_lr() == scheduler.get_last_lr()
    assert other.mlm.decoder_weight is other.bert.embeddings.token_embedding.weight  # still tied


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    model = tiny_model(V)
    path = tmp_path / "checkpoint.pt"
    checkpoint.save_checkpoint(path, model, step=1)
    before = path.read_bytes()

    def broken_write(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half a checkpoint")  # the crash comes after some bytes are already written
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        checkpoint.atomic_write(path, broken_write)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["checkpoint.pt"]  # no temp file left

    real_save = torch.save

    def save_then_crash(obj, f, *args, **kwargs):
        real_save({"partial": True}, f)
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of writing

    monkeypatch.setattr(torch, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(path, model, step=2)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["checkpoint.pt"]
    assert checkpoint.load_checkpoint(path, model)["step"] == 1


def test_checkpoints_load_with_weights_only(tmp_path, monkeypatch):
    model = tiny_model(V)
    path = tmp_path / "c.pt"
    checkpoint.save_checkpoint(path, model, make_optimizer(model), step=3)
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real_load(*a, **k))
    checkpoint.load_checkpoint(path, model)
    assert calls and calls[0].get("weights_only") is True


def test_safetensors_round_trip_and_float16_storage(tmp_path):
    model = tiny_model(V)
    checkpoint.save_weights(tmp_path / "m.safetensors", model, {"command": "test"})
    other = checkpoint.load_weights(tmp_path / "m.safetensors", tiny_model(V, seed=1))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))


# --------------------------------------------------------------------------------------------------------
# Damaged and foreign files: one table, each a clear error naming the file, and the model left untouched


class _Payload:
    def __reduce__(self):  # what a malicious pickle does: call something on load
        return (print, ("code ran while loading",))


def _truncated(tmp_path):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save_checkpoint(path, tiny_model(V), step=1)
    path.write_bytes(path.read_bytes()[:2000])
    return path


def _not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("these are my notes, not a checkpoint")
    return path


def _pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "step": 0, "payload": _Payload()}, path)
    return path


def _other_torch_file(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    return path


def _other_model(tmp_path):
    path = tmp_path / "bigger.pt"
    checkpoint.save_checkpoint(path, tiny_model(V + 10), step=1)  # another vocabulary: other embedding shape
    return path


def _newer_version(tmp_path):
    path = tmp_path / "future.pt"
    checkpoint.save_checkpoint(path, tiny_model(V), step=1)
    state = torch.load(path, weights_only=True)
    torch.save({**state, "version": checkpoint.CHECKPOINT_VERSION + 1}, path)
    return path


def _missing(tmp_path):
    return tmp_path / "nothing-here.pt"


@pytest.mark.parametrize("make, error, pattern", [
    (_truncated, CheckpointError, r"is damaged or not a bertnb checkpoint"),
    (_not_a_checkpoint, CheckpointError, r"is damaged or not a bertnb checkpoint"),
    (_pickled_code, CheckpointError, r"is damaged or not a bertnb checkpoint"),  # weights_only refuses it
    (_other_torch_file, CheckpointError, r"a torch file but not a bertnb checkpoint"),
    (_other_model, CheckpointError, r"weights of another model or vocabulary .*other shapes"),
    (_newer_version, CheckpointError, r"written by a newer bertnb"),
    (_missing, FileNotFoundError, r"no checkpoint at"),
], ids=lambda value: getattr(value, "__name__", "").strip("_") or None)
def test_damaged_or_foreign_checkpoint_is_refused_clearly(make, error, pattern, tmp_path, capsys):
    path = make(tmp_path)
    model = tiny_model(V, seed=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(error, match=pattern) as info:
        checkpoint.load_checkpoint(path, model)
    assert str(path) in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert "code ran" not in capsys.readouterr().out


def _safetensors_without_config(tmp_path):
    path = tmp_path / "model.safetensors"
    checkpoint.save_weights(path, tiny_model(V))  # no metadata: no config to rebuild the model from
    return path


def _damaged_safetensors(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x00" * 64)
    return path


def _vocab_of_another_run(tmp_path):
    import json
    from dataclasses import asdict

    model = tiny_model(V)
    checkpoint.save_weights(tmp_path / "model.safetensors", model, {"config": json.dumps(asdict(model.cfg))})
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]))
    return tmp_path


@pytest.mark.parametrize("make, pattern", [
    (_safetensors_without_config, r"no model config in its metadata"),
    (_damaged_safetensors, r"damaged or not a safetensors file"),
    (_vocab_of_another_run, r"vocab.txt has 7 tokens but .* V = 60"),
], ids=lambda value: getattr(value, "__name__", "").strip("_") or None)
def test_damaged_or_foreign_run_folder_is_refused_clearly(make, pattern, tmp_path):
    with pytest.raises(CheckpointError, match=pattern):
        checkpoint.load_run(make(tmp_path))


def test_pickle_is_never_trusted(tmp_path):
    with pytest.raises(CheckpointError) as info:
        checkpoint.read_checkpoint(_pickled_code(tmp_path))
    assert isinstance(info.value.__context__, pickle.UnpicklingError) or "weights_only" in str(info.value) \
        or "Unpickling" in str(info.value)
