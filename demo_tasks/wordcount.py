"""Chapter 08: counting words, the pure functions behind the parallel pipeline.

No Celery here: the chapter's tasks call these functions, and so can a test or
a notebook cell, with the same results::

    texts = corpus_files()                       # {"README.md": "...", "notebooks/01_...ipynb": "..."}
    pieces = split(texts.values(), 4)            # 4 chunks of about the same size, cut between paragraphs
    counts = merge([count_words(p) for p in pieces])
    top(counts, 10)                              # [("任务", ...), ("worker", ...), ("celery", ...), ...]

What is counted is the course's prose: ``corpus_files()`` keeps the words a
reader reads and drops the code in between (``prose()``: fenced code blocks,
inline code, HTML comments, link targets and bare URLs), so ``tasks.py`` in
backquotes adds no word "py" and ``celery -A proj worker`` no "celery" or "proj".
Chinese has no spaces between words, so Chinese text is cut into words by
jieba (``jieba.lcut``); English words are the runs of ASCII letters (and digits
or ``_`` after the first letter), lowercased; stop words and one-letter words
are left out.

jieba, left alone, writes "Building prefix dict from the default dictionary ..."
and three more lines to stderr the first time it segments, and caches its
dictionary in the system's temporary folder. In a notebook both are wrong:
the stderr lines become a cell's output (and nbval compares outputs), and a
chapter keeps its files in its own scratch folder. So the first count_words()
call first calls ``quiet_jieba(folder)``, the folder being ``$JIEBA_CACHE_DIR``
if set (a chapter sets it to its scratch folder before it starts workers,
which inherit it), else ``tempfile.gettempdir()``. Call ``quiet_jieba()``
yourself to choose another folder before the first count.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

#: The repository: corpus_files() reads only files inside it.
REPO_ROOT = Path(__file__).resolve().parent.parent
#: The environment variable naming the folder for jieba's dictionary cache.
CACHE_VARIABLE = "JIEBA_CACHE_DIR"
#: The file jieba writes in that folder (its name for the default dictionary's cache).
CACHE_FILE = "jieba.cache"

# Words too common to tell anything about a text (function words), as the chapter shows them.
_STOP_WORDS_TEXT = """
    的 了 是 在 和 就 也 都 一个 与 或 及 而 但 并 又 还 再 被 把 让 给 对 为 以 于 从 到 由 向
    这 那 这个 那个 这些 那些 这里 那里 这样 它 它们 你 你们 我 我们 他 他们 她 其 之 个 们 着 过
    吗 呢 吧 啊 呀 不 没 没有 有 会 能 要 可以 可 等 上 下 中 里 后 前 时 如果 因为 所以 就是 还是 已经 什么
    用 只 第 很 更 最 先 每 各 该 此
    the a an of to and in is are was were be been it its this that these those for on at by with from as
    or not no but if then than so do does did can will would should may you your we our they their he she
    his her them us me my i what which who when where how all any each there here also into out up about
"""
#: The words count_words() leaves out.
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

# A run of Chinese characters (CJK unified ideographs and extension A), or an ASCII
# word: a letter, then letters, digits or underscores (so "apply_async" stays whole,
# and "127.0.0.1" or "2" are no words at all). Everything else separates words.
_TOKENS = re.compile(r"([\u3400-\u4dbf\u4e00-\u9fff]+)|([A-Za-z][A-Za-z0-9_]*)")
# A paragraph ends at an empty line (or a line of spaces).
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
# The code in Markdown, which prose() drops: fenced blocks (``` or ~~~, to the closing fence
# or the end of the text), HTML comments, inline code, a link's target and bare URLs.
_FENCED = re.compile(r"^[ \t]*(`{3,}|~{3,}).*?(?:^[ \t]*\1[^\n]*$|\Z)", re.S | re.M)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_INLINE_CODE = re.compile(r"(`+)[^`\n].*?\1")
_LINK_TARGET = re.compile(r"\]\([^)\s]*(?:\s+\"[^\"]*\")?\)")
_URL = re.compile(r"https?://\S+")

_jieba = None
_jieba_lock = threading.Lock()
_cache_path: Path | None = None


# --- jieba, quietly ---------------------------------------------------------------

def _import_jieba():
    # jieba 0.42.1 imports pkg_resources, which setuptools 67-80 answer with a
    # deprecation warning on stderr: that would be a notebook's output too.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pkg_resources.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        import jieba
    return jieba


def quiet_jieba(cache_dir: str | os.PathLike) -> Path:
    """Make jieba log nothing below WARNING and cache its dictionary in ``cache_dir``
    (created if needed). Returns the cache file's path. Takes effect if jieba has
    not loaded its dictionary yet in this process (it loads it once)."""
    global _jieba, _cache_path
    jieba = _import_jieba()
    jieba.setLogLevel(logging.WARNING)  # its logger; the lines are DEBUG
    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    jieba.dt.tmp_dir = str(folder)  # where the default Tokenizer (jieba.lcut's) caches
    jieba.dt.cache_file = CACHE_FILE
    _cache_path = folder / CACHE_FILE
    _jieba = jieba
    return _cache_path


def _segmenter():
    """jieba, made quiet on first use (see the module's docstring)."""
    if _jieba is None:
        with _jieba_lock:
            if _jieba is None:
                quiet_jieba(os.environ.get(CACHE_VARIABLE) or tempfile.gettempdir())
    return _jieba


def jieba_cache_path() -> Path | None:
    """Where jieba's cache goes (None until quiet_jieba() or the first count)."""
    return _cache_path


# --- The corpus -------------------------------------------------------------------

def notebook_markdown(path: str | os.PathLike) -> str:
    """The markdown cells of a notebook, one after another, separated by empty lines."""
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    cells = []
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "markdown":
            source = cell.get("source", "")
            cells.append(source if isinstance(source, str) else "".join(source))
    return "\n\n".join(cells)


def prose(markdown: str) -> str:
    """Markdown without its code: fenced code blocks, HTML comments, inline code, link
    targets (the link's text stays) and bare URLs are removed; the rest is left as it is."""
    for pattern, replacement in ((_FENCED, ""), (_HTML_COMMENT, ""), (_INLINE_CODE, " "),
                                 (_LINK_TARGET, "]"), (_URL, " ")):
        markdown = pattern.sub(replacement, markdown)
    return markdown


def corpus_files(root: str | os.PathLike = REPO_ROOT) -> dict[str, str]:
    """The course's own prose: README.md and the markdown cells of notebooks/*.ipynb,
    without their code (``prose()``), as {path relative to ``root``: text}, in file-name order."""
    root = Path(root)
    texts = {}
    readme = root / "README.md"
    if readme.is_file():
        texts["README.md"] = prose(readme.read_text(encoding="utf-8"))
    for notebook in sorted((root / "notebooks").glob("*.ipynb")):
        texts[notebook.relative_to(root).as_posix()] = prose(notebook_markdown(notebook))
    return texts


# --- The pipeline's steps -----------------------------------------------------------

def paragraphs(texts: str | Iterable[str]) -> list[str]:
    """The non-empty paragraphs of one text or of several, in order, stripped."""
    if isinstance(texts, str):
        texts = [texts]
    return [p.strip() for text in texts for p in _PARAGRAPH_BREAK.split(text) if p.strip()]


def split(texts: str | Iterable[str] | Mapping[str, str], pieces: int) -> list[str]:
    """Cut the texts into ``pieces`` chunks of about the same length, between
    paragraphs (a paragraph is never cut, so a chunk's count is exact), keeping
    their order. Every chunk is non-empty: with fewer paragraphs than ``pieces``,
    there are fewer chunks, one per paragraph."""
    if pieces < 1:
        raise ValueError(f"pieces must be at least 1, not {pieces}")
    if isinstance(texts, Mapping):
        texts = texts.values()
    paras = paragraphs(texts)
    pieces = min(pieces, len(paras))
    total = sum(len(p) for p in paras)
    chunks: list[list[str]] = []
    done = 0  # characters in the chunks closed so far, and in the open one
    for index, para in enumerate(paras):
        left_after = len(paras) - index - 1
        if chunks:
            # Close the open chunk when this paragraph's middle lies past the chunk's
            # share of the text, or when the paragraphs left are just enough to give
            # each chunk still to come one of its own.
            share = total * len(chunks) / pieces
            must_close = left_after + 1 == pieces - len(chunks)
            if len(chunks) < pieces and (must_close or done + len(para) / 2 > share):
                chunks.append([])
        else:
            chunks.append([])
        chunks[-1].append(para)
        done += len(para)
    return ["\n\n".join(chunk) for chunk in chunks]


def count_words(text: str) -> dict[str, int]:
    """How often each word occurs in ``text``: Chinese words as jieba cuts them,
    English words lowercased; no punctuation, numbers, single letters or STOP_WORDS."""
    jieba = _segmenter()
    counts: Counter[str] = Counter()
    for match in _TOKENS.finditer(text):
        chinese, english = match.groups()
        words = jieba.lcut(chinese) if chinese else [english.lower()]
        counts.update(w for w in words if w not in STOP_WORDS and not (w.isascii() and len(w) < 2))
    return dict(counts)


def merge(counts_list: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Add up several counts (the reduce step)."""
    total: Counter[str] = Counter()
    for counts in counts_list:
        total.update(counts)
    return dict(total)


def top(counts: Mapping[str, int], n: int = 10) -> list[tuple[str, int]]:
    """The ``n`` most frequent words: by count, most first; ties in word order."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n]


__all__ = ["CACHE_VARIABLE", "STOP_WORDS", "corpus_files", "count_words", "jieba_cache_path", "merge",
           "notebook_markdown", "paragraphs", "prose", "quiet_jieba", "split", "top"]
