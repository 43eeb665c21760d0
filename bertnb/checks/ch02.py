"""Exercise checks for chapter 02 (embeddings).

The parameter count is compared with a real `bertnb.model.BertEmbeddings`; the broadcasting sum with the
lookup-and-add it replaces, on random tables.
"""

from __future__ import annotations

import torch

from bertnb.checks import expect, run_check
from bertnb.checks.ch00 import check_parameter_count  # the same four configs as chapter 00's exercise
from bertnb.model import BertEmbeddings


def check_embedding_params(fn) -> bool:
    """`fn(cfg) -> int`: parameters of the embedding layer (three tables and the LayerNorm)."""
    return check_parameter_count("embedding parameters", fn, BertEmbeddings,
                                 "three tables, and the LayerNorm's scale and shift")


def reference_sum(tokens, segments, token_table, segment_table, position_table):
    m = tokens.shape[1]
    return token_table[tokens] + segment_table[segments] + position_table[:m]  # [B, m, n]


def check_embedding_sum(fn) -> bool:
    """`fn(tokens, segments, token_table, segment_table, position_table) -> [B, m, n]`, before LayerNorm."""

    def test(fn):
        generator = torch.Generator().manual_seed(0)
        for B, m, n, V, max_len in ((2, 5, 4, 11, 8), (1, 8, 6, 30, 8), (3, 1, 2, 5, 4)):
            tokens = torch.randint(0, V, (B, m), generator=generator)  # [B, m]
            segments = torch.randint(0, 2, (B, m), generator=generator)  # [B, m]
            tables = (torch.randn(V, n, generator=generator), torch.randn(2, n, generator=generator),
                      torch.randn(max_len, n, generator=generator))  # [V, n], [2, n], [max_len, n]
            got = fn(tokens, segments, *tables)
            expect(isinstance(got, torch.Tensor), f"return a tensor, got {type(got).__name__}")
            want = reference_sum(tokens, segments, *tables)
            expect(tuple(got.shape) == tuple(want.shape),
                   f"for B={B}, m={m}, n={n} the result should be [B, m, n] = {tuple(want.shape)}, "
                   f"got {tuple(got.shape)}")
            expect(torch.allclose(got, want, atol=1e-6),
                   f"right shape, wrong values for B={B}, m={m} (is each position's vector added to every "
                   f"sequence, and only the first m rows of the position table used?)")

    return run_check("embedding sum", fn, test)
