"""The process helper: workers started and found ready, logs read incrementally,
readiness that proves a port is ours, and nothing left behind."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

import launcher
from launcher.broker import BrokerError
from launcher.django_procs import django_env
from launcher.paths import REPO_ROOT
from launcher.procs import group_alive
from tests.helpers import DJANGO_DIR, returns_within, script


def workers_running():
    return [p for p in launcher.running() if p.name.startswith("worker")]


# --- workers ---------------------------------------------------------------------------

def test_worker_with_unreachable_broker_fails_fast_with_advice():
    dead = f"redis://127.0.0.1:{launcher.free_port()}/0"
    with pytest.raises(BrokerError, match=r"No Redis answers at .* Start it first"):
        returns_within(30, lambda: launcher.start_worker("demo_tasks.tasks", broker=dead, fast=True),
                       "start_worker() with no broker")
    assert not workers_running()


def test_worker_that_cannot_import_its_app_reports_why(broker):
    with pytest.raises(launcher.ProcessError, match=r"exited with code .*no_such_module"):
        launcher.start_worker("no_such_module", broker=broker, fast=True, timeout=20)
    assert not workers_running()


def test_worker_starts_ready_and_stops_with_its_pool(broker):
    worker = launcher.start_worker("demo_tasks.tasks", broker=broker, fast=True, name="lt")
    assert worker.running()
    assert f"lt@{socket.gethostname()} ready." in worker.tail(50)
    assert "demo_tasks.tasks.add" in worker.tail(50)
    pgid = worker.pid
    assert worker in launcher.running()
    worker.stop()
    assert worker.stopped_by == "SIGTERM" and "Warm shutdown" in worker.log()
    assert not group_alive(pgid)
    assert worker not in launcher.running()


def test_a_started_worker_hears_the_very_first_broadcast(broker):
    """Over Redis a worker subscribes to broadcasts only once its event loop runs, after it
    logs "ready."; a ping sent in between was lost under load (chapter 03 in CI)."""
    from celery import Celery

    probe = Celery("probe", broker=broker.url, set_as_current=False)
    try:
        for _ in range(3):
            worker = launcher.start_worker("demo_tasks.tasks", broker=broker, fast=True, name="bc")
            assert probe.control.ping(destination=[f"bc@{socket.gethostname()}"], timeout=2)
            worker.stop()
    finally:
        probe.close()


def test_a_worker_that_never_answers_a_ping_is_a_clear_error_and_is_stopped(broker):
    from launcher.celery_procs import answers_control

    worker = launcher.start_worker("demo_tasks.tasks", broker=broker, fast=True, name="deaf")
    with pytest.raises(launcher.ProcessError,
                       match=r"did not get to an answer of nobody@nowhere to a ping within 1.5 s"):
        returns_within(20, lambda: answers_control(worker, broker.url, "nobody@nowhere", 1.5),
                       "answers_control() for a node that does not exist")
    assert not worker.running() and worker not in launcher.running()


def test_tail_shows_what_the_worker_really_logged_with_paths_from_the_repository(broker):
    """A learner sees their own host, port and times (blanked only where nbval compares);
    paths inside the repository read from its root, as JupyterLab's file browser shows them."""
    worker = launcher.start_worker("demo_tasks.tasks", broker=broker, fast=True, name="san")
    try:
        text = worker.tail(100)
        raw = worker.tail(100, raw=True)
    finally:
        worker.cleanup()
    assert f"san@{socket.gethostname()}" in text
    assert f"127.0.0.1:{broker.port}" in text and "PORT" not in text and "HOST" not in text
    assert str(REPO_ROOT) not in text
    if str(REPO_ROOT) in raw:  # e.g. a warning from the venv's packages
        assert text == raw.replace(str(REPO_ROOT) + "/", "")


# --- logs read incrementally -----------------------------------------------------------

def test_wait_for_log_never_matches_a_line_written_before_it_began(tmp_path):
    go = tmp_path / "go"
    proc = script(f"""
        import os, time
        print("first: ready.")
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
        print("second: ready.")
        time.sleep(60)
    """)
    try:
        assert proc.wait_for_log("ready.", 30, since=0) == "first: ready."
        mark = proc.mark()
        # "ready." is in the log already, but before the wait began: it does not count.
        with pytest.raises(launcher.ProcessError) as failed:
            proc.wait_for_log("ready.", 0.3)
        message = str(failed.value)
        assert "did not get to a log line with 'ready.' within 0.3 s" in message
        assert str(proc.log_path) in message and "first: ready." in message  # where, and its last lines
        go.touch()
        assert proc.wait_for_log("ready.", 30, since=mark) == "second: ready."
    finally:
        proc.cleanup()


def test_wait_for_log_fails_fast_when_the_process_exits_or_logs_a_failure():
    exits = script("print('starting'); raise SystemExit(3)", name="exits")
    with pytest.raises(launcher.ProcessError, match=r"exited with code 3 while we waited for .*'ready\.'"):
        returns_within(30, lambda: exits.wait_for_log("ready.", 120, since=0), "a wait on a process that exited")

    fails = script("import time; print('consumer: Cannot connect to redis://x'); time.sleep(60)", name="fails")
    try:
        with pytest.raises(launcher.ProcessError, match="logged 'Cannot connect' while we waited"):
            returns_within(30, lambda: fails.wait_for_log("ready.", 120, since=0, fail_on=["Cannot connect"]),
                           "a wait on a process that logged a failure")
    finally:
        fails.cleanup()
        exits.cleanup()


# --- readiness proves it is ours ---------------------------------------------------------

@pytest.fixture
def taken_port():
    """A port where another program (a plain HTTP server) already answers."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_django_server_on_a_taken_port_is_a_clear_error(taken_port, tmp_path, broker):
    with pytest.raises(launcher.PortInUse, match=rf"could not listen on port {taken_port} .*another program"):
        launcher.start_django_server(DJANGO_DIR, port=taken_port, env=django_env(tmp_path, broker))
    assert not [p for p in launcher.running() if p.name == "django"]


def test_flower_on_a_taken_port_is_a_clear_error(taken_port, broker):
    with pytest.raises(launcher.PortInUse, match=rf"port {taken_port} .*choose another port"):
        launcher.start_flower("demo_tasks.tasks", broker=broker, port=taken_port)
    assert not [p for p in launcher.running() if p.name == "flower"]


# --- nothing left behind -----------------------------------------------------------------

ORPHAN_TEST = """
import os, launcher

def test_fails_on_purpose():
    b = launcher.start_embedded()
    w = launcher.start_worker("demo_tasks.tasks", broker=b, fast=True)
    with open(os.environ["PIDS_FILE"], "w") as f:
        f.write(f"{b.proc.pid} {w.pid}")
    assert False, "fails on purpose"
"""


def test_no_orphans_after_a_failing_test(tmp_path):
    (tmp_path / "test_orphan.py").write_text(ORPHAN_TEST)
    pids = tmp_path / "pids"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         str(tmp_path / "test_orphan.py")],
        env=dict(os.environ, PIDS_FILE=str(pids)), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "fails on purpose" in done.stdout
    for pgid in map(int, pids.read_text().split()):
        assert not group_alive(pgid), f"process group {pgid} outlived the failed test"


KILLED_PARENT = """
import sys, time, launcher
b = launcher.start_embedded()
w = launcher.start_worker("demo_tasks.tasks", broker=b, fast=True)
print(b.proc.pid, w.pid, flush=True)
print(b.proc.workdir, w.workdir, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_children_die_with_a_killed_parent():
    """A kernel killed with SIGKILL cannot run atexit: its children must still go."""
    import shutil

    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED_PARENT)],
                              stdout=subprocess.PIPE, text=True)
    folders: list[str] = []
    try:
        pgids = list(map(int, parent.stdout.readline().split()))
        folders = parent.stdout.readline().split()  # nobody else will remove them
        assert len(pgids) == 2
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert launcher.wait_for(lambda: not any(group_alive(g) for g in pgids), 30), \
            "children survived their SIGKILLed parent"
    finally:
        parent.kill()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


GET_PDEATHSIG = ("import ctypes; c = ctypes.c_int(); ctypes.CDLL(None).prctl(2, ctypes.byref(c)); "
                 "print(c.value)")  # 2 == PR_GET_PDEATHSIG


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
@pytest.mark.parametrize("setpriv", [True, False], ids=["setpriv", "python-wrapper"])
def test_the_death_signal_is_set_by_an_exec_wrapper_with_or_without_setpriv(monkeypatch, setpriv):
    """No preexec_fn (it can deadlock a child forked from a kernel's threads): setpriv
    sets SIGTERM as the parent-death signal, or a few lines of Python where it is missing."""
    from launcher import procs

    if not setpriv:
        monkeypatch.setattr(procs.shutil, "which", lambda name: None)
    elif procs.shutil.which("setpriv") is None:
        pytest.skip("util-linux's setpriv is not installed")
    argv = procs._dies_with_parent([sys.executable, "-c", GET_PDEATHSIG])
    assert ("setpriv" in argv[0]) is setpriv
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout.strip() == str(int(signal.SIGTERM))
