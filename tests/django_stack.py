"""A real django_demo stack for tests: a migrated SQLite file with the local
user in it, a worker, the server."""

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


def _start_worker(stack: dict) -> launcher.Proc:
    return launcher.start_worker("django_demo", broker=stack["broker"], name=stack["worker_name"], fast=True,
                                 cwd=str(DJANGO_DIR), env=stack["env"])


def restart_worker(stack: dict) -> launcher.Proc:
    """A new worker in place of the stack's (stopped warm if it still runs, e.g.
    after a test that killed it failed early); the stack stops the new one."""
    stack["worker"].cleanup()
    stack["worker"] = _start_worker(stack)
    return stack["worker"]


def logged_in(stack: dict):
    """A requests session logged in as the stack's local user, the way a browser does it (the
    login page sets the CSRF cookie, the form posts it back with the password)."""
    import requests

    web = requests.Session()
    login = stack["server"].url + "/accounts/login/"
    web.get(login, timeout=10)
    reply = web.post(login, timeout=10, allow_redirects=False, data={
        "csrfmiddlewaretoken": web.cookies["csrftoken"], "username": stack["auth"][0], "password": stack["auth"][1]})
    assert reply.status_code == 302, f"the login was refused: HTTP {reply.status_code}"
    return web


@contextmanager
def django_stack(tmp: Path, broker, *, step_seconds: str, worker_name: str = "w1", **extra_env: str):
    """Yield {"worker", "server", "env", "tmp", "db", "media", "auth", ...}; everything stops at the end.

    ``extra_env`` goes to migrate, the worker and the server (e.g.
    REPORT_LOST_AFTER_SECONDS="2"). ``auth`` is (user, password) of the local
    user, created by ``manage.py create_course_admin`` (the environment
    carries the password, never the command line)."""
    env = django_env(tmp, broker, REPORT_STEP_SECONDS=step_seconds, **extra_env)
    launcher.manage("migrate", "--noinput", env=env)
    launcher.manage("create_course_admin", env=env)
    stack = {"env": env, "tmp": tmp, "db": tmp / "db.sqlite3", "media": tmp / "media",
             "auth": (env["COURSE_ADMIN_USER"], env["COURSE_ADMIN_PASSWORD"]),
             "broker": broker, "worker_name": worker_name}
    try:
        stack["worker"] = _start_worker(stack)
        stack["server"] = start_django_server(DJANGO_DIR, env=env)
        yield stack
    finally:
        # Whatever runs now: restart_worker() may have replaced the first worker.
        launcher.stop_together([stack[k] for k in ("worker", "server") if k in stack])
