"""Exercise checks for chapter 01 (tokens and segments).

Both exercises work on lists of tokens. The token lists come from `bertnb.tokenization` on the real
vocabulary where that matters (word ids), or are made up (truncation, where only the lengths matter).
"""

from __future__ import annotations

from functools import lru_cache

from bertnb.checks import expect, run_check
from bertnb.tokenization import longest_first_lengths

SPECIALS = ("[CLS]", "[SEP]", "[PAD]")


# Longest-first, as Hugging Face's `tokenizers` (LongestFirst): the package's rule, tested against HF there
reference_keep_lengths = longest_first_lengths


# (len_a, len_b, max_len): no cut, cut only the longer, cut both, odd budgets, B longer, A longer, ties
TRUNCATION_CASES = [(3, 3, 9), (2, 2, 20), (10, 2, 8), (2, 10, 8), (7, 4, 8), (4, 7, 8), (5, 5, 10), (6, 6, 9),
                    (1, 9, 6), (9, 1, 6), (8, 6, 12), (20, 20, 13)]


def check_truncate_pair(fn) -> bool:
    """`fn(tokens_a, tokens_b, max_len) -> (tokens_a, tokens_b)`, cut longest-first so that
    [CLS] A [SEP] B [SEP] fits in max_len tokens."""

    def test(fn):
        for len_a, len_b, max_len in TRUNCATION_CASES:
            a = [f"a{i}" for i in range(len_a)]
            b = [f"b{i}" for i in range(len_b)]
            got = fn(list(a), list(b), max_len)
            expect(isinstance(got, (tuple, list)) and len(got) == 2,
                   f"return a pair (tokens_a, tokens_b), got {got!r}")
            got_a, got_b = list(got[0]), list(got[1])
            keep_a, keep_b = reference_keep_lengths(len_a, len_b, max_len - 3)
            case = f"A has {len_a} tokens, B has {len_b}, max_len = {max_len}"
            expect(len(got_a) + len(got_b) + 3 <= max_len,
                   f"{case}: {len(got_a)} + {len(got_b)} + 3 special tokens is more than max_len")
            expect(got_a == a[:len(got_a)] and got_b == b[:len(got_b)],
                   f"{case}: keep the start of each sentence and cut its end")
            expect((len(got_a), len(got_b)) == (keep_a, keep_b),
                   f"{case}: you keep {len(got_a)} + {len(got_b)}, longest-first keeps {keep_a} + {keep_b}")

    return run_check("truncate pair", fn, test)


def reference_word_ids(tokens) -> list:
    word_ids, word = [], -1
    for token in tokens:
        if token in SPECIALS:
            word_ids.append(None)
            continue
        if not token.startswith("##"):
            word += 1  # a piece without "##" starts a new word
        word_ids.append(word)
    return word_ids


@lru_cache(maxsize=1)
def _word_id_cases():
    from bertnb.pretrained import minilm_path
    from bertnb.tokenization import BertTokenizer

    tokenizer = BertTokenizer(minilm_path() / "vocab.txt")
    cases = []
    for text in ("Hello, unaffable world!", "Tokenization isn't hard.", "北京 café 🙂 x**2",
                 "antidisestablishmentarianism"):
        ids, _ = tokenizer.encode(text)
        cases.append(tokenizer.convert_ids_to_tokens(ids))
    cases.append(["[CLS]", "play", "##ing", "##s", "[SEP]", "[PAD]", "[PAD]"])
    return cases


def check_word_ids(fn) -> bool:
    """`fn(tokens) -> list`: for each WordPiece token the index of the word it belongs to, None for
    [CLS], [SEP] and [PAD]."""

    def test(fn):
        for tokens in _word_id_cases():
            got = fn(list(tokens))
            expect(isinstance(got, (list, tuple)), f"return a list, got {type(got).__name__}")
            want = reference_word_ids(tokens)
            expect(list(got) == want, f"for {tokens} you give {list(got)}, expected {want}")

    return run_check("word ids", fn, test)
