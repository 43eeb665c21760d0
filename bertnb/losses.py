"""The pretraining losses as the chapters write them: the MLM cross-entropy over the predicted slots, the NSP
cross-entropy, and both from one forward pass of `BertForPreTraining`.

`bertnb.fastpath.pretraining_losses` computes the same two numbers faster; this is the reference it is
tested against.
"""

from __future__ import annotations

import torch.nn.functional as F


def mlm_loss(mlm_logits, mlm_labels, mlm_weights):
    """Cross-entropy over the predicted slots only: mlm_logits [B, p, V], labels and weights [B, p].
    Built in chapter 05.

    Padded slots (weight 0) must not count, neither in the sum nor in the mean's denominator: averaging over
    all B * p slots would shrink the loss of short sequences (the bug of d2l issue #2582).
    """
    per_slot = F.cross_entropy(mlm_logits.flatten(0, 1), mlm_labels.flatten(), reduction="none")  # [B * p]
    weights = mlm_weights.flatten().to(per_slot.dtype)  # [B * p]
    return (per_slot * weights).sum() / weights.sum().clamp(min=1.0)


def nsp_loss(nsp_logits, nsp_labels):
    """nsp_logits [B, 2], nsp_labels [B] -> mean cross-entropy. Built in chapter 06."""
    return F.cross_entropy(nsp_logits, nsp_labels)


def pretraining_loss(model, batch: dict) -> dict:
    """One forward pass of BertForPreTraining on a batch; the losses (the total is MLM + NSP, as in BERT) and
    the logits. Built in chapter 06.

    The losses are computed in float32 even when the forward ran under bfloat16 autocast.
    """
    _, mlm_logits, nsp_logits = model(batch["tokens"], batch["segments"], batch["valid_lens"],
                                      batch["pred_positions"])  # [B, p, V], [B, 2]
    mlm = mlm_loss(mlm_logits.float(), batch["mlm_labels"], batch["mlm_weights"])
    nsp = nsp_loss(nsp_logits.float(), batch["nsp_labels"])
    return {"loss": mlm + nsp, "mlm_loss": mlm, "nsp_loss": nsp, "mlm_logits": mlm_logits,
            "nsp_logits": nsp_logits}
