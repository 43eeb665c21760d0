"""Exercise checks for chapter 02 (embeddings).

The broadcasting sum is compared with the lookup-and-add it replaces, on random tables; the sinusoidal
position table with the Transformer paper's formula.
"""

from __future__ import annotations

import torch

from bertnb.checks import expect, run_check
from bertnb.model import sinusoidal_table



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


def reference_sinusoidal_table(max_len: int, n: int) -> torch.Tensor:
    """PE[i, 2k] = sin(i / 10000^(2k/n)), PE[i, 2k+1] = cos(i / 10000^(2k/n)): [max_len, n] (n even), float64."""
    return sinusoidal_table(max_len, n, dtype=torch.float64)


def check_sinusoidal_table(fn) -> bool:
    """`fn(max_len, n) -> [max_len, n]`: the Transformer's fixed sinusoidal position table, sines in the even
    features and cosines in the odd ones."""

    def test(fn):
        for max_len, n in ((8, 4), (50, 16), (512, 384)):
            got = fn(max_len, n)
            expect(isinstance(got, torch.Tensor), f"return a tensor, got {type(got).__name__}")
            expect(tuple(got.shape) == (max_len, n), f"for max_len = {max_len}, n = {n} the table should be "
                   f"[max_len, n] = {(max_len, n)}, got {tuple(got.shape)}")
            got = got.double()
            want = reference_sinusoidal_table(max_len, n)
            if torch.allclose(got, want, atol=1e-4):
                continue
            half = n // 2
            if torch.allclose(got[:, :half], want[:, 0::2], atol=1e-4):
                expect(False, "the values are right but laid out as [all sines | all cosines]; the paper "
                       "interleaves them: feature 2k is a sine, feature 2k + 1 the cosine of the same frequency")
            if torch.allclose(got[:, 0::2], want[:, 1::2], atol=1e-4):
                expect(False, "sine and cosine are swapped: the even features (0, 2, 4, ...) are the sines")
            pair = torch.arange(0, n, 2, dtype=torch.float64)  # 2k for each pair of features
            position = torch.arange(max_len, dtype=torch.float64)[:, None]  # [max_len, 1]
            if torch.allclose(got[:, 0::2], torch.sin(position / 10000.0 ** (pair / 2 / n)), atol=1e-4):
                expect(False, "the exponent is 2k/n with k the pair's number: features 2k and 2k + 1 use "
                       "10000^(2k/n), so the last pair's wavelength is near 10000 x 2π; you used k/n")
            if torch.allclose(got[:, 1::2], torch.cos(position / 10000.0 ** ((pair + 1) / n)), atol=1e-4):
                expect(False, "the cosines use their own feature number in the exponent; feature 2k + 1 is the "
                       "cosine of the SAME frequency as feature 2k, 10000^(2k/n)")
            expect(False, f"for max_len = {max_len}, n = {n}: row 1 should start "
                   f"{[round(x, 4) for x in want[1, :4].tolist()]}, yours starts "
                   f"{[round(x, 4) for x in got[1, :4].tolist()]} (row 0 is [0, 1, 0, 1, ...])")

    return run_check("sinusoidal table", fn, test)
