"""Exercise checks for chapter 10, export and call graphs.

Each check compares the student's answer with what bertnb computes (or, for the node counts, with a graph
it exports on the spot), printing "correct", what is wrong, or "not solved yet". None of them raises.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import torch

from bertnb.checks import expect, expect_int, run_check
from bertnb.pretrained import mean_pool


def check_sentence_embedding(sentence_embedding) -> bool:
    """sentence_embedding(X [B, m, n], valid_lens [B]) -> [B, n] numpy: sentence-transformers' embedding
    (mean over the real tokens, then L2-normalised), from onnxruntime's output, without torch."""

    def test(fn):
        rng = np.random.default_rng(10)
        for B, m, n in ((3, 7, 5), (1, 4, 3), (4, 9, 8)):
            X = rng.normal(size=(B, m, n)).astype(np.float32)  # [B, m, n]
            valid_lens = rng.integers(1, m + 1, size=B)  # [B]
            valid_lens[0] = 2  # a padded row
            got = fn(X.copy(), valid_lens.copy())
            expect(isinstance(got, np.ndarray), f"return a numpy array (no torch needed), got {type(got).__name__}")
            expect(got.shape == (B, n), f"for X of shape {(B, m, n)} the result should be [B, n] = {(B, n)}, "
                   f"got {got.shape}")
            want = mean_pool(torch.from_numpy(X), torch.from_numpy(valid_lens)).numpy()  # [B, n], bertnb's
            every = X.mean(1)  # [B, n]: pad positions included
            if np.allclose(got, every / np.linalg.norm(every, axis=1, keepdims=True), atol=1e-5):
                expect(False, "the pad positions were averaged in: use only the first valid_lens[i] positions of "
                       "row i (their vectors are whatever the model left there)")
            norms = np.linalg.norm(got, axis=1)
            expect(np.allclose(norms, 1, atol=1e-4), f"each embedding should have length 1 (L2-normalised), "
                   f"got lengths {np.round(norms, 3).tolist()}")
            expect(np.allclose(got, want, atol=1e-5), f"for valid_lens {valid_lens.tolist()} the embeddings "
                   "differ from the mean of the real token vectors, normalised")

    return run_check("sentence_embedding", sentence_embedding, test)


@functools.lru_cache(maxsize=None)  # one export per kernel, however often the check runs
def node_counts_of_pretraining_graph(num_layers: int = 3) -> dict:
    """Export a small BertForPreTraining with `num_layers` layers and count its operators."""
    from bertnb.export import export_onnx, onnx_op_counts
    from bertnb.model import BertConfig, BertForPreTraining

    cfg = BertConfig(vocab_size=50, hidden_size=16, num_layers=num_layers, num_heads=2, ffn_size=32, max_len=16)
    with tempfile.TemporaryDirectory() as folder:
        return dict(onnx_op_counts(export_onnx(BertForPreTraining(cfg), Path(folder) / "model.onnx")))


def check_node_counts(predicted: dict) -> bool:
    """predicted = {"Softmax": ..., "LayerNormalization": ...}: how many of each the ONNX graph of a
    BertForPreTraining with L = 3 layers holds. The check exports one and counts (a few seconds)."""

    def test(answer):
        expect(isinstance(answer, dict), f"answer with a dict {{'Softmax': ..., 'LayerNormalization': ...}}, "
               f"got {type(answer).__name__}")
        missing = {"Softmax", "LayerNormalization"} - set(answer)
        expect(not missing, f"the dict needs the keys {sorted(missing)}")
        softmax = expect_int(answer["Softmax"], "Softmax")
        norms = expect_int(answer["LayerNormalization"], "LayerNormalization")
        counts = node_counts_of_pretraining_graph(num_layers=3)
        expect(softmax == counts.get("Softmax", 0), f"Softmax: {softmax} is not it. Where does a softmax run? "
               "Once per attention layer (all heads at once), and nowhere in the heads (logits come out raw)")
        if norms == counts.get("LayerNormalization", 0) - 1:
            expect(False, f"LayerNormalization: {norms} counts the embeddings and the encoder layers; the MLM "
                   "head has one too (dense, activation, LayerNorm, then the decoder)")
        expect(norms == counts.get("LayerNormalization", 0), f"LayerNormalization: {norms} is not it. Count "
               "them in the model: after the embeddings, twice in each post-LN encoder layer, and in the heads")

    return run_check("node_counts", predicted, test)
