"""Train a WordPiece vocabulary on your own text. Going further, chapter 07 (pretraining on your own corpus).

The original WordPiece picks merges by how much they raise the likelihood of the training text; the vocabularies
people actually train today (Hugging Face tokenizers' `WordPieceTrainer`) use the BPE approximation instead, and so
does this module: split every word into characters (the first as is, the others as "##" pieces, the form
`BertTokenizer`'s greedy longest match looks up), then again and again merge the adjacent pair of pieces that
occurs most often in the corpus, until the vocabulary is full. Frequent words end up as one token, rare words as
a few pieces, and every character seen often enough stays, so little text becomes [UNK].

    vocab = train_wordpiece(texts, vocab_size=8000)          # a list of tokens, ids in order
    tokenizer = BertTokenizer.from_vocab(vocab)
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable

from bertnb.tokenization import SPECIAL_TOKENS, basic_tokenize
from bertnb.validation import check_int


def count_words(texts: Iterable[str], do_lower_case: bool = True) -> Counter:
    """How often each word occurs, words as `BertTokenizer`'s basic tokenizer cuts them (punctuation and each
    CJK character are words of their own). Streams: `texts` may be a generator over a large corpus.
    Going further, chapter 07."""
    counts = Counter()
    for text in texts:
        counts.update(basic_tokenize(text, do_lower_case))
    return counts


def _pieces(word: str) -> list[str]:
    return [word[0]] + ["##" + ch for ch in word[1:]]


def _merge(first: str, second: str) -> str:
    return first + second[2:]  # "ab" + "##c" -> "abc"; "##ab" + "##c" -> "##abc"


def _pairs(pieces: list[str]):
    return zip(pieces, pieces[1:])


def train_wordpiece(texts: Iterable[str] | None, vocab_size: int, min_frequency: int = 2,
                    do_lower_case: bool = True, word_counts: Counter | None = None) -> list[str]:
    """A WordPiece vocabulary of at most `vocab_size` tokens: the course's five specials, the characters (as
    first and "##" pieces) seen at least `min_frequency` times, then merged pieces in the order they were merged.
    Going further, chapter 07.

    Merging stops when the vocabulary is full or no pair occurs `min_frequency` times. Ties between equally
    frequent pairs go to the alphabetically first, so the result is a fixed function of the text. Pass
    `word_counts` (from `count_words`) instead of `texts` to reuse one counting pass. Use the result with
    `BertTokenizer.from_vocab(vocab, do_lower_case=...)` and the same `do_lower_case`.
    """
    check_int("vocab_size", vocab_size, low=len(SPECIAL_TOKENS) + 1)
    check_int("min_frequency", min_frequency, low=1)
    if word_counts is None:
        if texts is None:
            raise ValueError("give texts (an iterable of strings) or word_counts (from count_words)")
        word_counts = count_words(texts, do_lower_case)
    words = sorted(word for word in word_counts if word not in SPECIAL_TOKENS)
    if not words:
        raise ValueError("the texts hold no words: nothing to build a vocabulary from")

    # The alphabet: every piece of a single character, most frequent first.
    char_counts = Counter()
    for word in words:
        for piece in _pieces(word):
            char_counts[piece] += word_counts[word]
    alphabet = [piece for piece, count in sorted(char_counts.items(), key=lambda item: (-item[1], item[0]))
                if count >= min_frequency]
    vocab = list(SPECIAL_TOKENS) + [piece for piece in alphabet if piece not in SPECIAL_TOKENS]
    known = set(vocab)

    # Words are merged as lists of pieces; only words whose pieces are all in the alphabet take part.
    spelled = [_pieces(word) for word in words]
    frequency = [word_counts[word] for word in words]
    merging = [i for i, pieces in enumerate(spelled) if len(pieces) > 1 and all(p in known for p in pieces)]
    pair_counts, words_with_pair = Counter(), defaultdict(set)
    for i in merging:
        for pair in _pairs(spelled[i]):
            pair_counts[pair] += frequency[i]
            words_with_pair[pair].add(i)
    # A heap of (-count, pair); an entry whose count is out of date is skipped when it comes up.
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    while len(vocab) < vocab_size and heap:
        negative_count, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -negative_count:
            continue  # stale: the pair's count changed since this entry was pushed
        if -negative_count < min_frequency:
            break
        merged = _merge(*pair)
        if merged not in known:
            vocab.append(merged)
            known.add(merged)
        changed = set()
        for i in words_with_pair.pop(pair, ()):
            old = spelled[i]
            for old_pair in _pairs(old):
                pair_counts[old_pair] -= frequency[i]
                changed.add(old_pair)
            new, j = [], 0
            while j < len(old):  # merge every occurrence of the pair, left to right
                if j + 1 < len(old) and (old[j], old[j + 1]) == pair:
                    new.append(merged)
                    j += 2
                else:
                    new.append(old[j])
                    j += 1
            spelled[i] = new
            for new_pair in _pairs(new):
                pair_counts[new_pair] += frequency[i]
                words_with_pair[new_pair].add(i)
                changed.add(new_pair)
        pair_counts.pop(pair, None)
        for changed_pair in changed - {pair}:
            count = pair_counts[changed_pair]
            if count > 0:
                heapq.heappush(heap, (-count, changed_pair))
            else:
                del pair_counts[changed_pair]
    return vocab[:vocab_size]
