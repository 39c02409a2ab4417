"""The flaky service of chapter 07 (services/flaky_service.py): its pure verdicts,
and a real server process started by launcher.start_flaky_service()."""

from __future__ import annotations

import hashlib
import time

import psutil
import pytest
import requests

import launcher
from launcher.procs import port_taken
from services.flaky_service import VERDICTS, draw, task_ids, value, verdict

#: What a client waits for before it gives up (the chapter's tasks wait 0.5 s).
CLIENT_TIMEOUT = 0.3


@pytest.fixture(scope="module")
def service():
    """One service for the module, with the defaults (hang 3 s, slow 0.2 s)."""
    proc = launcher.start_flaky_service()
    try:
        yield proc
    finally:
        proc.cleanup()


@pytest.fixture
def fresh(service):
    """The module's service with its record emptied first."""
    service.reset()
    return service


def one(where_first: str) -> str:
    """A task id whose first attempt gets the verdict ``where_first``."""
    return task_ids("t", 1, where=lambda v: v[0] == where_first)[0]


def call(service, task: str, attempt: int, timeout: float = 5.0) -> requests.Response:
    return requests.get(service.call_url, params={"task": task, "attempt": attempt}, timeout=timeout)


# --- the pure functions ---------------------------------------------------------------

def test_a_verdict_depends_only_on_its_inputs():
    # Pinned: these are the same on every machine and every run (sha256, not random()).
    assert [verdict("ch07-000", a) for a in range(5)] == ["ok", "ok", "unavailable", "ok", "slow"]
    assert [verdict("ch07-000", 0) for _ in range(3)] == ["ok"] * 3
    # The draw is the documented one: sha256("seed:task:attempt"), first 8 bytes over 2**64.
    digest = hashlib.sha256(b"7:ch07-000:4").digest()
    assert draw("ch07-000", 4) == int.from_bytes(digest[:8], "big") / 2**64
    assert 0.3 <= draw("ch07-000", 4) < 0.4  # 0.2 unavailable + 0.1 timeout <= u < + 0.1 slow: "slow"
    assert value("ch07-000", 0) == value("ch07-000", 0)
    # Another seed, another draw for the same call.
    assert {verdict(f"s-{n}", 0, seed=8) == verdict(f"s-{n}", 0) for n in range(50)} == {True, False}


def test_the_shares_of_the_verdicts_are_near_the_rates():
    n = 20_000
    counts = dict.fromkeys(VERDICTS, 0)
    for i in range(n):
        counts[verdict(f"share-{i}", 0)] += 1
    expected = {"unavailable": 0.2, "timeout": 0.1, "slow": 0.1, "ok": 0.6}
    for name, share in expected.items():
        assert counts[name] / n == pytest.approx(share, abs=0.02), counts
    # Other rates move the shares accordingly; all-zero rates make every call succeed.
    always = [verdict(f"share-{i}", 0, unavailable=1.0) for i in range(200)]
    assert set(always) == {"unavailable"}
    assert {verdict(f"share-{i}", 0, unavailable=0, timeout=0, slow=0) for i in range(200)} == {"ok"}


def test_task_ids_picks_the_first_ids_that_fit():
    assert task_ids("ch07", 3) == ["ch07-000", "ch07-001", "ch07-002"]
    story = ["unavailable", "unavailable", "ok"]
    picked = task_ids("ch07", 2, where=lambda v: v[:3] == story)
    assert len(picked) == 2 and picked[0] < picked[1]
    for task in picked:
        assert task.startswith("ch07-")
        assert [verdict(task, a) for a in range(3)] == story
    # The rates and the seed given to task_ids are the ones its verdicts use.
    assert task_ids("x", 1, where=lambda v: set(v) == {"timeout"}, unavailable=0, timeout=1, slow=0) == ["x-000"]
    with pytest.raises(ValueError, match="satisfy"):
        task_ids("x", 1, where=lambda v: "slow" in v, slow=0, limit=1000)


# --- the service, for real ------------------------------------------------------------------

def test_the_service_answers_health_and_shows_its_command(service):
    assert requests.get(service.url + "/health", timeout=5).json() == {"ok": True}
    assert service.call_url == service.url + "/call"
    assert service.url == f"http://127.0.0.1:{service.port}"
    assert service.display == f"python -m services.flaky_service --port {service.port} --seed 7"
    assert "flaky service ready on http://127.0.0.1:" in service.log()


def test_unavailable_answers_503(fresh):
    reply = call(fresh, one("unavailable"), 0)
    assert reply.status_code == 503
    assert reply.json() == {"error": "service unavailable"}


def test_ok_answers_200_with_a_deterministic_value(fresh):
    task = one("ok")
    reply = call(fresh, task, 0)
    assert reply.status_code == 200
    assert reply.json() == {"task": task, "attempt": 0, "value": value(task, 0)}
    assert call(fresh, task, 0).json() == reply.json()


def test_slow_answers_200_after_slow_seconds(fresh):
    task = one("slow")
    started = time.monotonic()
    reply = call(fresh, task, 0)
    assert time.monotonic() - started >= 0.2
    assert reply.status_code == 200
    assert reply.json()["task"] == task


def test_a_hanging_call_times_out_at_the_client(fresh):
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        call(fresh, one("timeout"), 0, timeout=CLIENT_TIMEOUT)
    assert time.monotonic() - started >= CLIENT_TIMEOUT
    # The service recorded it (at arrival) as the 200 it answers once the client has gone.
    [entry] = fresh.requests()
    assert (entry["outcome"], entry["status"]) == ("timeout", 200)
    # And it keeps serving others meanwhile (a thread per request).
    assert call(fresh, one("ok"), 0).status_code == 200


def test_an_unknown_path_is_404_and_bad_calls_are_400(fresh):
    for _ in range(2):  # the same answer every time: a 4xx is not worth a retry
        reply = requests.get(fresh.url + "/missing", timeout=5)
        assert reply.status_code == 404
        assert reply.json() == {"error": "not found"}
    assert requests.get(fresh.call_url, params={"task": "a"}, timeout=5).status_code == 400
    assert requests.get(fresh.call_url, params={"task": "a", "attempt": "x"}, timeout=5).status_code == 400
    assert requests.get(fresh.call_url, params={"attempt": 0}, timeout=5).status_code == 400
    assert [(e["path"], e["outcome"], e["status"]) for e in fresh.requests()] == [
        ("/missing", "not-found", 404), ("/missing", "not-found", 404),
        ("/call", "bad-request", 400), ("/call", "bad-request", 400), ("/call", "bad-request", 400)]


def test_requests_are_recorded_in_order_and_reset_forgets_them(fresh):
    task = task_ids("rec", 1, where=lambda v: "timeout" not in v[:3])[0]
    before = time.time()
    answers = [call(fresh, task, attempt).status_code for attempt in range(3)]
    recorded = fresh.requests()
    assert [(e["task"], e["attempt"]) for e in recorded] == [(task, 0), (task, 1), (task, 2)]
    assert [e["outcome"] for e in recorded] == [verdict(task, a) for a in range(3)]
    assert [e["status"] for e in recorded] == answers
    times = [e["t"] for e in recorded]
    assert times == sorted(times) and times[0] >= before - 1
    # /health, /config and /requests themselves are not recorded.
    requests.get(fresh.url + "/health", timeout=5)
    requests.get(fresh.url + "/config", timeout=5)
    assert len(fresh.requests()) == 3
    # One log line per recorded call.
    assert launcher.wait_for(lambda: f"GET /call task={task} attempt=2 -> {answers[2]}" in fresh.log(), 5)
    fresh.reset()
    assert fresh.requests() == []


def test_config_answers_the_options_the_service_was_started_with(service, hanging_service):
    # Chapter 07 computes the failures it expects from these shares.
    assert requests.get(service.url + "/config", timeout=5).json() == {
        "seed": 7, "unavailable": 0.2, "timeout": 0.1, "slow": 0.1, "hang": 3.0, "slow_seconds": 0.2}
    assert requests.get(hanging_service.url + "/config", timeout=5).json() == {
        "seed": 11, "unavailable": 0, "timeout": 1.0, "slow": 0, "hang": 60.0, "slow_seconds": 0.2}


@pytest.fixture
def hanging_service():
    """A second service whose every call hangs a minute, with another seed."""
    proc = launcher.start_flaky_service(seed=11, unavailable=0, timeout=1.0, slow=0, hang=60.0)
    try:
        yield proc
    finally:
        proc.cleanup()


def test_a_second_service_on_a_taken_port_is_a_clear_error(hanging_service):
    with pytest.raises(launcher.PortInUse, match=rf"port {hanging_service.port} .*another program"):
        launcher.start_flaky_service(port=hanging_service.port)
    # The one that failed was stopped; the one that has the port still answers.
    assert [p.port for p in launcher.running() if p.name == "flaky"].count(hanging_service.port) == 1
    assert hanging_service.answers()


def test_cleanup_ends_the_process_and_frees_the_port_even_with_a_call_hanging(hanging_service):
    assert "--seed 11 --unavailable 0 --timeout 1 --slow 0 --hang 60" in hanging_service.display
    with pytest.raises(requests.Timeout):
        call(hanging_service, "any", 0, timeout=CLIENT_TIMEOUT)
    assert [e["outcome"] for e in hanging_service.requests()] == ["timeout"]
    pid, port = hanging_service.pid, hanging_service.port
    hanging_service.cleanup()
    # It exited on the warm stop's SIGTERM, cleanly: the call held for 60 s did not hold it
    # (a stop that had to wait would have escalated to SIGQUIT after 15 s).
    assert hanging_service.stopped_by == "SIGTERM"
    assert hanging_service.popen.returncode == 0
    assert not psutil.pid_exists(pid)
    assert not port_taken(port)
    assert hanging_service not in launcher.running()
