"""Applies to every test, notebooks included (so it lives at the repository root).

Tests never use port 6379 or the learner's REDIS_URL: every broker is an
embedded Valkey on a free loopback port, stopped when its user is done.

Tests start from a cleared environment and a secrets folder of their own: what
a developer's shell has set (FLOWER_BASIC_AUTH, COURSE_ADMIN_*, REDIS_URL,
DEBUG, ...) and the passwords in their ``.secrets/`` never change what a test
sees, and the tests never read or write that folder. (A notebook's kernel is a
learner's: it uses the learner's ``.secrets/``, whose path the chapters print;
launcher/credentials.py says why.)
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from launcher.credentials import SECRETS_VARIABLE
from tests.notebook_env import clear_developer_settings, notebook_environment

# A developer's settings must not leak into the tests (they would share a learner's
# queues or database, or change a password, a setting or a shown command): the list,
# and why each is on it, is in tests/notebook_env.py (DEVELOPER_NAMES, DEVELOPER_PREFIXES).
clear_developer_settings()

# Everything a test run writes to the temporary directory goes into a folder of its
# own (each pytest-xdist worker makes one inside the controller's), removed when the
# run ends: also what a worker killed on purpose cannot clean up (billiard's pymp-*).
_RUN_TMP = tempfile.mkdtemp(prefix="celery-course-tests-")
os.environ["TMPDIR"] = _RUN_TMP
tempfile.tempdir = None  # re-read TMPDIR
# The controller's run folder, which every pytest-xdist worker inherits: where the
# run's one `make lab` keeps its state (tests/learner_mode.py).
os.environ.setdefault("PYTEST_COURSE_RUN_DIR", _RUN_TMP)
# ... and which process owns it: only that one stops the lab. A pytest started by a test
# (tests/test_isolation.py runs one) inherits both and must never stop the run's lab.
os.environ.setdefault("PYTEST_COURSE_RUN_PID", str(os.getpid()))

# The run's own passwords (launcher.credentials), never the developer's .secrets/.
# A notebook's kernel is a learner's and uses the learner's .secrets/ (tests/notebook_env.py).
os.environ[SECRETS_VARIABLE] = os.path.join(_RUN_TMP, "secrets")


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: four test processes per core. The tests spend most of their time
    waiting for real workers, servers and kernels, so one per core leaves the
    cores idle (measured on 2 cores: 4 processes finish the suite in about 70 %
    of the time 2 take; with chapter 07's long waits, 6 take 323 s where 4 took
    352 s; with chapter 08, 8 take 338 s where 6 took 350 s, the cores still
    about half idle)."""
    return max(2, min(4 * (os.cpu_count() or 1), 8))


#: Files that take longest start first, so that pytest-xdist's workers end together
#: (with --dist loadfile and --no-loadscope-reorder, files are handed out in the order
#: they were collected; without that flag xdist hands out the files with most tests first).
LONGEST_FIRST = ("test_learner_05.py", "test_learner_07.py", "test_learner_08.py", "test_learner_09.py",
                 "test_learner_10.py", "test_learner_11.py", "test_examples_testing.py",
                 "test_learner_04.py",
                 "test_learner_06.py", "test_commands.py",
                 "07_retries_and_errors.ipynb", "08_workflows.ipynb",
                 "04_flower.ipynb", "test_bad_inputs.py", "05_django_integration.ipynb", "test_retries.py",
                 "test_learner_03.py", "06_periodic_tasks.ipynb", "test_workflows.py", "test_learner_01.py",
                 "test_lab_pictures.py", "test_owner.py", "test_own_project_06.py", "test_own_project_05.py")


#: Files that start after all the others: chapter 12 runs dozens of workers, PostgreSQL servers,
#: a Django site and Chromium at once, three times over (notebook, learner mode, its tests). Beside
#: the other chapters' learner-mode runs it made their timing-sensitive cells fail (chapter 10's
#: speed-up, chapter 11's real-worker tests); at the end it has the machine to itself.
LAST = ("test_learner_12.py", "12_reliability.ipynb", "test_reliability.py")


def pytest_collection_modifyitems(session, config, items):
    def rank(item) -> int:
        name = item.path.name
        if name in LAST:
            return len(LONGEST_FIRST) + 1 + LAST.index(name)
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: a file's tests (a notebook's cells) keep their order


# --- nbval: a broker per notebook, as make lab gives each kernel -----------------

_notebook: dict = {}


def _is_notebook(collector) -> bool:
    return type(collector).__name__ == "IPyNbFile"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before a notebook's kernel starts (its first cell), give it its own broker
    and database. The kernel inherits them through the environment (REDIS_URL,
    DATABASE_URL, MEDIA_ROOT), as it does under `make lab`."""
    notebook = item.parent
    if not _is_notebook(notebook) or _notebook.get("file") is notebook:
        return
    _leave_notebook()
    context = notebook_environment()
    context.__enter__()
    _notebook.update(file=notebook, context=context)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After a notebook's last cell (and its kernel's shutdown), stop its broker and
    restore the environment at once: under pytest-xdist the same process goes on
    with other test files, which must not see the notebook's REDIS_URL."""
    yield
    if _is_notebook(item.parent) and (nextitem is None or nextitem.parent is not item.parent):
        _leave_notebook()


def _leave_notebook():
    context = _notebook.pop("context", None)
    _notebook.pop("file", None)
    if context is not None:
        context.__exit__(None, None, None)


def pytest_sessionfinish(session, exitstatus):
    _leave_notebook()
    _close_learner_lab(session)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    _report_learner_lab(terminalreporter)


def pytest_unconfigure(config):
    shutil.rmtree(_RUN_TMP, ignore_errors=True)


# --- the run's one `make lab` (tests/learner_mode.py) ----------------------------

_LAB_PROBLEMS: list[str] = []
_LAB_CLOSED: list[bool] = []


def _close_learner_lab(session) -> None:
    """In the controller (or a run without xdist), once every test is done: Ctrl-C
    the run's lab (tests/learner_mode.py) and check that it left nothing; a problem
    fails the run. Here, not in tests/conftest.py: under pytest-xdist the controller
    does not collect, so it never loads tests/conftest.py."""
    if os.environ.get("PYTEST_COURSE_RUN_PID") != str(os.getpid()):
        return  # an xdist worker, or a pytest started by a test: not the run's owner
    from tests.learner_mode import close_shared_lab

    problems = close_shared_lab()
    if problems is not None:
        _LAB_CLOSED.append(True)
        _LAB_PROBLEMS.extend(problems)
    if _LAB_PROBLEMS and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _report_learner_lab(terminalreporter) -> None:
    if _LAB_CLOSED and not _LAB_PROBLEMS:
        terminalreporter.write_line("the run's make lab: Ctrl-C stopped it and everything it started; "
                                    "the terminal worker received nothing")
    if _LAB_PROBLEMS:
        terminalreporter.section("the run's make lab, at Ctrl-C (tests/learner_mode.py)", red=True)
        for problem in _LAB_PROBLEMS:
            terminalreporter.write_line(f"FAILED: {problem}", red=True)
