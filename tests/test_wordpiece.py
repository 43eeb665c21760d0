"""bertnb.wordpiece: a WordPiece vocabulary trained by merging frequent pairs, checked by hand on a tiny text and
against Hugging Face tokenizers' WordPieceTrainer (the same BPE approximation) on real sentences."""

import pytest

from bertnb.corpus import load_english_corpus
from bertnb.tokenization import SPECIAL_TOKENS, BertTokenizer
from bertnb.wordpiece import count_words, train_wordpiece


def test_merges_the_most_frequent_pair_first_by_hand():
    # words: ab x3, abc x2, bd x2. Alphabet by frequency (ties alphabetical): ##b 5, a 5, ##c 2, ##d 2, b 2.
    # Pairs: (a, ##b) 5, (##b, ##c) 2, (b, ##d) 2 -> "ab" first; then (ab, ##c) 2 and (b, ##d) 2 tie and the
    # alphabetically first pair wins: "abc", then "bd".
    vocab = train_wordpiece(["ab ab ab abc abc bd bd"], vocab_size=len(SPECIAL_TOKENS) + 8)
    assert vocab == list(SPECIAL_TOKENS) + ["##b", "a", "##c", "##d", "b", "ab", "abc", "bd"]
    assert train_wordpiece(["ab ab ab abc abc bd bd"], vocab_size=len(SPECIAL_TOKENS) + 6)[-1] == "ab"  # full
    # min_frequency 3: only the pair seen 5 times is merged, and rarer characters are left out
    assert train_wordpiece(["ab ab ab abc abc bd bd"], 100, min_frequency=3) == list(SPECIAL_TOKENS) + ["##b", "a", "ab"]


def test_a_trained_vocabulary_spells_its_text_without_unknowns():
    texts = [s for doc in load_english_corpus()[:80] for s in doc]
    vocab = train_wordpiece(texts, vocab_size=1500)
    assert len(vocab) == 1500 and len(set(vocab)) == 1500
    assert vocab[:len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    tokenizer = BertTokenizer.from_vocab(vocab)
    ids = [i for s in texts for i in tokenizer.convert_tokens_to_ids(tokenizer.tokenize(s))]
    assert sum(i == tokenizer.unk_id for i in ids) / len(ids) < 0.001  # only characters seen once
    assert tokenizer.tokenize("the function returns") == ["the", "function", "returns"]  # frequent words whole
    assert train_wordpiece(None, 1500, word_counts=count_words(texts)) == vocab  # one counting pass, reused


def test_close_to_hugging_face_wordpiece_trainer():
    tokenizers = pytest.importorskip("tokenizers")
    texts = [s for doc in load_english_corpus()[:80] for s in doc]
    ours = train_wordpiece(texts, vocab_size=1500)
    hf = tokenizers.Tokenizer(tokenizers.models.WordPiece(unk_token="[UNK]"))
    hf.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=True)
    hf.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    hf.train_from_iterator(texts, tokenizers.trainers.WordPieceTrainer(
        vocab_size=1500, min_frequency=2, special_tokens=list(SPECIAL_TOKENS), show_progress=False))
    theirs = set(hf.get_vocab())
    # The same algorithm; they differ in tie-breaking and in which rare characters the alphabet keeps.
    assert len(theirs & set(ours)) / len(theirs | set(ours)) > 0.85


@pytest.mark.parametrize("kwargs, message", [
    ({"texts": ["a b"], "vocab_size": 5}, r"vocab_size must be an int >= 6, got 5"),
    ({"texts": ["a b"], "vocab_size": 100, "min_frequency": 0}, r"min_frequency must be an int"),
    ({"texts": ["", "   "], "vocab_size": 100}, "the texts hold no words"),
    ({"texts": None, "vocab_size": 100}, "give texts"),
])
def test_bad_arguments_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_wordpiece(**kwargs)
