"""The process helper: real servers and workers, started, found ready and stopped."""

from __future__ import annotations

import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

import launcher
from launcher.broker import BrokerError, ensure_broker, problem
from launcher.django_procs import django_env
from launcher.procs import group_alive
from tests.helpers import DJANGO_DIR, returns_within


def workers_running():
    return [p for p in launcher.running() if p.name.startswith("worker")]


def script(code: str, name: str = "script") -> launcher.Proc:
    """A small Python program as a background process (its output goes to its log)."""
    return launcher.Proc(name, [sys.executable, "-u", "-c", textwrap.dedent(code)])


# --- brokers --------------------------------------------------------------------------

def test_embedded_broker_answers_and_stops():
    b = launcher.start_embedded()
    assert b.source == "embedded" and b.port != 6379
    assert b.ping() is True
    pgid = b.proc.pid
    b.stop()
    assert not group_alive(pgid)
    assert b.ping() is False


def test_embedded_broker_writes_nothing_into_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    b = launcher.start_embedded()
    b.stop()
    assert list(tmp_path.iterdir()) == []


def test_ensure_broker_reuses_a_running_server(broker, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    reused = ensure_broker(port=broker.port)
    assert reused.source == "reused" and reused.proc is None
    assert reused.ping()
    reused.stop()  # stopping a reused broker must not stop the real one
    assert broker.ping()


def test_ensure_broker_starts_the_embedded_server_on_a_free_port(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    port = launcher.free_port()
    b = ensure_broker(port=port)
    try:
        assert b.source == "embedded" and b.port == port and b.ping()
    finally:
        b.stop()


def test_ensure_broker_refuses_a_port_taken_by_something_else(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(BrokerError, match=rf"Port {port} .* taken .*REDIS_URL"):
            returns_within(30, lambda: ensure_broker(port=port), "ensure_broker() on a taken port")


def test_redis_url_pointing_nowhere_fails_fast_with_advice(monkeypatch):
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{launcher.free_port()}/0")
    with pytest.raises(BrokerError, match=r"No Redis answers at .*REDIS_URL"):
        returns_within(30, ensure_broker, "ensure_broker() with REDIS_URL pointing nowhere")


def test_the_embedded_server_never_reports_another_servers_port_as_its_own(broker):
    """Another Redis already answers PING on the port: the new Valkey must not
    be reported ready because *something* answers there."""
    with pytest.raises(BrokerError, match=rf"port {broker.port} of 127.0.0.1: another program has it"):
        launcher.start_embedded(port=broker.port)
    assert broker.ping()


# --- redis-py for every broker conversation: passwords, ACL users, TLS ---------------------

PASSWORD = "p@ss:w/rd"   # needs URL-encoding: %40 %3A %2F


@pytest.fixture(scope="module")
def locked_broker():
    """A Valkey with a password, and an ACL user with only what Celery needs."""
    b = launcher.start_embedded(password=PASSWORD)
    with b.client() as conn:
        conn.execute_command("ACL", "SETUSER", "celery", "on", ">s3cr/et", "~*", "&*",
                             "+@all", "-@admin", "-@dangerous")
    yield b
    b.stop()


def test_urls_with_url_encoded_passwords_and_acl_users_work(locked_broker):
    assert "%40" in locked_broker.url and locked_broker.ping()
    acl_user = f"redis://celery:s3cr%2Fet@127.0.0.1:{locked_broker.port}/0"
    assert launcher.ping(acl_user)
    with launcher.broker.client(acl_user, decode_responses=True) as conn:
        assert conn.acl_whoami() == "celery"


@pytest.mark.parametrize("url, message", [
    ("redis://127.0.0.1:{port}/0", "needs a password: put it in the URL"),
    ("redis://:wrong@127.0.0.1:{port}/0", "refused the user name or password in the URL"),
    ("redis://celery:wrong@127.0.0.1:{port}/0", "refused the user name or password in the URL"),
    ("rediss://:pw@127.0.0.1:{port}/0", "TLS handshake with .* failed"),
], ids=["no-password", "wrong-password", "wrong-acl-password", "tls-to-a-plain-port"])
def test_broker_problems_are_one_line_that_says_what_is_wrong(locked_broker, url, message):
    url = url.format(port=locked_broker.port)
    why = returns_within(30, lambda: problem(url), f"PING {url}")
    assert why is not None and "\n" not in why
    assert re.search(message, why), why
    assert "wrong" not in why and PASSWORD not in why, "a password must never be printed"
    with pytest.raises(BrokerError, match=message):
        launcher.check_broker(url, timeout=1)


def test_a_worker_and_a_client_use_the_acl_user(locked_broker, tmp_path):
    from celery import Celery

    url = f"redis://celery:s3cr%2Fet@127.0.0.1:{locked_broker.port}/0"
    worker = launcher.start_worker("demo_tasks.tasks", broker=url, fast=True, name="acl")
    client = Celery("acl-client", broker=url, backend=url, set_as_current=False)
    try:
        assert client.send_task("demo_tasks.tasks.add", args=(20, 22)).get(timeout=30) == 42
        assert PASSWORD not in worker.log() and "s3cr" not in worker.log()
    finally:
        client.close()
        worker.cleanup()


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
    assert "lt@HOST ready." in worker.tail(50)
    assert "demo_tasks.tasks.add" in worker.tail(50)
    pgid = worker.pid
    assert worker in launcher.running()
    worker.stop()
    assert worker.stopped_by == "SIGTERM" and "Warm shutdown" in worker.log()
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


# --- stops: warm, cold, kill, with a task running ---------------------------------------

@pytest.fixture
def busy_worker(demo_app, broker):
    """A worker that is running slow_add(1, 1, seconds=3) right now: (worker, result)."""
    name = f"busy{os.getpid()}"
    worker = launcher.start_worker("demo_tasks.tasks", broker=broker, fast=True, name=name)
    result = demo_app.slow_add.delay(1, 1, seconds=3)
    inspect = demo_app.app.control.inspect(destination=[f"{name}@{socket.gethostname()}"], timeout=1)

    def running_it() -> bool:
        active = inspect.active() or {}
        return any(task["id"] == result.id for tasks in active.values() for task in tasks)

    assert launcher.wait_for(running_it, 30, interval=0.05), worker.tail(20)
    yield worker, result
    worker.cleanup()


def queued(broker) -> int:
    with broker.client() as conn:
        return conn.llen("celery")


def test_warm_stop_lets_the_running_task_finish_and_store_its_result(busy_worker):
    worker, result = busy_worker
    pgid = worker.pid
    worker.stop()  # warm is the default
    assert worker.stopped_by == "SIGTERM", worker.tail(20)
    assert "worker: Warm shutdown (MainProcess)" in worker.log()
    assert not group_alive(pgid)
    # The worker finished the task before it exited: its result is already stored.
    assert result.state == "SUCCESS" and result.get(timeout=1) == 2


def test_cold_stop_loses_the_running_task(busy_worker, broker):
    worker, result = busy_worker
    pgid = worker.pid
    worker.stop("cold")
    assert worker.stopped_by == "SIGQUIT", worker.tail(20)
    assert "worker: Cold shutdown (MainProcess)" in worker.log()
    assert not group_alive(pgid)
    # Celery cancels the running task and records RETRY ("cancelled by Celery")...
    assert result.state == "RETRY"
    # ... but nothing will ever retry it: the message was acknowledged when the
    # task started (Celery's default, early ack), so it is not back in the queue
    # and not waiting to be redelivered. The task is lost.
    assert queued(broker) == 0
    with broker.client() as conn:
        assert conn.hlen("unacked") == 0


def test_kill_ends_the_whole_group_at_once(busy_worker, broker):
    worker, result = busy_worker
    pgid = worker.pid
    worker.stop("kill")
    assert worker.stopped_by == "SIGKILL"
    assert "Warm shutdown" not in worker.log() and "Cold shutdown" not in worker.log()
    assert not group_alive(pgid)
    assert result.state == "PENDING"


def test_a_warm_stop_that_takes_too_long_escalates_to_cold(busy_worker):
    worker, result = busy_worker
    worker.stop(timeout=0.5)  # the task needs about 3 s more
    assert worker.stopped_by == "SIGQUIT"
    log = worker.log()
    assert log.index("Warm shutdown") < log.index("Cold shutdown")
    assert result.state == "RETRY"  # cancelled by the cold shutdown, as above


def test_stop_refuses_an_unknown_mode(broker):
    proc = script("import time; time.sleep(60)")
    try:
        with pytest.raises(ValueError, match="mode must be one of"):
            proc.stop("gentle")
    finally:
        proc.stop()
    assert proc.stopped_by == "SIGTERM"


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
