"""A tiny pretraining setup for the training, checkpoint and CLI tests: real sentences (the first 60
documents of the Python docs), a word vocabulary built from them (so V stays small), m = 32, p = 5."""

import random

import torch

from bertnb.corpus import load_english_corpus
from bertnb.data import PretrainingDataset, make_nsp_examples, split_documents, tokenize_documents
from bertnb.model import BertConfig, BertForPreTraining
from bertnb.pretrain import PretrainConfig, pretrain
from bertnb.tokenization import SPECIAL_TOKENS, BertTokenizer, basic_tokenize


def tiny_data():
    docs = load_english_corpus()[:60]
    words = sorted({w for doc in docs for s in doc for w in basic_tokenize(s)})
    tokenizer = BertTokenizer.from_vocab(list(SPECIAL_TOKENS) + words)
    train_docs, heldout_docs = split_documents(tokenize_documents(docs, tokenizer), 0.2, 0)
    train_data = PretrainingDataset(make_nsp_examples(train_docs, 32, random.Random(0)), tokenizer, 32, 5, 0)
    heldout_data = PretrainingDataset(make_nsp_examples(heldout_docs, 32, random.Random(1)), tokenizer, 32, 5, 1)
    return train_data, heldout_data, tokenizer


def tiny_model(vocab_size, seed=0, dropout=0.1):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=32, num_layers=2, num_heads=2, ffn_size=64, max_len=32,
                     dropout=dropout)
    return BertForPreTraining(cfg)


def tiny_config(**changes) -> PretrainConfig:
    settings = dict(total_steps=12, batch_size=8, lr=3e-3, eval_every=4, eval_examples=16, seed=3, max_len=32,
                    max_pred=5, layers=2, hidden=32, heads=2, ffn=64, bf16="off", init_mlm_bias=False)
    return PretrainConfig(**{**settings, **changes})


def run(model, data, cfg=None, **kwargs):
    train_data, heldout_data, _ = data
    return pretrain(model, train_data, heldout_data, cfg or tiny_config(), progress=False, verbose=False, **kwargs)
