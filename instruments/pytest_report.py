"""Chapter 11: run a folder's tests with pytest, as a new process, and read its report.

A notebook must not run a Celery worker in a thread of its kernel (its log lines
would land in whichever cell runs next), and the tests a learner copies run in
a terminal anyway: so the chapter runs ``python -m pytest`` as a subprocess, the
command shown is generated from the argv, folder and settings that run, and the
outcome is read from pytest's own JUnit XML report::

    report = run_pytest(["-m", "unit"], cwd=EXAMPLES, settings={"REDIS_URL": ...}, junit=path)
    print(report.command)        # cd examples/testing && REDIS_URL=... python -m pytest -m unit --junitxml=...
    display(report.table())      # one row per test: file, test, outcome, seconds
    report.counts                # {"passed": 7, "xfailed": 6, ...}

Outcomes are pytest's: passed, failed, error, skipped, xfailed (an expected
failure that did fail, with its reason) and xpassed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from instruments.tables import Measured, Table
from launcher.shown import shell_command, without_settings

#: How each outcome reads in the chapter's tables.
OUTCOMES = {"passed": "✅ 通过", "failed": "❌ 失败", "error": "❌ 出错", "skipped": "跳过",
            "xfailed": "✅ 预期的失败", "xpassed": "❌ 预期失败却通过了"}


@dataclass(frozen=True)
class Case:
    """One test as the JUnit report gives it."""

    file: str           # "test_unit.py" ("shop/test_tasks.py" in a package)
    name: str           # "test_add_as_a_plain_call"
    outcome: str        # a key of OUTCOMES
    seconds: float
    message: str = ""   # the failure's message, or an xfail's reason

    @property
    def nodeid(self) -> str:
        """As pytest names the test: "test_unit.py::test_add_as_a_plain_call"."""
        return f"{self.file}::{self.name}"

    @property
    def first_line(self) -> str:
        return self.message.splitlines()[0] if self.message else ""


@dataclass
class Report:
    command: str                      # what a learner types to run the same
    exit_code: int
    seconds: float                    # the whole run, start of the process to its end
    cases: list[Case] = field(default_factory=list)
    output: str = ""                  # pytest's terminal output

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(case.outcome for case in self.cases))

    @property
    def ok(self) -> bool:
        """Every test passed or failed as expected, and pytest said so (exit code 0)."""
        return self.exit_code == 0 and bool(self.cases) and all(
            case.outcome in ("passed", "xfailed") for case in self.cases)

    def summary(self) -> str:
        """"通过 7 · 预期的失败 6" (the counts, never a time: times go in Measured cells)."""
        names = {"passed": "通过", "failed": "失败", "error": "出错", "skipped": "跳过",
                 "xfailed": "预期的失败", "xpassed": "预期失败却通过了"}
        counts = self.counts
        return " · ".join(f"{names[key]} {counts[key]}" for key in names if counts.get(key)) or "没有运行任何测试"

    def table(self, *, reasons: bool = False) -> Table:
        """One row per test, in the order pytest ran them; ``reasons`` adds the message column
        (an xfail's reason, a failure's first line). Tests all from one file name it in the
        caption instead of a column (a narrower table)."""
        files = {case.file for case in self.cases}
        one_file = len(files) == 1
        headers = ([] if one_file else ["文件"]) + ["测试", "结果", "用时"] + (["说明"] if reasons else [])
        rows = [([] if one_file else [case.file]) + [case.name, OUTCOMES.get(case.outcome, case.outcome),
                Measured(f"{case.seconds:.2f} 秒")] + ([case.first_line] if reasons else []) for case in self.cases]
        return Table(headers, rows, caption=f"文件：{files.pop()}" if one_file else None)

    def case(self, name: str) -> Case:
        """The test called ``name`` (KeyError if it did not run)."""
        for case in self.cases:
            if case.name == name:
                return case
        raise KeyError(f"no test {name!r} in this run: {[c.name for c in self.cases]}")


def _outcome(case: ET.Element) -> tuple[str, str]:
    for child in case:
        message = (child.get("message") or child.text or "").strip()
        if child.tag == "skipped":
            if child.get("type") == "pytest.xfail":
                return "xfailed", message.removeprefix("reason: ")
            return "skipped", message
        if child.tag == "failure":
            # A strict xfail that passed is reported as a failure whose message says so.
            return ("xpassed" if "[XPASS(strict)]" in message else "failed"), message
        if child.tag == "error":
            return "error", message
    return "passed", ""


def read_junit(path: Path) -> list[Case]:
    """The tests of a JUnit XML report written by ``pytest --junitxml``."""
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = _outcome(case)
        module = case.get("classname", "").replace(".", "/")    # a test module's dotted name, as a path
        cases.append(Case(file=f"{module}.py" if module else "", name=case.get("name", ""), outcome=outcome,
                          seconds=float(case.get("time") or 0), message=message))
    return cases


def run_pytest(args: Sequence[str], *, cwd: Path, junit: Path, settings: Mapping[str, str] | None = None,
               timeout: float = 300) -> Report:
    """``python -m pytest ARGS --junitxml=JUNIT`` in ``cwd``, with the kernel's environment less
    every course setting, plus ``settings`` (REDIS_URL, ...): exactly what ``command`` shows."""
    junit.parent.mkdir(parents=True, exist_ok=True)
    junit.unlink(missing_ok=True)
    # The report's path relative to the folder pytest runs in: the command reads the same anywhere.
    argv = [sys.executable, "-m", "pytest", *args, f"--junitxml={os.path.relpath(junit, cwd)}"]
    env = {**without_settings(os.environ), **(settings or {})}
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    cases = read_junit(junit) if junit.exists() else []
    return Report(command=shell_command(argv, cwd=cwd, settings=settings or {}), exit_code=done.returncode,
                  seconds=seconds, cases=cases, output=done.stdout + done.stderr)


def source_of(path: Path, *names: str) -> str:
    """The source of the functions (or classes) ``names`` in the file ``path``, decorators
    included, as the file has them (a notebook shows the real file, never a copy)."""
    import ast

    text = Path(path).read_text(encoding="utf-8")
    lines = text.splitlines()
    found = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in names:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            found[node.name] = "\n".join(lines[start - 1:node.end_lineno])
    missing = [name for name in names if name not in found]
    if missing:
        raise KeyError(f"{path.name} has no function {', '.join(missing)}")
    return "\n\n\n".join(found[name] for name in names)
