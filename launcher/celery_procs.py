"""Celery's command-line programs as background processes.

Only command lines live here: the Celery logic stays in the apps
(``demo_tasks``, ``django_demo``).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping, Sequence

from .broker import broker_url_of, check_broker
from .paths import REPO_ROOT
from .procs import Proc
from .shown import APP_SETTINGS, inherited_settings, without_settings

#: Flags that make a worker ready in under a second (0.3 s idle, about 0.7 s under
#: load) instead of about 1.3 s: no waiting for neighbours (mingle), no gossip or
#: heartbeats between workers.
FAST_FLAGS = ("--without-gossip", "--without-mingle", "--without-heartbeat")

_CONNECT_ERRORS = ("Cannot connect to", "consumer: Cannot connect")


def is_django_app(app: str, extra: Mapping[str, str] | None = None) -> bool:
    """Is ``app`` the course's Django project (whose processes read Django's settings)?"""
    return app.split(".")[0] == "django_demo" or "DJANGO_SETTINGS_MODULE" in (extra or {})


def celery_settings(app: str, broker_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The settings a Celery program of ``app`` gets (launcher.shown): REDIS_URL,
    which the apps read for their broker and results; for the Django project
    also the Django settings of this process's environment (DATABASE_URL,
    MEDIA_ROOT, DEBUG, SECRET_KEY, ... as the chapter set them); the apps' own
    settings the kernel has (APP_SETTINGS); then ``extra``.

    Nothing else: DJANGO_SETTINGS_MODULE only when asked for in ``extra`` (Celery
    installs its Django fix-up whenever it is set, which a worker of a plain app
    must not do just because a test process set it); no CELERY_* or FLOWER_*
    from a learner's shell, which would silently change what the course starts."""
    inherited = inherited_settings(os.environ) if is_django_app(app, extra) else {}
    inherited.update({k: os.environ[k] for k in APP_SETTINGS if k in os.environ})
    return {**{k: v for k, v in inherited.items() if not k.startswith("DJANGO_")},
            "REDIS_URL": broker_url, **(extra or {})}


def celery_env(app: str, broker_url: str) -> dict:
    """The whole environment of a short Celery command: ours without settings, plus celery_settings()."""
    return {**without_settings(os.environ), **celery_settings(app, broker_url)}


def start_worker(app: str, *, name: str = "w1", broker=None, fast: bool = False,
                 concurrency: int = 2, loglevel: str = "INFO", queues: Sequence[str] = (),
                 extra_args: Sequence[str] = (), cwd: str | None = None,
                 env: dict | None = None, timeout: float = 30.0) -> Proc:
    """Start ``celery -A APP worker`` and wait until it logs that it is ready and
    answers a ping (``answers_control()``). Stop it with ``stop()``: warm by default,
    as Celery documents."""
    url = broker_url_of(broker)
    check_broker(url)
    args = ["-A", app, "worker", f"--loglevel={loglevel}", "-n", f"{name}@%h",
            f"--concurrency={concurrency}"]
    if queues:
        args += ["-Q", ",".join(queues)]
    if fast:
        args += list(FAST_FLAGS)
    args += list(extra_args)
    proc = Proc(f"worker-{name}", [sys.executable, "-m", "celery", *args],
                settings=celery_settings(app, url, env), cwd=cwd or REPO_ROOT)
    proc.wait_for_log(" ready.", timeout, since=0, fail_on=_CONNECT_ERRORS, stop_on_failure=True,
                      advice=f"Is the broker running, and does `celery -A {app}` import?")
    answers_control(proc, url, f"{name}@{socket.gethostname()}", timeout)
    return proc


def answers_control(proc: Proc, url: str, node: str, timeout: float) -> None:
    """Wait until the worker ``node`` answers a ping: until then a broadcast
    (``inspect ping``, ``revoke``, ...) can be lost. Over Redis, broadcasts are
    PUBLISHed, and a worker that has logged "ready." SUBSCRIBEs only once its
    event loop runs; under load a ping sent in between never arrived.
    A ping that is heard is answered within milliseconds (``limit=1``)."""
    from celery import Celery

    probe = Celery("answers-control", broker=url, set_as_current=False)
    errors = connection_errors(probe)

    def answered() -> bool:
        try:
            return bool(probe.control.ping(destination=[node], timeout=0.5, limit=1))
        except errors:
            # kombu pools producers per broker URL, across apps: after the broker restarted,
            # the first use of a pooled connection fails; the next one connects afresh.
            return False

    try:
        proc.wait_until(answered, timeout, waiting_for=f"an answer of {node} to a ping", interval=0,
                        advice="Its log says it is ready; is its remote control on, and is the "
                               "broker overloaded?", stop_on_failure=True)
    finally:
        probe.close()


def connection_errors(app) -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the broker connection broke" for ``app``'s transport."""
    with app.connection_for_write() as connection:   # not connected: only asked for its errors
        return connection.connection_errors


def start_celery(app: str, *args: str, broker=None, name: str = "celery", cwd: str | None = None,
                 env: dict | None = None) -> Proc:
    """Start another long-running Celery program (``celery -A APP events --dump``, ...)
    without waiting for it: the caller waits for what it needs (``wait_for_log``)."""
    url = broker_url_of(broker)
    return Proc(name, [sys.executable, "-m", "celery", "-A", app, *args],
                settings=celery_settings(app, url, env), cwd=cwd or REPO_ROOT)


def celery_command(app: str, *args: str, broker=None, timeout: float = 30.0,
                   cwd: str | None = None) -> str:
    """Run a short ``celery -A APP ...`` command (inspect, status, ...) and return its output."""
    import subprocess

    url = broker_url_of(broker)
    done = subprocess.run([sys.executable, "-m", "celery", "-A", app, *args],
                          env=celery_env(app, url), cwd=cwd or REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return done.stdout + done.stderr
