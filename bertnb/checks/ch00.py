"""Exercise checks for chapter 00 (setup and the map).

Each check takes the student's function, calls it on a few configurations and compares the result with the
real `bertnb.model` modules, so the answer is checked against what PyTorch actually allocates.
"""

from __future__ import annotations

import torch

from bertnb.checks import expect, expect_int, run_check
from bertnb.model import BertConfig, BertForPreTraining, EncoderLayer, count_parameters

# Configurations the checks try: MiniLM's sizes, the package default and two odd ones (a formula that
# happens to fit one config, e.g. by assuming f = 4n, fails on the others).
CONFIGS = [
    BertConfig(vocab_size=30522, hidden_size=384, num_layers=6, num_heads=12, ffn_size=1536, max_len=512),
    BertConfig(),
    BertConfig(vocab_size=100, hidden_size=12, num_layers=1, num_heads=3, ffn_size=20, max_len=16),
    BertConfig(vocab_size=7, hidden_size=8, num_layers=3, num_heads=2, ffn_size=8, max_len=5, type_vocab_size=3),
]


def check_parameter_count(name: str, fn, build, hint: str) -> bool:
    """Shared by the counting exercises (here and in chapter 02): `fn(cfg)` must equal the number of
    parameters of the real module `build(cfg)` on every config of CONFIGS."""

    def test(fn):
        for cfg in CONFIGS:
            sizes = (f"V = {cfg.vocab_size}, n = {cfg.hidden_size}, h = {cfg.num_heads}, f = {cfg.ffn_size}, "
                     f"max_len = {cfg.max_len}, type_vocab_size = {cfg.type_vocab_size}")
            got = expect_int(fn(cfg), f"fn(cfg) for {sizes}")
            want = count_parameters(build(cfg))
            expect(got == want, f"for {sizes} you say {got:,}, the real {build.__name__} has {want:,} ({hint})")

    return run_check(name, fn, test)


def check_encoder_layer_params(fn) -> bool:
    """`fn(cfg) -> int`: parameters of ONE encoder layer (attention, 2 LayerNorms, feed-forward)."""
    return check_parameter_count("encoder layer parameters", fn, EncoderLayer,
                                 "did you count the biases and both LayerNorms?")


def check_mlm_logits_shape(fn) -> bool:
    """`fn(B, m, p, V) -> tuple`: the shape of the masked language model logits."""

    def test(fn):
        for B, m, p, V in ((2, 8, 3, 50), (1, 5, 5, 11), (3, 12, 1, 40)):
            got = fn(B, m, p, V)
            expect(isinstance(got, (tuple, list, torch.Size)), f"return a tuple of ints, got {got!r}")
            got = tuple(int(x) for x in got)
            cfg = BertConfig(vocab_size=V, hidden_size=8, num_layers=1, num_heads=2, ffn_size=16, max_len=m)
            model = BertForPreTraining(cfg).eval()
            tokens = torch.randint(0, V, (B, m))  # [B, m]
            pred_positions = torch.randint(0, m, (B, p))  # [B, p]
            with torch.no_grad():
                _, mlm_logits, _ = model(tokens, pred_positions=pred_positions)
            want = tuple(mlm_logits.shape)
            expect(got == want, f"for B={B}, m={m}, p={p}, V={V} you say {got}, the model returns {want}")

    return run_check("MLM logits shape", fn, test)
