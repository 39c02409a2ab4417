"""The course's local passwords: made up once per installation, kept where
only your user can read them, never written into the repository.

    .secrets/                     (mode 0700, git-ignored)
        flower-basic-auth         course:<random>   Flower's basic auth (chapter 04)
        admin-password            <random>          the Django user "admin": the
                                                    admin and the report pages (05-06)
        django-secret-key         <random>          Django's SECRET_KEY for make lab
        dingtalk-secret           SEC<random hex>   the signing secret (加签) shared by the
                                                    local DingTalk-style bot receiver and
                                                    the Django app that sends to it (09)

Each file is created on first use (mode 0600) and kept, so a browser can
remember the password. Delete a file to get a new one. `make lab` prints them
once at start-up, the way Jupyter prints its token.

The environment wins over the files: ``FLOWER_BASIC_AUTH=user:password``,
``COURSE_ADMIN_USER`` / ``COURSE_ADMIN_PASSWORD``, ``DINGTALK_SECRET``; ``COURSE_SECRETS_DIR``
moves the folder.

Whose folder: the learner's, or a test run's
--------------------------------------------
A learner's programs -- `make lab`, a chapter's kernel, a command pasted into a
terminal at the repository's root -- use the repository's ``.secrets/``
(LEARNER_DIR). The chapters print that path and show commands that read it
(``FLOWER_BASIC_AUTH="$(cat .secrets/flower-basic-auth)" ...``, launcher.shown
renders a secret as the path it is read from, relative to where the command
runs), so the committed outputs name ``.secrets/``.

A test run has a folder of its own (the root conftest.py sets
``COURSE_SECRETS_DIR`` to a folder inside the run's temporary folder): the
tests never read or write a developer's ``.secrets/``, and a developer's
passwords (or a file they edited by hand) never change what a test sees.
A command shown in a test's own process names that folder by its absolute path,
so it still works when pasted into a terminal (tests/test_shown_commands.py).

One exception, on purpose: a notebook's kernel under test (nbval, `make
notebooks`, the learner-mode run of `make lab`; tests/notebook_env.py and
tests/helpers.py ``start_lab``) is a learner's kernel and uses the learner's
``.secrets/``. Its outputs are compared with the committed ones, which say
``.secrets/...`` because that is where a learner's passwords are; a kernel
given the test run's folder would print a temporary path instead, and no
rendering of another folder as ``.secrets/`` could stay true for a command
pasted at the repository's root. A kernel's passwords are the course's own
files there (no developer's variable reaches it: the tests clear them,
tests/notebook_env.py), and no chapter prints their values.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from .paths import REPO_ROOT

FLOWER_USER = "course"
ADMIN_USER = "admin"

FLOWER_FILE = "flower-basic-auth"
ADMIN_FILE = "admin-password"
SECRET_KEY_FILE = "django-secret-key"
DINGTALK_FILE = "dingtalk-secret"

#: The variable that moves the folder (a test run sets it to a folder of its own).
SECRETS_VARIABLE = "COURSE_SECRETS_DIR"
#: The learner's folder: where the chapters say the passwords are.
LEARNER_DIR = REPO_ROOT / ".secrets"


def secrets_dir() -> Path:
    """The folder of the generated passwords (COURSE_SECRETS_DIR, else the learner's
    ``.secrets/`` in the repository), created private (0700) if missing."""
    folder = Path(os.environ.get(SECRETS_VARIABLE) or LEARNER_DIR)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(folder.stat().st_mode) & 0o077:
        folder.chmod(0o700)  # made by someone else with a looser umask: close it
    return folder


def _read_or_create(name: str, make) -> str:
    """The content of secrets_dir()/name, created with ``make()`` if missing.

    Safe when several processes (parallel tests, kernels) ask at once: the
    value is written to a private temporary file, then linked to its name,
    which fails if another process got there first; then theirs is read."""
    path = secrets_dir() / name
    if not path.exists():
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(make() + "\n")
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


def _password() -> str:
    return secrets.token_urlsafe(18)  # 24 URL-safe characters: fits in URLs and basic auth


def flower_auth() -> tuple[str, str]:
    """(user, password) for Flower's basic auth: FLOWER_BASIC_AUTH, else the generated one."""
    value = os.environ.get("FLOWER_BASIC_AUTH", "").split(",")[0].strip()
    if not value:
        value = _read_or_create(FLOWER_FILE, lambda: f"{FLOWER_USER}:{_password()}")
    user, sep, password = value.partition(":")
    if not (user and sep and password):
        raise ValueError("Flower's basic auth must look like USER:PASSWORD "
                         f"(check FLOWER_BASIC_AUTH or {secrets_dir() / FLOWER_FILE}).")
    return user, password


def admin_auth() -> tuple[str, str]:
    """(user, password) of the local Django user: COURSE_ADMIN_USER / COURSE_ADMIN_PASSWORD,
    else ``admin`` and the generated password."""
    user = os.environ.get("COURSE_ADMIN_USER") or ADMIN_USER
    password = os.environ.get("COURSE_ADMIN_PASSWORD") or _read_or_create(ADMIN_FILE, _password)
    return user, password


def django_secret_key() -> str:
    """A SECRET_KEY for local use, the same for every process of this installation."""
    return _read_or_create(SECRET_KEY_FILE, lambda: secrets.token_urlsafe(50))


def dingtalk_secret() -> str:
    """The signing secret of the course's DingTalk-style group bot (chapter 09):
    DINGTALK_SECRET, else the generated one. Shaped like DingTalk's own ("SEC" and
    64 hex digits, shown under 加签 in a bot's security settings). The receiver
    (services/bot_receiver.py) verifies signatures with it; the sender signs with it."""
    return os.environ.get("DINGTALK_SECRET") or _read_or_create(DINGTALK_FILE, lambda: "SEC" + secrets.token_hex(32))


def local_django_env() -> dict[str, str]:
    """What a local, learning Django process gets: DEBUG on (explicitly: the
    settings default to off), this installation's SECRET_KEY, and the local
    user's name and password for ``manage.py create_course_admin``."""
    user, password = admin_auth()
    return {"DEBUG": "true", "SECRET_KEY": django_secret_key(),
            "COURSE_ADMIN_USER": user, "COURSE_ADMIN_PASSWORD": password}


def where(name: str) -> str:
    """A file's path for messages: relative to the repository when inside it."""
    path = secrets_dir() / name
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def banner() -> str:
    """What `make lab` prints once: the passwords and where they are kept."""
    flower_user, flower_password = flower_auth()
    admin_user, admin_password = admin_auth()
    flower_from = "FLOWER_BASIC_AUTH" if os.environ.get("FLOWER_BASIC_AUTH") else where(FLOWER_FILE)
    admin_from = "COURSE_ADMIN_PASSWORD" if os.environ.get("COURSE_ADMIN_PASSWORD") else where(ADMIN_FILE)
    # Made now too, so that chapter 09's commands can read it from the file; never printed.
    dingtalk_secret()
    dingtalk_from = "DINGTALK_SECRET" if os.environ.get("DINGTALK_SECRET") else where(DINGTALK_FILE)
    return "\n".join([
        "Local passwords (made for this installation; only your user can read the files):",
        f"  Flower:        {flower_user} / {flower_password}    (from {flower_from})",
        f"  Django admin:  {admin_user} / {admin_password}    (from {admin_from})",
        f"  DingTalk bot signing secret (chapter 09): in {dingtalk_from}",
    ])
