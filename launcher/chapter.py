"""What a chapter's ``## 准备`` cell calls: the same under ``make lab`` and under test.

    chapter = launcher.prepare_chapter(3)        # chapter 03
    broker = chapter.broker                      # redis://127.0.0.1:6379/3, emptied

Every chapter gets its own Redis database on the shared broker: chapter NN
uses database NN (a Redis server has 16, 0-15). Queues, results and every other
key of a chapter live there, so no chapter's worker can take another chapter's
tasks, and the article's ``redis://127.0.0.1`` (database 0), which a worker
started by hand in a terminal uses, is never touched by a chapter. The
chapter's database is emptied when the chapter starts, so what a learner sees
matches the committed outputs.

Running the preparation again (or Run All twice) first stops what this kernel
started before, so nothing runs twice. Preparing a chapter that another kernel
prepared takes it over (launcher.owner): what that kernel started for the
chapter is stopped, and its next cell says that the chapter moved. What the chapter starts keeps running
until the kernel is shut down or restarted, or ``launcher.stop_all()`` is called.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .broker import Broker, ensure_broker
from .credentials import local_django_env
from .django_procs import manage
from .owner import record_owner, take_over
from .procs import on_stop, stop_all
from .scratch import make_scratch, remove_scratch

#: Redis servers have 16 databases (0-15); database 0 is the article's and the learner's own.
DATABASES = 16


@dataclass
class Chapter:
    """A prepared chapter: its broker (its own database), its scratch folder
    (``.scratch/chapterNN-xxxxxxxx`` in the repository, launcher.scratch)."""

    number: int
    broker: Broker
    scratch: Path
    #: Variables the chapter exported (REDIS_URL, and DATABASE_URL, MEDIA_ROOT for Django chapters).
    env: dict = field(default_factory=dict)


def chapter_url(url: str, number: int) -> str:
    """``url`` with its database number replaced by the chapter's."""
    if not 1 <= number < DATABASES:
        raise ValueError(
            f"chapter numbers go from 1 to {DATABASES - 1} (one database each of the shared broker, whose "
            f"{DATABASES} databases are taken: 0 the article's, 1-{DATABASES - 1} the chapters'), not {number}. "
            "Anything else that needs a broker, or that stops, restarts, proxies, password-protects, persists "
            "or empties one, starts a broker of its own: broker = launcher.start_embedded() (a new Valkey on "
            "a free port; broker.stop() when done).")
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{number}"))


def prepare_chapter(number: int, *, django: bool = False) -> Chapter:
    """Prepare chapter ``number`` in this process (a notebook's kernel): stop what
    it started before, find the broker, point REDIS_URL at the chapter's own
    database and empty it, and make a scratch folder. ``django=True`` also gives
    the chapter its own migrated database and media folder in that scratch
    folder (DATABASE_URL, MEDIA_ROOT), with the local admin user `make lab`
    creates, so its report ids and rows are its own."""
    # A second run of the preparation replaces the first, never adds to it
    # (a broker this kernel started keeps running: REDIS_URL names it).
    stop_all(brokers=False)
    shared = ensure_broker()
    # Without the server's process: stopping the chapter's broker must never stop the shared
    # server (stop_all() stops it if this kernel started it).
    broker = Broker(chapter_url(shared.url, number), shared.source)
    take_over(number, broker.url)
    broker.flush()
    record_owner(number, broker.url)
    scratch = make_scratch(f"chapter{number:02d}-")
    on_stop(lambda: remove_scratch(scratch))
    env = {"REDIS_URL": broker.url}
    if django:
        env.update(DATABASE_URL=f"sqlite:///{scratch / 'db.sqlite3'}", MEDIA_ROOT=str(scratch / "media"))
    os.environ.update(env)
    if django:
        # DEBUG on, this installation's SECRET_KEY and local user: a chapter is
        # local learning. (Not in `env`, which a notebook may print.)
        os.environ.update(local_django_env())
    if django:
        _repoint_django(scratch)
        manage("migrate", "--noinput")
        manage("create_course_admin")  # the local user `make lab` creates, in this database too
    return Chapter(number, broker, scratch, env)


def _repoint_django(scratch: Path) -> None:
    """A Django set up in this process by an earlier run read DATABASE_URL and
    MEDIA_ROOT once: point it at the new database (closing the connection to the
    removed one) and media folder."""
    if "django.conf" not in sys.modules:
        return
    from django.conf import settings

    if not settings.configured:
        return
    from django.db import connections

    connections.close_all()
    settings.DATABASES["default"]["NAME"] = str(scratch / "db.sqlite3")
    settings.MEDIA_ROOT = str(scratch / "media")
