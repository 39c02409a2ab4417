"""The chapter skeleton of ../shared/COURSE.md, point by point, on the chapters
built on it: a header line, checkpoints, predict-then-run prompts, 本章小结,
常见错误, exercises whose checks fail on the empty attempt and pass on the
reference answer, collapsed plumbing and answers, no test machinery in the prose.

The committed outputs record what each check printed; strict nbval re-runs
every notebook and compares, so "❌ on the empty attempt, ✅ on the reference
answer" is proven again on every test run, not only read from the file.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import selfcheck
from tests.helpers import NOTEBOOKS

#: The chapters on the skeleton (all of them; chapters 07+ start on it).
ON_SKELETON = [p for p in NOTEBOOKS if p.name[:2] in {f"{n:02d}" for n in range(1, 13)}]
SECTIONS = ["## 准备", "## 本章小结", "## 常见错误", "## 练习", "## 参考答案", "## 下一步"]
HEADER = re.compile(r"\*\*预计用时：\*\*\s*\d+\s*分钟.*\*\*先修：\*\*.+\*\*学完你将得到：\*\*.+")
#: What the prose never talks about: the test machinery.
MACHINERY = re.compile(r"nbval|sanitiz|placeholder|占位|NBVAL", re.IGNORECASE)


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def text_output(cell: dict) -> str:
    return "".join("".join(o.get("text", "")) for o in cell.get("outputs", []) if o["output_type"] == "stream")


def tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def hidden(cell: dict) -> bool:
    return cell.get("metadata", {}).get("jupyter", {}).get("source_hidden", False) is True


def markdown(path: Path) -> str:
    return "\n".join(source(c) for c in cells(path) if c["cell_type"] == "markdown")


def tagged(path: Path, tag: str) -> list[int]:
    return [i for i, c in enumerate(cells(path)) if tag in tags(c)]


def heading_index(path: Path, heading: str) -> int:
    return next(i for i, c in enumerate(cells(path))
                if c["cell_type"] == "markdown" and re.search(rf"^{re.escape(heading)}\s*$", source(c), re.M))


ids = {"ids": lambda p: p.name[:2]}


@pytest.mark.parametrize("path", ON_SKELETON, **ids)
def test_the_header_line_says_minutes_prerequisites_and_outcome(path):
    first = source(cells(path)[0])
    assert HEADER.search(first), "the title cell needs **预计用时：** N 分钟 · **先修：** … · **学完你将得到：** …"


@pytest.mark.parametrize("path", ON_SKELETON, **ids)
def test_the_sections_are_there_in_order(path):
    text = markdown(path)
    positions = [text.find(f"{s}\n") for s in SECTIONS]
    assert -1 not in positions, f"missing: {[s for s, p in zip(SECTIONS, positions, strict=True) if p < 0]}"
    assert positions == sorted(positions)


@pytest.mark.parametrize("path", ON_SKELETON, **ids)
def test_common_mistakes_go_from_symptom_to_cause_to_fix(path):
    text = markdown(path)
    section = text[text.index("## 常见错误"):text.index("## 练习")]
    assert re.search(r"\|\s*症状\s*\|\s*原因\s*\|\s*解决\s*\|", section), "a table: | 症状 | 原因 | 解决 |"
    rows = [line for line in section.splitlines() if line.startswith("|") and "---" not in line]
    assert len(rows) >= 4, "at least three mistakes"


@pytest.mark.parametrize("path", ON_SKELETON, **ids)
def test_two_to_four_checkpoints_all_passing(path):
    found = tagged(path, "checkpoint")
    assert 2 <= len(found) <= 4, f"{len(found)} checkpoints"
    for i in found:
        cell = cells(path)[i]
        assert "selfcheck.checkpoint(" in source(cell)
        out = text_output(cell)
        assert selfcheck.OK in out and selfcheck.FAIL not in out, f"cell {i}: {out!r}"


@pytest.mark.parametrize("path", [p for p in ON_SKELETON if p.name[:2] in {"01", "03"}], **ids)
def test_predict_then_run_before_the_surprising_cells(path):
    prompts = [i for i, c in enumerate(cells(path)) if c["cell_type"] == "markdown" and "**先预测：**" in source(c)]
    assert prompts, "a **先预测：** prompt before a cell whose outcome surprises"
    for i in prompts:
        assert cells(path)[i + 1]["cell_type"] == "code", f"the prompt in cell {i} is followed by the cell it is about"


def exercise_numbers(path: Path) -> list[int]:
    return sorted({int(m) for c in cells(path) for t in tags(c) for m in re.findall(r"^exercise-(\d+)-", t)})


@pytest.mark.parametrize("path", ON_SKELETON, **ids)
def test_every_exercise_fails_on_the_empty_attempt_and_passes_on_the_reference(path):
    numbers = exercise_numbers(path)
    assert numbers, "exercises with checks"
    module = __import__(f"selfcheck.ch{path.name[:2]}", fromlist=["exercises"])
    assert module.exercises.numbers == numbers, "a registered check for every exercise, and an exercise for every check"
    answers_start = heading_index(path, "## 参考答案")
    every = cells(path)
    for n in numbers:
        # One cell each, or (an exercise that changes several files) a run of cells in a row.
        attempts = tagged(path, f"exercise-{n}-answer")
        references = tagged(path, f"exercise-{n}-reference")
        checks = tagged(path, f"exercise-{n}-check")
        for run in attempts, references:
            assert run and run == list(range(run[0], run[-1] + 1)), f"exercise {n}: its cells in a row"
        attempt, reference = attempts[-1], references[-1]
        assert attempt < answers_start < references[0], f"exercise {n}: attempt before 参考答案, reference after"
        assert checks == [attempt + 1, reference + 1], f"exercise {n}: a check right after each"
        assert not any(hidden(every[i]) for i in attempts) and all(hidden(every[i]) for i in references), \
            f"exercise {n}: the attempt is open, the reference answer collapsed"
        for i in references:
            # JupyterLab shows a collapsed cell's first line, and its outputs unless those are collapsed too.
            assert every[i]["metadata"]["jupyter"].get("outputs_hidden") is True, f"cell {i}: outputs collapsed too"
            first = source(every[i]).split("\n")[0]
            assert first.startswith(("# 参考答案：", "%%writeblock ")), \
                f"cell {i}: a collapsed answer starts with a line that gives nothing away, not {first!r}"
        for i in checks:
            assert f".check({n}, globals())" in source(every[i])
        before, after = text_output(every[checks[0]]), text_output(every[checks[1]])
        assert f"{selfcheck.FAIL} 练习 {n}" in before and selfcheck.OK not in before, f"exercise {n}, empty: {before!r}"
        assert after.strip() == f"{selfcheck.OK} 练习 {n}：通过", f"exercise {n}, reference: {after!r}"


@pytest.mark.parametrize("path", ON_SKELETON, **ids)
def test_plumbing_is_collapsed_and_says_what_it_is(path):
    for i in tagged(path, "plumbing"):
        cell = cells(path)[i]
        assert hidden(cell), f"cell {i}: plumbing is collapsed"
        assert source(cell).lstrip().startswith("#"), f"cell {i}: plumbing starts with a comment saying so"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_the_prose_never_talks_about_the_test_machinery(path):
    assert not MACHINERY.findall(markdown(path))


def test_a_verdict_shows_nothing_in_jupyter_but_is_true_or_false():
    from IPython.core.formatters import DisplayFormatter

    passed, failed = selfcheck.Verdict(True), selfcheck.Verdict(False)
    assert passed and not failed and repr(passed) == "passed"
    assert DisplayFormatter().format(passed) == ({}, {})  # nothing displayed as the cell's value


def test_the_checks_fail_on_nothing_at_all():
    """Whatever a chapter's check is given before the learner ran anything, it
    reports a problem instead of raising or passing, and imports no chapter's
    Celery app (importing one makes it the current app of this test process)."""
    imported_before = "demo_tasks.tasks" in sys.modules
    for path in ON_SKELETON:
        module = __import__(f"selfcheck.ch{path.name[:2]}", fromlist=["exercises"])
        for n in module.exercises.numbers:
            assert module.exercises.problems(n, {}), f"chapter {path.name[:2]}, exercise {n}"
            assert imported_before or "demo_tasks.tasks" not in sys.modules, \
                f"chapter {path.name[:2]}, exercise {n}: the check imported demo_tasks.tasks before any answer"


def test_checkpoint_and_check_print_what_they_found(capsys):
    assert selfcheck.checkpoint("能连上", True, fix="无")
    assert not selfcheck.checkpoint("会出错", lambda: 1 / 0, fix="重新运行准备单元格")
    out = capsys.readouterr().out
    assert out.splitlines() == ["✅ 通过：能连上", "❌ 未通过：会出错", "   怎么办：重新运行准备单元格",
                                "   （出错：ZeroDivisionError: division by zero）"]
    demo = selfcheck.Exercises(99)
    demo.register(1)(lambda ns: selfcheck.given(ns, "answer", "一个数") or ([] if ns["answer"] == 42 else ["不对"]))
    assert not demo.check(1, {"answer": ...})
    assert not demo.check(1, {"answer": 41}) and demo.check(1, {"answer": 42})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "❌ 练习 1：未通过" and out[-1] == "✅ 练习 1：通过"


def test_given_tells_a_stub_from_an_answer():
    def stub(x): ...

    def documented_stub(x):
        """Return x + 1."""

    def one_liner(x): return x

    def constant(): return 42

    for value in (..., None, stub, documented_stub):
        assert selfcheck.given({"f": value}, "f", "一个函数"), value
    assert selfcheck.given({}, "f", "一个函数")
    for value in (one_liner, constant, 0, "", []):
        assert selfcheck.given({"f": value}, "f", "一个函数") == [], value


# --- The files a learner edits from a notebook (chapters 05 and 07) ------------------------
# selfcheck.Workspace, the cell magic ``%%writeblock FILE BLOCK``: an answer cell run
# again, the reference answer after it, or a wrong attempt after that, each *replaces*
# its block, so the file holds one definition, the latest -- never a second one after
# the first, which Celery would ignore (it keeps the first task registered under a
# name) with a warning the learner does not see.

STARTER = "from celery import Celery\n\napp = Celery('my_tasks')\n"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "my_tasks.py").write_text(STARTER)
    return selfcheck.Workspace(tmp_path, "exercises")


def test_the_first_write_appends_a_marked_block_and_says_where(files):
    said = files.write_block("my_tasks.py", "exercise-1", "\n@app.task\ndef one():\n    return 1\n\n")
    text = files.path("my_tasks.py").read_text()
    assert text.startswith(STARTER)
    assert text.endswith("\n# <<< exercise-1\n")
    assert files.block("my_tasks.py", "exercise-1") == "@app.task\ndef one():\n    return 1"
    lines = text.splitlines()
    begin = lines.index(files.begin_marker("my_tasks.py", "exercise-1")) + 1
    assert said == f"exercises/my_tasks.py：在末尾加上了 exercise-1 这一段（第 {begin}–{len(lines)} 行）"
    assert lines[begin - 2] == "", "a blank line before the block"


def test_writing_again_replaces_the_block_in_place(files):
    files.write_block("my_tasks.py", "exercise-1", "# the empty answer")
    files.write_block("my_tasks.py", "exercise-2", "@app.task\ndef two():\n    return 2")
    said = files.write_block("my_tasks.py", "exercise-1", "@app.task\ndef one():\n    return 1")
    assert "替换了 exercise-1" in said
    files.write_block("my_tasks.py", "exercise-1", "@app.task\ndef one():\n    return 'wrong'")
    text = files.path("my_tasks.py").read_text()
    assert text.count("def one()") == 1 and "return 'wrong'" in text and "return 1" not in text
    assert text.index("exercise-1") < text.index("exercise-2"), "the block keeps its place"
    assert text.count("def two()") == 1


def test_a_stub_is_a_missing_block_or_only_comments(files):
    assert files.stub("my_tasks.py", "exercise-1")
    files.write_block("my_tasks.py", "exercise-1", "# 练习 1：任务 fetch_politely(url)\n\n")
    assert files.stub("my_tasks.py", "exercise-1")
    files.write_block("my_tasks.py", "exercise-1", "# 练习 1\n@app.task\ndef fetch_politely(url): ...")
    assert not files.stub("my_tasks.py", "exercise-1")
    assert files.stub("no_such_file.py", "exercise-1")


def test_templates_get_template_comments(tmp_path):
    files = selfcheck.Workspace(tmp_path, "my_project")
    (tmp_path / "actions.html").write_text("<p>download</p>\n")
    files.write_block("actions.html", "exercise-3", "{# 练习 3 之四 #}")
    text = (tmp_path / "actions.html").read_text()
    assert "{# >>> exercise-3 " in text and text.rstrip().endswith("{# <<< exercise-3 #}")
    assert files.stub("actions.html", "exercise-3")
    files.write_block("actions.html", "exercise-3", "<form method=\"post\"></form>")
    assert not files.stub("actions.html", "exercise-3")


def test_a_block_whose_end_marker_was_deleted_is_refused_not_duplicated(files):
    files.write_block("my_tasks.py", "exercise-1", "x = 1")
    path = files.path("my_tasks.py")
    path.write_text(path.read_text().replace(files.end_marker("my_tasks.py", "exercise-1"), ""))
    with pytest.raises(ValueError, match="结束标记"):
        files.write_block("my_tasks.py", "exercise-1", "x = 2")
    assert "x = 2" not in path.read_text()


def test_the_latest_definition_is_the_one_a_new_process_registers(files):
    """Run All (the empty stub, then the reference), then a wrong attempt: the task a
    fresh import registers is the wrong attempt's, and Celery warns of no duplicate."""
    for body in ("# 练习 1", "@app.task\ndef answer():\n    return 'reference'",
                 "@app.task\ndef answer():\n    return 'wrong'"):
        files.write_block("my_tasks.py", "exercise-1", body)
    code = textwrap.dedent("""
        import warnings
        warnings.simplefilter("error")
        import my_tasks
        print(my_tasks.app.tasks["my_tasks.answer"]())
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=files.folder, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "wrong"


def test_the_magic_writes_blocks_and_explains_its_usage(tmp_path, capsys, monkeypatch):
    from IPython.core.error import UsageError

    magics = {}

    class Shell:  # what workspace() asks of IPython's shell
        def register_magic_function(self, function, magic_kind, magic_name):
            assert magic_kind == "cell"
            magics[magic_name] = function

    monkeypatch.setattr("IPython.get_ipython", lambda: Shell())
    (tmp_path / "my_tasks.py").write_text(STARTER)
    assert isinstance(selfcheck.workspace(tmp_path, "exercises"), selfcheck.Workspace)
    writeblock = magics["writeblock"]
    writeblock("my_tasks.py exercise-1", "x = 1\n")
    writeblock("my_tasks.py exercise-1", "x = 2\n")
    out = capsys.readouterr().out
    assert "exercises/my_tasks.py：在末尾加上了 exercise-1" in out and "替换了 exercise-1" in out
    assert (tmp_path / "my_tasks.py").read_text().count("x = ") == 1
    with pytest.raises(UsageError, match="用法"):
        writeblock("my_tasks.py", "x = 3\n")
