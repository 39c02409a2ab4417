"""The course's local passwords (launcher.credentials) and the rule that none
is ever published: no fixed password in any tracked file, none of this
installation's generated ones in any committed output."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from launcher import credentials, shown
from tests.helpers import REPO_ROOT


@pytest.fixture
def secrets_dir(tmp_path, monkeypatch):
    folder = tmp_path / "secrets"
    monkeypatch.setenv("COURSE_SECRETS_DIR", str(folder))
    for name in ("FLOWER_BASIC_AUTH", "COURSE_ADMIN_USER", "COURSE_ADMIN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return folder


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_passwords_are_generated_once_and_kept_where_only_the_user_can_read_them(secrets_dir):
    user, password = credentials.flower_auth()
    assert user == "course" and len(password) >= 20
    assert credentials.flower_auth() == (user, password)  # kept, not made anew
    admin = credentials.admin_auth()
    assert admin[0] == "admin" and admin[1] != password
    assert len(credentials.django_secret_key()) >= 50
    assert mode(secrets_dir) == 0o700
    for name in ("flower-basic-auth", "admin-password", "django-secret-key"):
        assert mode(secrets_dir / name) == 0o600, name
    assert (secrets_dir / "flower-basic-auth").read_text().strip() == f"course:{password}"


def test_another_installation_gets_other_passwords(secrets_dir, monkeypatch, tmp_path):
    first = credentials.flower_auth()
    monkeypatch.setenv("COURSE_SECRETS_DIR", str(tmp_path / "other"))
    assert credentials.flower_auth() != first


def test_loose_permissions_are_tightened(secrets_dir):
    credentials.admin_auth()
    (secrets_dir / "admin-password").chmod(0o644)
    secrets_dir.chmod(0o755)
    credentials.admin_auth()
    assert mode(secrets_dir) == 0o700 and mode(secrets_dir / "admin-password") == 0o600


def test_processes_asking_at_once_all_get_the_same_password(secrets_dir):
    code = "from launcher import credentials; print(credentials.flower_auth()[1])"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
             for _ in range(6)]
    answers = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(answers) == 1 and answers != {""}
    assert sorted(p.name for p in secrets_dir.iterdir()) == ["flower-basic-auth"]  # no temporary files left


def test_the_environment_wins(secrets_dir, monkeypatch):
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "alice:from-env")
    monkeypatch.setenv("COURSE_ADMIN_USER", "bob")
    monkeypatch.setenv("COURSE_ADMIN_PASSWORD", "also-from-env")
    assert credentials.flower_auth() == ("alice", "from-env")
    assert credentials.admin_auth() == ("bob", "also-from-env")
    assert not (secrets_dir / "flower-basic-auth").exists()
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "no-colon")
    with pytest.raises(ValueError, match="USER:PASSWORD"):
        credentials.flower_auth()


def test_the_banner_prints_each_password_once_with_where_it_is_kept(secrets_dir):
    text = credentials.banner()
    flower, admin = credentials.flower_auth()[1], credentials.admin_auth()[1]
    assert text.count(flower) == 1 and text.count(admin) == 1
    assert f"(from {secrets_dir / 'flower-basic-auth'})" in text
    # The bot's secret is made with them (chapter 09's commands `cat` it), named by its file, never printed.
    assert f"in {secrets_dir / 'dingtalk-secret'}" in text and credentials.dingtalk_secret() not in text


def test_local_django_processes_get_debug_on_explicitly(secrets_dir):
    env = credentials.local_django_env()
    assert env["DEBUG"] == "true" and env["SECRET_KEY"] == credentials.django_secret_key()
    assert (env["COURSE_ADMIN_USER"], env["COURSE_ADMIN_PASSWORD"]) == credentials.admin_auth()


# --- Nothing published ------------------------------------------------------------

#: Files that name the old published password on purpose: to prove it is refused.
OLD_PASSWORD_ALLOWED = {"tests/test_flower.py", "tests/test_credentials.py", "tests/test_lab.py"}
OLD_PASSWORD = re.compile(r"(?<![\w-])celery-course(?![\w-])")
#: A password given on a command line or in a URL, other than a placeholder.
_VALUE = r"(?P<secret>[\w\-.~!@#%^&*+/]{3,})(?=[\s\"'`,;)\\]|$)"
PASSWORD_IN_USE = [
    re.compile(r"--basic-auth[= ]\S+?:" + _VALUE),
    re.compile(r"redis://[^:/@\s\"']*:(?P<secret>[^@\s\"'/]+)@"),
    re.compile(r"\b[A-Z][A-Z_]*(?:PASSWORD|BASIC_AUTH)=[\"']?(?:\w+:)?" + _VALUE),
]
PLACEHOLDERS = re.compile(r"^(\*+|\.\.\.|…|PASSWORD|password|\S*密码\S*|\$+\{?\w+\}?|\{\w*\}|<[^>]+>)$")


def tracked_texts() -> list[tuple[str, str]]:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, text=True,
                           check=True).stdout.split("\0")
    texts = []
    for name in filter(None, names):
        path = REPO_ROOT / name
        if path.suffix in {".png", ".jpg", ".ico"} or not path.is_file():
            continue
        texts.append((name, path.read_text(encoding="utf-8", errors="replace")))
    return texts


#: Passwords of throwaway servers a chapter starts and stops in the same cell, to show
#: how a URL carries a password (02: "p@ss:w/rd" URL-encoded) and what a wrong one gives.
DEMO_PASSWORDS = {"p%40ss%3Aw%2Frd", "wrong"}


def published(text: str) -> list[str]:
    return [match[0] for pattern in PASSWORD_IN_USE for match in pattern.finditer(text)
            if not PLACEHOLDERS.match(match["secret"]) and match["secret"] not in DEMO_PASSWORDS]


@pytest.mark.parametrize("text, found", [
    ("celery -A tasks flower --basic-auth=course:celery-course", True),
    ("REDIS_URL=redis://celery:s3cr3t-pw@redis:6379/0", True),
    ("FLOWER_BASIC_AUTH=course:abcdEF12 celery flower", True),
    ("COURSE_ADMIN_PASSWORD=hunter22", True),
    ("--basic-auth=USER:PASSWORD", False),
    ("Broker: redis://:***@127.0.0.1:6379/0", False),
    ("FLOWER_BASIC_AUTH=course:*** celery -A tasks flower", False),
    ('REDIS_URL="redis://celery:$$password@redis:6379/0"', False),
    ("user, password = flower.auth", False),
])
def test_the_scan_tells_a_password_from_a_placeholder(text, found):
    assert bool(published(text)) is found


def test_the_old_published_password_is_gone():
    found = [name for name, text in tracked_texts() if OLD_PASSWORD.search(text) and name not in OLD_PASSWORD_ALLOWED]
    assert found == []


def test_no_tracked_file_outside_the_tests_gives_a_password():
    # (tests/ is left out: it holds throwaway users and brokers of the tests themselves)
    found = [f"{name}: {leak}" for name, text in tracked_texts() if not name.startswith("tests/")
             for leak in published(text)]
    assert found == []


def test_the_test_runs_passwords_appear_in_no_tracked_file():
    """The passwords this test run made (its own folder) are in no tracked file. (The
    learner's .secrets/ is not read here: a developer's own files must not change a
    verdict. Committed outputs are written by `make notebooks` alone.)"""
    values = [credentials.flower_auth()[1], credentials.admin_auth()[1], credentials.django_secret_key()]
    leaks = [name for name, text in tracked_texts() for value in values if value and value in text]
    assert leaks == []


# --- A folder of the test run's own --------------------------------------------------

def test_the_test_run_uses_a_secrets_folder_of_its_own_outside_the_repository():
    folder = Path(os.environ[credentials.SECRETS_VARIABLE])
    assert credentials.secrets_dir() == folder
    assert not folder.resolve().is_relative_to(REPO_ROOT), folder
    # Inside the run's temporary folder, removed when the run ends (the root conftest.py).
    assert folder.resolve().is_relative_to(Path(tempfile.gettempdir()).resolve()), folder


def fake_checkout(tmp_path, monkeypatch) -> Path:
    """A repository root of the test's own, for what the learner's folder looks like."""
    root = tmp_path / "checkout"
    (root / "django_demo").mkdir(parents=True)
    for module in (credentials, shown):
        monkeypatch.setattr(module, "REPO_ROOT", root)
    monkeypatch.setattr(credentials, "LEARNER_DIR", root / ".secrets")
    monkeypatch.delenv(credentials.SECRETS_VARIABLE)
    return root


def test_a_learners_folder_is_shown_as_dot_secrets_relative_to_where_the_command_runs(tmp_path, monkeypatch):
    """What the chapters show (a kernel uses the learner's folder): the path is relative,
    so the command works pasted at the repository's root (or after its cd)."""
    root = fake_checkout(tmp_path, monkeypatch)
    user, password = credentials.flower_auth()
    assert (root / ".secrets" / "flower-basic-auth").is_file()
    flower = shown.shell_command([sys.executable, "-m", "celery", "-A", "x", "flower"], cwd=root,
                                 settings={"FLOWER_BASIC_AUTH": f"{user}:{password}"})
    assert flower == 'FLOWER_BASIC_AUTH="$(cat .secrets/flower-basic-auth)" celery -A x flower'
    key = credentials.django_secret_key()
    check = shown.shell_command([sys.executable, "manage.py", "check"], cwd=root / "django_demo",
                                settings={"SECRET_KEY": key})
    assert check == 'cd django_demo && \\\nSECRET_KEY="$(cat ../.secrets/django-secret-key)" python manage.py check'
    assert credentials.where(credentials.ADMIN_FILE) == ".secrets/admin-password"


def test_a_folder_elsewhere_is_shown_by_its_absolute_path_and_a_terminal_reads_it(secrets_dir, tmp_path):
    """The test run's folder (or a learner's COURSE_SECRETS_DIR): pasted anywhere, the command reads it."""
    key = credentials.django_secret_key()
    shown_command = shown.shell_command(["printenv", "SECRET_KEY"], settings={"SECRET_KEY": key})
    assert key not in shown_command
    assert shown_command == f'SECRET_KEY="$(cat {secrets_dir / "django-secret-key"})" printenv SECRET_KEY'
    done = subprocess.run(["bash", "-c", shown_command], cwd=tmp_path, env={"PATH": os.environ["PATH"]},
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == key
