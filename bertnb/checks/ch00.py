"""Exercise checks for chapter 00 (setup and the map).

Each check takes the student's function, calls it on a few configurations and compares the result with the
real `bertnb.model` modules, so the answer is checked against what PyTorch actually allocates.
"""

from __future__ import annotations

from bertnb.checks import expect, expect_int, run_check
from bertnb.model import BertConfig, EncoderLayer, count_parameters

# Configurations the checks try: MiniLM's sizes, the package default and two odd ones (a formula that
# happens to fit one config, e.g. by assuming f = 4n, fails on the others).
CONFIGS = [
    BertConfig(vocab_size=30522, hidden_size=384, num_layers=6, num_heads=12, ffn_size=1536, max_len=512),
    BertConfig(),
    BertConfig(vocab_size=100, hidden_size=12, num_layers=1, num_heads=3, ffn_size=20, max_len=16),
    BertConfig(vocab_size=7, hidden_size=8, num_layers=3, num_heads=2, ffn_size=8, max_len=5, type_vocab_size=3),
]


def check_parameter_count(name: str, fn, build, hint: str) -> bool:
    """A counting exercise: `fn(cfg)` must equal the number of
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


def layer_params_with_f_4n(n: int) -> int:
    """Parameters of one encoder layer with f = 4n: attention 4(n² + n), feed-forward 8n² + 5n, norms 4n."""
    return 12 * n * n + 13 * n


def check_break_even_hidden_size(fn) -> bool:
    """`fn(V, L) -> int`: the smallest hidden size n for which L encoder layers with f = 4n hold at least as
    many parameters as the [V, n] token table."""

    def test(fn):
        # the closed form used below is first checked against real layers, so the check rests on PyTorch
        for n in (4, 8, 12):
            cfg = BertConfig(vocab_size=10, hidden_size=n, num_layers=1, num_heads=2, ffn_size=4 * n, max_len=4)
            assert count_parameters(EncoderLayer(cfg)) == layer_params_with_f_4n(n)
        for V, L in ((30522, 6), (30522, 12), (21128, 4), (250000, 24), (100, 1)):
            got = expect_int(fn(V, L), f"fn({V}, {L})")
            want = next(n for n in range(1, V + 1) if L * layer_params_with_f_4n(n) >= V * n)
            if got == want:
                continue
            hint = ""
            if got == next(n for n in range(1, V + 1) if L * 12 * n * n >= V * n):
                hint = " (close: you left out the biases and LayerNorms, the 13n per layer)"
            elif got == next(n for n in range(1, V + 1) if layer_params_with_f_4n(n) >= V * n):
                hint = " (that is for ONE layer: the table is compared with all L layers together)"
            elif got == want - 1 or got == want + 1:
                hint = " (off by one: the smallest n where L layers hold AT LEAST V x n, so round up)"
            expect(False, f"for V = {V:,}, L = {L} expected n = {want}, got {got}{hint}")

    return run_check("break-even hidden size", fn, test)


