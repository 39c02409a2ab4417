"""The course's chapter list: one place for every chapter's number, file and title.

Taken from the chapter map of the course design (COURSE.md): chapters 01–15 and,
beside them, the troubleshooting guide. Whatever names or links a chapter reads
from here: the 下一步 section and cross-references of every notebook
(``python -m tests.links``), the README's course map, per-chapter tables
(timings, budgets)::

    from tests.chapters import CHAPTERS, by_number, next_chapter, link
    ch = by_number(9)
    ch.nn, ch.slug, ch.title      # "09", "09_notifications_and_reports", "通知与报表"
    ch.exists()                   # is notebooks/09_notifications_and_reports.ipynb there?
    link(ch)                      # "[第 09 章 · 通知与报表](09_notifications_and_reports.ipynb)"
                                  # or, while the file is missing, "第 09 章 · 通知与报表（计划中）"

Whether a chapter is written is never stored: it is whether its notebook file
exists. Functions that look at files take ``notebooks_dir`` (default: the
repository's ``notebooks/``) so a test can point them at a folder of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"

#: The mark a reference to a chapter not written yet carries.
PLANNED = "计划中"


@dataclass(frozen=True)
class Chapter:
    """One chapter: ``number`` is 1–15, or None for the troubleshooting guide."""

    number: int | None
    slug: str
    title: str

    @property
    def nn(self) -> str:
        """The two-digit number ("09"), or "" for the troubleshooting guide."""
        return f"{self.number:02d}" if self.number is not None else ""

    @property
    def filename(self) -> str:
        return f"{self.slug}.ipynb"

    @property
    def label(self) -> str:
        """How prose names the chapter: "第 09 章 · 通知与报表", or "排障指南"."""
        return f"第 {self.nn} 章 · {self.title}" if self.number is not None else self.title

    def path(self, notebooks_dir: Path | str | None = None) -> Path:
        return Path(notebooks_dir or NOTEBOOKS_DIR) / self.filename

    def exists(self, notebooks_dir: Path | str | None = None) -> bool:
        return self.path(notebooks_dir).is_file()


#: Every chapter in course order; the troubleshooting guide comes last.
CHAPTERS: tuple[Chapter, ...] = (
    Chapter(1, "01_what_is_celery", "什么是 Celery"),
    Chapter(2, "02_environment", "环境搭建"),
    Chapter(3, "03_first_task", "第一个任务"),
    Chapter(4, "04_flower", "用 Flower 监控"),
    Chapter(5, "05_django_integration", "Django 集成 Celery"),
    Chapter(6, "06_periodic_tasks", "定时任务"),
    Chapter(7, "07_retries_and_errors", "重试、错误与时间限制"),
    Chapter(8, "08_workflows", "工作流与路由"),
    Chapter(9, "09_notifications_and_reports", "通知与报表"),
    Chapter(10, "10_crawling_and_media", "爬虫与媒体处理"),
    Chapter(11, "11_testing", "测试任务"),
    Chapter(12, "12_reliability", "可靠性"),
    Chapter(13, "13_observability", "可观测性"),
    Chapter(14, "14_security_and_deployment", "安全与部署"),
    Chapter(15, "15_performance", "性能"),
    Chapter(None, "troubleshooting", "排障指南"),
)

#: The numbered chapters only (01–15).
NUMBERED: tuple[Chapter, ...] = tuple(c for c in CHAPTERS if c.number is not None)
TROUBLESHOOTING: Chapter = CHAPTERS[-1]


def by_number(number: int | str) -> Chapter:
    """The chapter numbered ``number`` (9, "9" or "09")."""
    wanted = int(number)
    for chapter in NUMBERED:
        if chapter.number == wanted:
            return chapter
    raise KeyError(f"no chapter {number!r} in tests/chapters.py")


def by_slug(slug: str) -> Chapter:
    """The chapter whose notebook is ``slug`` (with or without ".ipynb")."""
    slug = slug.removesuffix(".ipynb")
    for chapter in CHAPTERS:
        if chapter.slug == slug:
            return chapter
    raise KeyError(f"no chapter {slug!r} in tests/chapters.py")


def next_chapter(chapter: Chapter) -> Chapter | None:
    """The chapter after ``chapter`` in course order (15 → troubleshooting → None)."""
    index = CHAPTERS.index(chapter)
    return CHAPTERS[index + 1] if index + 1 < len(CHAPTERS) else None


def notebook_path(chapter: Chapter, notebooks_dir: Path | str | None = None) -> Path:
    return chapter.path(notebooks_dir)


def exists(chapter: Chapter, notebooks_dir: Path | str | None = None) -> bool:
    return chapter.exists(notebooks_dir)


def planned(label: str) -> str:
    """``label`` marked as not written yet: "第 09 章 · 通知与报表（计划中）"."""
    return f"{label}（{PLANNED}）"


def link(chapter: Chapter, notebooks_dir: Path | str | None = None, prefix: str = "") -> str:
    """The chapter as a notebook's prose must name it: a Markdown link while its
    notebook exists, else its label marked 计划中 (no link to a missing file).
    ``prefix`` goes before the file name ("notebooks/" from the README)."""
    if chapter.exists(notebooks_dir):
        return f"[{chapter.label}]({prefix}{chapter.filename})"
    return planned(chapter.label)
