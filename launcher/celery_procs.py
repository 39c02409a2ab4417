"""Celery's command-line programs as background processes.

Only command lines live here: the Celery logic stays in the apps
(``demo_tasks``, ``django_demo``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .broker import broker_url_of, check_broker
from .procs import Proc

#: Flags that make a worker ready in under a second (0.3 s idle, about 0.7 s under
#: load) instead of about 1.3 s: no waiting for neighbours (mingle), no gossip or
#: heartbeats between workers.
FAST_FLAGS = ("--without-gossip", "--without-mingle", "--without-heartbeat")

_CONNECT_ERRORS = ("Cannot connect to", "consumer: Cannot connect")


def celery_env(broker_url: str, extra: dict | None = None) -> dict:
    """The environment for a Celery program: ours, plus REDIS_URL for the apps.

    DJANGO_SETTINGS_MODULE passes only when asked for in ``extra``: Celery
    installs its Django fix-up whenever it is set, which a worker of a plain
    app (demo_tasks) must not do just because a test process set it."""
    env = dict(os.environ, REDIS_URL=broker_url, PYTHONUNBUFFERED="1")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(extra or {})
    return env


def start_worker(app: str, *, name: str = "w1", broker=None, fast: bool = False,
                 concurrency: int = 2, loglevel: str = "INFO", queues: Sequence[str] = (),
                 extra_args: Sequence[str] = (), cwd: str | None = None,
                 env: dict | None = None, timeout: float = 30.0) -> Proc:
    """Start ``celery -A APP worker`` and wait until it logs that it is ready.
    Stop it with ``stop()``: warm by default, as Celery documents."""
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
                env=celery_env(url, env), cwd=cwd or os.getcwd(),
                display="celery " + " ".join(args))
    proc.wait_for_log(" ready.", timeout, since=0, fail_on=_CONNECT_ERRORS, stop_on_failure=True,
                      advice=f"Is the broker running, and does `celery -A {app}` import?")
    return proc


def celery_command(app: str, *args: str, broker=None, timeout: float = 30.0,
                   cwd: str | None = None) -> str:
    """Run a short ``celery -A APP ...`` command (inspect, status, ...) and return its output."""
    import subprocess

    url = broker_url_of(broker)
    done = subprocess.run([sys.executable, "-m", "celery", "-A", app, *args],
                          env=celery_env(url), cwd=cwd or os.getcwd(), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return done.stdout + done.stderr
