"""Exercise checks for chapter 04, The encoder stack.

Each check takes the student's function, runs it on small inputs and compares with the answer computed
here, printing "correct", what is wrong, or "not solved yet". None of them raises.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model import BertConfig, EncoderLayer
from . import expect, run_check


def _reference_mean_pool(X, valid_lens):
    keep = (torch.arange(X.shape[1])[None, :] < valid_lens[:, None]).to(X.dtype)  # [B, m]
    mean = (X * keep[:, :, None]).sum(1) / valid_lens[:, None].to(X.dtype)  # [B, n]
    return F.normalize(mean, dim=-1)  # [B, n]


def check_mean_pool(mean_pool) -> bool:
    """mean_pool(X [B, m, n], valid_lens [B]) -> [B, n]: the mean of the valid token vectors, L2-normalised."""

    def test(fn):
        g = torch.Generator().manual_seed(4)
        X = torch.randn(3, 5, 8, generator=g)  # [B, m, n]
        valid_lens = torch.tensor([5, 2, 1])
        X[1, 2:] = 100.0  # padding: huge values, so averaging over it shows
        X[2, 1:] = -50.0
        out = fn(X.clone(), valid_lens.clone())
        expect(isinstance(out, torch.Tensor), f"return a torch.Tensor, got {type(out).__name__}")
        expect(tuple(out.shape) == (3, 8), f"X [B, m, n] = (3, 5, 8) should give [B, n] = (3, 8), "
               f"got {tuple(out.shape)}")
        expected = _reference_mean_pool(X, valid_lens)
        lengths = out.norm(dim=-1)
        if torch.allclose(out, F.normalize(X.mean(1), dim=-1), atol=1e-5):
            expect(False, "that averages over the padding too: only the first valid_lens[b] tokens of row b count")
        expect(torch.allclose(lengths, torch.ones(3), atol=1e-4), f"each embedding should have length 1 (L2 "
               f"norm), got lengths {lengths.round(decimals=3).tolist()}")
        expect(torch.allclose(out, expected, atol=1e-5), "the direction is wrong: average X[b, :valid_lens[b]] "
               "over the token axis (dim=1), then divide by its L2 norm")

    return run_check("mean_pool", mean_pool, test)


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
