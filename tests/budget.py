"""The test suite's time budget, per chapter, measured on every run.

A fresh clone's `.ci/run` must stay within 10 minutes at fifteen chapters, on
2 cores. Each chapter may add at most 25 s to `make test` (its nbval run, its
learner-mode file, its own tests), the troubleshooting guide 15 s, the workshop
kit 60 s, the web edition and slides 30 s; what the whole course shares (the
launcher, the repository's hygiene, the Docker stack, …) has its own line.

Every test file belongs to one line of the budget: a chapter's notebook
(``notebooks/NN_*.ipynb``), its learner-mode file (``tests/test_learner_NN.py``),
its own-project snippet tests (``tests/test_own_project_NN.py``), or a file named
in ``FILES``. A new test file without a line fails tests/test_budget.py.

This plugin (``-p tests.budget`` in pyproject.toml) adds up the durations of
every test's setup, call and teardown per file, in the pytest-xdist controller,
and at the end writes ``.timings/budget.json`` and prints the table. Under
xdist the files run side by side, so a line's share of the wall time is its share
of all durations times the run's wall time; `python -m tests.timings` prints the
same table as Markdown with the per-chapter learner-mode timings.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from pathlib import Path

from tests.chapters import CHAPTERS

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUT = REPO_ROOT / ".timings" / "budget.json"

#: Seconds each line may add to `make test` (wall time on 2 cores).
CHAPTER_BUDGET = 25.0
BUDGET = {
    **{chapter.nn: CHAPTER_BUDGET for chapter in CHAPTERS if chapter.number is not None},
    "troubleshooting": 15.0,
    "workshop": 60.0,
    "web": 30.0,
    # What every chapter stands on: launcher, hygiene, sanitizer, pictures, commands, Docker stack.
    "course": 120.0,
}
#: The whole of `.ci/run` on a fresh clone (apt, venv and pip included).
CI_BUDGET = 600.0

#: Test files that are not named after their chapter: the budget line each belongs to.
FILES = {
    "tests/test_smtp_sink.py": "09",
    "tests/test_bot_receiver.py": "09",
    "tests/test_notifications.py": "09",
    "tests/test_daily_report.py": "09",
    "tests/test_verdicts_09.py": "09",
    "tests/test_crawl_site.py": "10",
    "tests/test_crawler.py": "10",
    "tests/test_images.py": "10",
    "tests/test_video.py": "10",
    "tests/test_media_pages.py": "10",
    "tests/test_verdicts_10.py": "10",
    "tests/test_examples_testing.py": "11",
    "tests/test_workflow.py": "11",
    "tests/test_pytest_report.py": "11",
    "tests/test_reliability.py": "12",
    "tests/test_postgres.py": "12",
    "tests/test_parallelism.py": "08",
    "tests/test_task_events.py": "08",
    "tests/test_wordcount.py": "08",
    "tests/test_workflows.py": "08",
    "tests/test_ratelimit.py": "08",
    "tests/test_django_chord.py": "08",
    "tests/test_bad_inputs.py": "07",
    "tests/test_flaky_service.py": "07",
    "tests/test_retries.py": "07",
    "tests/test_idempotency.py": "07",
    "tests/test_periodic.py": "06",
    "tests/test_seed_schedules.py": "06",
    "tests/test_django_browser.py": "05",
    "tests/test_django_reports.py": "05",
    "tests/test_django_worker.py": "05",
    "tests/test_browser.py": "04",
    "tests/test_flower.py": "04",
    "tests/test_demo_tasks.py": "03",
    "tests/test_broker.py": "02",
    "tests/test_verdicts_01_06.py": "course",
    "tests/test_apps.py": "course",
    "tests/test_budget.py": "course",
    "tests/test_chapter.py": "course",
    "tests/test_commands.py": "course",
    "tests/test_compose.py": "course",
    "tests/test_compose_acl.py": "course",
    "tests/test_credentials.py": "course",
    "tests/test_isolation.py": "course",
    "tests/test_lab.py": "course",
    "tests/test_lab_pictures.py": "course",
    "tests/test_launcher.py": "course",
    "tests/test_links.py": "course",
    "tests/test_outputs_real.py": "course",
    "tests/test_own_project_00.py": "course",
    "tests/test_owner.py": "course",
    "tests/test_pictures.py": "course",
    "tests/test_repository.py": "course",
    "tests/test_sanitize.py": "course",
    "tests/test_sanitize_matches.py": "course",
    "tests/test_shown_blocks.py": "course",
    "tests/test_shown_commands.py": "course",
    "tests/test_skeleton.py": "course",
    "tests/test_stops.py": "course",
    "tests/test_tables.py": "course",
}

_BY_NAME = [re.compile(p) for p in (r"^notebooks/(\d\d)_\w+\.ipynb$", r"^tests/test_learner_(\d\d)\.py$",
                                    r"^tests/test_own_project_(\d\d)\.py$")]


def line_of(path: str) -> str | None:
    """The budget line of a test file (a path relative to the repository), or None."""
    if path in FILES:
        return FILES[path]
    for pattern in _BY_NAME:
        match = pattern.match(path)
        if match and match.group(1) in BUDGET:
            return match.group(1)
    if path == "notebooks/troubleshooting.ipynb":
        return "troubleshooting"
    return None


def table(per_file: dict[str, float], wall: float) -> list[dict]:
    """Rows per budget line: summed seconds, share of the wall time, budget."""
    sums: dict[str, float] = defaultdict(float)
    for path, seconds in per_file.items():
        sums[line_of(path) or "unassigned"] += seconds
    total = sum(sums.values()) or 1.0
    order = [key for key in BUDGET if key in sums] + [key for key in sums if key not in BUDGET]
    return [{"line": key, "test_seconds": round(sums[key], 1), "wall_share": round(wall * sums[key] / total, 1),
             "budget": BUDGET.get(key)} for key in order]


# --- the pytest plugin ------------------------------------------------------------

_durations: dict[str, float] = defaultdict(float)
_started: list[float] = []


def pytest_sessionstart(session):
    _started.append(time.monotonic())


def pytest_runtest_logreport(report):
    _durations[report.nodeid.split("::", 1)[0]] += report.duration


def _is_controller(config) -> bool:
    return not hasattr(config, "workerinput")


def pytest_sessionfinish(session, exitstatus):
    if not _is_controller(session.config) or not _durations or not _started:
        return
    wall = time.monotonic() - _started[0]
    rows = table(dict(_durations), wall)
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(json.dumps({"wall_seconds": round(wall, 1), "cores": _cores(), "rows": rows,
                                  "files": {k: round(v, 1) for k, v in sorted(_durations.items())}},
                                 indent=1) + "\n")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _is_controller(config) or not _durations or not _started:
        return
    wall = time.monotonic() - _started[0]
    terminalreporter.section("time budget per chapter (tests/budget.py)")
    for row in table(dict(_durations), wall):
        budget = f"{row['budget']:g} s" if row["budget"] else "-"
        over = "  OVER" if row["budget"] and row["wall_share"] > row["budget"] else ""
        terminalreporter.write_line(f"  {row['line']:<15} {row['wall_share']:6.1f} s of {wall:.0f} s wall "
                                    f"({row['test_seconds']:.1f} s of test time)  budget {budget}{over}")


def _cores() -> int:
    import os

    return os.cpu_count() or 1
