"""The Django development server and Celery beat as background processes.

Only command lines and readiness live here; the Django project and its
Celery app are in ``django_demo/``.

    server = start_django_server("django_demo")     # django_demo/manage.py runserver --noreload
    server.url                                      # http://127.0.0.1:PORT
    beat = start_beat("django_demo", broker=broker, cwd="django_demo",
                      scheduler="django_celery_beat.schedulers:DatabaseScheduler")
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from .broker import broker_url_of, check_broker, free_port
from .celery_procs import celery_settings, is_django_app
from .credentials import local_django_env
from .paths import DJANGO_DIR, REPO_ROOT
from .procs import Proc, ProcessError, http_answers
from .scratch import current_scratch
from .shown import inherited_settings, relative_value, repo_relative

ADDRESS = "127.0.0.1"


def django_env(folder: str | os.PathLike, broker, **extra: str) -> dict:
    """The environment for a throwaway django_demo: its SQLite file and media
    folder inside ``folder``, the given broker, DEBUG on, this installation's
    SECRET_KEY and local user. ``extra`` adds or overrides variables (e.g.
    REPORT_STEP_SECONDS)."""
    folder = Path(folder)
    return {
        "DJANGO_SETTINGS_MODULE": "django_demo.settings",
        **local_django_env(),
        "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        "MEDIA_ROOT": str(folder / "media"),
        "REDIS_URL": broker_url_of(broker),
        **extra,
    }


def manage(*args: str, env: dict | None = None, unset: Sequence[str] = (), check: bool = True,
           timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run ``python manage.py ARGS`` in django_demo/, in a fresh process, with
    ``env`` added to our environment and the variables in ``unset`` removed.
    ``check``: a non-zero exit raises ProcessError with the command's output."""
    child_env = {k: v for k, v in os.environ.items() if k not in unset}
    child_env.update(env or {})
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=DJANGO_DIR, env=child_env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and done.returncode != 0:
        raise ProcessError(f"`manage.py {' '.join(args)}` failed with code {done.returncode}:\n"
                           f"{done.stdout}{done.stderr}")
    return done


class DjangoServerProc(Proc):
    """A running ``manage.py runserver``. ``url`` is its address."""

    url: str
    port: int

    def answers(self, timeout: float = 1.0) -> bool:
        """True if the server answers HTTP at all (any status: 404 and 500 count)."""
        return http_answers(self.url + "/", timeout)


def django_settings(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The settings a Django process gets (launcher.shown): the Django settings and
    REDIS_URL of this process's environment, as the chapter set them, then ``extra``."""
    return {**inherited_settings(os.environ), **(extra or {})}


def start_django_server(project_dir: str | os.PathLike, *, port: int | None = None,
                        env: dict | None = None, timeout: float = 30.0) -> DjangoServerProc:
    """Start ``python PROJECT/manage.py runserver --noreload 127.0.0.1:PORT`` from the
    repository's root and wait until it answers HTTP. ``--noreload``: one process,
    which stop() ends. ``env``: settings on top of this process's (django_settings())."""
    manage_py = Path(project_dir).resolve() / "manage.py"
    port = port or free_port()
    argv = [sys.executable, repo_relative(manage_py), "runserver", "--noreload", f"{ADDRESS}:{port}"]
    proc = DjangoServerProc("django", argv, settings=django_settings(env), cwd=REPO_ROOT)
    proc.port, proc.url = port, f"http://{ADDRESS}:{port}"
    # Ours, not just anyone's: this process listens on the port, and answers HTTP there.
    proc.wait_until_listening(port, timeout, answers=lambda: proc.answers(0.5),
                              advice="Does `python manage.py check` pass?")
    return proc


class BeatProc(Proc):
    """A running ``celery beat``; its schedule file lives in the chapter's scratch
    folder (kept with it, so the command shown keeps working), else in a temporary
    folder of its own (``schedule_dir``, removed with the process)."""

    schedule_dir: Path | None

    def cleanup(self) -> None:
        super().cleanup()
        if self.schedule_dir is not None:
            shutil.rmtree(self.schedule_dir, ignore_errors=True)


def _schedule_file() -> tuple[Path, Path | None]:
    """Where a new beat keeps its schedule: a name of its own in the chapter's scratch
    folder (two beats never share a file), or a temporary folder (returned, to remove)."""
    scratch = current_scratch()
    if scratch is None:
        folder = Path(tempfile.mkdtemp(prefix="celery-course-beat-"))
        return folder / "celerybeat-schedule", folder
    names = ("celerybeat-schedule" + ("" if n == 1 else f"-{n}") for n in itertools.count(1))
    return scratch / next(name for name in names if not any(scratch.glob(name + "*"))), None


def start_beat(app: str, *, broker=None, cwd: str | os.PathLike | None = None,
               env: dict | None = None, scheduler: str | None = None,
               loglevel: str = "INFO", timeout: float = 30.0) -> BeatProc:
    """Start ``celery -A APP beat`` and wait until it logs ``beat: Starting...``.

    ``scheduler=None`` keeps the app's own setting (django_demo's settings name
    django-celery-beat's DatabaseScheduler). Only the default file scheduler gets a
    ``--schedule``: its ``celerybeat-schedule`` goes to the chapter's scratch folder
    (or a temporary one outside a chapter), never the repository's own files."""
    url = broker_url_of(broker)
    check_broker(url)
    args = ["-A", app, "beat", f"--loglevel={loglevel}"]
    schedule_dir = None
    # django-celery-beat's scheduler (named, or the Django project's own setting) keeps it in the database.
    in_database = scheduler.endswith("DatabaseScheduler") if scheduler else is_django_app(app, env)
    if not in_database:
        schedule, schedule_dir = _schedule_file()
        args.append(f"--schedule={relative_value(str(schedule), cwd or REPO_ROOT)}")
    if scheduler:
        args += ["--scheduler", scheduler]
    try:
        proc = BeatProc("beat", [sys.executable, "-m", "celery", *args],
                        settings=celery_settings(app, url, env), cwd=cwd or REPO_ROOT)
    except BaseException:
        if schedule_dir is not None:
            shutil.rmtree(schedule_dir, ignore_errors=True)
        raise
    proc.schedule_dir = schedule_dir
    proc.wait_for_log("beat: Starting...", timeout, since=0, stop_on_failure=True,
                      advice=f"Is the broker running, and does `celery -A {app}` import?")
    return proc
