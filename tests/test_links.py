"""Forward links that stay true: every reference to another chapter agrees with
the chapter list (tests/chapters.py) and with which notebooks exist.

A failure names the notebook, the cell and the text; ``python -m tests.links``
rewrites what can be rewritten (see tests/links.py for the rules).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from tests import links
from tests.chapters import (
    CHAPTERS,
    NUMBERED,
    PLANNED,
    TROUBLESHOOTING,
    by_number,
    by_slug,
    link,
    next_chapter,
)

NOTEBOOKS = links.notebooks()
FIX = "run `python -m tests.links` to rewrite them from tests/chapters.py"


def _report(findings: list[links.Finding]) -> str:
    return "\n".join(str(f) for f in findings) + f"\n({FIX})"


# --------------------------------------------------------------------------- the list


def test_the_list_has_chapters_01_to_15_and_the_troubleshooting_guide():
    assert [c.number for c in NUMBERED] == list(range(1, 16))
    assert CHAPTERS[-1] is TROUBLESHOOTING and TROUBLESHOOTING.slug == "troubleshooting"
    assert len({c.slug for c in CHAPTERS}) == len(CHAPTERS)
    for chapter in NUMBERED:
        assert re.fullmatch(rf"{chapter.nn}_[a-z_]+", chapter.slug), chapter
    for chapter in CHAPTERS:
        # a title sits inside "第 NN 章 · 标题（计划中）" and before "：" in 下一步
        assert chapter.title and not re.search(r"[：（）\[\]|]", chapter.title), chapter


def test_every_notebook_is_in_the_list():
    unlisted = [p.name for p in NOTEBOOKS if p.stem not in {c.slug for c in CHAPTERS}]
    assert not unlisted, f"notebooks missing from tests/chapters.py: {unlisted}"


def test_next_chapter_follows_the_list():
    assert next_chapter(by_number(1)) is by_number(2)
    assert next_chapter(by_number(8)) is by_number(9)
    assert next_chapter(by_number(15)) is TROUBLESHOOTING
    assert next_chapter(TROUBLESHOOTING) is None


def test_a_link_is_a_link_only_while_the_notebook_exists(tmp_path):
    ch09 = by_slug("09_notifications_and_reports")
    assert link(ch09, tmp_path) == f"第 09 章 · 通知与报表（{PLANNED}）"
    (tmp_path / ch09.filename).write_text("{}")
    assert link(ch09, tmp_path) == "[第 09 章 · 通知与报表](09_notifications_and_reports.ipynb)"
    assert link(ch09, tmp_path, prefix="notebooks/").endswith("(notebooks/09_notifications_and_reports.ipynb)")
    assert link(TROUBLESHOOTING, tmp_path) == f"排障指南（{PLANNED}）"


# --------------------------------------------------------------------------- the course as it is


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_the_notebooks_references_to_other_chapters_are_true(path):
    findings = links.check_notebook(path)
    assert not findings, f"{len(findings)} reference(s) to fix in {path.name}:\n{_report(findings)}"


def test_the_readme_course_map_is_true():
    findings = links.check_readme()
    assert not findings, _report(findings)


# --------------------------------------------------------------------------- the check can fail

#: (cell, kind, text the finding quotes) for each defect planted in the made-up chapter 03.
PLANTED = [
    (1, "planned-but-exists", "第 04 章（计划中）"),
    (1, "planned-but-exists", "计划中的第 04 章"),
    (2, "missing-unmarked", "[第 09 章 · 通知与报表](09_notifications_and_reports.ipynb)"),
    (3, "missing-unmarked", "第 12 章"),
    (3, "missing-unmarked", "第 04、13 章"),
    (5, "wrong-file", "[Flower](04_flower_monitoring.ipynb)"),
    (6, "planned-but-exists", "04（计划中）"),
    (6, "missing-unmarked", "12"),
    (7, "planned-but-exists", "第 04 章 · 用 Flower 监控（计划中）"),
    (8, "next", "下一章是 [第 05 章 · Django 集成 Celery](05_django_integration.ipynb)"),
]
#: What a rewrite makes of each planted cell.
FIXED = {
    1: "Flower 见第 04 章，也见第 04 章。",
    2: "通知见第 09 章 · 通知与报表（计划中）。",
    3: "计划中的第 12 章会演示；第 04 章、计划中的第 13 章也会。`第 12 章` 是代码。",
    5: "监控见 [第 04 章 · 用 Flower 监控](04_flower.ipynb)。",
    6: "| 术语 | 详见 |\n|---|---|\n| 事件 | 04、12（计划中） |",
    7: "[第 04 章 · 用 Flower 监控](04_flower.ipynb)",
    8: "## 下一步\n\n下一章是 [第 04 章 · 用 Flower 监控](04_flower.ipynb)：用 Flower 看每个任务。",
}
CODE = "# 第 12 章 shows this: code is never rewritten\nx = 1"


def _made_up_course(folder: Path) -> Path:
    """Chapters 03 and 04 exist in ``folder``; 03 has one of each defect."""
    md = nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook(cells=[
        md("# 03 第一个任务\n\n一个编出来的章节。"),
        md("Flower 见第 04 章（计划中），也见计划中的第 04 章。"),
        md("通知见[第 09 章 · 通知与报表](09_notifications_and_reports.ipynb)。"),
        md("第 12 章会演示；第 04、13 章也会。`第 12 章` 是代码。"),
        nbformat.v4.new_code_cell(CODE),
        md("监控见 [Flower](04_flower_monitoring.ipynb)。"),
        md("| 术语 | 详见 |\n|---|---|\n| 事件 | 04（计划中）、12 |"),
        md("第 04 章 · 用 Flower 监控（计划中）"),
        md("## 下一步\n\n下一章是 [第 05 章 · Django 集成 Celery](05_django_integration.ipynb)"
           "：用 Flower 看每个任务。"),
    ])
    path = folder / "03_first_task.ipynb"
    nbformat.write(nb, path)
    nbformat.write(nbformat.v4.new_notebook(cells=[md("# 04 用 Flower 监控")]), folder / "04_flower.ipynb")
    return path


def test_the_check_finds_each_kind_of_defect_and_names_notebook_cell_and_text(tmp_path):
    path = _made_up_course(tmp_path)
    findings = links.check_notebook(path)
    for cell, kind, text in PLANTED:
        hits = [f for f in findings if f.where == f"cell {cell}" and f.kind == kind and f.before == text]
        assert hits, f"not found: cell {cell} {kind} {text!r}\nfound:\n{_report(findings)}"
        message = str(hits[0])
        assert "03_first_task.ipynb" in message and f"cell {cell}" in message and repr(text) in message
    assert {f.kind for f in findings} >= {"planned-but-exists", "missing-unmarked", "wrong-file", "next"}
    assert not [f for f in findings if f.where == "cell 4"], "a code cell was read"
    # the same defects in the real course would fail the test above, with this report
    with pytest.raises(AssertionError, match=r"03_first_task\.ipynb cell 3: .*'第 12 章'"):
        assert not findings, _report(findings)


def test_the_rewrite_fixes_every_defect_and_a_second_run_changes_nothing(tmp_path):
    path = _made_up_course(tmp_path)
    nb = nbformat.read(path, as_version=4)
    links.fix_notebook(nb, path)
    for cell, text in FIXED.items():
        assert nb.cells[cell].source == text, f"cell {cell}"
    assert nb.cells[4].source == CODE
    nbformat.write(nb, path)
    assert links.check_notebook(path) == []
    assert links.rewrite_notebook(path) == []


def test_a_planned_reference_becomes_a_link_when_the_notebook_appears(tmp_path):
    path = _made_up_course(tmp_path)
    nb = nbformat.read(path, as_version=4)
    links.fix_notebook(nb, path)
    nbformat.write(nb, path)
    for slug in ("09_notifications_and_reports", "12_reliability", "13_observability"):
        nbformat.write(nbformat.v4.new_notebook(), tmp_path / f"{slug}.ipynb")
    findings = links.check_notebook(path)
    assert {f.kind for f in findings} == {"planned-but-exists"}, _report(findings)
    nb = nbformat.read(path, as_version=4)
    links.fix_notebook(nb, path)
    assert nb.cells[2].source == "通知见[第 09 章 · 通知与报表](09_notifications_and_reports.ipynb)。"
    assert nb.cells[3].source.startswith("第 12 章会演示；第 04 章、第 13 章也会。")
    assert nb.cells[6].source.endswith("| 事件 | 04、12 |")


def test_the_readme_check_finds_rows_that_disagree_with_the_files(tmp_path):
    for slug in ("03_first_task",):
        nbformat.write(nbformat.v4.new_notebook(), tmp_path / f"{slug}.ipynb")
    readme = tmp_path / "README.md"
    readme.write_text(
        "## 课程地图\n\n| # | notebook | 主题 | 状态 |\n|---|---|---|---|\n"
        "| 03 | `03_first_task` | 第一个任务 | 计划中 |\n"
        "| 09 | [`09_notifications_and_reports`](notebooks/09_notifications_and_reports.ipynb) | 通知 | ✅ |\n"
        "\n## 运行要求\n", encoding="utf-8")
    findings = links.check_readme(readme, tmp_path)
    kinds = {(f.where, f.kind) for f in findings}
    assert ("line 5", "planned-but-exists") in kinds and ("line 6", "missing-unmarked") in kinds, _report(findings)
    assert any(f.kind == "readme-map" and "troubleshooting" in f.before for f in findings)
    links.rewrite_readme(readme, tmp_path)
    text = readme.read_text(encoding="utf-8")
    assert "| 03 | [`03_first_task`](notebooks/03_first_task.ipynb) | 第一个任务 | ✅ |" in text
    assert "| 09 | `09_notifications_and_reports` | 通知 | 计划中 |" in text
    assert links.fix_readme_text(text, tmp_path)[0] == text


def test_a_chapter_naming_itself_is_left_alone(tmp_path):
    cell = nbformat.v4.new_markdown_cell("# 排障指南\n\n排障指南按症状查；第 12 章会演示。")
    nb = nbformat.v4.new_notebook(cells=[cell])
    path = tmp_path / "troubleshooting.ipynb"
    nbformat.write(nb, path)
    findings = links.check_notebook(path)
    assert [(f.kind, f.before, f.after) for f in findings] == [("missing-unmarked", "第 12 章", "计划中的第 12 章")]


def test_after_chapter_15_comes_the_troubleshooting_guide(tmp_path):
    cell = nbformat.v4.new_markdown_cell("## 下一步\n\n下一章是 [第 14 章 · 安全与部署](14_x.ipynb)：……")
    path = tmp_path / "15_performance.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 15 性能"), cell]), path)
    nb = nbformat.read(path, as_version=4)
    assert [f.kind for f in links.fix_notebook(nb, path)] == ["next"]
    assert nb.cells[1].source == "## 下一步\n\n接下来是排障指南（计划中）：……"
