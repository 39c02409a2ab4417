"""The course's local passwords (launcher.credentials) and the rule that none
is ever published: no fixed password in any tracked file, none of this
installation's generated ones in any committed output."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from launcher import credentials
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


def test_this_installations_passwords_appear_in_no_tracked_file():
    folder = REPO_ROOT / ".secrets"
    values = [line.partition(":")[2] if p.name == "flower-basic-auth" else line
              for p in (folder.iterdir() if folder.is_dir() else []) if not p.name.startswith(".")
              for line in [p.read_text().strip()] if line]
    values += [credentials.flower_auth()[1], credentials.admin_auth()[1], credentials.django_secret_key()]
    leaks = [name for name, text in tracked_texts() for value in values if value and value in text]
    assert leaks == []
