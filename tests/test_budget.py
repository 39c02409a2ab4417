"""The time budget's bookkeeping (tests/budget.py): every test file has a line."""

from __future__ import annotations

from tests import budget
from tests.helpers import REPO_ROOT


def test_every_test_file_belongs_to_a_line_of_the_budget():
    files = [p.relative_to(REPO_ROOT).as_posix() for p in sorted((REPO_ROOT / "tests").glob("test_*.py"))]
    files += [p.relative_to(REPO_ROOT).as_posix() for p in sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))]
    missing = [f for f in files if budget.line_of(f) is None]
    assert not missing, f"give these test files a line in tests/budget.py (FILES): {missing}"
    stale = [f for f in budget.FILES if not (REPO_ROOT / f).exists()]
    assert not stale, f"tests/budget.py names files that are gone: {stale}"


def test_lines_add_up_and_share_the_wall_time():
    rows = budget.table({"notebooks/03_first_task.ipynb": 30.0, "tests/test_learner_03.py": 10.0,
                         "tests/test_launcher.py": 40.0, "tests/test_unknown.py": 20.0}, wall=50.0)
    by_line = {row["line"]: row for row in rows}
    assert by_line["03"]["test_seconds"] == 40.0 and by_line["03"]["wall_share"] == 20.0
    assert by_line["course"]["test_seconds"] == 40.0
    assert by_line["unassigned"]["budget"] is None
    assert by_line["03"]["budget"] == budget.CHAPTER_BUDGET
    assert budget.line_of("notebooks/12_reliability.ipynb") == "12"
    assert budget.line_of("tests/test_learner_99.py") is None
