"""Chapter 07's own-project block: ``notify_partner`` with ``autoretry_for``, added to
the project of chapter 05's five steps, assembled as printed (tests/own_project.py)
and run by a real worker against a real HTTP server playing the partner: 503 twice,
then 200 (retried, succeeds on the third request); 404 (not retried: one request)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests import own_project
from tests.helpers import serving
from tests.own_project import checks

#: How many times /flaky/NAME answers 503 before it answers 200.
FAILURES_FIRST = 2


class Partner(ThreadingHTTPServer):
    """The partner's API on a free port of 127.0.0.1: POST /flaky/NAME answers 503
    FAILURES_FIRST times, then 200; any other path 404. It records every request."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.received: list[tuple[str, dict]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def requests_to(self, path: str) -> list[dict]:
        with self.lock:
            return [body for p, body in self.received if p == path]


class _Handler(BaseHTTPRequestHandler):
    server: Partner

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with self.server.lock:
            self.server.received.append((self.path, body))
            earlier = sum(1 for p, _ in self.server.received if p == self.path) - 1
        status = 404 if not self.path.startswith("/flaky/") else 503 if earlier < FAILURES_FIRST else 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format, *args) -> None:
        pass  # quiet: the test reads what it needs from `received`


@pytest.fixture(scope="module")
def partner() -> Iterator[Partner]:
    with serving(Partner()) as server:
        yield server


@pytest.fixture(scope="module")
def chapter():
    with own_project.running("07") as running:
        yield running


def notify(chapter, url: str, user_id: int) -> dict:
    """Send notify_partner from the project (manage.py shell) and wait for its outcome (a loaded
    machine is slow, not wrong: 45 s; if even that runs out, the worker's log says where it stood)."""
    try:
        return chapter.project.django(f"""
from myapp.tasks import notify_partner

sent = notify_partner.delay({url!r}, {user_id})
outcome = sent.get(timeout=45, propagate=False)
result = {{"state": sent.state, "outcome": outcome if sent.successful() else type(outcome).__name__}}
""")
    except Exception as exc:
        raise AssertionError(f"{exc}\nthe worker's log:\n{chapter.worker.tail(40)}") from exc


@checks("07:myapp/tasks.py")
def test_a_5xx_is_retried_until_the_partner_answers(chapter, partner):
    result = notify(chapter, partner.url + "/flaky/welcome", 7)
    assert result == {"state": "SUCCESS", "outcome": 200}, result
    assert partner.requests_to("/flaky/welcome") == [{"user": 7}] * (FAILURES_FIRST + 1)
    retries = [line for line in chapter.worker.log().splitlines() if "notify_partner[" in line and " retry: " in line]
    assert len(retries) == FAILURES_FIRST and all("TemporaryError" in line for line in retries), retries


@checks("07:myapp/tasks.py")
def test_a_4xx_fails_at_once_without_a_retry(chapter, partner):
    result = notify(chapter, partner.url + "/missing", 8)
    assert result == {"state": "FAILURE", "outcome": "HTTPError"}, result
    assert partner.requests_to("/missing") == [{"user": 8}]
