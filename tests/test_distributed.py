"""bertnb.distributed: 2 gloo processes on the CPU reproduce 1 process (same global batch, dropout 0), a run
resumes under a different number of processes, and a failed rank ends the run with a clear message and an
intact checkpoint. The ranks meet through a file:// rendezvous (no port to pick) over loopback; tiny model, 10
steps, one thread per process: seconds."""

import json
import os
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp

from bertnb import distributed
from bertnb.checkpoint import read_checkpoint
from tests.tiny import run, tiny_config, tiny_data as make_tiny_data, tiny_model

STEPS, HALF = 10, 5


def config(**changes):
    # dropout 0: each rank draws its own dropout masks, so only without dropout is the match exact
    return tiny_config(**{"total_steps": STEPS, "eval_every": HALF, "dropout": 0.0, **changes})


def _join(rank, world_size, store):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback only
    torch.set_num_threads(1)
    return distributed.init(rank, world_size, init_method=f"file://{store}", timeout_s=60)


def _two_rank_runs(rank, world_size, tmp):
    """Rank `rank` of the 2-process runs: a whole run, a run stopped half-way, and the resumption of a
    one-process half run. Rank 0 writes each run's losses to a JSON file."""
    ranks = _join(rank, world_size, f"{tmp}/store")
    data = make_tiny_data()
    V = len(data[2])
    whole = run(tiny_model(V, dropout=0.0), data, config(), ranks=ranks)
    half = run(tiny_model(V, dropout=0.0), data, config(), ranks=ranks, stop_at=HALF,
               checkpoint_path=f"{tmp}/ddp-half.pt")
    resumed = run(tiny_model(V, seed=5, dropout=0.0), data, config(), ranks=ranks, resume=f"{tmp}/one-half.pt")
    if ranks.is_main:
        with open(f"{tmp}/ddp.json", "w") as f:
            json.dump({"whole": whole["losses"], "half": half["losses"], "resumed": resumed["losses"],
                       "history": whole["history"]}, f)
    distributed.finish(ranks)


def _rank_1_dies(rank, world_size, tmp):
    """Rank 1 exits abruptly while preparing step 7 (after the checkpoint of step 6); rank 0 must stop with a
    clear message."""
    from bertnb import data as data_module

    ranks = _join(rank, world_size, f"{tmp}/store-fail")
    data = make_tiny_data()
    if rank == 1:
        real_make_batch, calls = data_module.make_batch, [0]

        def make_batch_then_die(*args, **kwargs):
            calls[0] += 1
            if calls[0] == 2 + 7:  # 2 held-out batches, then one per step
                os._exit(3)  # no clean-up at all, as a crash or an out-of-memory kill
            return real_make_batch(*args, **kwargs)

        data_module.make_batch = make_batch_then_die
    checkpoint = f"{tmp}/fail.pt"
    try:
        run(tiny_model(len(data[2]), dropout=0.0), data, config(eval_every=3), ranks=ranks,
            checkpoint_path=checkpoint)
    except Exception as err:  # what the command line does: one clear line, then exit
        assert distributed.is_communication_error(err), repr(err)
        distributed.exit_after_failure(err, ranks, checkpoint)
    sys.exit(0)


def _spawn(target, tmp):
    return mp.start_processes(target, args=(2, str(tmp)), nprocs=2, start_method="spawn", join=False)


@pytest.fixture(scope="module")
def tiny_data():
    return make_tiny_data()


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_two_processes_reproduce_one_process_and_resume_under_another_count(tiny_data, tmp_path):
    V = len(tiny_data[2])
    # the one-process half run that the two processes resume
    run(tiny_model(V, dropout=0.0), tiny_data, config(), stop_at=HALF, checkpoint_path=tmp_path / "one-half.pt")
    context = _spawn(_two_rank_runs, tmp_path)
    one = run(tiny_model(V, dropout=0.0), tiny_data, config())  # meanwhile, the reference in this process
    try:
        deadline = time.monotonic() + 300  # a limit against a hang, not a timing: passes on any machine
        while not context.join(timeout=10):  # True once every rank has ended; raises if one failed
            assert time.monotonic() < deadline, "the 2 ranks did not finish in 300 s"
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    ddp = json.loads((tmp_path / "ddp.json").read_text())

    def assert_same_losses(got, expected):
        assert [r["step"] for r in got] == [r["step"] for r in expected]
        for key in ("loss", "mlm_loss", "nsp_loss", "grad_norm", "lr"):
            assert [r[key] for r in got] == pytest.approx([r[key] for r in expected], rel=1e-5, abs=1e-5), key

    assert_same_losses(ddp["whole"], one["losses"])  # 2 processes == 1 process, every step
    assert ddp["half"] == ddp["whole"][:HALF]
    for got, expected in zip(ddp["history"], one["history"]):  # rank 0's held-out evaluations
        assert got == pytest.approx(expected, rel=1e-4, abs=1e-5)
    # 1 process half-way, then 2 processes to the end: the uninterrupted run's losses
    assert_same_losses(ddp["resumed"], one["losses"])
    # 2 processes half-way, then 1 process to the end
    resumed = run(tiny_model(V, seed=9, dropout=0.0), tiny_data, config(), resume=tmp_path / "ddp-half.pt")
    assert_same_losses(resumed["losses"], one["losses"])
    assert read_checkpoint(tmp_path / "ddp-half.pt")["step"] == HALF


def test_a_failed_rank_ends_the_run_with_a_message_and_an_intact_checkpoint(tmp_path, capfd):
    context = _spawn(_rank_1_dies, tmp_path)
    try:
        for process in context.processes:  # both ranks end, neither hangs (a collective times out after 60 s)
            process.join(timeout=120)
    finally:
        for process in context.processes:
            if process.is_alive():  # only if the test is failing: leave no process behind
                process.kill()
    assert [process.exitcode for process in context.processes] == [1, 3]  # rank 0: exit_after_failure's status
    err = capfd.readouterr().err
    assert "lost contact with another process" in err and "resume" in err
    assert read_checkpoint(tmp_path / "fail.pt")["step"] == 6  # the last one written, whole


def test_shard_takes_strided_rows_and_refuses_too_small_a_batch():
    indices = list(range(10, 17))
    assert distributed.shard(indices, distributed.Ranks(0, 2)) == [10, 12, 14, 16]
    assert distributed.shard(indices, distributed.Ranks(1, 2)) == [11, 13, 15]
    with pytest.raises(ValueError, match="a batch of 1 examples cannot be shared by 2 processes"):
        distributed.shard([3], distributed.Ranks(1, 2))


def test_shares_of_the_slot_count_rebuild_the_global_loss_a_plain_mean_does_not(tiny_data):
    """The arithmetic shard_weighted_losses relies on, in one process: shards of one batch, weighted by their
    share of the prediction slots (MLM) and of the examples (NSP), sum to the batch's losses."""
    from bertnb.data import batch_indices, make_batch
    from bertnb.train import pretraining_step_losses

    train_data, _, tokenizer = tiny_data
    model = tiny_model(len(tokenizer), dropout=0.0)

    def shard_slots(step):
        epoch, indices = batch_indices(len(train_data), 8, 3, step)
        return [make_batch(train_data, distributed.shard(indices, distributed.Ranks(r, 2)), epoch)["mlm_weights"]
                .sum().item() for r in range(2)]

    step = next(s for s in range(50) if len(set(shard_slots(s))) == 2)  # a batch whose shards differ
    epoch, indices = batch_indices(len(train_data), 8, 3, step)
    whole = pretraining_step_losses(model, make_batch(train_data, indices, epoch))
    mlm_parts, nsp_parts, rank_means = [], [], []
    slots = make_batch(train_data, indices, epoch)["mlm_weights"].sum()
    for rank in range(2):
        part = make_batch(train_data, distributed.shard(indices, distributed.Ranks(rank, 2)), epoch)
        losses = pretraining_step_losses(model, part)
        mlm_parts.append(part["mlm_weights"].sum() / slots * losses["mlm_loss"])
        nsp_parts.append(len(part["nsp_labels"]) / 8 * losses["nsp_loss"])
        rank_means.append(losses["mlm_loss"])
    torch.testing.assert_close(sum(mlm_parts), whole["mlm_loss"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sum(nsp_parts), whole["nsp_loss"], rtol=1e-5, atol=1e-6)
    assert abs(sum(rank_means) / 2 - whole["mlm_loss"]) > 1e-4  # the plain mean of the ranks' losses is off
