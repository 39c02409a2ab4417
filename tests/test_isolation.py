"""Tests that do not depend on the machine that runs them: the root conftest.py
clears every variable a developer's shell may hold that would change what a test
sees (the list: tests/notebook_env.py), and gives the run a secrets folder of its
own; every variable the course's code reads is on that list."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from launcher import credentials, shown
from tests.commands import terminal_env
from tests.helpers import REPO_ROOT
from tests.notebook_env import DEVELOPER_NAMES, DEVELOPER_PREFIXES, clear_developer_settings, is_developer_setting

#: What a developer's shell might hold: each would change what some test sees.
HOSTILE = {
    "FLOWER_BASIC_AUTH": "x:y", "COURSE_ADMIN_USER": "mallory", "COURSE_ADMIN_PASSWORD": "z",
    "REDIS_URL": "redis://127.0.0.1:1/0", "DATABASE_URL": "sqlite:////nowhere/db.sqlite3",
    "DJANGO_SETTINGS_MODULE": "elsewhere.settings", "DEBUG": "false", "SECRET_KEY": "not-the-tests",
    "CELERY_BROKER_URL": "redis://127.0.0.1:2/0", "CELERY_COURSE_SESSION": "lab-1234",
    "LAB_PORT": "1", "LAB_BROKER_PORT": "2", "MPLBACKEND": "Agg", "COURSE_ENV": "production",
    **{name: "1" for name in DEVELOPER_NAMES if name != "PYTHONPATH"},
    **{f"{prefix}FROM_THE_SHELL": "1" for prefix in DEVELOPER_PREFIXES},
}
#: Read on purpose from the developer's environment: where this machine's programs are.
KEPT = {"PATH", "HOME", "TMPDIR", "CHROMIUM", "POSTGRES_BIN"}


def test_clearing_removes_every_developer_setting_and_nothing_else():
    environ = {**HOSTILE, "PATH": "/usr/bin", "HOME": "/home/dev", "CHROMIUM": "/opt/chromium",
               "PYTEST_XDIST_WORKER": "gw0", "CI": "true"}
    removed = clear_developer_settings(environ)
    assert removed == HOSTILE
    assert environ == {"PATH": "/usr/bin", "HOME": "/home/dev", "CHROMIUM": "/opt/chromium",
                       "PYTEST_XDIST_WORKER": "gw0", "CI": "true"}


def test_a_test_run_starts_from_a_cleared_environment_and_a_secrets_folder_of_its_own(tmp_path):
    """The root conftest.py, imported by a fresh interpreter whose shell set all of HOSTILE."""
    elsewhere = tmp_path / "elsewhere"
    env = {**HOSTILE, "COURSE_SECRETS_DIR": str(elsewhere), "PATH": os.environ["PATH"],
           "HOME": os.environ.get("HOME", "/"), "TMPDIR": str(tmp_path)}
    code = "import json, os, conftest; print(json.dumps(dict(os.environ)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    after = json.loads(done.stdout.splitlines()[-1])
    left = {k: v for k, v in after.items() if is_developer_setting(k) and k != credentials.SECRETS_VARIABLE}
    assert left == {}, f"the tests would see a developer's settings: {left}"
    own = Path(after[credentials.SECRETS_VARIABLE])
    run_tmp = Path(after["TMPDIR"])
    assert run_tmp.parent == tmp_path and run_tmp.name.startswith("celery-course-tests-")
    assert own == run_tmp / "secrets", own
    assert not elsewhere.exists()


def test_this_run_has_none_of_a_developers_passwords():
    """In this very process: nothing a test may not set itself, and the run's own folder."""
    assert not {"FLOWER_BASIC_AUTH", "COURSE_ADMIN_USER", "COURSE_ADMIN_PASSWORD"} & set(os.environ)
    folder = Path(os.environ[credentials.SECRETS_VARIABLE]).resolve()
    assert not folder.is_relative_to(REPO_ROOT) and folder.name == "secrets", folder


def test_a_learners_terminal_gets_none_of_them(monkeypatch, tmp_path):
    for name, value in HOSTILE.items():
        monkeypatch.setenv(name, value)
    env = terminal_env(tmp_path, "redis://127.0.0.1:39999/0")
    given = {"REDIS_URL", "DATABASE_URL", "MEDIA_ROOT", "LAB_PORT", "LAB_BROKER_PORT",
             "JUPYTERLAB_SETTINGS_DIR", "JUPYTER_RUNTIME_DIR"}  # the test's own values
    assert {k for k in env if is_developer_setting(k)} == given
    assert env["REDIS_URL"] == "redis://127.0.0.1:39999/0"
    assert credentials.SECRETS_VARIABLE not in env  # the copy's .secrets/, as a learner's


# --- every variable the course's code reads is on the list --------------------------------

SOURCES = ("launcher", "demo_tasks", "django_demo", "selfcheck", "instruments", "services")
_NAME = r"""["']([A-Z][A-Z0-9_]*)["']"""
READS = [
    re.compile(r"os\.environ(?:\.get|\.setdefault|\.pop)?\(\s*" + _NAME),
    re.compile(r"os\.environ\[\s*" + _NAME + r"\s*\]"),
    re.compile(r"os\.getenv\(\s*" + _NAME),
    re.compile(r"\benv_(?:bool|list|secret)\(\s*" + _NAME),  # django_demo's settings helpers
    re.compile(r"\benv\s*=\s*" + _NAME),                      # dj_database_url.config(env="DATABASE_URL")
    re.compile(r"^\s*[A-Z_]*VARIABLE\s*=\s*" + _NAME, re.MULTILINE),  # SESSION_VARIABLE = "..."
]
SECRET_HELPER = re.compile(r"\benv_secret\(\s*" + _NAME)  # reads NAME and NAME_FILE


def variables_read() -> dict[str, set[str]]:
    """{variable: files that read it} in the course's code."""
    found: dict[str, set[str]] = {}
    for folder in SOURCES:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            names = {m for pattern in READS for m in pattern.findall(text)}
            names |= {f"{m}_FILE" for m in SECRET_HELPER.findall(text)}
            for name in names:
                found.setdefault(name, set()).add(str(path.relative_to(REPO_ROOT)))
    return found


def test_the_scan_finds_the_reads_it_must():
    found = variables_read()
    assert {"REDIS_URL", "FLOWER_BASIC_AUTH", "COURSE_SECRETS_DIR", "LAB_BROKER_PORT", "JIEBA_CACHE_DIR",
            "SECRET_KEY_FILE", "DATABASE_URL", "CELERY_COURSE_SESSION", "CHROMIUM"} <= set(found)


def test_every_variable_the_course_reads_is_cleared_for_the_tests():
    missing = {name: sorted(files) for name, files in variables_read().items()
               if name not in KEPT and not is_developer_setting(name)}
    assert missing == {}, ("add them to DEVELOPER_NAMES or DEVELOPER_PREFIXES in tests/notebook_env.py "
                           f"(or to KEPT here, saying why): {missing}")


@pytest.mark.parametrize("name", sorted(shown.SETTING_NAMES) + [f"{p}X" for p in shown.SETTING_PREFIXES])
def test_every_setting_the_launcher_hands_on_is_cleared_for_the_tests(name):
    """What launcher.shown calls a setting reaches the processes the tests start."""
    assert is_developer_setting(name)


def test_a_developers_django_settings_module_does_not_reach_pytest_django():
    """pytest-django reads DJANGO_SETTINGS_MODULE before the root conftest.py is
    imported: tests/clean_env.py, loaded first by addopts, clears it in time."""
    env = {**os.environ, **HOSTILE}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "0", "-q",
                           "--collect-only", "tests/test_budget.py"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "elsewhere" not in done.stdout + done.stderr
