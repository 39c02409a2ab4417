"""The course as a learner runs it, one chapter per test file (tests/test_learner_NN.py)
so that pytest-xdist spreads the chapters over its processes.

One real `make lab` program serves the whole test run, as one serves a learner's
day: the first chapter to need it starts it (under a lock, in the run's folder),
with a worker "in a terminal" on the article's database 0 as the README says;
every chapter, in whichever test process, gets a kernel from it, and the kernels
stay alive, with what they started, until the run ends — so chapters run side by
side and beside the ones run before them, as a learner's earlier notebooks stay
open. When the run ends (the controller's ``pytest_sessionfinish``,
tests/conftest.py): Ctrl-C, and nothing of the lab may be left; the terminal
worker must have received nothing.

What a chapter's file does (``run_chapter``): Run All, compared with the
committed outputs through the sanitizer nbval uses; every address it printed
still answers; every exercise check run as a learner retries it
(tests/exercise_matrix.py); the timing row for the per-chapter table
(``.timings/chNN.json``, read by ``python -m tests.timings``).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

import launcher
from launcher.celery_procs import celery_settings
from launcher.procs import http_answers, session_processes
from launcher.shown import without_settings
from tests.exercise_matrix import run_matrix
from tests.helpers import NOTEBOOKS, REPO_ROOT, LabSession, alive, descendants, start_lab
from tests.learner import NotebookKernel

TIMINGS = REPO_ROOT / ".timings"
#: Set by the root conftest.py in the controller: a folder every test process of the run shares.
RUN_DIR_VARIABLE = "PYTEST_COURSE_RUN_DIR"  # not a developer setting: never cleared


def notebook(chapter: str) -> Path:
    return next(p for p in NOTEBOOKS if p.name.startswith(chapter))


@dataclass
class SharedLab:
    """What a test process needs to use the run's lab (its state file holds it)."""

    pid: int
    folder: str
    url: str
    broker_url: str
    session: str
    terminal_pid: int
    terminal_log: str

    def session_of(self) -> LabSession:
        return LabSession(None, Path(self.folder), self.url, self.broker_url, self.session)


def _folder() -> Path:
    return Path(os.environ[RUN_DIR_VARIABLE]) / "learner-lab"


def _state() -> Path:
    return _folder() / "state.json"


def attach() -> LabSession:
    """The run's lab: started here if no test process started it yet."""
    folder = _folder()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _state().exists():
            shared = SharedLab(**json.loads(_state().read_text()))
            assert psutil.pid_exists(shared.pid), "the run's lab died (see its lab.log)"
            return shared.session_of()
        lab = start_lab(folder / "lab")
        terminal_log = folder / "terminal-worker.log"
        terminal = _start_terminal_worker(lab.broker_url, terminal_log)
        shared = SharedLab(lab.process.pid, str(lab.folder), lab.url, lab.broker_url, lab.session,
                           terminal.pid, str(terminal_log))
        _state().write_text(json.dumps(asdict(shared)))
        return lab


def _start_terminal_worker(broker_url: str, log: Path) -> subprocess.Popen:
    """The README's terminal worker (`celery -A demo_tasks.tasks worker`, the article's
    database 0). Not a launcher process: it must outlive the test process that started
    it (launcher processes stop with their parent), so the run's end stops it."""
    env = without_settings(os.environ)
    env.update(celery_settings("demo_tasks.tasks", broker_url, None), PYTHONUNBUFFERED="1")
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "demo_tasks.tasks", "worker",
                                 "--loglevel=INFO", "-n", "terminal@%h", "--concurrency=1"],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=REPO_ROOT, env=env, start_new_session=True)
    if not launcher.wait_for(lambda: " ready." in log.read_text(errors="replace") or proc.poll() is not None, 60) \
            or proc.poll() is not None:
        proc.kill()
        raise RuntimeError(f"the terminal worker did not start:\n{log.read_text(errors='replace')[-2000:]}")
    return proc


def close_shared_lab() -> list[str] | None:
    """At the end of the run: stop the terminal worker, Ctrl-C the lab, and say what
    was wrong (nothing left running, nothing left in its folders, nothing received
    by the terminal worker). Returns the problems (empty when all is well), or None
    when no chapter started a lab in this run."""
    if RUN_DIR_VARIABLE not in os.environ or not _state().exists():
        return None
    shared = SharedLab(**json.loads(_state().read_text()))
    problems = []
    try:
        os.killpg(shared.terminal_pid, signal.SIGTERM)  # a warm stop
    except ProcessLookupError:
        problems.append("the terminal worker had died before the end of the run")
    launcher.wait_for(lambda: not alive(shared.terminal_pid), 30)
    terminal_log = Path(shared.terminal_log).read_text(errors="replace")
    if " received" in terminal_log or "unregistered" in terminal_log:
        problems.append(f"a chapter's task reached the terminal worker on database 0:\n{terminal_log[-2000:]}")
    children = descendants(shared.pid)
    try:
        os.kill(shared.pid, signal.SIGINT)  # Ctrl-C
    except ProcessLookupError:
        problems.append("the lab had died before the end of the run")
    if not launcher.wait_for(lambda: not alive(shared.pid), 60):
        problems.append("the lab did not stop within 60 s of Ctrl-C")
        os.kill(shared.pid, signal.SIGKILL)
    lab_log = (Path(shared.folder) / "lab.log").read_text(errors="replace")
    if "Stopped." not in lab_log:
        problems.append(f"the lab did not say it stopped:\n{lab_log[-2000:]}")
    if not launcher.wait_for(lambda: not any(alive(p) for p in children), 30):
        problems.append(f"left running after Ctrl-C: {[p for p in children if alive(p)]}")
    leftovers = sorted(p.name for p in (Path(shared.folder) / "tmp").iterdir())
    if leftovers:
        problems.append(f"left in the lab's temporary folder: {leftovers}")
    survivors = session_processes(shared.session)
    if survivors:
        problems.append(f"processes of the lab session alive after Ctrl-C: {survivors}")
    _state().unlink()
    return problems


@dataclass
class LearnerLab:
    """The run's lab as one test process uses it."""

    lab: LabSession
    kernels: list[NotebookKernel] = field(default_factory=list)

    @property
    def broker_url(self) -> str:
        return self.lab.broker_url

    def kernel(self, chapter: str, *, console: str | None = None) -> NotebookKernel:
        """A new kernel for the chapter's notebook (``console``: a second one, as a
        console or a copy of the notebook opened beside the first)."""
        kernel = NotebookKernel(self.lab, notebook(chapter), session_path=console).start()
        self.kernels.append(kernel)
        return kernel

    def close(self) -> None:
        """This test process is done: close its connections to the kernels (which
        keep running in the lab, as a closed browser tab leaves them)."""
        for kernel in self.kernels:
            kernel.close()


def run_all(kernel: NotebookKernel) -> float:
    """Run All in ``kernel``; fail with every mismatch. Returns the seconds it took."""
    started = time.perf_counter()
    problems = kernel.run_all()
    seconds = time.perf_counter() - started
    assert not problems, "\n".join(map(str, problems))
    dead = [url for url in sorted(kernel.printed_urls) if not http_answers(url, timeout=10)]
    assert not dead, f"printed for the learner to open, but not answering: {dead}"
    return seconds


def check_exercises(kernel: NotebookKernel) -> float:
    """Every exercise check as a learner retries it; fail with the rows that were wrong."""
    started = time.perf_counter()
    rows = run_matrix(kernel.execute, kernel.path)
    seconds = time.perf_counter() - started
    bad = [row for row in rows if not row.ok]
    assert not bad, f"{kernel.path.name}: {len(bad)} of {len(rows)} check runs wrong:\n" + "\n".join(map(str, bad))
    return seconds


def record_timing(chapter: str, **seconds: float) -> None:
    """One row of the per-chapter timing table (`make lab` conditions: a lab's kernel,
    beside other chapters and a terminal worker)."""
    TIMINGS.mkdir(exist_ok=True)
    row = {"chapter": chapter, "notebook": notebook(chapter).name, "cores": os.cpu_count(),
           "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           **{k: round(v, 1) for k, v in seconds.items()}}
    (TIMINGS / f"ch{chapter}.json").write_text(json.dumps(row, ensure_ascii=False, indent=1) + "\n")


def run_chapter(learner_lab: LearnerLab, chapter: str) -> NotebookKernel:
    """What every chapter's learner-mode file does first; returns the kernel (alive)."""
    kernel = learner_lab.kernel(chapter)
    run = run_all(kernel)
    checks = check_exercises(kernel)
    record_timing(chapter, run_all_s=run, exercise_checks_s=checks)
    return kernel
