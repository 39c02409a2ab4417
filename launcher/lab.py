"""`make lab`: make sure a broker is up, migrate the Django project's database,
then serve JupyterLab on the repository, opened at chapter 01.

The server's root is the repository (not notebooks/), so that the notebooks'
pictures (``../pictures/*.png``, the same relative links GitHub resolves) load,
and a learner can open ``demo_tasks/tasks.py`` beside the chapters.

Ctrl-C or SIGTERM stops JupyterLab (which shuts its kernels down, and each
kernel stops the workers it started) and then the broker, if we started it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from . import credentials
from .broker import DEFAULT_URL, BrokerError, ensure_broker
from .django_procs import manage
from .paths import NOTEBOOKS_DIR, REPO_ROOT
from .procs import SESSION_VARIABLE, Proc, ProcessError, stop_all, sweep
from .scratch import remove_orphans
from .shown import shell_command


def prepare_django() -> bool:
    for step in (["migrate", "--noinput"], ["create_course_admin"]):
        try:
            manage(*step)
        except ProcessError as exc:
            print(f"make lab: {exc}", file=sys.stderr)
            return False
    print("Django: database migrated; local user created (password below)")
    return True


#: JupyterLab settings the course sets for the learner (its own overrides file, so the
#: learner's overrides.json stays theirs): no "get notified about official Jupyter
#: news?" prompt on first open, and no requests to the internet for news and updates.
LAB_SETTINGS = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}


def write_lab_settings(prefix: Path | None = None) -> Path:
    """Write LAB_SETTINGS into this JupyterLab's overrides.d (its application settings
    folder, under the venv); returns the file. Idempotent."""
    folder = Path(prefix or sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.d"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "django-celery-course.json"
    text = json.dumps(LAB_SETTINGS, indent=2) + "\n"
    if not target.is_file() or target.read_text() != text:
        target.write_text(text)
    return target


def terminal_worker(broker_url: str) -> str:
    """The README's worker in a terminal: the article's command, on the article's
    broker (database 0 of this session's server), REDIS_URL only if it differs."""
    settings = {} if broker_url == DEFAULT_URL else {"REDIS_URL": broker_url}
    return shell_command([sys.executable, "-m", "celery", "-A", "demo_tasks.tasks", "worker", "--loglevel=info"],
                         settings=settings)


def main() -> int:
    # Everything this session starts (JupyterLab, its kernels, what they start)
    # carries a marker and keeps its temporary files in a folder of the session's:
    # at the end, whatever a crashed kernel left behind is found and stopped, and
    # the folder removed.
    session = os.environ.setdefault(SESSION_VARIABLE, f"lab-{os.getpid()}")
    session_tmp = tempfile.mkdtemp(prefix="celery-course-lab-")
    os.environ["TMPDIR"] = session_tmp
    tempfile.tempdir = None  # re-read TMPDIR
    try:
        return _serve()
    finally:
        sweep(session)
        remove_orphans(session)
        shutil.rmtree(session_tmp, ignore_errors=True)


def _serve() -> int:
    try:
        # LAB_BROKER_PORT exists for the tests, which never touch 6379.
        broker = ensure_broker(port=int(os.environ.get("LAB_BROKER_PORT", "6379")))
    except BrokerError as exc:
        print(f"make lab: {exc}", file=sys.stderr)
        return 2
    print(f"Broker: {broker.describe()}")
    if broker.source == "reused":
        print("  (port 6379 already answered PING, so the course uses that server and will not stop it)")
    # Kernels, and the workers they start, find the broker through REDIS_URL.
    os.environ["REDIS_URL"] = broker.url
    # `!python ...` and `!celery ...` in notebooks must find this venv's programs.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

    # Chapters 05-06: DEBUG on (explicitly: the settings default to off), this
    # installation's SECRET_KEY and local user for every process of the session;
    # the project's database (SQLite by default) is migrated and has that user
    # before any notebook needs it.
    banner = credentials.banner()  # before the variables below: it says where each password came from
    os.environ.update(credentials.local_django_env())
    if not prepare_django():
        stop_all()
        return 1

    write_lab_settings()
    port = os.environ.get("LAB_PORT", "8888")
    argv = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}", f"--ServerApp.root_dir={REPO_ROOT}",
            "--ServerApp.default_url=/lab/tree/notebooks"]
    if os.geteuid() == 0:  # containers and CI machines often run as root
        argv.append("--allow-root")
    lab = Proc("jupyterlab", argv, cwd=REPO_ROOT)

    def stop(signum, frame):
        raise KeyboardInterrupt

    # Explicitly: a shell may start us with SIGINT ignored (e.g. `make lab &`).
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        try:
            line = lab.wait_for_log("/lab?token=", 120, since=0, advice="Is its port free (LAB_PORT)?")
            url = line[line.index("http://"):].strip()
            # Jupyter prints its URL before it binds the port (and moves to another
            # port if that one is taken): ready means this process listens there.
            lab.wait_until_listening(urlsplit(url).port, 60)
        except ProcessError as exc:
            print(f"make lab: JupyterLab did not start: {exc}", file=sys.stderr)
            return 1
        # Open the course at its first chapter.
        first = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))[0].name
        url = url.replace("/lab?token=", f"/lab/tree/notebooks/{first}?token=")
        # Once, the way Jupyter prints its token (the files keep them).
        print(banner)
        print(f"JupyterLab: {url}")
        print("In a second terminal, at the repository's root, with .venv activated (`source .venv/bin/activate`):")
        print("  " + terminal_worker(broker.url).replace("\n", "\n  "))
        print("Press Ctrl-C to stop JupyterLab and the broker.")
        while lab.running():
            time.sleep(0.5)
        print(f"JupyterLab exited. Its log:\n{lab.tail(30, raw=True)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping JupyterLab and the broker ...")
        return 0
    finally:
        # SIGTERM lets JupyterLab shut its kernels down cleanly; then the broker.
        lab.stop(timeout=20)
        stop_all()
        print("Stopped.")


if __name__ == "__main__":
    sys.exit(main())
