"""Chapter 10: the exercise checks accept the reference solutions (kept here, not in the notebook), reject
plausible wrong answers with a message and without raising, and say "not solved yet" for the stubs."""

import numpy as np
import pytest

from bertnb.checks import ch10
from tests.check_contract import unsolved


# ---------------------------------------------------------------------------------------------------------
# Reference solutions


def sentence_embedding(X, valid_lens):
    real = np.arange(X.shape[1])[None, :] < valid_lens[:, None]  # [B, m]
    mean = (X * real[:, :, None]).sum(1) / valid_lens[:, None]  # [B, n]
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)  # [B, n]


# One softmax per encoder layer; LayerNorm after the embeddings, twice per post-LN layer, once in the MLM head.
NODE_COUNTS = {"Softmax": 3, "LayerNormalization": 1 + 2 * 3 + 1}


# wrong answers


def sentence_embedding_with_pads(X, valid_lens):
    mean = X.mean(1)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def sentence_embedding_not_normalised(X, valid_lens):
    real = np.arange(X.shape[1])[None, :] < valid_lens[:, None]
    return (X * real[:, :, None]).sum(1) / valid_lens[:, None]


def sentence_embedding_cls(X, valid_lens):
    return X[:, 0] / np.linalg.norm(X[:, 0], axis=1, keepdims=True)


def check_output(capsys, check, answer):
    result = check(answer)
    return result, capsys.readouterr().out


def test_sentence_embedding(capsys):
    assert check_output(capsys, ch10.check_sentence_embedding, sentence_embedding) == (
        True, "sentence_embedding: correct\n")
    ok, out = check_output(capsys, ch10.check_sentence_embedding, unsolved)
    assert not ok and "not solved yet" in out
    ok, out = check_output(capsys, ch10.check_sentence_embedding, sentence_embedding_with_pads)
    assert not ok and "pad positions were averaged in" in out
    ok, out = check_output(capsys, ch10.check_sentence_embedding, sentence_embedding_not_normalised)
    assert not ok and "length 1" in out
    ok, out = check_output(capsys, ch10.check_sentence_embedding, sentence_embedding_cls)
    assert not ok and "differ from the mean" in out


def test_node_counts(capsys):
    pytest.importorskip("onnxscript")
    ok, out = check_output(capsys, ch10.check_node_counts, None)
    assert not ok and "not solved yet" in out
    assert check_output(capsys, ch10.check_node_counts, dict(NODE_COUNTS)) == (True, "node_counts: correct\n")
    forgot_the_head = {"Softmax": 3, "LayerNormalization": 7}
    ok, out = check_output(capsys, ch10.check_node_counts, forgot_the_head)
    assert not ok and "the MLM head has one too" in out
    per_head = {"Softmax": 3 * 2, "LayerNormalization": 8}  # a softmax per head: the graph has one per layer
    ok, out = check_output(capsys, ch10.check_node_counts, per_head)
    assert not ok and "Once per attention layer" in out
    ok, out = check_output(capsys, ch10.check_node_counts, {"Softmax": 3})
    assert not ok and "LayerNormalization" in out
