"""Start and stop the course's background processes.

Every process runs in its own process group with its output in a log file
(never a pipe nobody reads). Everything started here is stopped by
``stop_all()``, at interpreter exit (atexit) and, on Linux, when the parent
dies (PR_SET_PDEATHSIG), so a notebook, a test or ``make lab`` leaves no
orphan behind. Nothing here prints from a thread.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

from .sanitize import sanitize


class ProcessError(RuntimeError):
    """A process did not start, or did not become ready, in time."""


_RUNNING: list["Proc"] = []
# Every process started here: their log folders are removed by stop_all() and
# at exit (a stopped process keeps its log until then, so a notebook can show it).
_CREATED: list["Proc"] = []


# Looked up once in the parent: the child runs between fork and exec, where
# loading a library could deadlock.
_PRCTL = None
if sys.platform.startswith("linux"):
    try:
        _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        _PRCTL = None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux only: ask the kernel to SIGTERM this child when its parent dies."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # 1 == PR_SET_PDEATHSIG


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class Proc:
    """One background process, in its own process group, logging to a file."""

    def __init__(self, name: str, argv: Sequence[str], *, env: dict | None = None,
                 cwd: str | os.PathLike | None = None, display: str | None = None):
        self.name = name
        self.argv = list(argv)
        #: The command a learner would type in a terminal (shown in notebooks).
        self.display = display or " ".join(self.argv)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"celery-course-{name}-"))
        self.log_path = self.workdir / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self._stopped = False
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd if cwd is not None else self.workdir,
            start_new_session=True,  # its own process group: we stop the whole group
            preexec_fn=_die_with_parent,
        )
        _RUNNING.append(self)
        _CREATED.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        """The whole raw log so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 20, *, grep: str | None = None, start: str | None = None,
             raw: bool = False) -> str:
        """The last ``lines`` lines of the log, sanitized. ``grep`` keeps only the
        lines containing it; ``start`` drops what comes before the first line
        containing it (e.g. a worker's banner)."""
        text = self.log() if raw else sanitize(self.log())
        rows = text.splitlines()
        if start is not None:
            marks = [i for i, r in enumerate(rows) if start in r]
            rows = rows[marks[0]:] if marks else rows
        if grep is not None:
            rows = [r for r in rows if grep in r]
        return "\n".join(rows[-lines:])

    def show(self, lines: int = 20, *, grep: str | None = None, start: str | None = None) -> None:
        """Print a sanitized tail of the log (for a notebook cell)."""
        print(self.tail(lines, grep=grep, start=start))

    def wait_for_log(self, needle: str, timeout: float, *, fail_on: Sequence[str] = (),
                     advice: str = "") -> None:
        """Wait until ``needle`` appears in the log. Fail fast, with the log's
        last lines, if the process exits or logs one of ``fail_on``."""
        def settled() -> bool:
            log = self.log()
            return needle in log or any(f in log for f in fail_on) or not self.running()

        wait_for(settled, timeout)
        log = self.log()
        if needle in log:
            return
        bad = next((f for f in fail_on if f in log), None)
        if bad:
            why = f"logged {bad!r}"
        elif not self.running():
            why = f"exited with code {self.popen.returncode}"
        else:
            why = f"was not ready after {timeout:g} s"
        tail = self.tail(15)
        self.cleanup()
        raise ProcessError(f"{self.name} {why}. {advice}\nLast lines of its log:\n{tail}".replace(". \n", ".\n"))

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the process group, wait, then SIGKILL what is left. Idempotent."""
        if not self._stopped:
            if self.popen.poll() is None:
                self._signal_group(signal.SIGTERM)
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)
                    self.popen.wait(5)
            # The leader is gone; make sure no child of its group survives it.
            # Only once: later, the group's number may belong to someone else.
            self._signal_group(signal.SIGKILL)
            self._stopped = True
        if self in _RUNNING:
            _RUNNING.remove(self)
        if not self._log.closed:
            self._log.close()
        return self.popen.returncode

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def cleanup(self) -> None:
        """Stop and delete the log directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __repr__(self) -> str:
        state = "running" if self.running() else f"exited {self.popen.returncode}"
        return f"<{type(self).__name__} {self.name} pid={self.pid} {state}>"


def group_alive(pgid: int) -> bool:
    """Is any process of this process group still there?"""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, but belongs to another user
        return True
    return True


def http_answers(url: str, timeout: float = 1.0) -> bool:
    """True if something answers HTTP at ``url`` at all (any status: 401, 404 and 500 count)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def running() -> list[Proc]:
    """The processes started here that have not been stopped yet."""
    return list(_RUNNING)


def stop_all(verbose: bool = False) -> list[str]:
    """Stop everything started here, newest first (workers before their broker),
    and remove every log folder, also those of processes stopped earlier."""
    stopped = []
    for proc in reversed(list(_RUNNING)):
        proc.cleanup()
        stopped.append(proc.name)
    for proc in _CREATED:
        proc.cleanup()
    _CREATED.clear()
    if verbose:
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return stopped


atexit.register(stop_all)
