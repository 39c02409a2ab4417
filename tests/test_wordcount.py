"""Chapter 08's word count (demo_tasks.wordcount): pure functions, no Celery.

jieba keeps one dictionary per process, loaded once: what jieba writes on its
first use (stderr lines, a cache file) is checked in fresh `python -c` processes.
Everything this module writes goes to temporary folders it removes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from demo_tasks import wordcount

SENTENCE = ("Celery 是一个简单、灵活且可靠的分布式任务队列，它的 worker 每分钟能处理 "
            "millions of tasks! 2 x y apply_async 127.0.0.1")

PARAGRAPHS = [f"第 {i} 段：Celery 的 worker 执行任务 {'。' * i}" for i in range(1, 8)]


@pytest.fixture(scope="module", autouse=True)
def jieba_cache():
    """This process's jieba caches into a folder of its own (not the system's /tmp)."""
    with tempfile.TemporaryDirectory(prefix="wordcount-test-") as folder:
        yield wordcount.quiet_jieba(folder)


def fresh_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter; its stdout and stderr go to this process's
    file descriptors (capfd sees them)."""
    return subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **env), check=True,
                          stdin=subprocess.DEVNULL, timeout=120)


def test_count_words_cuts_chinese_with_jieba_and_keeps_lowercase_english_words():
    assert wordcount.count_words(SENTENCE) == {
        # jieba's words; 是, 一个, 的, 它, 能 are stop words; the punctuation is gone
        "简单": 1, "灵活": 1, "且": 1, "可靠": 1, "分布式": 1, "任务": 1, "队列": 1, "每分钟": 1, "处理": 1,
        # lowercased; "of" is a stop word; "2", "x", "y" and the address's numbers are no words
        "celery": 1, "worker": 1, "millions": 1, "tasks": 1, "apply_async": 1,
    }
    assert wordcount.count_words("任务 任务，TASK task Task。") == {"任务": 2, "task": 3}
    assert wordcount.count_words("的了是在和 the a of to and in is ， 。！ 42 x") == {}
    assert wordcount.count_words("") == {}


def test_split_keeps_every_paragraph_in_order_in_the_asked_number_of_pieces():
    text = "\n\n".join(PARAGRAPHS)
    for pieces in range(1, len(PARAGRAPHS) + 1):
        chunks = wordcount.split([text], pieces)
        assert len(chunks) == pieces and all(c.strip() for c in chunks), pieces
        assert wordcount.paragraphs(chunks) == PARAGRAPHS, pieces
    # More pieces than paragraphs: one piece per paragraph, none empty.
    assert wordcount.split([text], 100) == PARAGRAPHS
    # Several texts (a mapping's values), paragraphs separated by lines of spaces.
    assert wordcount.split({"a": "one\n  \ntwo", "b": "three"}, 2) in (["one", "two\n\nthree"],
                                                                       ["one\n\ntwo", "three"])
    with pytest.raises(ValueError):
        wordcount.split([text], 0)


def test_split_of_the_corpus_gives_pieces_of_about_the_same_size_and_the_same_counts():
    texts = wordcount.corpus_files()
    whole = wordcount.merge(wordcount.count_words(t) for t in texts.values())
    for pieces in (2, 4, 8):
        chunks = wordcount.split(texts, pieces)
        sizes = [len(c) for c in chunks]
        assert len(chunks) == pieces and min(sizes) > 0.5 * sum(sizes) / pieces, sizes
        assert wordcount.paragraphs(chunks) == wordcount.paragraphs(texts.values())
        # Counting the pieces apart and adding up is counting the whole (no word is cut).
        assert wordcount.merge(wordcount.count_words(c) for c in chunks) == whole


def test_merge_adds_counts():
    assert wordcount.merge([{"任务": 2, "celery": 1}, {"celery": 3}, {}]) == {"任务": 2, "celery": 4}
    assert wordcount.merge([]) == {}
    pieces = [wordcount.count_words(p) for p in PARAGRAPHS]
    assert wordcount.merge(pieces) == wordcount.count_words("\n\n".join(PARAGRAPHS))


def test_top_orders_by_count_then_by_word():
    counts = {"b": 2, "任务": 5, "a": 2, "celery": 7, "z": 1}
    assert wordcount.top(counts, 3) == [("celery", 7), ("任务", 5), ("a", 2)]
    assert wordcount.top(counts, 10) == [("celery", 7), ("任务", 5), ("a", 2), ("b", 2), ("z", 1)]
    assert wordcount.top({}, 3) == []


def test_jieba_writes_nothing_to_stderr_and_caches_where_told(capfd):
    code = ("from demo_tasks import wordcount; "
            "print(sorted(wordcount.count_words('分布式任务队列')), wordcount.jieba_cache_path())")
    with tempfile.TemporaryDirectory(prefix="wordcount-cache-") as folder:
        # Told by the environment (what a chapter does for its kernel and its workers).
        fresh_python(code, JIEBA_CACHE_DIR=folder)
        out, err = capfd.readouterr()
        cache = Path(folder) / "jieba.cache"
        assert err == ""
        assert out == f"['任务', '分布式', '队列'] {cache}\n"
        assert cache.stat().st_size > 1_000_000  # the dictionary, ready for the next process

        # Told by a call: quiet_jieba() before the first count wins over the environment.
        other = Path(folder) / "scratch"
        fresh_python(f"from demo_tasks import wordcount; wordcount.quiet_jieba({str(other)!r}); "
                     "wordcount.count_words('任务')", JIEBA_CACHE_DIR=folder)
        assert capfd.readouterr() == ("", "")
        assert (other / "jieba.cache").is_file()

        # Why: jieba left alone talks on stderr (and caches in the temporary folder).
        tmp = Path(folder) / "tmp"
        tmp.mkdir()
        fresh_python("import jieba; jieba.lcut('分布式任务队列')", TMPDIR=str(tmp))
        assert "Building prefix dict" in capfd.readouterr().err
        assert (tmp / "jieba.cache").is_file()


def test_the_corpus_is_the_readme_and_the_notebooks_markdown_cells():
    with tempfile.TemporaryDirectory(prefix="wordcount-corpus-") as folder:
        root = Path(folder)
        (root / "notebooks").mkdir()
        (root / "README.md").write_text("# 课程\n\nCelery", encoding="utf-8")
        cells = [{"cell_type": "markdown", "source": ["# 第八章\n", "任务"]},
                 {"cell_type": "code", "source": "import launcher", "outputs": []},
                 {"cell_type": "markdown", "source": "链式调用"}]
        (root / "notebooks" / "08_x.ipynb").write_text(json.dumps({"cells": cells}), encoding="utf-8")
        (root / "notebooks" / "01_y.ipynb").write_text(json.dumps({"cells": []}), encoding="utf-8")
        assert wordcount.corpus_files(root) == {
            "README.md": "# 课程\n\nCelery",
            "notebooks/01_y.ipynb": "",
            "notebooks/08_x.ipynb": "# 第八章\n任务\n\n链式调用",
        }


def test_the_course_corpus_top_words_are_words_of_its_prose():
    texts = wordcount.corpus_files()
    notebooks = sorted(p.relative_to(wordcount.REPO_ROOT).as_posix()
                       for p in (wordcount.REPO_ROOT / "notebooks").glob("*.ipynb"))
    assert list(texts) == ["README.md", *notebooks] and all(texts.values())
    words = [w for w, _ in wordcount.top(wordcount.merge(wordcount.count_words(t) for t in texts.values()), 20)]
    assert "任务" in words[:10] and "worker" in words[:10] and "celery" in words, words
    # File names and commands are code, not words: "tasks.py" in backquotes used to put "py" in the top 10.
    assert not {"py", "ipynb", "http", "https", "md"} & set(words), words


def test_prose_drops_code_blocks_inline_code_comments_links_and_urls():
    text = ("看 `tasks.py` 和 [文档](https://docs.celeryq.dev/a.html \"标题\")。\n\n"
            "<!-- background: ready \"ready.\" -->\n```shell\ncelery -A proj worker\n\nmore code\n```\n\n"
            "网址 https://example.org/x?y=1 结束，``a`b`` 完。\n\n~~~\nunclosed fence")
    assert wordcount.prose(text) == "看   和 [文档]。\n\n\n\n\n网址   结束，  完。\n\n"
    counted = wordcount.count_words(wordcount.prose(text))
    assert "py" not in counted and "celery" not in counted and "proj" not in counted and "文档" in counted
    assert wordcount.prose("一段没有代码的文字") == "一段没有代码的文字"
