"""Start and stop the course's background processes.

Every process runs in its own process group with its output in a log file
(never a pipe nobody reads). Everything started here is stopped by
``stop_all()``, at interpreter exit (atexit) and, on Linux, when the parent
dies (PR_SET_PDEATHSIG), so a notebook, a test or ``make lab`` leaves no
orphan behind. Nothing here prints from a thread.

Stops are Celery's (https://docs.celeryq.dev/en/stable/userguide/workers.html#stopping-the-worker):

- ``stop("warm")`` (the default): SIGTERM to the main process only. A worker
  stops taking work, finishes the tasks it is running, then exits. If it is
  still there after ``timeout`` seconds, the stop escalates to cold, then kill.
- ``stop("cold")``: SIGQUIT to the main process: a worker exits at once and
  the tasks it was running are lost (unless they are acknowledged late).
- ``stop("kill")``: SIGKILL to the whole process group: nobody gets to clean up.

Every stop ends with the whole process group gone.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from .shown import is_setting, relative_paths, relative_value, shell_command, without_settings


class ProcessError(RuntimeError):
    """A process did not start, or did not become ready, in time."""


class PortInUse(ProcessError):
    """The port a server was asked to listen on belongs to another program."""


#: How long a warm stop waits before it escalates to cold, and cold to kill.
WARM_TIMEOUT = 15.0
COLD_TIMEOUT = 5.0
STOP_MODES = ("warm", "cold", "kill")

_RUNNING: list[Proc] = []
#: Variables added to every child's environment: markers that find a process
#: again later (the chapter owner's token, launcher.owner), never settings.
MARKERS: dict[str, str] = {}
#: What stop_all() runs after stopping the processes (see on_stop()).
_ON_STOP: list[Callable[[], None]] = []
# Every process started here: their log folders are removed by stop_all() and
# at exit (a stopped process keeps its log until then, so a notebook can show it).
_CREATED: list[Proc] = []


#: Run in a child on Linux without setpriv: ask the kernel for SIGTERM at the parent's death, then exec.
_PDEATHSIG_WRAPPER = ("import ctypes, os, signal, sys; ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM); "
                      "os.execvp(sys.argv[1], sys.argv[1:])")  # 1 == PR_SET_PDEATHSIG


def _dies_with_parent(argv: Sequence[str]) -> list[str]:
    """``argv``, so that on Linux the process gets SIGTERM (a warm stop) when its parent
    dies (prctl's PR_SET_PDEATHSIG, kept across exec): set by an exec wrapper
    (util-linux's setpriv, else a few lines of Python), never by a ``preexec_fn``.
    A preexec_fn runs between fork and exec in a process that may have threads (a
    Jupyter kernel has several), where the child can deadlock and Popen with it: a
    kernel's cell that started a worker never returned. Elsewhere: ``argv`` itself.
    Start processes from a long-lived thread: PR_SET_PDEATHSIG fires when the THREAD
    that started the process exits, not only the process (a worker started from a
    ThreadPoolExecutor got SIGTERM as soon as the pool's thread ended)."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, "--pdeathsig", "TERM", "--", *argv]
    return [sys.executable, "-c", _PDEATHSIG_WRAPPER, *argv]


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class _LogScanner:
    """Reads a log file from an offset on, one complete line at a time: what was
    written before the offset is never seen, and nothing is read twice."""

    def __init__(self, path: Path, offset: int):
        self.path, self.offset, self.partial = path, offset, b""

    def new_lines(self, final: bool = False) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *complete, self.partial = (self.partial + data).split(b"\n")
        if final and self.partial:  # the process is gone: its last line has no newline
            complete.append(self.partial)
            self.partial = b""
        return [line.decode("utf-8", errors="replace") for line in complete]


class Proc:
    """One background process, in its own process group, logging to a file."""

    #: stop_all() stops these after everything else (a broker: workers still need it to stop warm).
    stop_last = False

    def __init__(self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                 cwd: str | os.PathLike | None = None, settings: Mapping[str, str] | None = None):
        """Start ``argv`` in ``cwd`` (default: a folder of its own).

        ``settings``: the variables that change what the program does (see
        launcher.shown): the child gets exactly these, and none of the settings
        in ``env`` (default: ours), so that ``display`` is the whole story.
        Without ``settings`` the child gets ``env`` as it is."""
        self.name = name
        self.argv = list(argv)
        #: The signal that ended the process when stop() was called ("SIGTERM", ...).
        self.stopped_by: str | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix=f"celery-course-{name}-"))
        self.cwd = Path(cwd if cwd is not None else self.workdir).resolve()
        base = dict(os.environ if env is None else env)
        if settings is None:
            child_env = base
        else:
            child_env = without_settings(base)
            child_env["PYTHONUNBUFFERED"] = "1"  # a log file is not a terminal: line by line anyway
            child_env.update({k: relative_value(v, self.cwd) for k, v in settings.items()})
        child_env.update(MARKERS)
        #: The settings the process really got, in the order given (what ``display`` shows):
        #: every variable given in ``settings``, else those of ``env`` that are settings.
        self.settings = ({k: child_env[k] for k in settings} if settings is not None
                         else {k: v for k, v in child_env.items() if is_setting(k)})
        self.log_path = self.workdir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes to it until stop()
        self._stopped = False
        self.popen = subprocess.Popen(
            _dies_with_parent(self.argv),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=child_env,
            cwd=self.cwd,
            start_new_session=True,  # its own process group: the last step of a stop ends the group
        )
        _RUNNING.append(self)
        _CREATED.append(self)

    @property
    def display(self) -> str:
        """The command a learner types, at the repository's root with .venv activated,
        to start this same process: generated from its argv, working directory and
        settings (launcher.shown.shell_command; a secret as where it is read from)."""
        return shell_command(self.argv, cwd=self.cwd, settings=self.settings)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    # --- the log ----------------------------------------------------------------

    def mark(self) -> int:
        """The log's current end: pass it as ``since=`` to look only at what comes after."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log(self, since: int = 0) -> str:
        """The raw log from byte offset ``since`` (default: all of it)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 20, *, grep: str | None = None, start: str | None = None,
             raw: bool = False, since: int = 0) -> str:
        """The last ``lines`` lines of the log, as the process wrote them (real
        host names, ids, ports and times), paths in the repository relative to its
        root (``raw=True``: not even that). ``grep`` keeps only the lines containing
        it; ``start`` drops what comes before the first line containing it (e.g. a
        worker's banner); ``since`` starts at a ``mark()``."""
        text = self.log(since) if raw else relative_paths(self.log(since))
        rows = text.splitlines()
        if start is not None:
            marks = [i for i, r in enumerate(rows) if start in r]
            rows = rows[marks[0]:] if marks else rows
        if grep is not None:
            rows = [r for r in rows if grep in r]
        return "\n".join(rows[-lines:])

    def banner_section(self, header: str = "[tasks]") -> str:
        """The section of the log that starts with the line containing ``header`` and ends at
        the first blank line after it: for a worker, "[tasks]" and the tasks it registered,
        however many lines it logged since (``tail`` counts from the end)."""
        rows = relative_paths(self.log()).splitlines()
        first = next((i for i, r in enumerate(rows) if header in r), None)
        if first is None:
            return ""
        end = next((i for i in range(first + 1, len(rows)) if not rows[i].strip()), len(rows))
        return "\n".join(rows[first:end])

    def show(self, lines: int = 20, *, grep: str | None = None, start: str | None = None,
             since: int = 0) -> None:
        """Print the tail of the log (for a notebook cell): what a terminal would show."""
        print(self.tail(lines, grep=grep, start=start, since=since))

    # --- waiting ----------------------------------------------------------------

    def failure(self, why: str, advice: str = "") -> ProcessError:
        """An error that says what went wrong, where the log is, and its last lines."""
        advice = f" {advice}" if advice else ""
        return ProcessError(f"{self.name} (pid {self.pid}) {why}.{advice}\n"
                            f"Its log is {self.log_path}; the last lines:\n{self.tail(15)}")

    def wait_until(self, condition: Callable[[], bool], timeout: float, *, waiting_for: str,
                   advice: str = "", interval: float = 0.02, stop_on_failure: bool = False) -> None:
        """Poll ``condition`` until it is true. Raise ProcessError, naming what we
        waited for, if the process exits first or ``timeout`` seconds pass.
        (``condition`` may raise ProcessError itself to fail at once.)
        ``stop_on_failure``: a start-up wait; whatever ends it early stops the process."""
        try:
            self._wait_until(condition, timeout, waiting_for, advice, interval)
        except BaseException:
            if stop_on_failure:
                self.stop()
            raise

    def _wait_until(self, condition, timeout, waiting_for, advice, interval) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if not self.running():
                if condition():  # it may have done its job just before exiting
                    return
                raise self.failure(f"exited with code {self.popen.returncode} while we waited "
                                   f"for {waiting_for}", advice)
            if time.monotonic() >= deadline:
                raise self.failure(f"did not get to {waiting_for} within {timeout:g} s", advice)
            time.sleep(interval)

    def wait_for_log(self, needle: str, timeout: float, *, since: int | None = None,
                     fail_on: Sequence[str] = (), advice: str = "", stop_on_failure: bool = False) -> str:
        """Wait until a line containing ``needle`` is logged after ``since`` (a
        ``mark()``; default: the log's end now, so an earlier line never counts)
        and return that line. Fail fast if the process exits or logs a line
        containing one of ``fail_on``."""
        scanner = _LogScanner(self.log_path, self.mark() if since is None else since)
        found: list[str] = []

        def logged() -> bool:
            for line in scanner.new_lines(final=not self.running()):
                if needle in line:
                    found.append(line)
                    return True
                bad = next((f for f in fail_on if f in line), None)
                if bad is not None:
                    raise self.failure(f"logged {bad!r} while we waited for {needle!r}", advice)
            return False

        self.wait_until(logged, timeout, waiting_for=f"a log line with {needle!r}", advice=advice,
                        stop_on_failure=stop_on_failure)
        return found[0]

    def listens_on(self, port: int) -> bool:
        """Is this process (or a child of it) the one listening on TCP ``port``?"""
        try:
            leader = psutil.Process(self.pid)
            family = [leader, *leader.children(recursive=True)]
        except psutil.Error:
            return False
        for proc in family:
            try:
                connections = proc.net_connections(kind="inet")
            except psutil.Error:
                continue
            if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                   for c in connections):
                return True
        return False

    def wait_until_listening(self, port: int, timeout: float, *, answers: Callable[[], bool] | None = None,
                             advice: str = "") -> None:
        """Wait until *this* process listens on ``port`` (and ``answers()``, if given).
        Another program on that port is a PortInUse error that names it. Used to
        start a server: a failed wait stops the process."""
        def ready() -> bool:
            return self.listens_on(port) and (answers is None or answers())

        try:
            self.wait_until(ready, timeout, waiting_for=f"listen on port {port}", advice=advice,
                            stop_on_failure=True)
        except ProcessError:
            if port_taken(port) and not self.listens_on(port):
                error = self.failure(
                    f"could not listen on port {port} of 127.0.0.1: another program has it",
                    "Stop that program, or choose another port (port=...; leave it out for a free one).")
                raise PortInUse(str(error)) from None
            raise

    # --- stopping ---------------------------------------------------------------

    def stop(self, mode: str = "warm", timeout: float | None = None) -> int | None:
        """Stop the process the way Celery documents (see the module's docstring):
        ``"warm"`` (default), ``"cold"`` or ``"kill"``. ``timeout`` is how long
        the first signal is given before the stop escalates. Idempotent; always
        ends with the whole process group gone. Returns the exit code."""
        if mode not in STOP_MODES:
            raise ValueError(f"mode must be one of {STOP_MODES}, not {mode!r}")
        if not self._stopped:
            steps = {"warm": [(signal.SIGTERM, WARM_TIMEOUT), (signal.SIGQUIT, COLD_TIMEOUT)],
                     "cold": [(signal.SIGQUIT, COLD_TIMEOUT)],
                     "kill": []}[mode]
            if timeout is not None and steps:
                steps[0] = (steps[0][0], timeout)
            for sig, wait in steps:
                if not self.running():
                    break
                self._signal_leader(sig)
                try:
                    self.popen.wait(wait)
                    self.stopped_by = sig.name
                except subprocess.TimeoutExpired:
                    continue
            if self.running():
                self._signal_group(signal.SIGKILL)
                self.popen.wait(10)
                self.stopped_by = "SIGKILL"
            # The leader is gone; make sure no child of its group survives it, and
            # wait until the killed ones are reaped (they become init's children).
            # Only now: later, the group's number may belong to someone else.
            self._signal_group(signal.SIGKILL)
            wait_for(lambda: not group_alive(self.popen.pid), 5)
            self._stopped = True
        if self in _RUNNING:
            _RUNNING.remove(self)
        if not self._log.closed:
            self._log.close()
        return self.popen.returncode

    def send_signal(self, sig: int, *, group: bool = False) -> None:
        """Send ``sig`` to the main process (``group=True``: to every process of its
        group, as a container runtime or the OOM killer of a cgroup does). Only a
        signal: the caller waits for what it causes; ``stop()`` still cleans up."""
        if group:
            self._signal_group(sig)
        else:
            self._signal_leader(sig)

    def children(self) -> list[psutil.Process]:
        """The processes the main process started (a prefork worker's pool), alive now."""
        try:
            return psutil.Process(self.pid).children()
        except psutil.Error:
            return []

    def _signal_leader(self, sig: int) -> None:
        try:
            os.kill(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def cleanup(self) -> None:
        """Stop (warm) and delete the log directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __repr__(self) -> str:
        state = "running" if self.running() else f"exited {self.popen.returncode}"
        return f"<{type(self).__name__} {self.name} pid={self.pid} {state}>"


#: Set by `make lab` and by the test harness for everything they start (kernels
#: included): sweep() finds what a session left behind by it, even when the
#: kernel that started a process was killed before it could stop it.
SESSION_VARIABLE = "CELERY_COURSE_SESSION"


def session_processes(session: str, variable: str = SESSION_VARIABLE) -> list[psutil.Process]:
    """The processes (but this one) whose environment carries ``variable=session``
    (by default ``CELERY_COURSE_SESSION=session``)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get(variable) == session:
                found.append(proc)
        except psutil.Error:  # gone, a zombie, or another user's
            continue
    return found


def sweep(session: str, timeout: float = 10.0, variable: str = SESSION_VARIABLE) -> list[int]:
    """Stop every process of a session (session_processes()): SIGTERM, then SIGKILL.
    Returns their pids."""
    found = session_processes(session, variable)
    for proc in found:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(found, timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    return [p.pid for p in found]


def group_alive(pgid: int) -> bool:
    """Is any process of this process group still there?"""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, but belongs to another user
        return True
    return True


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """Does something accept TCP connections on ``host:port``?"""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


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


def stop_together(procs: Sequence[Proc], mode: str = "warm") -> None:
    """Stop several processes side by side (a warm stop of a prefork worker
    takes a second or two), then remove their log folders."""
    if len(procs) > 1:
        try:
            with ThreadPoolExecutor(max_workers=len(procs)) as pool:
                list(pool.map(lambda proc: proc.stop(mode), procs))
        except RuntimeError:  # at interpreter exit (atexit) no new thread may start: one after the other
            pass
    for proc in procs:
        proc.stop(mode)
        proc.cleanup()


def on_stop(callback: Callable[[], None]) -> None:
    """Run ``callback`` at the next stop_all() (and so at exit): e.g. remove a scratch folder."""
    _ON_STOP.append(callback)


def stop_all(verbose: bool = False, *, brokers: bool = True) -> list[str]:
    """Stop everything started here (warm) and remove every log folder, also
    those of processes stopped earlier. Workers, servers and beat stop side by
    side; brokers stop last, once nobody needs them (``brokers=False`` keeps
    them running: a chapter that prepares itself again keeps its broker)."""
    procs = list(reversed(_RUNNING))  # newest first
    kept = [p for p in procs if p.stop_last and not brokers]
    stop_together([p for p in procs if not p.stop_last])
    stop_together([p for p in procs if p.stop_last and brokers])
    for proc in [p for p in _CREATED if p not in kept]:
        proc.cleanup()
        _CREATED.remove(proc)
    while _ON_STOP:
        _ON_STOP.pop()()
    stopped = [p.name for p in procs if p not in kept]
    if verbose:
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return stopped


atexit.register(stop_all)
