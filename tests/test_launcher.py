"""The process helper: real servers and workers, started, found ready and stopped."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import launcher
from launcher.procs import group_alive
from launcher.broker import BrokerError, ensure_broker


def workers_running():
    return [p for p in launcher.running() if p.name.startswith("worker")]


def test_embedded_broker_answers_and_stops():
    b = launcher.start_embedded()
    assert b.source == "embedded" and b.port != 6379
    assert b.ping() == "+PONG"
    pgid = b.proc.pid
    b.stop()
    assert not group_alive(pgid)
    assert b.ping() is None


def test_embedded_broker_writes_nothing_into_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    b = launcher.start_embedded()
    b.stop()
    assert list(tmp_path.iterdir()) == []


def test_ensure_broker_reuses_a_running_server(broker, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    reused = ensure_broker(port=broker.port)
    assert reused.source == "reused" and reused.proc is None
    assert reused.ping() == "+PONG"
    reused.stop()  # stopping a reused broker must not stop the real one
    assert broker.ping() == "+PONG"


def test_ensure_broker_starts_the_embedded_server_on_a_free_port(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    port = launcher.free_port()
    b = ensure_broker(port=port)
    try:
        assert b.source == "embedded" and b.port == port and b.ping() == "+PONG"
    finally:
        b.stop()


def test_ensure_broker_refuses_a_port_taken_by_something_else(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(BrokerError, match=f"Port {port} .* taken .*REDIS_URL"):
            ensure_broker(port=port)
        assert time.monotonic() - started < 5


def test_redis_url_pointing_nowhere_fails_fast_with_advice(monkeypatch):
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{launcher.free_port()}/0")
    started = time.monotonic()
    with pytest.raises(BrokerError, match="No Redis answers at .*REDIS_URL"):
        ensure_broker()
    assert time.monotonic() - started < 5


def test_worker_with_unreachable_broker_fails_fast_with_advice():
    dead = f"redis://127.0.0.1:{launcher.free_port()}/0"
    started = time.monotonic()
    with pytest.raises(BrokerError, match="does not answer. Start it first"):
        launcher.start_worker("demo_tasks.tasks", broker=dead, fast=True)
    assert time.monotonic() - started < 5
    assert not workers_running()


def test_worker_that_cannot_import_its_app_reports_why(broker):
    with pytest.raises(launcher.ProcessError, match="exited with code .*no_such_module"):
        launcher.start_worker("no_such_module", broker=broker, fast=True, timeout=20)
    assert not workers_running()


def test_worker_starts_ready_and_stops_with_its_pool(broker):
    worker = launcher.start_worker("demo_tasks.tasks", broker=broker, fast=True, name="lt")
    assert worker.running()
    assert "lt@HOST ready." in worker.tail(50)
    assert "demo_tasks.tasks.add" in worker.tail(50)
    pgid = worker.pid
    assert worker in launcher.running()
    worker.stop()
    assert not group_alive(pgid)
    assert worker not in launcher.running()


def test_tail_is_sanitized(broker):
    worker = launcher.start_worker("demo_tasks.tasks", broker=broker, fast=True, name="san")
    try:
        text = worker.tail(100)
    finally:
        worker.cleanup()
    assert f"@{socket.gethostname()}" not in text
    assert f":{broker.port}" not in text and "127.0.0.1:PORT" in text


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
        env=dict(os.environ, PIDS_FILE=str(pids)), capture_output=True, text=True, timeout=120)
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
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED_PARENT)],
                              stdout=subprocess.PIPE, text=True)
    try:
        pgids = list(map(int, parent.stdout.readline().split()))
        folders = parent.stdout.readline().split()  # nobody else will remove them
        assert len(pgids) == 2
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert launcher.wait_for(lambda: not any(group_alive(g) for g in pgids), 15), \
            "children survived their SIGKILLed parent"
    finally:
        parent.kill()
        for folder in locals().get("folders", []):
            shutil.rmtree(folder, ignore_errors=True)
