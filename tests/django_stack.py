"""A real django_demo stack for tests: a migrated SQLite file, a worker, the server."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path

import launcher
from launcher.django_procs import django_env, start_django_server
from tests.helpers import DJANGO_DIR


def query(db: Path, sql: str, *params) -> tuple | None:
    """The first row of a query on the stack's SQLite file (read the way a person would)."""
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchone()


@contextmanager
def django_stack(tmp: Path, broker, *, step_seconds: str, worker_name: str = "w1"):
    """Yield {"worker", "server", "env", "tmp", "db", "media"}; everything stops at the end."""
    env = django_env(tmp, broker, REPORT_STEP_SECONDS=step_seconds)
    launcher.manage("migrate", "--noinput", env=env)
    started = []
    try:
        started.append(launcher.start_worker("django_demo", broker=broker, name=worker_name, fast=True,
                                             cwd=str(DJANGO_DIR), env=env))
        started.append(start_django_server(DJANGO_DIR, env=env))
        yield {"worker": started[0], "server": started[1], "env": env, "tmp": tmp,
               "db": tmp / "db.sqlite3", "media": tmp / "media"}
    finally:
        launcher.stop_together(started)
