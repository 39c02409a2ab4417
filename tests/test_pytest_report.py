"""instruments/pytest_report.py (chapter 11): a real pytest run, read back from its JUnit report."""

from __future__ import annotations

import sys

import pytest

from instruments.pytest_report import run_pytest, source_of

TESTS = '''
import pytest


def test_passes():
    assert 1 + 1 == 2


def test_fails():
    assert 1 + 1 == 3, "arithmetic is broken"


@pytest.mark.xfail(strict=True, raises=ZeroDivisionError, reason="eager mode hides it")
def test_expected_failure():
    1 / 0


@pytest.mark.xfail(strict=True, reason="should fail")
def test_unexpected_pass():
    pass


@pytest.mark.skip(reason="not here")
def test_skipped():
    pass
'''


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("suite")
    (folder / "pytest.ini").write_text("[pytest]\n")
    (folder / "test_sample.py").write_text(TESTS)
    return run_pytest(["-p", "no:cacheprovider"], cwd=folder, junit=folder / "out" / "report.xml",
                      settings={"REDIS_URL": "redis://127.0.0.1:1/3"})


def test_every_outcome_is_read_from_the_junit_report(report):
    outcomes = {case.name: case.outcome for case in report.cases}
    assert outcomes == {"test_passes": "passed", "test_fails": "failed", "test_expected_failure": "xfailed",
                        "test_unexpected_pass": "xpassed", "test_skipped": "skipped"}
    assert report.case("test_expected_failure").message == "eager mode hides it"
    assert "arithmetic is broken" in report.case("test_fails").message
    assert all(case.file == "test_sample.py" and case.seconds >= 0 for case in report.cases)
    assert report.exit_code == 1 and not report.ok
    assert report.summary() == "通过 1 · 失败 1 · 跳过 1 · 预期的失败 1 · 预期失败却通过了 1"
    with pytest.raises(KeyError):
        report.case("test_missing")


def test_the_shown_command_is_the_one_that_ran(report):
    assert report.command.startswith("cd ")
    assert "REDIS_URL=redis://127.0.0.1:1/3 python -m pytest -p no:cacheprovider --junitxml=" in report.command
    assert sys.executable not in report.command


def test_the_table_has_a_row_per_test_and_reasons_on_request(report):
    assert len(report.table().rows) == 5
    # Tests all from one file: the file in the caption, not in a column of its own.
    assert report.table().headers == ["测试", "结果", "用时"] and report.table().caption == "文件：test_sample.py"
    assert report.table(reasons=True).headers[-1] == "说明"


def test_source_of_gives_the_functions_with_their_decorators(tmp_path):
    path = tmp_path / "test_sample.py"
    path.write_text(TESTS)
    text = source_of(path, "test_expected_failure", "test_passes")
    assert text.startswith("@pytest.mark.xfail(strict=True")
    assert "def test_passes():" in text and "def test_fails" not in text
    with pytest.raises(KeyError, match="no function test_nowhere"):
        source_of(path, "test_nowhere")


def test_tests_from_several_files_get_a_file_column():
    from instruments.pytest_report import Case, Report

    report = Report(command="", exit_code=0, seconds=1.0, cases=[
        Case("test_a.py", "test_one", "passed", 0.1), Case("test_b.py", "test_two", "xfailed", 0.2, "why")])
    table = report.table(reasons=True)
    assert table.headers == ["文件", "测试", "结果", "用时", "说明"] and table.caption is None
    assert [row[0] for row in table.rows] == ["test_a.py", "test_b.py"]
