"""What the tests share: the repository's paths, environment patches, Django
set up in the test process, and deadlines that turn a hang into a clear failure.

Readiness waits, the default broker URL and ``manage.py`` live in the launcher
(``Proc.wait_until``, ``launcher.DEFAULT_URL``, ``launcher.manage``): tests use
those, as the notebooks do.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

import launcher
from launcher.paths import DJANGO_DIR, REPO_ROOT

__all__ = ["DJANGO_DIR", "NOTEBOOKS", "REPO_ROOT", "UNREACHABLE_BROKER", "LabSession", "alive",
           "configure_django", "descendants", "documents", "image_links", "patched_environ",
           "returns_within", "script", "start_lab"]

#: A port where nothing listens (discard): messages can never reach a learner's 6379.
UNREACHABLE_BROKER = "redis://127.0.0.1:9/0"
#: The chapters, in order.
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

_MARKDOWN_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_IMAGE = re.compile(r"<img\b[^>]*\bsrc\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)


def documents() -> list[tuple[Path, str]]:
    """(file, markdown) for the README and every chapter's markdown cells: what a reader reads."""
    docs = [(REPO_ROOT / "README.md", (REPO_ROOT / "README.md").read_text(encoding="utf-8"))]
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text(encoding="utf-8"))
        docs.append((path, "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")))
    return docs


def image_links(markdown: str) -> list[str]:
    """The local image links in a markdown text (not http:, data: or attachment: ones)."""
    return [link for link in _MARKDOWN_IMAGE.findall(markdown) + _HTML_IMAGE.findall(markdown)
            if not re.match(r"^[a-z]+:", link)]


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` in the process tree."""
    found, todo = set(), [pid]
    while todo:
        out = subprocess.run(["pgrep", "-P", str(todo.pop())], capture_output=True, text=True,
                             check=False).stdout
        for child in map(int, out.split()):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Is the process there (a zombie is not, for our purpose)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _set_environ(values: dict) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextmanager
def patched_environ(values: dict):
    """Set (or, for None, unset) environment variables; restore them afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        _set_environ(values)
        yield
    finally:
        _set_environ(saved)


def configure_django() -> None:
    """Set Django up in the test process (for pytest-django's client and test
    database), without leaving DJANGO_SETTINGS_MODULE in os.environ: notebook
    kernels and Celery programs started by other tests inherit the environment,
    and Celery installs its Django fix-up whenever that variable is set."""
    import django
    from django.conf import settings

    if settings.configured:
        return
    overrides = {"DJANGO_SETTINGS_MODULE": "django_demo.settings", "REDIS_URL": UNREACHABLE_BROKER,
                 "DEBUG": "true", "DATABASE_URL": None, "MEDIA_ROOT": None}
    with patched_environ(overrides):
        django.setup()  # reads the settings now, while the variables are set


def returns_within(seconds: float, call: Callable, what: str):
    """Run ``call()`` and return what it returns, or raise what it raises.

    A bad input must fail fast: if ``call`` has not finished after ``seconds``
    (a generous deadline, so that a loaded machine never trips it), the test
    fails saying that ``what`` hung. How fast it really is belongs in a benchmark."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the test's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"deadline: {what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"{what} did not return within {seconds:g} s: it hangs instead of failing fast")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def script(code: str, name: str = "script") -> launcher.Proc:
    """A small Python program as a background process (its output goes to its log)."""
    return launcher.Proc(name, [sys.executable, "-u", "-c", textwrap.dedent(code)])


@dataclass
class LabSession:
    """A running `make lab` program (launcher.lab), on free ports, in its own folder."""

    process: subprocess.Popen
    folder: Path
    url: str            # the URL it printed (chapter 01, with the token)
    broker_url: str
    session: str        # its CELERY_COURSE_SESSION marker, carried by everything it starts

    @property
    def base(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def token(self) -> str:
        return urlsplit(self.url).query.split("token=", 1)[1]

    def output(self) -> str:
        return (self.folder / "lab.log").read_text()

    def stop(self) -> int:
        """What Ctrl-C does; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                return self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(10)


def start_lab(folder: Path, timeout: float = 120, *, secrets: Path | None = None) -> LabSession:
    """Start `python -m launcher.lab` (what `make lab` runs) on free ports, with its
    database, temporary files and JupyterLab settings inside ``folder``, and wait
    until it prints its URL (it prints it once JupyterLab listens). Its kernels use the
    learner's .secrets/ unless ``secrets`` names another folder."""
    broker_port = launcher.free_port()
    (folder / "tmp").mkdir(parents=True, exist_ok=True)
    # Unique: `make lab` stops every process of its session at exit, so two labs (two test
    # runs on one machine) must never share one.
    session = f"test-lab-{uuid.uuid4().hex[:12]}"
    # Notebooks opened in its JupyterLab get checkpoints: in ``folder``, not beside the
    # repository's notebooks (the setting is a folder relative to each file's own,
    # and an absolute path stays itself).
    config = folder / "jupyter-config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "jupyter_server_config.json").write_text(json.dumps(
        {"FileCheckpoints": {"checkpoint_dir": str(folder / "checkpoints")}}))
    env = dict(os.environ, LAB_PORT=str(launcher.free_port()), LAB_BROKER_PORT=str(broker_port),
               JUPYTER_CONFIG_DIR=str(config),
               CELERY_COURSE_SESSION=session,
               DATABASE_URL=f"sqlite:///{folder / 'db.sqlite3'}", TMPDIR=str(folder / "tmp"),
               JUPYTERLAB_SETTINGS_DIR=str(folder / "lab-settings"),
               JUPYTER_RUNTIME_DIR=str(folder / "jupyter-runtime"))
    env.pop("REDIS_URL", None)
    # A lab is a learner's: its kernels use the learner's .secrets/, whose path the chapters
    # print (tests/notebook_env.py), not the test run's own folder.
    env.pop("COURSE_SECRETS_DIR", None)
    if secrets is not None:  # test_lab: the lab itself, with the test run's own passwords
        env["COURSE_SECRETS_DIR"] = str(secrets)
    with open(folder / "lab.log", "w") as log:  # the child writes to its own copy of the file
        # A session of its own, as in a terminal of its own: a signal meant for the test
        # process's group (pytest-xdist ending a worker) never reaches it; its Ctrl-C is ours.
        process = subprocess.Popen([sys.executable, "-m", "launcher.lab"], stdout=log, stderr=subprocess.STDOUT,
                                   env=env, text=True, start_new_session=True)

    def printed() -> bool:
        return "JupyterLab: http" in (folder / "lab.log").read_text() or process.poll() is not None

    if not launcher.wait_for(printed, timeout) or process.poll() is not None:
        process.kill()
        pytest.fail(f"make lab did not print its URL within {timeout:g} s:\n{(folder / 'lab.log').read_text()}")
    line = next(x for x in (folder / "lab.log").read_text().splitlines() if x.startswith("JupyterLab: "))
    return LabSession(process, folder, line.split(" ", 1)[1], f"redis://127.0.0.1:{broker_port}/0", session)


def run_cell(ns: dict, source: str) -> None:
    """Run an exercise's answer cell as the notebook does: a ``%%writeblock FILE BLOCK`` cell
    through selfcheck.Workspace (what the cell magic calls), any other cell with exec() in
    ``ns`` (the kernel's globals())."""
    import selfcheck

    if source.startswith("%%writeblock "):
        first, _, body = source.partition("\n")
        _, file, block = first.split()
        selfcheck.Workspace(ns["exercises_dir"], "exercises").write_block(file, block, body)
    else:
        exec(compile(source, "<answer cell>", "exec"), ns)


@contextmanager
def serving(server, poll_interval: float = 0.05):
    """Serve ``server`` (a socketserver.BaseServer) from a daemon thread of this process while
    the block runs; then shut it down, close its socket and wait for the thread."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class WorkerWatch:
    """Every `celery ... worker` process below ``pid`` while it runs (polled), so that
    after it has ended we can tell whether one of them is still there."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.seen: dict[int, tuple[float, list[str]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="worker watch", daemon=True)
        self._thread.start()

    def _poll(self):
        while not self._stop.is_set():
            try:
                for child in self.root.children(recursive=True):
                    try:
                        cmdline = child.cmdline()
                        if "celery" in cmdline and "worker" in cmdline:
                            self.seen.setdefault(child.pid, (child.create_time(), cmdline))
                    except psutil.Error:
                        pass
            except psutil.Error:
                return          # the pytest process is gone
            self._stop.wait(0.1)

    def stop(self):
        self._stop.set()
        self._thread.join(5)

    def left_over(self) -> list[psutil.Process]:
        """Those still alive (the same process: same pid and start time), zombies aside."""
        alive = []
        for pid, (created, _) in self.seen.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.NoSuchProcess:
                pass
        return alive
