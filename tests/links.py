"""Forward links that stay true: every reference to another chapter, from the chapter list.

    python -m tests.links            # rewrite the notebooks' markdown cells and the README's course map
    python -m tests.links --check    # only report; exit 1 if anything would change

What a notebook's markdown may say about another chapter, and how it must say it
(``tests/chapters.py`` is the list; "written" means the notebook file exists):

* a **link** to a chapter's notebook, ``[第 09 章 · 通知与报表](09_notifications_and_reports.ipynb)``:
  the label and the file name are the list's. While the notebook is missing
  there is no link, only the label marked: ``第 09 章 · 通知与报表（计划中）``;
  when the file appears, that text becomes the link again.
* a plain **mention**, ``第 12 章`` (also ``第 09、10 章``, ``第 01–03 章``): it
  stays plain text; a chapter not written yet is marked in front, the way the
  prose reads, ``计划中的第 12 章会现场演示……``, ``（计划中的第 14 章）``
  (a mark after it, ``第 12 章（计划中）``, is rewritten to that). A mention
  that mixes written and unwritten chapters is split: ``第 05 章、计划中的第 12 章``.
* ``排障指南`` names the troubleshooting guide like a chapter's label.
* the glossary's **详见** column (chapter numbers, ``03、12``): ``12（计划中）``.
* the **下一步** section opens with ``下一章是 <link>：…`` naming the next chapter
  of the list (after chapter 15: ``接下来是 <the guide>``); the sentence after
  the link is kept, and written anew by hand when the next chapter changes.
* a notebook's title (``# 06 定时任务：celery beat``) starts with its number and
  the list's title (reported, never rewritten).

In the README only the course map (the table under ``## 课程地图``) is
rewritten: a written chapter's row links its notebook and says ✅, a missing
one shows the file name and 计划中.

Code (fenced blocks and inline code) and HTML comments are never read or
changed: a code block is shown exactly as it runs. Notebooks are edited only
through ``tests.nbedit.editing`` (the notebook's lock) and only markdown cells.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import nbformat

from tests.chapters import (
    CHAPTERS,
    NOTEBOOKS_DIR,
    NUMBERED,
    PLANNED,
    REPO_ROOT,
    TROUBLESHOOTING,
    Chapter,
    by_number,
    by_slug,
    link,
    next_chapter,
    planned,
)

README = REPO_ROOT / "README.md"

#: What each kind of finding means, as the report says it.
KINDS = {
    "planned-but-exists": "marked 计划中, but the notebook exists",
    "missing-unmarked": "names a chapter whose notebook does not exist, without 计划中",
    "wrong-file": "links a notebook file name that is not the chapter list's",
    "label": "is not written the way the chapter list renders it",
    "next": "下一步 does not name the next chapter of the list",
    "title": "the notebook's title does not start with the list's number and title",
    "unlisted": "the notebook is not in tests/chapters.py",
    "readme-map": "the README's course map does not match the chapter list",
}
#: Kinds a rewrite cannot fix (someone must edit the list or the prose by hand).
UNFIXABLE = {"title", "unlisted"}


@dataclass(frozen=True)
class Finding:
    file: str  # "notebooks/03_first_task.ipynb", "README.md"
    where: str  # "cell 45", "line 85"
    kind: str
    before: str
    after: str
    context: str = ""

    @property
    def fixable(self) -> bool:
        return self.kind not in UNFIXABLE and self.after != self.before

    def __str__(self) -> str:
        text = f"{self.file} {self.where}: {KINDS[self.kind]}: {self.before!r}"
        if self.fixable:
            text += f" → {self.after!r}"
        if self.context:
            text += f"  (in “{self.context}”)"
        return text


# --------------------------------------------------------------------------- patterns

_MARK = re.escape(f"（{PLANNED}）")
_INNER_MARK = f"，{PLANNED}"  # an older mark right before a closing "）": "（第 14 章，计划中）"
_PREFIX = f"{PLANNED}的"  # a mention's mark: "计划中的第 12 章"
_TITLES = "|".join(re.escape(c.title) for c in sorted(NUMBERED, key=lambda c: -len(c.title)))

_PATTERN = re.compile(
    # never touched: fenced code, HTML comments, inline code
    r"(?P<code>```[\s\S]*?```|~~~[\s\S]*?~~~|<!--[\s\S]*?-->|`[^`\n]+`)"
    # a Markdown link to a notebook
    r"|(?P<link>\[(?P<label>[^\]\n]*)\]\((?P<dir>[^)\s#]*/)?(?P<name>[^)\s/#]+)\.ipynb(?P<anchor>#[^)\s]*)?\))"
    # a chapter's label as text: "第 09 章 · 通知与报表（计划中）" (any title before the mark, else the list's)
    rf"|(?P<titled>第\s*(?P<tn>\d{{1,2}})\s*章\s*·\s*"
    rf"(?P<title>[^（）\n\[\]|：]{{1,20}}?(?={_MARK})|{_TITLES})(?P<tmark>{_MARK})?)"
    # the troubleshooting guide by its name
    rf"|(?P<ts>{re.escape(TROUBLESHOOTING.title)}(?P<tsmark>{_MARK})?)"
    # a plain mention: "第 12 章", "第 09、10 章", "第 01–03 章"
    rf"|(?P<mention>(?P<pre>{_PREFIX})?第\s*(?P<nums>\d{{1,2}}(?:\s*[、–—-]\s*\d{{1,2}})*)\s*章(?P<mark>{_MARK}|{_INNER_MARK}(?=）))?)"
)
_NEXT_HEADING = re.compile(r"^## 下一步[ \t]*$", re.M)
_NEXT_LEAD = re.compile(r"^(?:下一章是?|接下来是)[ \t]*")
_MD_LINK = re.compile(r"\[[^\]\n]*\]\([^)\n]*\)")


def _context(text: str, start: int, end: int, width: int = 24) -> str:
    snippet = text[max(0, start - width): end + width]
    return " ".join(snippet.split())


class _Rewriter:
    """One markdown text's rewrite; ``findings`` collects (kind, before, after, context)."""

    def __init__(self, notebooks_dir: Path, prefix: str = "", here: Chapter | None = None):
        self.dir = notebooks_dir
        self.prefix = prefix
        self.here = here  # a chapter's own name in its own notebook is left alone (its title)
        self.findings: list[tuple[str, str, str, str]] = []

    def note(self, kind: str, before: str, after: str, text: str, start: int, end: int) -> None:
        self.findings.append((kind, before, after, _context(text, start, end)))

    # -- the whole text
    def text(self, text: str) -> str:
        text = self.glossary(text)
        return _PATTERN.sub(lambda m: self.one(m, text), text)

    def one(self, m: re.Match, text: str) -> str:
        before = m.group(0)
        if m.group("code") is not None:
            return before
        named = TROUBLESHOOTING if m.group("ts") is not None else None
        if m.group("titled") is not None and 1 <= int(m.group("tn")) <= len(NUMBERED):
            named = by_number(m.group("tn"))
        if named is not None and named == self.here:
            return before
        if m.group("link") is not None:
            after, kind = self.a_link(m)
        elif m.group("titled") is not None:
            after, kind = self.a_titled(m)
        elif m.group("ts") is not None:
            after, kind = self.a_label(TROUBLESHOOTING, m.group("tsmark") is not None)
        else:
            after, kind = self.a_mention(m)
        if after != before:
            self.note(kind or "label", before, after, text, m.start(), m.end())
        return after

    # -- each form
    def a_link(self, m: re.Match) -> tuple[str, str | None]:
        name = m.group("name")
        prefix = m.group("dir") or self.prefix
        try:
            chapter = by_slug(name)
            kind = None
        except KeyError:
            numbered = re.match(r"(\d{2})_", name)
            if not numbered or not 1 <= int(numbered.group(1)) <= len(NUMBERED):
                return m.group(0), "wrong-file"  # a notebook the list does not know: reported, kept
            chapter, kind = by_number(numbered.group(1)), "wrong-file"
        if not chapter.exists(self.dir):
            return planned(chapter.label), kind or "missing-unmarked"
        anchor = m.group("anchor") or ""
        return f"[{chapter.label}]({prefix}{chapter.filename}{anchor})", kind

    def a_titled(self, m: re.Match) -> tuple[str, str | None]:
        number = int(m.group("tn"))
        if not 1 <= number <= len(NUMBERED):
            return m.group(0), None
        return self.a_label(by_number(number), m.group("tmark") is not None)

    def a_label(self, chapter: Chapter, marked: bool) -> tuple[str, str | None]:
        """A chapter named by its label: a link once written, the label marked 计划中 until then."""
        if chapter.exists(self.dir):
            return link(chapter, self.dir, self.prefix), "planned-but-exists" if marked else None
        return planned(chapter.label), None if marked else "missing-unmarked"

    def a_mention(self, m: re.Match) -> tuple[str, str | None]:
        numbers = _expand(m.group("nums"))
        if numbers is None or not all(1 <= n <= len(NUMBERED) for n in numbers):
            return m.group(0), None
        written = [by_number(n).exists(self.dir) for n in numbers]
        pre, mark = m.group("pre") is not None, m.group("mark") is not None
        core = m.group(0)[len(m.group("pre") or ""): len(m.group(0)) - len(m.group("mark") or "")]
        if all(written):
            return core, "planned-but-exists" if pre or mark else None
        if not any(written):
            return _PREFIX + core, None if pre or mark else "missing-unmarked"
        # written and unwritten chapters in one mention: one mention per run of the same status
        runs: list[tuple[bool, list[int]]] = []
        for n, w in zip(numbers, written, strict=True):
            if runs and runs[-1][0] == w:
                runs[-1][1].append(n)
            else:
                runs.append((w, [n]))
        parts = [("" if w else _PREFIX) + f"第 {_numbers(run)} 章" for w, run in runs]
        return "、".join(parts), "planned-but-exists" if pre or mark else "missing-unmarked"

    # -- the glossary's 详见 column
    def glossary(self, text: str) -> str:
        lines = text.split("\n")
        column = False
        for i, line in enumerate(lines):
            if not line.startswith("|"):
                column = False
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells and cells[-1] == "详见":
                column = True
                continue
            if not column or set(line) <= set("|-: "):
                continue
            head, sep, last = line.rstrip().rstrip("|").rpartition("|")
            if not sep:
                continue
            new = "、".join(self.glossary_token(t, line) for t in last.split("、"))
            if new != last:
                lines[i] = f"{head}|{new}|"
        return "\n".join(lines)

    def glossary_token(self, token: str, row: str) -> str:
        m = re.fullmatch(rf"(\s*)(\d{{2}})({_MARK})?(\s*)", token)
        if not m or not 1 <= int(m.group(2)) <= len(NUMBERED):
            return token
        written = by_number(m.group(2)).exists(self.dir)
        after = m.group(2) if written else m.group(2) + f"（{PLANNED}）"
        if after != m.group(2) + (m.group(3) or ""):
            kind = "planned-but-exists" if written else "missing-unmarked"
            before = m.group(2) + (m.group(3) or "")
            term = row.strip("| ").split("|", 1)[0].strip()
            self.findings.append((kind, before, after, f"{term} … | 详见 {token.strip()}"))
        return f"{m.group(1)}{after}{m.group(4)}"


def _expand(nums: str) -> list[int] | None:
    """"09、10" → [9, 10]; "01–03" → [1, 2, 3]."""
    out: list[int] = []
    for part in re.split(r"\s*、\s*", nums):
        bounds = re.split(r"\s*[–—-]\s*", part)
        if len(bounds) == 1:
            out.append(int(bounds[0]))
        elif len(bounds) == 2 and int(bounds[0]) < int(bounds[1]):
            out.extend(range(int(bounds[0]), int(bounds[1]) + 1))
        else:
            return None
    return out


def _numbers(run: list[int]) -> str:
    consecutive = all(b == a + 1 for a, b in itertools.pairwise(run))
    if len(run) >= 3 and consecutive:
        return f"{run[0]:02d}–{run[-1]:02d}"
    return "、".join(f"{n:02d}" for n in run)


# --------------------------------------------------------------------------- 下一步

def _next_section(source: str, here: Chapter, notebooks_dir: Path) -> tuple[str, list[tuple[str, str, str, str]]]:
    """The 下一步 section's first sentence names the list's next chapter."""
    nxt = next_chapter(here)
    heading = _NEXT_HEADING.search(source)
    if nxt is None or heading is None:
        return source, []
    ref = link(nxt, notebooks_dir)
    lead = "下一章是" if nxt.number is not None else "接下来是"  # the guide is not a chapter
    lead += " " if ref.startswith("[") else ""  # a space before a link, none before plain text
    start = heading.end()
    while source[start:start + 1] == "\n":
        start += 1
    end = source.find("\n\n", start)
    end = len(source) if end < 0 else end
    paragraph = source[start:end]
    lead_m = _NEXT_LEAD.match(paragraph)
    if lead_m is None:  # no "下一章…" sentence: put one first
        new = f"{lead}{ref}。"
        sep = "\n\n" if paragraph else ""
        after = source[:start] + new + sep + source[start:]
        return after, [("next", paragraph[:40], new, f"## 下一步 {paragraph[:40]}")]
    rest = paragraph[lead_m.end():]
    link_m = _MD_LINK.match(rest)
    if link_m:
        old_ref = link_m.group(0)
    else:
        stop = min((i for i in (rest.find("："), rest.find("。")) if i >= 0), default=len(rest))
        old_ref = rest[:stop]
    old_new = paragraph[: lead_m.end() + len(old_ref)]
    new = lead + ref
    if old_new == new:
        return source, []
    marked = PLANNED in old_ref
    if _referenced_number(old_ref) != nxt.number:
        kind = "next"
    elif nxt.exists(notebooks_dir):
        kind = "planned-but-exists" if marked else "label"
    else:
        kind = "label" if marked else "missing-unmarked"
    after = source[:start] + new + paragraph[len(old_new):] + source[end:]
    return after, [(kind, old_new, new, _context(source, start, end))]


def _referenced_number(ref: str) -> int | str | None:
    m = re.search(r"\((?:[^)]*/)?(\d{2})_[^)]*\.ipynb", ref) or re.search(r"第\s*(\d{1,2})\s*章", ref)
    if m:
        return int(m.group(1))
    return None if TROUBLESHOOTING.title in ref or TROUBLESHOOTING.filename in ref else "?"


# --------------------------------------------------------------------------- notebooks

def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def fix_notebook(nb: nbformat.NotebookNode, path: Path, notebooks_dir: Path | None = None) -> list[Finding]:
    """Rewrite ``nb``'s markdown cells in place; return what changed (and what cannot be fixed)."""
    notebooks_dir = Path(notebooks_dir or path.parent)
    name = _relative(path)
    try:
        here: Chapter | None = by_slug(path.stem)
    except KeyError:
        here = None
    findings: list[Finding] = []
    if here is None:
        findings.append(Finding(name, "file", "unlisted", path.name, path.name))
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        source = cell.source
        found: list[tuple[str, str, str, str]] = []
        if index == 0 and here is not None:
            title = source.split("\n", 1)[0]
            expected = f"# {here.nn} {here.title}" if here.number is not None else f"# {here.title}"
            if not title.startswith(expected):
                found.append(("title", title, expected, ""))
        if here is not None:
            source, more = _next_section(source, here, notebooks_dir)
            found += more
        rewriter = _Rewriter(notebooks_dir, here=here)
        source = rewriter.text(source)
        found += rewriter.findings
        findings += [Finding(name, f"cell {index}", *f) for f in found]
        if source != cell.source:
            cell.source = source
    has_next = any(c.cell_type == "markdown" and _NEXT_HEADING.search(c.source) for c in nb.cells)
    if here is not None and next_chapter(here) is not None and not has_next:
        findings.append(Finding(name, "file", "next", "(no ## 下一步 heading)", "(no ## 下一步 heading)"))
    return findings


def check_notebook(path: Path, notebooks_dir: Path | None = None) -> list[Finding]:
    nb = nbformat.read(path, as_version=4)
    return fix_notebook(nb, Path(path), notebooks_dir)


def rewrite_notebook(path: Path, notebooks_dir: Path | None = None) -> list[Finding]:
    """Rewrite one notebook under its lock, only if something would change."""
    from tests.nbedit import editing

    findings = check_notebook(path, notebooks_dir)
    if not any(f.fixable for f in findings):
        return findings
    with editing(path) as nb:  # read afresh under the lock: others edit the same notebooks
        return fix_notebook(nb, Path(path), notebooks_dir)


def notebooks(notebooks_dir: Path | None = None) -> list[Path]:
    return sorted(Path(notebooks_dir or NOTEBOOKS_DIR).glob("*.ipynb"))


# --------------------------------------------------------------------------- README

_MAP_HEADING = re.compile(r"^## 课程地图[ \t]*$", re.M)
_MAP_ROW = re.compile(r"^\|\s*(?P<num>\d{2}|—)\s*\|(?P<nb>[^|]*)\|(?P<topic>.*)\|(?P<status>[^|]*)\|\s*$")


def map_row(chapter: Chapter, topic: str, notebooks_dir: Path | None = None) -> str:
    """The course map's row for ``chapter`` (``topic`` is the row's own prose)."""
    if chapter.exists(notebooks_dir):
        cell, status = f"[`{chapter.slug}`](notebooks/{chapter.filename})", "✅"
    else:
        cell, status = f"`{chapter.slug}`", PLANNED
    return f"| {chapter.nn or '—'} | {cell} | {topic} | {status} |"


def fix_readme_text(text: str, notebooks_dir: Path | None = None, name: str = "README.md") -> tuple[str, list[Finding]]:
    heading = _MAP_HEADING.search(text)
    if heading is None:
        return text, [Finding(name, "file", "readme-map", "(no ## 课程地图)", "(no ## 课程地图)")]
    lines = text.split("\n")
    first = text[: heading.end()].count("\n") + 1
    findings: list[Finding] = []
    seen: set[str] = set()
    for i in range(first, len(lines)):
        if lines[i].startswith("## "):
            break
        m = _MAP_ROW.match(lines[i])
        if not m:
            continue
        slug = re.search(r"`([^`]+)`", m.group("nb"))
        try:
            chapter = by_slug(slug.group(1)) if slug else by_number(m.group("num"))
        except (KeyError, ValueError):
            findings.append(Finding(name, f"line {i + 1}", "readme-map", lines[i], lines[i]))
            continue
        seen.add(chapter.slug)
        row = map_row(chapter, m.group("topic").strip(), notebooks_dir)
        if row != lines[i]:
            was_planned = PLANNED in m.group("status") or "](" not in m.group("nb")
            written = chapter.exists(notebooks_dir)
            kind = ("planned-but-exists" if written and was_planned else
                    "missing-unmarked" if not written and not was_planned else "label")
            findings.append(Finding(name, f"line {i + 1}", kind, lines[i], row))
            lines[i] = row
    for chapter in CHAPTERS:
        if chapter.slug not in seen:
            findings.append(Finding(name, "course map", "readme-map", f"(no row for {chapter.slug})",
                                    f"(no row for {chapter.slug})"))
    return "\n".join(lines), findings


def check_readme(path: Path = README, notebooks_dir: Path | None = None) -> list[Finding]:
    return fix_readme_text(Path(path).read_text(encoding="utf-8"), notebooks_dir, _relative(Path(path)))[1]


def rewrite_readme(path: Path = README, notebooks_dir: Path | None = None) -> list[Finding]:
    text = Path(path).read_text(encoding="utf-8")
    new, findings = fix_readme_text(text, notebooks_dir, _relative(Path(path)))
    if new != text:
        Path(path).write_text(new, encoding="utf-8")
    return findings


# --------------------------------------------------------------------------- command line

def check_all(notebooks_dir: Path | None = None, readme: Path | None = README) -> list[Finding]:
    findings = [f for p in notebooks(notebooks_dir) for f in check_notebook(p, notebooks_dir)]
    if readme is not None:
        findings += check_readme(readme, notebooks_dir)
    return findings


def _report(findings: Iterable[Finding], verb: str) -> int:
    findings = list(findings)
    for f in findings:
        print(f"{verb if f.fixable else 'cannot fix'}: {f}")
    return len(findings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.links", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report what a rewrite would change")
    args = parser.parse_args(argv)
    if args.check:
        findings = check_all()
        _report(findings, "would change")
        print(f"{len(findings)} finding(s)" if findings else "all chapter references are true")
        return 1 if findings else 0
    findings = [f for p in notebooks() for f in rewrite_notebook(p)] + rewrite_readme()
    _report(findings, "changed")
    left = [f for f in findings if not f.fixable]
    print(f"{len(findings) - len(left)} change(s); {len(left)} left to fix by hand")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
