"""Chapter 12's own-project block: the reliability settings (late acknowledgement, a task
whose pool process died goes back to the queue, one message prefetched per process, a
visibility timeout, a soft shutdown, a memory limit per pool process, retries of a result
the backend could not store), appended to the ``proj/settings.py`` of the project of
chapters 05-11, assembled as printed (tests/own_project.py) and run by a real worker.

The worker reports every setting (``inspect conf``/``inspect stats``). Then what the block
is for: chapter 07's ``notify_partner`` is held by a real HTTP server playing the partner
(the first request of a run gets no answer until the test says so), the worker's pool
process that sent it (the one on the other end of the held connection) is SIGKILLed, as the
OOM killer does, and the task runs again and ends in SUCCESS. The same kill in the project
of chapter 11, without the block, ends the task in FAILURE with WorkerLostError: one request,
no second run. Both projects run side by side on one broker (databases 0 and 1)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from launcher.broker import start_embedded
from launcher.procs import Proc, wait_for
from tests import own_project
from tests.helpers import serving
from tests.own_project import Project, checks

#: The block this file checks.
KEY = "12:proj/settings.py"
#: Seconds a task has to reach its outcome, and the partner to get a request (a loaded machine).
OUTCOME_TIMEOUT = 45
#: Seconds the partner holds a request at most (the test releases it long before).
HOLD_TIMEOUT = 60
#: What the block sets, as the worker reports it (``celery -A proj inspect conf``: the
#: names of settings.py, which the worker reads as task_acks_late, ... through namespace="CELERY").
EXPECTED_CONF = {
    "CELERY_TASK_ACKS_LATE": True,
    "CELERY_TASK_REJECT_ON_WORKER_LOST": True,
    "CELERY_WORKER_PREFETCH_MULTIPLIER": 1,
    "CELERY_BROKER_TRANSPORT_OPTIONS": {"visibility_timeout": 7200},
    "CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT": 20.0,
    "CELERY_WORKER_MAX_MEMORY_PER_CHILD": 500_000,
    "CELERY_RESULT_BACKEND_ALWAYS_RETRY": True,
    "CELERY_RESULT_BACKEND_MAX_RETRIES": 10,
}


class Partner(ThreadingHTTPServer):
    """The partner's API on a free port of 127.0.0.1: the first POST to a path that was
    ``hold()``-ed gets no answer until ``release()``; every other POST gets 200 at once.
    It records every request: path, JSON body and the client's port."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.received: list[tuple[str, dict, int]] = []
        self.held: dict[str, threading.Event] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def hold(self, path: str) -> None:
        with self.lock:
            self.held[path] = threading.Event()

    def release(self, path: str | None = None) -> None:
        with self.lock:
            for held_path, event in self.held.items():
                if path is None or held_path == path:
                    event.set()

    def requests_to(self, path: str) -> list[tuple[dict, int]]:
        """(body, client port) of each request to ``path``, in order."""
        with self.lock:
            return [(body, port) for p, body, port in self.received if p == path]


class _Handler(BaseHTTPRequestHandler):
    server: Partner

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with self.server.lock:
            first = not any(p == self.path for p, _, _ in self.server.received)
            self.server.received.append((self.path, body, self.client_address[1]))
            held = self.server.held.get(self.path) if first else None
        if held is not None:
            held.wait(HOLD_TIMEOUT)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
        except OSError:
            pass  # the client was killed while we held its request: nobody to answer

    def log_message(self, format, *args) -> None:
        pass  # quiet: the test reads what it needs from `received`


@dataclass
class Chapter:
    """One assembled project and its worker."""

    project: Project
    worker: Proc


@pytest.fixture(scope="module")
def partner() -> Iterator[Partner]:
    with serving(Partner()) as server:
        try:
            yield server
        finally:
            server.release()   # a held request (its client killed) ends now, not after HOLD_TIMEOUT


@pytest.fixture(scope="module")
def chapters() -> Iterator[dict[str, Chapter]]:
    """The project of chapter 11 (broker database 1) and, a copy of it with chapter 12's
    blocks added as printed, the project of chapter 12 (database 0), each with its worker."""
    own_project.block(KEY)   # not marked (yet)? Say so now, before anything is assembled
    added = [b for b in own_project.chapter_blocks("12") if b.chapter == "12"]
    folder = Path(tempfile.mkdtemp(prefix="own-project-12-"))
    broker = None
    projects: list[Project] = []
    try:
        broker = start_embedded()
        (folder / "11").mkdir()
        before = Project.assemble(folder / "11", "11", broker.url.removesuffix("/0") + "/1")
        projects.append(before)
        # Project.assemble("12") is startproject + the blocks up to chapter 12 + migrate: chapter
        # 11's project (copied, migrated already) + chapter 12's blocks + migrate is the same.
        shutil.copytree(folder / "11", folder / "12")
        after = Project(folder / "12" / own_project.PROJECT, "django", broker.url)
        projects.append(after)
        after.blocks = list(before.blocks)
        for b in added:
            after.add(b)
        after.manage("migrate", "--verbosity=0")
        workers = {"12": after.start_worker("w12", wait=False), "11": before.start_worker("w11", wait=False)}
        after.wait_ready(workers["12"])
        before.wait_ready(workers["11"])
        yield {"12": Chapter(after, workers["12"]), "11": Chapter(before, workers["11"])}
    finally:
        for project in projects:
            project.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(folder, ignore_errors=True)


def pool_process_with_port(worker: Proc, port: int) -> psutil.Process:
    """The worker's pool process (a child of its main process) whose TCP connection has
    the local ``port``."""
    children = psutil.Process(worker.pid).children()
    for child in children:
        try:
            if any(c.laddr and c.laddr.port == port for c in child.net_connections(kind="tcp")):
                return child
        except psutil.NoSuchProcess:
            continue
    raise AssertionError(f"no pool process of the worker (pid {worker.pid}; children "
                         f"{[c.pid for c in children]}) has a connection from port {port}")


def notify_and_kill(chapter: Chapter, partner: Partner, name: str, user_id: int) -> tuple[dict, int]:
    """Send ``notify_partner(URL/hold/NAME, user_id)`` from the project (manage.py shell, which
    then waits for the outcome); while the partner holds its request, SIGKILL the pool process
    that sent it. The outcome (state; result, or the exception's name and text) and the pid killed."""
    path = f"/hold/{name}"
    partner.hold(path)
    code = f"""
from myapp.tasks import notify_partner

sent = notify_partner.delay({partner.url + path!r}, {user_id})
outcome = sent.get(timeout={OUTCOME_TIMEOUT}, propagate=False)
result = {{"id": sent.id, "state": sent.state, "outcome": outcome if sent.successful() else type(outcome).__name__,
          "error": "" if sent.successful() else str(outcome)}}
"""
    with ThreadPoolExecutor(1) as pool:
        outcome = pool.submit(chapter.project.django, code, OUTCOME_TIMEOUT + 30)
        try:
            if not wait_for(lambda: partner.requests_to(path) or outcome.done(), OUTCOME_TIMEOUT):
                raise AssertionError(f"the partner got no request to {path} within {OUTCOME_TIMEOUT} s")
            if outcome.done():
                outcome.result()   # the shell failed: its error says why
                raise AssertionError(f"the task ended before the partner got its request: {outcome.result()}")
            (_, port), *_ = partner.requests_to(path)
            victim = pool_process_with_port(chapter.worker, port)
            killed = victim.pid
            os.kill(killed, signal.SIGKILL)   # what the OOM killer does: no warning, no clean-up
        finally:
            partner.release(path)
        try:
            return outcome.result(), killed
        except Exception as exc:
            raise AssertionError(f"{exc}\nthe worker's log:\n{chapter.worker.tail(30)}") from exc


@checks(KEY)
def test_the_worker_runs_with_the_settings(chapters):
    reported = chapters["12"].project.django("""
from proj.celery import app

inspect = app.control.inspect(timeout=20, limit=1)   # one worker: answer as soon as it does
conf, stats = inspect.conf(), inspect.stats()
result = {"nodes": sorted(conf), "conf": next(iter(conf.values())), "stats": next(iter(stats.values()))}
""")
    assert len(reported["nodes"]) == 1 and reported["nodes"][0].startswith("w12@"), reported["nodes"]
    conf = {key: reported["conf"].get(key) for key in EXPECTED_CONF}
    assert conf == EXPECTED_CONF, {k: v for k, v in reported["conf"].items() if k.startswith("CELERY_")}
    # The multiplier at work: the worker asks the broker for concurrency x 1 messages (default: x 4).
    stats = reported["stats"]
    assert stats["pool"]["max-concurrency"] == 2, stats["pool"]
    assert stats["prefetch_count"] == 2 * 1, stats


@checks(KEY)
def test_a_task_whose_pool_process_is_killed_runs_again(chapters, partner):
    chapter = chapters["12"]
    mark = chapter.worker.mark()
    done, killed = notify_and_kill(chapter, partner, "with-the-block", 12)
    task_id = done.pop("id")
    assert done == {"state": "SUCCESS", "outcome": 200, "error": ""}, (done, chapter.worker.tail(30))
    # Two runs of the same task: the killed one's request, and the one that got its 200.
    requests = partner.requests_to("/hold/with-the-block")
    assert [body for body, _ in requests] == [{"user": 12}, {"user": 12}], requests
    assert chapter.worker.running(), chapter.worker.tail(30)
    # The worker got the same message twice (the second time from the queue it went back to).
    log = chapter.worker.log(since=mark)
    lines = [line for line in log.splitlines() if f"notify_partner[{task_id}]" in line]
    assert [line.split("] ", 1)[1].split(" in ")[0] for line in lines] == [
        f"Task myapp.tasks.notify_partner[{task_id}] received",
        f"Task myapp.tasks.notify_partner[{task_id}] received",
        f"Task myapp.tasks.notify_partner[{task_id}] succeeded",
    ], lines
    assert f"pid:{killed} exited with 'signal 9 (SIGKILL)'" in log, log


@checks(KEY)
def test_without_the_block_the_same_kill_fails_the_task(chapters, partner):
    chapter = chapters["11"]
    done, _ = notify_and_kill(chapter, partner, "without-the-block", 11)
    assert done["state"] == "FAILURE" and done["outcome"] == "WorkerLostError", (done, chapter.worker.tail(30))
    assert "SIGKILL" in done["error"], done
    assert [body for body, _ in partner.requests_to("/hold/without-the-block")] == [{"user": 11}]
