"""bertnb against Hugging Face transformers on this CPU, side by side in one run.

    python benchmarks/pretrain_step.py                        # the full run, a few minutes on 2 cores
    python benchmarks/pretrain_step.py --quick                # smoke run: 1 repetition, 1 warm-up
    python benchmarks/pretrain_step.py --configs 4x256 --reps 9 --json bench.json

What it times (benchmarks/README.md says more):

1. a pretraining train step (loss + backward + AdamW step) of our `BertForPreTraining` and of
   `transformers.BertForPreTraining`, same config, same weights (HF's random init loaded into ours), float32,
   dropout 0.1 in both (hidden and attention), V = 30,522, B = 32, m = 128, p = 20, the same batch. HF runs SDPA
   attention, which with dropout on the CPU is torch's math path (no fused CPU kernel has dropout). Ours computes
   the losses as bertnb.train.train_step does, with `bertnb.fastpath.pretraining_losses` on the plain model: the
   same attention written out with a cheaper dropout mask, the last layer only where the losses read, the fused
   MLM loss. Ablation rows turn each of the three off in turn, and one runs the plain model and the chapters'
   losses (`bertnb.losses.pretraining_loss`);
2. a forward pass at all-MiniLM-L6-v2 size (6 layers, 384 hidden), `torch.inference_mode()`, a padded batch;
3. the GFLOP/s each reaches, as a share of a 2048 x 2048 float32 GEMM timed in the same run;
4. where the CPU has native bfloat16, the train step under `torch.autocast("cpu", dtype=torch.bfloat16)`.

Before timing, both models must give the same step-0 loss on the timed batch (dropout off), and on a tiny config
the same gradient for every weight and the same loss after one AdamW step: the two timed steps compute the same
thing. Repetitions are interleaved (ours, HF, ours, HF, ...) so a busy neighbour slows both alike; medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a checkout without `pip install -e .`

from bertnb.fastpath import pretraining_losses  # noqa: E402
from bertnb.losses import pretraining_loss  # noqa: E402
from bertnb.model import BertForPreTraining, BertModel  # noqa: E402
from bertnb.notebook import cpu_has_bf16  # noqa: E402
from bertnb.pretrained import config_from_hf, hf_to_ours_name, load_hf_state_dict  # noqa: E402

VOCAB, BATCH, SEQ_LEN, PRED = 30522, 32, 128, 20  # V, B, m, p
DROPOUT = 0.1  # BERT's and bertnb.pretrain's default; the same in both models (hidden and attention dropout)
# AdamW as BERT's recipe and bertnb/train.py: the same hyper-parameters for every model timed here,
# no weight decay on biases and LayerNorm parameters.
ADAMW = dict(lr=1e-4, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01)

TRAIN_CONFIGS = {"2x128": (2, 128, 2, 512), "4x256": (4, 256, 4, 1024)}  # name -> (layers, hidden, heads, ffn)
MINILM = (6, 384, 12, 1536)
LOSS_KEYS = ("tokens", "segments", "valid_lens", "pred_positions", "mlm_labels", "mlm_weights", "nsp_labels")
TARGETS = {"4x256": 3.5}  # HF / ours, train step, same optimizer: the course's promise on 2 cores
INFERENCE_TARGET = 0.97  # HF / ours: ours not slower


# ---------------------------------------------------------------------------------------------------------
# The two models and one batch


def hf_config(layers, hidden, heads, ffn, vocab=VOCAB, dropout=DROPOUT, max_len=512):
    import transformers

    return transformers.BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                                   num_attention_heads=heads, intermediate_size=ffn, max_position_embeddings=max_len,
                                   hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                                   attn_implementation="sdpa")


def make_pretraining_pair(layers, hidden, heads, ffn, vocab=VOCAB, dropout=DROPOUT, seed=0):
    """(ours, hf): two BertForPreTraining with the same config and the same weights (HF's random init)."""
    import transformers

    torch.manual_seed(seed)
    hf = transformers.BertForPreTraining(hf_config(layers, hidden, heads, ffn, vocab, dropout))
    assert hf.config._attn_implementation == "sdpa"
    ours = BertForPreTraining(config_from_hf(hf.config.to_dict()))
    load_hf_state_dict(ours, hf.state_dict())
    assert ours.cfg.dropout == hf.config.hidden_dropout_prob == hf.config.attention_probs_dropout_prob
    return ours.train(), hf.train()


def make_encoder_pair(layers, hidden, heads, ffn, vocab=VOCAB, seed=0):
    """(ours, hf): two BertModel (encoder + pooler) with the same weights, in eval mode."""
    import transformers

    torch.manual_seed(seed)
    hf = transformers.BertModel(hf_config(layers, hidden, heads, ffn, vocab)).eval()
    ours = BertModel(config_from_hf(hf.config.to_dict())).eval()
    load_hf_state_dict(ours, hf.state_dict())
    return ours, hf


def make_batch(vocab=VOCAB, B=BATCH, m=SEQ_LEN, p=PRED, seed=1, short_prob=0.1, min_len=None):
    """A pretraining batch in both forms: ours (valid_lens, pred_positions, mlm_weights) and HF's
    (attention_mask; labels = -100 except at the p predicted positions).

    Like BERT's (and bertnb.data's) examples, most rows fill all m positions; a share `short_prob` of them,
    and always the last row, is shorter and padded, so both models run their padding masks."""
    g = torch.Generator().manual_seed(seed)
    min_len = min_len or max(m // 2, p + 1)
    assert p < min_len <= m, f"need p < min_len <= m for p distinct positions after <cls>, got {p}, {min_len}, {m}"
    valid_lens = torch.full((B,), m)  # [B]
    short = torch.rand(B, generator=g) < short_prob
    short[-1] = True
    valid_lens[short] = torch.randint(min_len, m, (int(short.sum()),), generator=g)
    tokens = torch.randint(5, vocab, (B, m), generator=g)  # [B, m]
    segments = torch.zeros(B, m, dtype=torch.long)  # [B, m]
    pred_positions = torch.empty(B, p, dtype=torch.long)  # [B, p]
    for i, v in enumerate(valid_lens.tolist()):
        tokens[i, v:] = 0  # <pad>
        segments[i, v // 2:v] = 1  # the second sentence
        pred_positions[i] = (1 + torch.randperm(v - 1, generator=g)[:p]).sort().values  # distinct, never <cls>
    mlm_labels = torch.randint(5, vocab, (B, p), generator=g)  # [B, p]
    nsp_labels = torch.randint(0, 2, (B,), generator=g)  # [B]
    attention_mask = (torch.arange(m)[None, :] < valid_lens[:, None]).long()  # [B, m], 1 = real token
    labels = torch.full((B, m), -100, dtype=torch.long)  # [B, m], -100 = not predicted
    labels.scatter_(1, pred_positions, mlm_labels)
    return dict(tokens=tokens, segments=segments, valid_lens=valid_lens, pred_positions=pred_positions,
                mlm_labels=mlm_labels, mlm_weights=torch.ones(B, p), nsp_labels=nsp_labels,
                attention_mask=attention_mask, labels=labels)


# ---------------------------------------------------------------------------------------------------------
# Losses, optimizer, the train step. `ours_loss` is what bertnb.train.train_step runs; the benchmark's
# `make_optimizer` gives both models the same AdamW.


def ours_loss(model, batch, **switches):
    """MLM + NSP as bertnb.train.train_step computes them: `bertnb.fastpath.pretraining_losses`. `switches`
    (cheap_dropout, last_layer_at_read_positions, fused_loss: all True by default) turn one speed-up off."""
    mlm, nsp = pretraining_losses(model, **{key: batch[key] for key in LOSS_KEYS}, **switches)
    return mlm + nsp


def ours_loss_torch_dropout(model, batch):
    """Ablation: torch's dropout mask (one 64-bit random draw per element) instead of the fast path's."""
    return ours_loss(model, batch, cheap_dropout=False)


def ours_loss_full_last_layer(model, batch):
    """Ablation: the last encoder layer at all m positions, not only at the 1 + p the losses read."""
    return ours_loss(model, batch, last_layer_at_read_positions=False)


def ours_loss_unfused(model, batch):
    """Ablation: F.linear to the [B, p, V] logits, then bertnb.losses.mlm_loss (F.cross_entropy)."""
    return ours_loss(model, batch, fused_loss=False)


def ours_loss_plain(model, batch):
    """Ablation: the plain model's forward (nn.Dropout, SDPA) and the chapters' losses, none of the three."""
    return pretraining_loss(model, batch)["loss"]


def hf_loss(model, batch):
    """HF computes its own loss: logits for all m positions, cross-entropy where labels != -100, + NSP."""
    return model(input_ids=batch["tokens"], attention_mask=batch["attention_mask"],
                 token_type_ids=batch["segments"], labels=batch["labels"],
                 next_sentence_label=batch["nsp_labels"]).loss


def make_optimizer(model, fused: bool = False):
    """AdamW with the shared hyper-parameters; no weight decay on 1-D parameters (biases, LayerNorm).

    fused=False is torch's default on the CPU (a Python loop over the tensors; foreach=True is no faster on the
    CPU); fused=True updates every parameter in one kernel, and is what HF's Trainer picks on torch >= 2.8."""
    params = [p for p in model.parameters() if p.requires_grad]  # the tied embedding/decoder weight once
    groups = [{"params": [p for p in params if p.dim() >= 2]},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, fused=fused, **ADAMW)


def train_step(model, optimizer, batch, loss_fn=ours_loss, autocast_dtype=None):
    """One pretraining step: zero the gradients, loss, backward, AdamW step. Returns the (detached) loss."""
    optimizer.zero_grad(set_to_none=True)  # drop the gradients; backward writes fresh ones (no zero-fill pass)
    with torch.autocast("cpu", dtype=autocast_dtype) if autocast_dtype else nullcontext():
        loss = loss_fn(model, batch)
    loss.backward()
    optimizer.step()
    return loss.detach()


# ---------------------------------------------------------------------------------------------------------
# The two setups compute the same thing


def check_step0_loss(ours, hf, batch, atol=1e-4):
    """The same loss from both on `batch` with dropout off (eval mode); returns (ours, HF)."""
    modes = ours.training, hf.training
    ours.eval(), hf.eval()
    with torch.no_grad():
        loss_ours, loss_hf = ours_loss(ours, batch).item(), hf_loss(hf, batch).item()
    ours.train(modes[0]), hf.train(modes[1])
    assert abs(loss_ours - loss_hf) <= atol, f"step-0 loss: ours {loss_ours} vs HF {loss_hf}"
    return loss_ours, loss_hf


def check_same_computation(layers=2, hidden=32, heads=2, ffn=64, vocab=200, B=4, m=24, p=5, atol=1e-4, seed=0):
    """Both models with the same weights, dropout off, one batch: asserts the same step-0 loss, the same
    gradient for every weight, and the same loss after one AdamW step. Returns (ours, HF) step-0 losses."""
    ours, hf = make_pretraining_pair(layers, hidden, heads, ffn, vocab, seed=seed)
    ours.eval(), hf.eval()
    batch = make_batch(vocab, B, m, p, seed=seed + 1)
    loss_ours, loss_hf = check_step0_loss(ours, hf, batch, atol)
    opt_ours, opt_hf = make_optimizer(ours), make_optimizer(hf)
    train_step(ours, opt_ours, batch, ours_loss)
    train_step(hf, opt_hf, batch, hf_loss)
    # every HF parameter's gradient against ours under the HF -> ours name map (the decoder is the embedding)
    ours_params = dict(ours.named_parameters())
    checked = 0
    for name, param in hf.named_parameters():
        ours_name = hf_to_ours_name(name, layers)
        if ours_name is None or param.grad is None:
            continue
        torch.testing.assert_close(ours_params[ours_name].grad, param.grad, atol=atol, rtol=1e-3, msg=name)
        checked += 1
    assert checked == len(ours_params), f"compared {checked} gradients, ours has {len(ours_params)} parameters"
    check_step0_loss(ours, hf, batch, atol)  # after one AdamW step: the optimizers agree too
    return loss_ours, loss_hf


# ---------------------------------------------------------------------------------------------------------
# Timing and FLOP counting


def interleaved_times(fns: dict, reps: int, warmup: int) -> dict:
    """Runs every fn `warmup` times, then `reps` rounds of each fn in turn; returns {name: [seconds, ...]}."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def _cpu_flash_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_flash_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def count_flops(fn) -> int:
    """FLOPs of the matrix products and attention one call of fn runs, by torch's FlopCounterMode (taught the
    CPU flash-attention kernel, which it does not count by itself; SDPA's math path counts as its bmm)."""
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    mapping = {aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_flops,
               aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return counter.get_total_flops()


def gemm_gflops(size=2048, reps=10) -> float:
    """GFLOP/s of a size x size float32 matrix product, median of reps: what this CPU reaches at best."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size ** 3 / statistics.median(times) / 1e9


# ---------------------------------------------------------------------------------------------------------
# The benchmarks: each returns rows {bench, variant, who, ms, times_ms, flops}


def bench_train(name, dims, reps, warmup, bf16: bool, dropout=DROPOUT, extra_dropout=None):
    ours, hf = make_pretraining_pair(*dims, dropout=dropout)
    batch = make_batch()
    check_step0_loss(ours, hf, batch)
    opt = {(who, fused): make_optimizer(model, fused) for who, model in (("ours", ours), ("HF", hf))
           for fused in (False, True)}
    variants = {  # label -> (who, model, loss, optimizer, autocast dtype); interleaved in this order
        "ours, AdamW (torch default)": ("ours", ours, ours_loss, opt["ours", False], None),
        "HF, AdamW (torch default)": ("HF", hf, hf_loss, opt["HF", False], None),
        "ours, fused AdamW": ("ours", ours, ours_loss, opt["ours", True], None),
        "HF, fused AdamW": ("HF", hf, hf_loss, opt["HF", True], None),
        "ours, fused AdamW, last layer at all m": ("ours", ours, ours_loss_full_last_layer, opt["ours", True], None),
        "ours, fused AdamW, unfused MLM loss": ("ours", ours, ours_loss_unfused, opt["ours", True], None),
        "ours, fused AdamW, torch's dropout mask": ("ours", ours, ours_loss_torch_dropout, opt["ours", True], None),
        "ours, fused AdamW, plain model + chapters' losses": ("ours", ours, ours_loss_plain, opt["ours", True], None),
    }
    if bf16:
        variants["ours, fused AdamW, bf16 autocast"] = ("ours", ours, ours_loss, opt["ours", True], torch.bfloat16)
        variants["HF, fused AdamW, bf16 autocast"] = ("HF", hf, hf_loss, opt["HF", True], torch.bfloat16)
    if extra_dropout is not None and extra_dropout != dropout:  # the same pair with another dropout in both
        ours2, hf2 = make_pretraining_pair(*dims, dropout=extra_dropout)
        variants[f"ours, fused AdamW, dropout {extra_dropout}"] = (
            "ours", ours2, ours_loss, make_optimizer(ours2, fused=True), None)
        variants[f"HF, fused AdamW, dropout {extra_dropout}"] = (
            "HF", hf2, hf_loss, make_optimizer(hf2, fused=True), None)
    fns = {label: (lambda v=v: train_step(v[1], v[3], batch, v[2], v[4])) for label, v in variants.items()}
    # FLOPs of forward + backward in float32 (the optimizer's elementwise work is not counted)
    flops = {"ours": count_flops(lambda: ours_loss(ours, batch).backward()),
             "HF": count_flops(lambda: hf_loss(hf, batch).backward())}
    ours.zero_grad(set_to_none=True), hf.zero_grad(set_to_none=True)
    times = interleaved_times(fns, reps, warmup)
    return [dict(bench=f"train {name}", variant=label, who=variants[label][0], times_ms=[1e3 * t for t in ts],
                 ms=1e3 * statistics.median(ts), flops=flops[variants[label][0]]) for label, ts in times.items()]


def bench_inference(reps, warmup):
    ours, hf = make_encoder_pair(*MINILM)
    batch = make_batch(p=0, short_prob=1.0, min_len=16, seed=2)  # sentences of 16 to 128 tokens, padded to 128
    batch["valid_lens"][0], batch["attention_mask"][0] = SEQ_LEN, 1  # one full row sets m

    def ours_forward():
        with torch.inference_mode():
            X = ours(batch["tokens"], batch["segments"], batch["valid_lens"])  # [B, m, n]
            return X, ours.pool(X)  # the pooler too, as HF's BertModel computes it

    def hf_forward():
        with torch.inference_mode():
            out = hf(input_ids=batch["tokens"], attention_mask=batch["attention_mask"],
                     token_type_ids=batch["segments"])
            return out.last_hidden_state, out.pooler_output

    (X, pooled), (ref, ref_pooled) = ours_forward(), hf_forward()
    real = batch["attention_mask"].bool()
    assert (X - ref)[real].abs().max() < 1e-4 and (pooled - ref_pooled).abs().max() < 1e-4, "outputs differ"
    flops = {"ours": count_flops(ours_forward), "HF": count_flops(hf_forward)}
    times = interleaved_times({"ours": ours_forward, "HF": hf_forward}, reps, warmup)
    return [dict(bench="inference MiniLM-L6", variant=f"{who}, forward", who=who, times_ms=[1e3 * t for t in ts],
                 ms=1e3 * statistics.median(ts), flops=flops[who]) for who, ts in times.items()]


# ---------------------------------------------------------------------------------------------------------
# Report


def environment() -> dict:
    import transformers

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "torch threads": torch.get_num_threads(),
            "cpu count": os.cpu_count(), "cpu": cpu, "cpu capability": torch.backends.cpu.get_cpu_capability(),
            "native bf16 (avx512_bf16 / amx_bf16)": cpu_has_bf16(), "load average at start": load_average()}


def keep_freed_memory() -> str:
    """Asks glibc's malloc to keep freed memory for reuse: no mmap for big blocks, no trimming of the heap.
    By default every block over 32 MB (and many smaller ones) is handed back to the OS when freed and the next
    one is page-faulted in again, which costs about 1 ms per MB on some virtual machines."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1) == 1
    except (OSError, AttributeError):
        ok = False
    return "glibc mallopt: freed memory kept for reuse" if ok else "glibc defaults (mallopt unavailable)"


def load_average() -> str:
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "unknown"


def ratios(rows):
    """(bench, comparison, slower / faster) for the pairs worth reading; > 1 means the second is faster."""
    ms = {(r["bench"], r["variant"]): r["ms"] for r in rows}
    pairs = [
        ("HF, AdamW (torch default)", "ours, AdamW (torch default)", "HF / ours, same optimizer: torch default AdamW"),
        ("HF, fused AdamW", "ours, fused AdamW", "HF / ours, same optimizer: fused AdamW"),
        ("HF, AdamW (torch default)", "ours, fused AdamW",
         "HF torch-default AdamW / ours fused AdamW (our optimizer choice counted as our speed)"),
        ("ours, fused AdamW, last layer at all m", "ours, fused AdamW",
         "ours: last layer at all m / at the read positions (what the last layer at 1 + p positions gives)"),
        ("ours, fused AdamW, unfused MLM loss", "ours, fused AdamW",
         "ours: F.linear + F.cross_entropy / fused MLM loss (what the fused loss gives)"),
        ("ours, fused AdamW, torch's dropout mask", "ours, fused AdamW",
         "ours: torch's dropout mask / the cheaper mask (what the cheaper mask gives)"),
        ("ours, fused AdamW, plain model + chapters' losses", "ours, fused AdamW",
         "ours: plain model + chapters' losses / fast path (what bertnb.fastpath gives in all)"),
        ("ours, AdamW (torch default)", "ours, fused AdamW", "ours: torch default / fused AdamW"),
        ("HF, fused AdamW, bf16 autocast", "ours, fused AdamW, bf16 autocast", "HF / ours, bf16 autocast, fused AdamW"),
        ("ours, fused AdamW", "ours, fused AdamW, bf16 autocast", "ours: float32 / bf16 autocast"),
        ("HF, fused AdamW", "HF, fused AdamW, bf16 autocast", "HF: float32 / bf16 autocast"),
        ("HF, forward", "ours, forward", "HF / ours, forward in inference_mode"),
    ]
    for label in dict.fromkeys(r["variant"] for r in rows):
        if label.startswith("ours, fused AdamW, dropout "):
            drop = label.rsplit(" ", 1)[1]
            pairs.insert(2, (f"HF, fused AdamW, dropout {drop}", label,
                             f"HF / ours, same optimizer: fused AdamW, dropout {drop} in both"))
    out = []
    for bench in dict.fromkeys(r["bench"] for r in rows):
        for slow, fast, what in pairs:
            if (bench, slow) in ms and (bench, fast) in ms:
                out.append((bench, what, ms[(bench, slow)] / ms[(bench, fast)]))
    return out


def target_lines(rows):
    ms = {(r["bench"], r["variant"]): r["ms"] for r in rows}
    lines = []
    for name, target in TARGETS.items():
        bench = f"train {name}"
        suffixes = ["AdamW (torch default)", "fused AdamW"] + [
            v.removeprefix("ours, ") for b, v in ms if b == bench and v.startswith("ours, fused AdamW, dropout ")]
        for suffix in suffixes:
            key_hf, key_ours = (bench, f"HF, {suffix}"), (bench, f"ours, {suffix}")
            if key_hf in ms and key_ours in ms:
                r = ms[key_hf] / ms[key_ours]
                lines.append(f"{bench}, same setup in both ({suffix}): HF / ours = {r:.2f}× "
                             f"(target ≥ {target}×: {'met' if r >= target else 'NOT met'})")
    key = ("inference MiniLM-L6", "HF, forward"), ("inference MiniLM-L6", "ours, forward")
    if key[0] in ms and key[1] in ms:
        r = ms[key[0]] / ms[key[1]]
        lines.append(f"inference MiniLM-L6: HF / ours = {r:.2f}× (target ≥ {INFERENCE_TARGET}×: "
                     f"{'met' if r >= INFERENCE_TARGET else 'NOT met'})")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per variant (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per variant first (default 2)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repetition, 1 warm-up")
    parser.add_argument("--configs", default=",".join(TRAIN_CONFIGS),
                        help=f"train configs, comma-separated, from {', '.join(TRAIN_CONFIGS)}; 'none' skips training")
    parser.add_argument("--no-inference", action="store_true", help="skip the MiniLM-size forward benchmark")
    parser.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                        help="time bf16 autocast steps: auto = only where the CPU has avx512_bf16 or amx_bf16")
    parser.add_argument("--dropout", type=float, default=DROPOUT, help=f"dropout in both models (default {DROPOUT})")
    parser.add_argument("--extra-dropout", default="0.0",
                        help="also time the fused-AdamW pair with this dropout in both ('none' to skip; default 0.0, "
                             "Cramming's choice for pretraining)")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="glibc only: mallopt so freed memory is kept and reused instead of handed back to the OS "
                             "and page-faulted in again (applies to both models; off by default)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write everything to this JSON file")
    args = parser.parse_args(argv)
    reps, warmup = (1, 1) if args.quick else (args.reps, args.warmup)
    configs = [] if args.configs == "none" else [c for c in args.configs.split(",") if c]
    for name in configs:
        if name not in TRAIN_CONFIGS:
            parser.error(f"unknown config {name!r}: choose from {', '.join(TRAIN_CONFIGS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    extra_dropout = None if args.extra_dropout == "none" else float(args.extra_dropout)
    malloc_note = keep_freed_memory() if args.keep_freed_memory else "glibc defaults"
    bf16 = {"auto": cpu_has_bf16(), "on": True, "off": False}[args.bf16]

    started = time.perf_counter()
    env = environment()
    print("## Environment\n")
    for key, value in env.items():
        print(f"- {key}: {value}")
    print(f"- setup: V = {VOCAB}, B = {BATCH}, m = {SEQ_LEN}, p = {PRED}, float32, dropout {args.dropout} in both, "
          f"attention: HF SDPA (with dropout on the CPU, its math path), ours the same computation written out; "
          f"ours computes the losses as bertnb.train.train_step (bertnb.fastpath.pretraining_losses); "
          f"AdamW {ADAMW} (no decay on biases/LayerNorm) in both; "
          f"medians of {reps} interleaved repetitions after {warmup} warm-up; memory allocator: {malloc_note}")
    if not bf16:
        print("- bf16 autocast: not timed (no avx512_bf16 / amx_bf16 in /proc/cpuinfo, so bf16 would be emulated "
              "and slower; `--bf16 on` times it anyway)")
    loss_ours, loss_hf = check_same_computation()
    print(f"- same computation: step-0 loss ours {loss_ours:.6f}, HF {loss_hf:.6f}; every gradient and the loss "
          f"after one AdamW step agree (tiny config, dropout off); each timed config's step-0 loss agrees too")

    gemm = gemm_gflops()
    rows = []
    for name in configs:
        rows += bench_train(name, TRAIN_CONFIGS[name], reps, warmup, bf16, args.dropout, extra_dropout)
    if not args.no_inference:
        rows += bench_inference(reps, warmup)
    gemm_after = gemm_gflops()  # before and after: a drift says the machine got busier or quieter
    gemm_best = max(gemm, gemm_after)  # what the CPU can do; a busy neighbour only ever lowers it
    for r in rows:
        r["gflops_per_s"] = r["flops"] / (r["ms"] / 1e3) / 1e9
        r["gemm_share"] = r["gflops_per_s"] / gemm_best
        r["spread_pct"] = 100 * (max(r["times_ms"]) - min(r["times_ms"])) / r["ms"]

    print(f"\n## Results\n\n2048² float32 GEMM: {gemm:.0f} GFLOP/s before the runs, {gemm_after:.0f} after "
          f"(shares below are of the larger).\n")
    print("| benchmark | variant | ms / step (median) | spread | GFLOP / step | GFLOP/s | share of GEMM |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['bench']} | {r['variant']} | {r['ms']:.1f} | {r['spread_pct']:.0f}% | {r['flops'] / 1e9:.1f} "
              f"| {r['gflops_per_s']:.1f} | {100 * r['gemm_share']:.0f}% |")
    found = ratios(rows)
    print("\n| benchmark | comparison | ratio |\n|---|---|---:|")
    for bench, what, ratio in found:
        print(f"| {bench} | {what} | {ratio:.2f}× |")
    targets = target_lines(rows)
    if targets:
        print("\nTargets (2 CPU cores):\n")
        for line in targets:
            print(f"- {line}")
    total = time.perf_counter() - started
    print(f"\nspread = (slowest - fastest) / median. GFLOP counts the matrix products and attention of forward + "
          f"backward in float32 (not the optimizer; bf16 rows reuse the float32 count). "
          f"Load average at the end: {load_average()}. Total {total:.0f} s.")
    if args.json:
        args.json.write_text(json.dumps({
            "environment": env, "load_average_end": load_average(), "gemm_gflops": [gemm, gemm_after],
            "reps": reps, "warmup": warmup, "dropout": args.dropout, "rows": rows, "targets": targets,
            "ratios": [dict(bench=b, comparison=w, ratio=r) for b, w, r in found], "seconds": total}, indent=2))
    return rows, found


if __name__ == "__main__":
    main()
