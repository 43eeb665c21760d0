"""Tokenization: from raw text to the token ids and segment ids BERT reads.

BERT never sees characters. Text goes through two stages, then gets packed with special tokens:

1. The **basic tokenizer** cleans the text and cuts it into words: drop control characters, turn every kind
   of whitespace into a space, put spaces around Chinese/Japanese/Korean ideographs (each one becomes its own
   word), optionally lower-case and strip accents, and make every punctuation mark a word of its own.
2. **WordPiece** cuts each word into pieces found in the vocabulary, greedily taking the longest piece that
   matches: with BERT's vocabulary "unaffable" -> ["una", "##ffa", "##ble"] (greedy, not linguistic). "##"
   marks a piece that continues a word. A word that cannot be cut into known pieces becomes "[UNK]".
3. **Packing** adds "[CLS]" in front and "[SEP]" after each sentence, and builds the segment ids that tell
   sentence A (0) from sentence B (1): `[CLS] A [SEP] B [SEP]` with segments `0 ... 0 1 ... 1`.

The reference is Hugging Face's `transformers.BertTokenizer`, which in transformers 5 runs the Rust
`tokenizers` library (`normalizers.BertNormalizer` + `pre_tokenizers.BertPreTokenizer` + `models.WordPiece`).
Where that Rust code differs from Google's original Python (`bert/tokenization.py`), we follow Hugging Face so
the ids match exactly; each such place says so in a comment. Known differences from Hugging Face: the CJK
Extension E range (a typo in HF, see `is_cjk`), and about 800 rare characters (punctuation and accents of
Indic, Arabic and historic scripts added to Unicode after version 9.0, whose categories HF's Rust tables
do not know) that a scan of every code point found. Common text of any script gives identical ids.
"""

from __future__ import annotations

import os
import re
import unicodedata

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)

# A "word" longer than this is not worth cutting into pieces: it is almost surely noise (a hash, a base64
# blob) and the greedy search below is quadratic in its length. Same limit as BERT and Hugging Face.
MAX_CHARS_PER_WORD = 100


# ----------------------------------------------------------------------------------------------------------
# The vocabulary: one token per line, its id is its line number (from 0).

def load_vocab(path) -> dict[str, int]:
    """Read a WordPiece vocabulary file (one token per line) into {token: id}. Built in chapter 01."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"vocabulary file not found: {path!r}")
    with open(path, encoding="utf-8") as f:
        # Iterating a text file splits on "\n" only (not on the exotic line breaks str.splitlines() knows,
        # which a vocabulary token may contain), exactly as Hugging Face's load_vocab does.
        tokens = [line.rstrip("\n") for line in f]
    return _vocab_from_tokens(tokens, source=path)


def _vocab_from_tokens(tokens, source) -> dict[str, int]:
    vocab = {}
    for index, token in enumerate(tokens):
        if not isinstance(token, str):
            raise TypeError(f"vocabulary tokens must be str, got {type(token).__name__} at index {index} "
                            f"of {source}")
        if token in vocab:  # a duplicate would silently shift every id after it
            raise ValueError(f"duplicate token {token!r} in {source} (ids {vocab[token]} and {index})")
        vocab[token] = index
    missing = [token for token in SPECIAL_TOKENS if token not in vocab]
    if missing:
        raise ValueError(f"vocabulary {source} lacks the special tokens {missing}; BERT needs all of "
                         f"{list(SPECIAL_TOKENS)}")
    return vocab


# ----------------------------------------------------------------------------------------------------------
# Character classes. Unicode puts every character in a category: "Lu" upper-case letter, "Mn" non-spacing
# mark (an accent), "Zs" space, "Po" punctuation, "Cc" control, ... We only need a few questions answered.

def is_whitespace(char: str) -> bool:
    # "\t\n\r" are control characters to Unicode, but they separate words, so they count as whitespace.
    # Hugging Face uses Rust's char::is_whitespace (the Unicode White_Space property), which also counts the
    # line and paragraph separators (U+2028, U+2029: categories Zl, Zp); Google's BERT checked only Zs.
    return char in " \t\n\r" or unicodedata.category(char) in ("Zs", "Zl", "Zp")


def is_control(char: str) -> bool:
    # Controls (Cc), invisible format characters like the zero-width space U+200B (Cf), private use (Co)
    # and surrogates (Cs) carry no meaning for the model, so the cleaner drops them. "\t\n\r" are
    # whitespace instead (see above).
    # Google's BERT also dropped unassigned code points (Cn, "not assigned"); Hugging Face's Rust code keeps
    # them (checked on every code point), though its comment says it meant to drop them. We keep them too:
    # that matches HF, and a character newer than this Python's Unicode tables (a brand-new emoji is "Cn"
    # to an older Python) becomes [UNK] instead of silently vanishing, the same on every Python version.
    if char in "\t\n\r":
        return False
    return unicodedata.category(char) in ("Cc", "Cf", "Co", "Cs")


def is_punctuation(char: str) -> bool:
    # Every ASCII character that is neither a letter, a digit nor a space counts as punctuation, even
    # "$+<=>^`|~", which Unicode files as symbols (S*). So "x**2" splits into "x", "*", "*", "2".
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def is_cjk(char: str) -> bool:
    """True for a CJK ideograph (the "Chinese character" blocks of BERT's `_is_chinese_char`).

    Chinese is written without spaces and the vocabulary holds single characters, so each ideograph becomes
    a word of its own. Japanese kana and Korean hangul are not in these blocks: they are written with
    letters that WordPiece cuts like any other word.

    Deliberately unlike Hugging Face: its Rust `is_chinese_char` starts Extension E at 0x2B920, a typo
    for 0x2B820 (Google's BERT and HF's own Python tokenizer say 0x2B820), so HF glues the 256 ideographs
    U+2B820..U+2B91F to their neighbours. They are ideographs like any other; we keep BERT's range.
    Built in chapter 01.
    """
    cp = ord(char)
    return (0x4E00 <= cp <= 0x9FFF          # CJK Unified Ideographs
            or 0x3400 <= cp <= 0x4DBF       # Extension A
            or 0x20000 <= cp <= 0x2A6DF     # Extension B
            or 0x2A700 <= cp <= 0x2B73F     # Extension C
            or 0x2B740 <= cp <= 0x2B81F     # Extension D
            or 0x2B820 <= cp <= 0x2CEAF     # Extension E (HF's Rust code: 0x2B920, see above)
            or 0xF900 <= cp <= 0xFAFF       # Compatibility Ideographs
            or 0x2F800 <= cp <= 0x2FA1F)    # Compatibility Ideographs Supplement


# ----------------------------------------------------------------------------------------------------------
# Stage 1: the basic tokenizer. Each step is one pass over the characters, in the order Hugging Face's
# BertNormalizer runs them (clean, CJK, accents, lower case), then BertPreTokenizer's split.

def clean_text(text: str) -> str:
    """Drop control characters (and U+0000, U+FFFD "replacement character"); any whitespace -> " ".
    Built in chapter 01."""
    out = []
    for char in text:
        if char in "\x00\ufffd" or is_control(char):
            continue
        out.append(" " if is_whitespace(char) else char)
    return "".join(out)


def space_out_cjk(text: str) -> str:
    """Put spaces around every CJK ideograph, so that each one ends up a word of its own. Built in chapter 01."""
    return "".join(f" {char} " if is_cjk(char) else char for char in text)


def strip_accents(text: str) -> str:
    """"café" -> "cafe": decompose (NFD: "é" -> "e" + U+0301 combining acute) and drop the marks (Mn).
    Built in chapter 01."""
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(char for char in decomposed if unicodedata.category(char) != "Mn")


def lower_case(text: str) -> str:
    # One character at a time, as Rust's char::to_lowercase does in Hugging Face. Python's str.lower() on a
    # whole word knows the Greek final sigma ("ΟΔΟΣ" -> "οδος"), Rust per character does not ("οδοσ"),
    # and "ς" and "σ" have different ids in the vocabulary.
    return "".join(char.lower() for char in text)


def split_words(text: str) -> list[str]:
    """Split on whitespace, and make every punctuation character a word of its own. Built in chapter 01."""
    words, current = [], []
    for char in text:
        if is_whitespace(char) or is_punctuation(char):
            if current:
                words.append("".join(current))
                current = []
            if not is_whitespace(char):
                words.append(char)
        else:
            current.append(char)
    if current:
        words.append("".join(current))
    return words


def basic_tokenize(text: str, do_lower_case: bool = True) -> list[str]:
    """Clean `text` and cut it into words and punctuation marks (no vocabulary needed yet). Built in chapter 01."""
    text = clean_text(text)
    text = space_out_cjk(text)
    if do_lower_case:
        # Accents go before lower-casing: the order of Hugging Face's BertNormalizer. (Google's BERT did
        # lower case first; a scan of every Unicode code point found no character where the order matters.)
        text = strip_accents(text)
        text = lower_case(text)
    return split_words(text)


# ----------------------------------------------------------------------------------------------------------
# Stage 2: WordPiece.

def wordpiece(word: str, vocab, unk_token: str = UNK, max_chars: int = MAX_CHARS_PER_WORD) -> list[str]:
    """Cut one word into vocabulary pieces, greedily taking the longest piece that matches.

    With the pieces "un", "##aff", "##able" in the vocabulary, "unaffable" -> ["un", "##aff", "##able"]:
    from the start, try the whole word, then one character less, and so on until a prefix is in the
    vocabulary; take it and start again after it, now looking for "##"-prefixed pieces (pieces that
    continue a word). If at some point not even a single character matches, the word cannot be spelled
    with this vocabulary and becomes one [UNK] as a whole.
    Built in chapter 01.
    """
    if len(word) > max_chars:
        return [unk_token]
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:  # shrink from the right until the candidate is a known piece
            candidate = word[start:end]
            if start > 0:
                candidate = "##" + candidate
            if candidate in vocab:
                break
            end -= 1
        if end == start:  # nothing matched, not even one character
            return [unk_token]
        pieces.append(candidate)
        start = end
    return pieces


# ----------------------------------------------------------------------------------------------------------
# Stage 3: packing one or two sentences into BERT's input.

def get_tokens_and_segments(tokens_a, tokens_b=None, cls: str = CLS, sep: str = SEP):
    """`<cls> A <sep>` or `<cls> A <sep> B <sep>`, and the segment id of each token (0 for A, 1 for B).

    The segment ids are how BERT tells the two sentences apart (for next sentence prediction, or question
    and passage): the [CLS] and the first [SEP] belong to A, the last [SEP] to B.
    Built in chapter 01.
    """
    for name, tokens in (("tokens_a", tokens_a), ("tokens_b", tokens_b)):
        if isinstance(tokens, str):  # a str is iterable, and would silently become one token per letter
            raise TypeError(f"{name} must be a list of tokens, got a str: {tokens!r}")
    tokens = [cls] + list(tokens_a) + [sep]
    segments = [0] * (len(tokens_a) + 2)
    if tokens_b is not None:
        tokens += list(tokens_b) + [sep]
        segments += [1] * (len(tokens_b) + 1)
    return tokens, segments


def longest_first_lengths(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """How many tokens of A and of B to keep so that together they fit in `budget` ("longest first").

    If the shorter sentence fits in half the budget it stays whole and the longer one gets the rest;
    otherwise both get half. An odd budget gives its extra token to the longer sentence, and to B when
    both are equally long.

    This is the rule of Hugging Face's Rust `tokenizers` (`truncate_encodings`, LongestFirst), which
    `transformers.BertTokenizer` uses in version 5. Google's BERT (`_truncate_seq_pair`) instead removed one
    token at a time from the longer side, B on ties; that agrees except for odd budgets where B is at least
    as long as A: there it keeps one more token of A (A=5, B=5, budget 7: BERT keeps 4 + 3, HF 3 + 4).
    Built in chapter 01.
    """
    if len_a + len_b <= budget:
        return len_a, len_b
    shorter = min(len_a, len_b)
    if 2 * shorter <= budget:
        keep_short, keep_long = shorter, budget - shorter
    else:
        keep_short, keep_long = budget // 2, budget - budget // 2
    if len_a > len_b:  # A was the longer one
        return keep_long, keep_short
    return keep_short, keep_long  # A is shorter, or they tie (then B gets the extra token)


# ----------------------------------------------------------------------------------------------------------
# The tokenizer object: a vocabulary plus the three stages.

class BertTokenizer:
    """WordPiece tokenizer for BERT; same ids as `transformers.BertTokenizer` on the same vocabulary.

    >>> tok = BertTokenizer(vocab_file)                       # doctest: +SKIP
    >>> tok.tokenize("Hello, unaffable world!")               # doctest: +SKIP
    ['hello', ',', 'una', '##ffa', '##ble', 'world', '!']
    >>> tok.encode("the cat sat", "on the mat")               # doctest: +SKIP
    ([101, 1996, 4937, 2938, 102, 2006, 1996, 13523, 102], [0, 0, 0, 0, 0, 1, 1, 1, 1])
    Built in chapter 01.
    """

    def __init__(self, vocab_file, do_lower_case: bool = True):
        self._setup(load_vocab(vocab_file), do_lower_case)

    @classmethod
    def from_vocab(cls, tokens, do_lower_case: bool = True) -> "BertTokenizer":
        """A tokenizer over an in-memory vocabulary: `tokens[i]` gets id i (all five special tokens needed).

        For vocabularies built on the fly, like the character vocabulary of the Chinese chapter.
        """
        if isinstance(tokens, (str, bytes)) or not hasattr(tokens, "__iter__"):
            raise TypeError(f"tokens must be a list of str, got {type(tokens).__name__}")
        tokenizer = cls.__new__(cls)
        tokenizer._setup(_vocab_from_tokens(list(tokens), source="the token list"), do_lower_case)
        return tokenizer

    def _setup(self, vocab: dict[str, int], do_lower_case: bool):
        self.vocab = vocab                                             # token -> id
        self.ids_to_tokens = {i: token for token, i in vocab.items()}  # id -> token
        self.do_lower_case = do_lower_case
        self.pad_id, self.unk_id = vocab[PAD], vocab[UNK]
        self.cls_id, self.sep_id, self.mask_id = vocab[CLS], vocab[SEP], vocab[MASK]
        self.special_ids = {self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id}
        # Special tokens typed into the text ("the [MASK] sat") must stay whole, not become "[", "mask", "]".
        # Like Hugging Face we find them in the raw text, before any cleaning or lower-casing, so "[mask]"
        # is just punctuation and a word. Longest first, so no special token can shadow a longer one.
        by_length = sorted(SPECIAL_TOKENS, key=len, reverse=True)
        self._special_pattern = re.compile("(" + "|".join(re.escape(t) for t in by_length) + ")")

    def __len__(self) -> int:
        return len(self.vocab)  # V

    def __repr__(self) -> str:
        return f"BertTokenizer(vocab_size={len(self)}, do_lower_case={self.do_lower_case})"

    # --- text -> tokens -> ids ----------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        """Text -> WordPiece tokens (no [CLS]/[SEP] added)."""
        _check_text("text", text)
        tokens = []
        # re.split with a group keeps the separators: "a [MASK] b" -> ["a ", "[MASK]", " b"]
        for chunk in self._special_pattern.split(text):
            if chunk in SPECIAL_TOKENS:
                tokens.append(chunk)
                continue
            for word in basic_tokenize(chunk, self.do_lower_case):
                tokens.extend(wordpiece(word, self.vocab))
        return tokens

    def convert_tokens_to_ids(self, tokens) -> list[int]:
        """Tokens -> ids; a token not in the vocabulary gets the id of [UNK]."""
        if isinstance(tokens, str):
            raise TypeError(f"tokens must be a list of str, got a str: {tokens!r} (call tokenize first?)")
        return [self.vocab.get(token, self.unk_id) for token in tokens]

    def convert_ids_to_tokens(self, ids) -> list[str]:
        """Ids -> tokens. Accepts any iterable of ints (a list, a 1-D tensor)."""
        tokens = []
        for i in ids:
            i = int(i)
            if i not in self.ids_to_tokens:
                raise ValueError(f"token id {i} is outside the vocabulary (ids 0 to {len(self) - 1})")
            tokens.append(self.ids_to_tokens[i])
        return tokens

    def encode(self, text_a: str, text_b: str | None = None, max_len: int | None = None):
        """One or two texts -> (token_ids, segments) of `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`.

        `max_len` caps the total length, special tokens included; longer inputs are cut "longest first"
        (see `longest_first_lengths`). Same ids as Hugging Face's
        `tokenizer(text_a, text_b, truncation="longest_first", max_length=max_len)`.
        """
        _check_text("text_a", text_a)
        if text_b is not None:
            _check_text("text_b", text_b)
        # Hugging Face treats an empty second text as no second text at all (`if text_pair` in
        # transformers' tokenization_utils_tokenizers._encode_plus): "[CLS] A [SEP]", not "[CLS] A [SEP] [SEP]".
        if text_b == "":
            text_b = None
        is_pair = text_b is not None
        n_special = 3 if is_pair else 2
        if max_len is not None:
            smallest = n_special + (2 if is_pair else 1)  # the specials plus one token per sentence
            if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < smallest:
                raise ValueError(f"max_len must be None or an int >= {smallest} ({n_special} special tokens "
                                 f"plus one token per sentence), got {max_len!r}")

        tokens_a = self.tokenize(text_a)
        tokens_b = self.tokenize(text_b) if is_pair else None
        if max_len is not None:
            budget = max_len - n_special  # room left for the sentences themselves
            if is_pair:
                keep_a, keep_b = longest_first_lengths(len(tokens_a), len(tokens_b), budget)
                tokens_a, tokens_b = tokens_a[:keep_a], tokens_b[:keep_b]
            else:
                tokens_a = tokens_a[:budget]
        tokens, segments = get_tokens_and_segments(tokens_a, tokens_b)
        return self.convert_tokens_to_ids(tokens), segments

    # --- ids -> text, for demos ---------------------------------------------------------------------------

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Ids -> readable text: pieces joined by spaces, "##" pieces glued to the one before, [PAD] dropped.

        Lossy by nature: lower case, no accents, spaces around punctuation ("hello , world !").
        """
        skip = self.special_ids if skip_special_tokens else {self.pad_id}
        tokens = self.convert_ids_to_tokens(i for i in ids if int(i) not in skip)
        return " ".join(tokens).replace(" ##", "")


def _check_text(name: str, text) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")
