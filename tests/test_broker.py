"""Brokers: the embedded Valkey, the rules of ensure_broker(), and redis-py for
every conversation with a broker (passwords, ACL users, URL-encoded credentials, TLS)."""

from __future__ import annotations

import re
import socket
import uuid

import pytest

import launcher
from launcher.broker import BrokerError, ensure_broker, problem
from launcher.procs import group_alive
from tests.helpers import returns_within

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


def test_a_broker_of_ones_own_is_a_separate_server(broker):
    """start_embedded() is "a broker of my own" (launcher/broker.py): another process on
    another port, and what is done to it -- FLUSHALL, a password, a stop -- reaches no
    other server (here the test process's shared one, standing for make lab's)."""
    key = f"shared-{uuid.uuid4().hex}"
    own = launcher.start_embedded()
    try:
        assert own.port != broker.port and own.proc.pid != broker.proc.pid
        with broker.client(timeout=5) as shared, own.client(timeout=5) as mine:
            assert mine.info("server")["run_id"] != shared.info("server")["run_id"]
            shared.set(key, "kept")
            mine.set(key, "mine")
            mine.flushall()
            assert mine.dbsize() == 0
            assert shared.get(key) == b"kept", "FLUSHALL on one's own broker emptied another"
            mine.config_set("requirepass", "only-mine")
            assert shared.ping() and shared.get(key) == b"kept"
            shared.delete(key)
        pgid = own.proc.pid
        own.stop()
        assert not group_alive(pgid) and broker.ping()
    finally:
        own.stop()


def test_a_broker_of_ones_own_persists_across_a_restart_when_asked(tmp_path):
    """What a scenario that restarts a broker with persistence does (docstring of start_embedded())."""
    persist = ("--appendonly", "yes", "--dir", str(tmp_path))
    first = launcher.start_embedded(extra_args=persist)
    try:
        with first.client(timeout=5) as conn:
            conn.set("survives", "yes")
    finally:
        first.stop()
    again = launcher.start_embedded(first.port, extra_args=persist)
    try:
        with again.client(timeout=5) as conn:
            assert conn.get("survives") == b"yes"
    finally:
        again.stop()


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
