"""Pretraining data: documents in, BERT's two tasks out.

Read top to bottom, in the order the data flows (the corpora themselves come from `bertnb.corpus`):

1. **Held-out split by document** and a **character vocabulary** for Chinese (the MiniLM WordPiece vocab has
   only 244 CJK characters).
2. **Next sentence prediction (NSP) pairs**, built as the original BERT's `create_instances_from_document`
   (chapter 06).
3. **Masked language model (MLM) masking**: 15 % of the tokens, 80 % `[MASK]` / 10 % random / 10 % kept
   (chapter 05).
4. **`PretrainingDataset` + `collate`**: masks drawn afresh each epoch, batches of padded tensors.
5. **`build_pretraining_data`**: everything above in one call; then which examples each training step sees.

The two losses that consume these batches live in `bertnb.losses`.

Notation (the course's): B batch size · m sequence length · p predicted (masked) positions per sequence ·
V vocabulary size. Token ids `tokens [B, m]`, segment ids `segments [B, m]` in {0, 1}, `valid_lens [B]`.
"""

from __future__ import annotations

import functools
import random
from collections import Counter
from dataclasses import dataclass

import torch

from bertnb.corpus import CORPORA, Document, load_chinese_corpus, load_english_corpus
from bertnb.tokenization import SPECIAL_TOKENS, BertTokenizer, basic_tokenize
from bertnb.validation import check_float, check_int

# bert-base-uncased's (and MiniLM's) [MASK] id: the default of `mask_tokens`, so the course's short call
# `mask_tokens(tokens, special_ids, vocab_size, max_pred, rng)` works with the English vocabulary. Any other
# vocabulary must pass `mask_id=tokenizer.mask_id` (a wrong id is caught: it must be one of `special_ids`).
BERT_BASE_MASK_ID = 103

# ========================================================================================================
# 1. Held-out split by document, and a character vocabulary for Chinese
# ========================================================================================================
def split_documents(docs: list, held_out_fraction: float = 0.1, seed: int = 0) -> tuple[list, list]:
    """Shuffle document indices with `seed` and hold out a fraction of whole documents.

    Splitting by document, not by sentence or example, keeps every held-out sentence (and every NSP pair
    built from it) unseen in training. Deterministic: the same docs, fraction and seed give the same split.
    Both parts keep the corpus order. Returns (train_docs, heldout_docs).
    Built in chapter 06.
    """
    check_float("held_out_fraction", held_out_fraction, 0, 1, high_open=True)
    check_int("seed", seed)
    indices = list(range(len(docs)))
    random.Random(seed).shuffle(indices)
    num_held_out = round(len(docs) * held_out_fraction)
    if held_out_fraction > 0 and len(docs) >= 2:
        num_held_out = min(max(num_held_out, 1), len(docs) - 1)  # both parts non-empty
    held_out = set(indices[:num_held_out])
    train_docs = [doc for i, doc in enumerate(docs) if i not in held_out]
    heldout_docs = [doc for i, doc in enumerate(docs) if i in held_out]
    return train_docs, heldout_docs


def _char_pieces(word: str) -> list[str]:
    """'１９９８' -> ['１', '##９', '##９', '##８']: the pieces WordPiece needs to spell a word char by char."""
    return [word[0]] + ["##" + ch for ch in word[1:]]


def build_char_vocab(docs: list[Document], min_count: int = 2, max_size: int | None = None,
                     do_lower_case: bool = True) -> list[str]:
    """A character vocabulary: [PAD] [UNK] [CLS] [SEP] [MASK], then pieces, most frequent first.

    Build it from the TRAINING documents only: a vocabulary that has seen the held-out text leaks it (no
    held-out character would ever be [UNK]).

    The text goes through BERT's basic tokenizer first, the same one `BertTokenizer` runs, so the vocabulary
    sees what the tokenizer will look up. That stage makes each CJK character a word of its own, but keeps
    runs of other characters (digits like "１９９８", Latin letters) as one word, which WordPiece can only
    spell as "１" "##９" "##９" "##８". So a character inside such a word is counted as its "##" piece, as in
    bert-base-chinese's vocabulary. Pieces seen fewer than `min_count` times are left out (a word with such a
    piece becomes [UNK]); `max_size` caps the whole list, specials included. Ties in frequency are broken
    alphabetically, so the result is deterministic.
    Use it with `BertTokenizer.from_vocab(vocab, do_lower_case=...)` and the same `do_lower_case`.
    Built in chapter 06.
    """
    check_int("min_count", min_count, low=1)
    if max_size is not None:
        check_int("max_size", max_size, low=len(SPECIAL_TOKENS))
    counts = Counter()
    for doc in docs:
        for sentence in doc:
            for word in basic_tokenize(sentence, do_lower_case):
                counts.update(_char_pieces(word))
    frequent = [piece for piece, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
                if count >= min_count and piece not in SPECIAL_TOKENS]
    vocab = list(SPECIAL_TOKENS) + frequent
    return vocab if max_size is None else vocab[:max_size]


# ========================================================================================================
# 2. Next sentence prediction pairs (the original BERT's create_instances_from_document)
# ========================================================================================================
IS_NEXT, NOT_NEXT = 0, 1  # Hugging Face's convention: label 0 = B follows A, 1 = B is random


@dataclass
class NspExample:
    """One sentence pair, before the specials are added and before masking. Built in chapter 06."""

    tokens_a: list[int]  # segment A: token ids of one or more consecutive sentences
    tokens_b: list[int]  # segment B: the continuation (IsNext) or text from another document (NotNext)
    nsp_label: int  # 0 = IsNext, 1 = NotNext
    doc_a: int  # index (in the list given to make_nsp_examples) of the document A comes from
    doc_b: int  # index of the document B comes from (== doc_a for IsNext, != doc_a for NotNext)


def truncate_pair(tokens_a: list[int], tokens_b: list[int], max_num_tokens: int, rng: random.Random):
    """Shorten the pair in place until it fits: always the longer one, one token at a time.

    As in the original, the token comes off the front or the back at random (a coin per token), so the
    model does not learn that a sequence always ends at a sentence end.
    Built in chapter 06.
    """
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def _random_other_document(num_docs: int, doc_index: int, rng: random.Random) -> int:
    # Uniform over the other documents. (The original tries 10 random draws and may, rarely, keep the same
    # document; here B is never from A's document.)
    other = rng.randrange(num_docs - 1)
    return other + 1 if other >= doc_index else other


def _examples_from_document(docs: list[list[list[int]]], doc_index: int, max_len: int, rng: random.Random,
                            short_seq_prob: float) -> list[NspExample]:
    document = docs[doc_index]
    max_num_tokens = max_len - 3  # room for [CLS] A [SEP] B [SEP]
    # Mostly fill the whole sequence; sometimes (10 %) aim shorter, so the model also sees short inputs
    # (fine-tuning inputs are often short). As in the original, the target is drawn once per document.
    target_length = max_num_tokens
    if rng.random() < short_seq_prob:
        target_length = rng.randint(2, max_num_tokens)

    examples, chunk, chunk_length, i = [], [], 0, 0
    while i < len(document):
        chunk.append(document[i])  # collect whole sentences until the target length is reached
        chunk_length += len(document[i])
        if i == len(document) - 1 or chunk_length >= target_length:
            # A gets a random number of the chunk's sentences (at least one, leaving one for B).
            a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
            tokens_a = [token for sentence in chunk[:a_end] for token in sentence]
            is_not_next = rng.random() < 0.5
            if not is_not_next and len(chunk) == 1 and len(chunk[0]) < 2:
                is_not_next = True  # a one-token chunk cannot be split; only a NotNext pair is possible
            if is_not_next:
                doc_b = _random_other_document(len(docs), doc_index, rng)
                random_document = docs[doc_b]
                tokens_b = []
                for sentence in random_document[rng.randrange(len(random_document)):]:
                    tokens_b.extend(sentence)
                    if len(tokens_b) >= target_length - len(tokens_a):
                        break
                # The chunk's sentences after A were not used: put them back, so they start the next chunk.
                i -= len(chunk) - a_end
            elif len(chunk) == 1:
                # A single sentence (the document's last, or one longer than the target). The original then
                # always makes a NotNext pair, which tilts the labels towards NotNext; here the sentence is
                # cut at a random token instead, so B is still the true continuation of A.
                cut = rng.randint(1, len(chunk[0]) - 1)
                tokens_a, tokens_b, doc_b = list(chunk[0][:cut]), list(chunk[0][cut:]), doc_index
            else:
                tokens_b = [token for sentence in chunk[a_end:] for token in sentence]
                doc_b = doc_index
            truncate_pair(tokens_a, tokens_b, max_num_tokens, rng)
            examples.append(NspExample(tokens_a, tokens_b, NOT_NEXT if is_not_next else IS_NEXT,
                                       doc_index, doc_b))
            chunk, chunk_length = [], 0
        i += 1
    return examples


def make_nsp_examples(docs_as_token_lists: list[list[list[int]]], max_len: int, rng: random.Random,
                      short_seq_prob: float = 0.1) -> list[NspExample]:
    """Sentence pairs for NSP from documents whose sentences are already token ids.

    `docs_as_token_lists[d][s]` is the token ids of sentence s of document d (tokenize each sentence once).
    For each document, in order, consecutive sentences are gathered into a chunk until it holds about
    `max_len - 3` tokens (with probability `short_seq_prob` a random shorter target, 2..max_len-3, for the
    whole document). A takes the chunk's first 1..k-1 sentences. Then a fair coin: IsNext (label 0), B is
    the rest of the chunk; NotNext (label 1), B is consecutive sentences from a random start in a different,
    uniformly chosen document, and the chunk's unused sentences go back to start the next chunk. The pair is
    cut to `max_len - 3` tokens, longer side first, from the front or the back at random.
    Every example packs to at most `max_len` tokens with [CLS] A [SEP] B [SEP].
    Built in chapter 06.
    """
    if not isinstance(rng, random.Random):
        raise ValueError(f"rng must be a random.Random (for reproducible examples), got {type(rng).__name__}")
    if not isinstance(max_len, int) or max_len < 5:
        raise ValueError(f"max_len must be an int >= 5 ([CLS] A [SEP] B [SEP] with A and B non-empty), "
                         f"got {max_len!r}")
    if not 0.0 <= short_seq_prob <= 1.0:
        raise ValueError(f"short_seq_prob must be in [0, 1], got {short_seq_prob}")
    docs = [[list(sentence) for sentence in doc if len(sentence) > 0] for doc in docs_as_token_lists]
    if any(len(doc) == 0 for doc in docs):
        raise ValueError("every document needs at least one non-empty sentence; drop empty documents first")
    if len(docs) < 2:
        raise ValueError(f"NotNext pairs need at least 2 documents, got {len(docs)}")
    examples = []
    for doc_index in range(len(docs)):
        examples.extend(_examples_from_document(docs, doc_index, max_len, rng, short_seq_prob))
    return examples


# ========================================================================================================
# 3. Masked language model: which tokens to predict, and what the model sees instead
# ========================================================================================================
def _check_mask_arguments(tokens, special_ids, vocab_size, max_pred, rng, mask_id):
    if not isinstance(rng, random.Random):
        raise ValueError(f"rng must be a random.Random (for reproducible masks), got {type(rng).__name__}")
    check_int("max_pred", max_pred, low=1)  # p, the number of prediction slots
    check_int("vocab_size", vocab_size, low=1)
    if len(tokens) == 0:
        raise ValueError("tokens is empty: pass a packed sequence such as [CLS] A [SEP] B [SEP]")
    if not all(isinstance(s, int) for s in special_ids):
        raise ValueError(f"special_ids must be a set of int token ids, got {special_ids!r}")
    if mask_id not in special_ids:
        raise ValueError(f"mask_id {mask_id} is not one of special_ids {sorted(special_ids)}: pass "
                         f"mask_id=tokenizer.mask_id and special_ids=tokenizer.special_ids of one tokenizer")
    largest_id = max(max(tokens), mask_id)
    if min(tokens) < 0 or largest_id >= vocab_size:
        raise ValueError(f"vocab_size {vocab_size} too small: token ids must lie in [0, vocab_size), "
                         f"got ids in [{min(tokens)}, {largest_id}]")
    if vocab_size <= len({s for s in special_ids if 0 <= s < vocab_size}):
        raise ValueError(f"vocab_size {vocab_size} too small: it leaves no non-special token to use as a "
                         f"random replacement")


def num_predictions(sequence_length: int, max_pred: int, num_candidates: int | None = None) -> int:
    """How many tokens `mask_tokens` predicts: min(max_pred, max(1, round(0.15 * length)), candidates).

    `sequence_length` is the packed sequence's length with [CLS]/[SEP] and without padding, as in the
    original. `round` is Python's (halves to even: round(2.5) == 2), as in the original.
    Built in chapter 05.
    """
    count = min(max_pred, max(1, round(sequence_length * 0.15)))
    return count if num_candidates is None else min(count, num_candidates)


def mask_tokens(tokens: list[int], special_ids: set[int], vocab_size: int, max_pred: int,
                rng: random.Random, mask_id: int = BERT_BASE_MASK_ID):
    """Choose the tokens to predict and hide them: BERT's masked-language-model input.

    tokens: one packed sequence, [CLS] A [SEP] B [SEP] as ids, without padding.
    Predicts `num_to_predict = min(max_pred, max(1, round(len(tokens) * 0.15)))` tokens, where len(tokens)
    counts every token of the packed sequence, [CLS] and [SEP] included, no padding (and never more than
    there are candidates). Candidates are the positions whose token is not in `special_ids`; a random
    permutation of them is drawn and the first `num_to_predict` are chosen. Each chosen token becomes:
      80 % `mask_id` ([MASK]),  10 % a random token that is not special,  10 % itself (unchanged).
    The unchanged 10 % keeps the model honest about every input token (it cannot assume that only [MASK]
    needs predicting); the random 10 % forces it to doubt tokens that look fine.

    mask_id: the [MASK] id of the vocabulary; the default 103 is bert-base-uncased's / MiniLM's. It must be
    in `special_ids`, which catches a vocabulary mix-up (the Chinese character vocab's [MASK] is 4).

    Returns (masked_tokens, pred_positions, mlm_labels, mlm_weights):
      masked_tokens  list[int], len(tokens): the input the model sees
      pred_positions list[int], max_pred: the chosen positions, ascending, then 0s   -> pred_positions [p]
      mlm_labels     list[int], max_pred: the original tokens there, then 0s
      mlm_weights    list[float], max_pred: 1.0 per real prediction, 0.0 per padding slot (the loss must
                     ignore those: see `bertnb.train.mlm_loss`)
    Raises ValueError (with the allowed range) on bad arguments.
    Built in chapter 05.
    """
    _check_mask_arguments(tokens, special_ids, vocab_size, max_pred, rng, mask_id)
    candidates = [i for i, token in enumerate(tokens) if token not in special_ids]
    rng.shuffle(candidates)  # a random permutation of the candidate positions
    count = num_predictions(len(tokens), max_pred, len(candidates))
    pred_positions = sorted(candidates[:count])

    masked_tokens = list(tokens)
    for position in pred_positions:
        roll = rng.random()
        if roll < 0.8:
            masked_tokens[position] = mask_id
        elif roll < 0.9:
            masked_tokens[position] = _random_non_special_token(vocab_size, special_ids, rng)
        # else: 10 % keep the original token
    mlm_labels = [tokens[position] for position in pred_positions]
    mlm_weights = [1.0] * count

    padding = max_pred - count  # pad the p slots: position 0, label 0, weight 0.0
    return (masked_tokens, pred_positions + [0] * padding, mlm_labels + [0] * padding,
            mlm_weights + [0.0] * padding)


def _random_non_special_token(vocab_size: int, special_ids: set[int], rng: random.Random) -> int:
    while True:  # rejection sampling: specials are a handful of ids out of V, so this almost never loops
        token = rng.randrange(vocab_size)
        if token not in special_ids:
            return token


# ========================================================================================================
# 4. Dataset and collate
# ========================================================================================================
@dataclass(frozen=True)
class SpecialTokens:
    """What packing and masking need to know about a vocabulary. Built in chapter 05."""

    cls_id: int
    sep_id: int
    pad_id: int
    mask_id: int
    special_ids: frozenset[int]
    vocab_size: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> SpecialTokens:
        return cls(tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id, tokenizer.mask_id,
                   frozenset(tokenizer.special_ids), len(tokenizer))


def pack_pair(tokens_a: list[int], tokens_b: list[int], cls_id: int, sep_id: int):
    """[CLS] A [SEP] B [SEP] and its segment ids: 0 for [CLS], A and the first [SEP]; 1 for B and the last.
    Built in chapter 05."""
    tokens = [cls_id] + tokens_a + [sep_id] + tokens_b + [sep_id]
    segments = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
    return tokens, segments


class PretrainingDataset(torch.utils.data.Dataset):
    """NSP examples, packed and masked on the fly. Item i of epoch e always gets the same mask.

    Dynamic masking (RoBERTa's improvement on BERT's fixed masks): each epoch draws new masks, from a
    `random.Random` seeded with the string f"{seed}-{epoch}-{index}". A string seed is hashed with SHA-512
    by `random`, so it is the same in every process and Python (unlike `hash()` of a str, which is salted
    per process). Call `set_epoch(epoch)` at the start of each epoch; leave a held-out set at epoch 0 so
    its masks, and so its metrics, stay comparable. Use with
    `DataLoader(dataset, batch_size=B, shuffle=True, collate_fn=dataset.collate)`. `examples` may be any
    list-like of NspExample, e.g. `bertnb.own_corpus.ExampleCache`, read from disk on demand.
    Built in chapter 05.
    """

    def __init__(self, examples: list[NspExample], tokenizer_or_special_tokens, max_len: int, max_pred: int,
                 seed: int = 0):
        special = tokenizer_or_special_tokens
        if not isinstance(special, SpecialTokens):
            special = SpecialTokens.from_tokenizer(special)
        self.special = special
        check_int("max_pred", max_pred, low=1)
        longest = getattr(examples, "longest", None)  # an on-disk example list knows it (bertnb.own_corpus)
        if longest is None:
            longest = max((len(e.tokens_a) + len(e.tokens_b) + 3 for e in examples), default=0)
        if longest > max_len:
            raise ValueError(f"an example packs to {longest} tokens > max_len {max_len}: build the examples "
                             f"with make_nsp_examples(..., max_len={max_len})")
        self.examples, self.max_len, self.max_pred, self.seed = examples, max_len, max_pred, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Switch to the masks of `epoch` (dynamic masking)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        example = self.examples[index]
        tokens, segments = pack_pair(example.tokens_a, example.tokens_b, self.special.cls_id,
                                     self.special.sep_id)
        rng = random.Random(f"{self.seed}-{self.epoch}-{index}")
        masked, pred_positions, mlm_labels, mlm_weights = mask_tokens(
            tokens, self.special.special_ids, self.special.vocab_size, self.max_pred, rng,
            mask_id=self.special.mask_id)
        return {"tokens": masked, "segments": segments, "pred_positions": pred_positions,
                "mlm_labels": mlm_labels, "mlm_weights": mlm_weights, "nsp_label": example.nsp_label}

    def collate(self, batch: list[dict]) -> dict[str, torch.Tensor]:
        return collate(batch, pad_id=self.special.pad_id)


def collate(batch: list[dict], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Stack dataset items into tensors, padding token rows with `pad_id` to the longest in the batch.

    Padding to the batch's longest rather than to max_len: NSP examples are often shorter than max_len (10 %
    aim short, documents end), and attention costs grow with m², so shorter batches are faster. Padded
    positions get segment 0 and are excluded by `valid_lens` (attention) and by the 0-weight slots (loss).
    Returns tokens [B, m], segments [B, m], valid_lens [B], pred_positions [B, p], mlm_weights [B, p]
    (float32), mlm_labels [B, p], nsp_labels [B]; all int64 except mlm_weights.
    Built in chapter 05.
    """
    if not batch:
        raise ValueError("collate needs at least one item")
    B, m = len(batch), max(len(item["tokens"]) for item in batch)
    tokens = torch.full((B, m), pad_id, dtype=torch.long)  # [B, m]
    segments = torch.zeros((B, m), dtype=torch.long)  # [B, m]
    for row, item in enumerate(batch):
        length = len(item["tokens"])
        tokens[row, :length] = torch.tensor(item["tokens"], dtype=torch.long)
        segments[row, :length] = torch.tensor(item["segments"], dtype=torch.long)
    return {
        "tokens": tokens,  # [B, m]
        "segments": segments,  # [B, m]
        "valid_lens": torch.tensor([len(item["tokens"]) for item in batch], dtype=torch.long),  # [B]
        "pred_positions": torch.tensor([item["pred_positions"] for item in batch]),  # [B, p] int64
        "mlm_weights": torch.tensor([item["mlm_weights"] for item in batch], dtype=torch.float32),  # [B, p]
        "mlm_labels": torch.tensor([item["mlm_labels"] for item in batch], dtype=torch.long),  # [B, p]
        "nsp_labels": torch.tensor([item["nsp_label"] for item in batch], dtype=torch.long),  # [B]
    }


# ========================================================================================================
# 5. Everything in one call
# ========================================================================================================
@functools.lru_cache(maxsize=None)
def english_tokenizer():
    """The bert-base-uncased WordPiece tokenizer (MiniLM's vocab.txt, 30,522 tokens), lower-casing.
    Built in chapter 05."""
    from bertnb.pretrained import minilm_path  # the MiniLM package's files are found in one place

    return BertTokenizer(str(minilm_path() / "vocab.txt"), do_lower_case=True)


def tokenize_documents(docs: list[Document], tokenizer) -> list[list[list[int]]]:
    """Each sentence -> token ids, once. Sentences that tokenize to nothing are dropped. Built in chapter 05."""
    tokenized = []
    for doc in docs:
        sentences = [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(s)) for s in doc]
        tokenized.append([ids for ids in sentences if ids])
    return tokenized


@functools.lru_cache(maxsize=None)
def _tokenized_english_corpus() -> tuple[tuple[tuple[int, ...], ...], ...]:
    # Tokenizing the whole English corpus takes a while in pure Python: do it once per process. Documents
    # keep their corpus index, so any split can be taken from this one tokenized copy.
    tokenized = tokenize_documents(load_english_corpus(), english_tokenizer())
    return tuple(tuple(tuple(ids) for ids in doc) for doc in tokenized)


@functools.lru_cache(maxsize=4)
def _tokenized_chinese_split(held_out_fraction: float, seed: int, min_char_count: int):
    # The character vocabulary depends on the split (training documents only), so the tokenized copy is
    # cached per split. Returns (vocab, train_docs, heldout_docs) as token ids.
    train_text, heldout_text = split_documents(load_chinese_corpus(), held_out_fraction, seed)
    vocab = build_char_vocab(train_text, min_count=min_char_count)
    tokenizer = BertTokenizer.from_vocab(vocab, do_lower_case=True)
    return vocab, tokenize_documents(train_text, tokenizer), tokenize_documents(heldout_text, tokenizer)


def build_pretraining_data(corpus: str = "python-docs", max_len: int = 128, max_pred: int = 20,
                           held_out_fraction: float = 0.1, seed: int = 0, min_char_count: int = 2):
    """Corpus -> (train_dataset, heldout_dataset, tokenizer), ready for a DataLoader.

    corpus: "python-docs" (English, MiniLM's WordPiece vocabulary) or "peoples-daily" (Chinese, a character
    vocabulary built from the training documents, characters seen at least `min_char_count` times).
    Documents are split first (held out by document), then NSP pairs are made within each part, so a
    NotNext B never comes from the other part. NSP pairs are drawn once (seeded); masks are drawn per epoch.
    Built in chapter 05.
    """
    if corpus not in CORPORA:
        raise ValueError(f"corpus must be one of {CORPORA}, got {corpus!r}")
    if corpus == "python-docs":
        tokenizer = english_tokenizer()
        tokenized = [[list(ids) for ids in doc] for doc in _tokenized_english_corpus()]
        train_docs, heldout_docs = split_documents(tokenized, held_out_fraction, seed)
    else:
        vocab, train_docs, heldout_docs = _tokenized_chinese_split(held_out_fraction, seed, min_char_count)
        tokenizer = BertTokenizer.from_vocab(vocab, do_lower_case=True)
    train_docs = [doc for doc in train_docs if doc]
    heldout_docs = [doc for doc in heldout_docs if doc]
    special = SpecialTokens.from_tokenizer(tokenizer)
    # One random stream per part, so the held-out pairs do not depend on how many draws training used.
    train_examples = make_nsp_examples(train_docs, max_len, random.Random(f"nsp-train-{seed}"))
    heldout_examples = (make_nsp_examples(heldout_docs, max_len, random.Random(f"nsp-heldout-{seed}"))
                        if len(heldout_docs) >= 2 else [])
    return (PretrainingDataset(train_examples, special, max_len, max_pred, seed),
            PretrainingDataset(heldout_examples, special, max_len, max_pred, seed + 1),
            tokenizer)


# ========================================================================================================
# Which examples each step sees: a fixed function of (seed, step), so resuming needs only the step
# ========================================================================================================


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch; the last, partial batch is dropped so every step sees B examples. Built in chapter 07."""
    return max(1, num_examples // batch_size)


def epoch_order(num_examples: int, seed: int, epoch: int) -> list[int]:
    """The shuffled example order of one epoch, from its own generator: the same on every run and machine.
    Built in chapter 07."""
    return _epoch_permutation(num_examples, seed, epoch).tolist()


@functools.lru_cache(maxsize=2)
def _epoch_permutation(num_examples: int, seed: int, epoch: int) -> torch.Tensor:
    # Kept as a tensor and cached: every step of an epoch slices the same order, and for a corpus of millions
    # of examples drawing it (and turning it into a Python list) at each step would cost more than the step.
    generator = torch.Generator().manual_seed(1_000_000 * seed + epoch)  # distinct per (seed, epoch < 10^6)
    return torch.randperm(num_examples, generator=generator)  # [num_examples]


def batch_indices(num_examples: int, batch_size: int, seed: int, step: int) -> tuple[int, list[int]]:
    """Step s -> (epoch, the example indices of its batch). No state: step s always gets the same batch.
    Built in chapter 07."""
    epoch, index = divmod(step, steps_per_epoch(num_examples, batch_size))
    order = _epoch_permutation(num_examples, seed, epoch)
    return epoch, order[index * batch_size:(index + 1) * batch_size].tolist()


def make_batch(dataset, indices, epoch: int | None = None) -> dict:
    """Collate dataset[i] for i in indices. With `epoch`, switch the dataset's masks first (dynamic masking:
    `bertnb.data.PretrainingDataset.set_epoch`); a dataset without `set_epoch` keeps its items.
    Built in chapter 07."""
    if epoch is not None and hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    collate = getattr(dataset, "collate", None) or torch.utils.data.default_collate
    return collate([dataset[i] for i in indices])


def heldout_batches(dataset, batch_size: int, max_examples: int | None = None, seed: int = 0) -> list[dict]:
    """The held-out set as a fixed list of batches (its masks stay those of epoch 0, so every evaluation
    scores the same predictions). With `max_examples`, an evenly spread, seeded subset: the first N examples
    would all come from the first few documents.
    Built in chapter 07."""
    n = len(dataset)
    indices = list(range(n))
    if max_examples is not None and max_examples < n:
        indices = sorted(random.Random(f"heldout-{seed}").sample(indices, max_examples))
    return [make_batch(dataset, indices[i:i + batch_size]) for i in range(0, len(indices), batch_size)]
