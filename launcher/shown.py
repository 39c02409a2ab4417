"""What a learner sees of a process the course starts: the command they would
type in a terminal to start the same process, generated from what really runs.

A process's *settings* are the environment variables that change what the
course's programs do (REDIS_URL, DATABASE_URL, DEBUG, SECRET_KEY, CELERY_*,
FLOWER_*, ...: ``is_setting()``). The launcher gives a child only the settings
it means it to have (none inherited by accident from the kernel or a learner's
shell), so the command shown -- its settings as ``VAR=value`` prefixes, its
argv, and a ``cd`` if it does not run from the repository's root -- is the whole
of what makes it behave as it does. Pasted into a terminal at the repository's
root with ``.venv`` activated, it does the same (tests/test_shown_commands.py).

- ``python`` and ``celery`` are the venv's (``sys.executable``, ``-m celery``).
- A secret is shown as where it is read from, never its value: the generated
  passwords as ``"$(cat .secrets/NAME)"``, a learner's own variable as
  ``"$NAME"``, a password inside a URL as ``***``.
- A path under the repository is relative: to the process's working
  directory when it is passed to the process, and to the repository's root in
  a ``cd``; in log lines, ``relative_paths()`` does the same.

Plumbing that does not change behaviour is not shown: PYTHONUNBUFFERED (a log
file is not a terminal), the session and owner markers, TMPDIR.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .paths import REPO_ROOT

#: Variables the course's programs read (django_demo's settings, the apps, Flower, Celery).
SETTING_NAMES = frozenset({
    "REDIS_URL", "REDIS_PASSWORD", "DATABASE_URL", "DEBUG", "SECRET_KEY", "MEDIA_ROOT", "STATIC_ROOT",
    "TIME_ZONE", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "DEFAULT_FROM_EMAIL", "BEHIND_TLS_PROXY",
    "PYTHONPATH",  # where imports come from: a worker started in the wrong place (chapter 05)
    "JIEBA_CACHE_DIR",  # demo_tasks.wordcount's dictionary cache (chapter 08)
})
#: Settings the chapters' plain apps read beside REDIS_URL: a Celery program gets them
#: from the kernel that starts it, as a Django process gets Django's.
APP_SETTINGS = frozenset({"JIEBA_CACHE_DIR"})
SETTING_PREFIXES = ("CELERY_", "FLOWER_", "DJANGO_", "DATABASE_", "REPORT_", "WORDCOUNT_", "EMAIL_", "SECURE_",
                    "SECRET_", "COURSE_ADMIN_", "DINGTALK_", "NOTIFY_")
#: Set for every process of a session (or of a chapter's owner, launcher.owner) so that it
#: can be found and stopped; not a setting.
PLUMBING = frozenset({"CELERY_COURSE_SESSION", "CELERY_COURSE_OWNER", "PYTHONUNBUFFERED", "TMPDIR"})


#: The order settings are shown in (then alphabetical): the same command whatever order
#: the environment was built in (a kernel of `make lab` and one under test differ).
SHOWN_FIRST = ("REDIS_URL", "CELERY_BROKER_URL", "FLOWER_BASIC_AUTH", "DJANGO_SETTINGS_MODULE", "DEBUG",
               "SECRET_KEY", "DATABASE_URL", "MEDIA_ROOT")


def in_shown_order(settings: Mapping[str, str]) -> dict[str, str]:
    """``settings`` in the order a shown command lists them (SHOWN_FIRST, then alphabetical)."""
    def rank(name: str) -> tuple[int, str]:
        return (SHOWN_FIRST.index(name) if name in SHOWN_FIRST else len(SHOWN_FIRST), name)

    return {name: settings[name] for name in sorted(settings, key=rank)}


def is_setting(name: str) -> bool:
    """Does this variable change what one of the course's programs does?"""
    return name not in PLUMBING and (name in SETTING_NAMES or name.startswith(SETTING_PREFIXES))


def without_settings(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with every setting removed: what a learner's fresh terminal has."""
    return {k: v for k, v in env.items() if not is_setting(k)}


#: Settings of a notebook's kernel that its children never get: chapter 05 turns off
#: Django's async-safety check in the kernel only ("never in a server's configuration").
KERNEL_ONLY = frozenset({"DJANGO_ALLOW_ASYNC_UNSAFE"})


def inherited_settings(env: Mapping[str, str]) -> dict[str, str]:
    """The settings of ``env`` (a chapter's kernel) that a Django process of the course
    gets: not the local user's (only ``manage.py create_course_admin`` reads them), not
    KERNEL_ONLY, and no CELERY_* or FLOWER_* (the launcher gives those explicitly:
    a learner's shell must not silently change what the course starts)."""
    return {k: v for k, v in env.items()
            if is_setting(k) and k not in KERNEL_ONLY
            and not k.startswith(("COURSE_ADMIN_", "CELERY_", "FLOWER_"))}


# --- paths -------------------------------------------------------------------------------

def repo_relative(path: str | os.PathLike) -> str:
    """``path`` relative to the repository's root when it lies inside it, else as given."""
    resolved = Path(os.path.abspath(path))
    try:
        return str(resolved.relative_to(REPO_ROOT)) or "."
    except ValueError:
        return str(path)


def _inside_repo(path: str) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(REPO_ROOT)
        return True
    except ValueError:
        return False


def relative_value(value: str, cwd: str | os.PathLike) -> str:
    """A setting's value as a process working in ``cwd`` is given it: an absolute
    path (or a ``sqlite:///`` URL of one) under the repository becomes relative to
    ``cwd`` when ``cwd`` is in the repository too. Anything else is unchanged."""
    cwd = os.path.abspath(cwd)
    if not _inside_repo(cwd):
        return value
    prefix = ""
    path = value
    if value.startswith("sqlite:////"):
        prefix, path = "sqlite:///", value[len("sqlite:///"):]
    if not os.path.isabs(path) or not _inside_repo(path):
        return value
    return prefix + os.path.relpath(path, cwd)


def relative_paths(text: str) -> str:
    """Log text with the repository's absolute prefix removed: paths read from the repository's root."""
    return text.replace(str(REPO_ROOT) + os.sep, "").replace(str(REPO_ROOT), ".")


# --- secrets -------------------------------------------------------------------------------

def _secret_files(cwd: str | os.PathLike) -> dict[str, str]:
    """{value: reference} for the generated passwords (only files that exist), their
    paths relative to ``cwd`` (where the command runs) when both are in the repository."""
    from .credentials import ADMIN_FILE, DINGTALK_FILE, FLOWER_FILE, SECRET_KEY_FILE, secrets_dir

    found = {}
    folder = secrets_dir()
    for name in (FLOWER_FILE, ADMIN_FILE, SECRET_KEY_FILE, DINGTALK_FILE):
        path = folder / name
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if value:
            where = os.path.relpath(path, cwd) if _inside_repo(str(path)) and _inside_repo(str(cwd)) else str(path)
            found[value] = f'"$(cat {shlex.quote(where)})"'
    return found


def _mask_url_password(value: str) -> str:
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        return value
    if not password:
        return value
    user, _, host = parts.netloc.rpartition("@")
    name = user.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{name}:***@{host}"))


def shown_value(name: str, value: str, cwd: str | os.PathLike = REPO_ROOT) -> str:
    """How a setting's value appears in a shown command run in ``cwd``: quoted for
    a shell, or a reference to where a secret is read from."""
    files = _secret_files(cwd)
    if value in files:
        return files[value]
    if name == "FLOWER_BASIC_AUTH" or "PASSWORD" in name or "SECRET" in name:
        return f'"${name}"'  # the learner's own variable: where it came from
    masked = _mask_url_password(value)
    if masked != value:
        return masked
    return shlex.quote(value)


# --- the command ---------------------------------------------------------------------------

def _program(argv: Sequence[str]) -> list[str]:
    """argv as typed in a terminal with .venv activated: `python`, `celery`."""
    words = list(argv)
    if words and words[0] == sys.executable:
        words[0] = "python"
        if words[1:3] == ["-m", "celery"]:
            words[0:3] = ["celery"]
    return words


def shell_command(argv: Sequence[str], *, cwd: str | os.PathLike | None = None,
                  settings: Mapping[str, str] | None = None) -> str:
    """The command a learner types (from the repository's root, .venv activated)
    to start ``argv`` in ``cwd`` with ``settings`` in its environment.

    One or two settings go before the command on its line; more go one per line,
    each ending in a backslash, so that a table of variables reads as one."""
    settings = in_shown_order(settings or {})
    cwd = os.path.abspath(cwd) if cwd is not None else str(REPO_ROOT)
    words = " ".join(shlex.quote(w) for w in _program(argv))
    assignments = [f"{name}={shown_value(name, value, cwd)}" for name, value in settings.items()]
    separator = " " if len(assignments) <= 2 else " \\\n"
    line = separator.join([*assignments, words])
    place = repo_relative(cwd)
    if place != ".":  # one command: copied from its first line or not at all, and a failed cd stops it
        line = f"cd {shlex.quote(place)} && \\\n{line}"
    return line
