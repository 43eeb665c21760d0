"""Exercise checks for chapter 04, The encoder stack.

Each check takes the student's function, runs it on small inputs and compares with the answer computed
here, printing "correct", what is wrong, or "not solved yet". None of them raises.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..model import BertConfig, EncoderLayer
from . import expect, run_check



def check_pre_ln_forward(pre_ln_forward) -> bool:
    """pre_ln_forward(layer: EncoderLayer, X [B, m, n], valid_lens [B]) -> [B, m, n]: the *pre-LN* variant
    (GPT-2 and most later Transformers) built from the same parts, layer.attention, layer.norm1, layer.ffn
    and layer.norm2: normalise each sub-layer's input, then add its output to the unnormalised stream."""

    def test(fn):
        torch.manual_seed(5)
        cfg = BertConfig(vocab_size=10, hidden_size=16, num_layers=1, num_heads=4, ffn_size=24, dropout=0.0)
        layer = EncoderLayer(cfg).eval()
        with torch.no_grad():  # move LayerNorm scales/shifts away from 1 and 0 so a skipped norm shows
            for p in layer.parameters():
                p.add_(0.2 * torch.randn_like(p))
        X = torch.randn(2, 6, 16)  # [B, m, n]
        valid_lens = torch.tensor([6, 3])
        with torch.no_grad():
            out = fn(layer, X.clone(), valid_lens)
            post_ln, _ = layer(X, valid_lens)
            H = X + layer.attention(layer.norm1(X), valid_lens)[0]  # [B, m, n]
            expected = H + layer.ffn(layer.norm2(H))  # [B, m, n]
            H = X + layer.attention(layer.norm1(X))[0]
            no_mask = H + layer.ffn(layer.norm2(H))
        expect(isinstance(out, torch.Tensor), f"return a tensor [B, m, n], got {type(out).__name__} (note that "
               "layer.attention(X, valid_lens) returns a pair (Y, weights): take Y)")
        expect(tuple(out.shape) == tuple(X.shape), f"the output should keep X's shape {tuple(X.shape)}, got "
               f"{tuple(out.shape)}")
        if torch.allclose(out, post_ln, atol=1e-5):
            expect(False, "that is BERT's post-LN layer (add, then normalise). Pre-LN normalises the sub-layer's "
                   "input instead: X + attention(norm1(X)), then X + ffn(norm2(X))")
        if torch.allclose(out, no_mask, atol=1e-5):
            expect(False, "pass valid_lens to layer.attention, or the short sequence attends to its padding")
        if torch.allclose(out, layer.norm2(expected), atol=1e-5):
            expect(False, "no LayerNorm after the addition: in pre-LN the residual stream itself is never "
                   "normalised inside the layer")
        expect(torch.allclose(out, expected, atol=1e-5), "the output differs from the pre-LN layer: the residual "
               "adds the sub-layer's output to the *unnormalised* X, and the FFN reads norm2 of that sum")

    return run_check("pre_ln_forward", pre_ln_forward, test)


def check_most_similar(most_similar) -> bool:
    """most_similar(E [S, n], i) -> int: the index of the sentence most similar to sentence i by cosine
    similarity, sentence i itself excluded. E need not be normalised."""

    def test(fn):
        E = torch.tensor([[1.0, 0.0, 0.0],
                          [10.0, 10.0, 0.0],  # long vector, 45 degrees from sentence 0: a big dot product
                          [0.9, 0.1, 0.0],  # short vector almost parallel to sentence 0: the cosine winner
                          [0.0, 0.0, 2.0],
                          [0.0, 0.1, 1.0]])  # [S, n]
        cases = {0: 2, 2: 0, 3: 4, 4: 3, 1: 2}
        for i, expected in cases.items():
            answer = fn(E.clone(), i)
            expect(isinstance(answer, int) or (hasattr(answer, "numel") and answer.numel() == 1),
                   f"return one index (an int), got {type(answer).__name__}")
            answer = int(answer)
            expect(answer != i, f"for i = {i} you returned i itself: every vector is most similar to itself, "
                   "so leave sentence i out (e.g. set its similarity to -inf)")
            if i == 0 and answer == 1:
                expect(False, "for i = 0 you picked the largest dot product, not the largest cosine: normalise "
                       "the vectors (F.normalize(E, dim=-1)) before comparing")
            expect(answer == expected, f"for i = {i}: expected sentence {expected}, got {answer}")

    return run_check("most_similar", most_similar, test)


def check_gelu_tanh(fn) -> bool:
    """`fn(x) -> tensor`: the tanh approximation of GELU from the GELU paper (Hendrycks & Gimpel),
    0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))), elementwise, equal to `F.gelu(x, approximate="tanh")`."""

    def test(fn):
        for x in (torch.linspace(-6, 6, 241), torch.randn(3, 5, 7, generator=torch.Generator().manual_seed(0))):
            got = fn(x.clone())
            expect(isinstance(got, torch.Tensor), f"return a tensor, got {type(got).__name__}")
            expect(got.shape == x.shape, f"GELU works elementwise: shape {tuple(x.shape)} in, "
                   f"{tuple(x.shape)} out, got {tuple(got.shape)}")
            want = F.gelu(x, approximate="tanh")
            if torch.allclose(got, want, atol=1e-6):
                continue
            if torch.allclose(got, F.gelu(x), atol=1e-6):
                expect(False, "that is the exact erf GELU (nn.GELU()); this exercise asks for the tanh formula")
            cubic_missing = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * x))
            if torch.allclose(got, cubic_missing, atol=1e-6):
                expect(False, "the cubic term is missing: tanh(√(2/π) · (x + 0.044715 · x³))")
            if torch.allclose(got, 0.5 * x * (1 + torch.tanh(2 / math.pi * (x + 0.044715 * x ** 3))), atol=1e-6):
                expect(False, "the factor is the square root of 2/π (≈ 0.798), not 2/π")
            worst = (got - want).abs().max().item()
            expect(False, f"differs from F.gelu(x, approximate='tanh') by up to {worst:.2e}")

    return run_check("gelu_tanh", fn, test)
