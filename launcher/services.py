"""Small services the chapters' tasks talk to, as background processes.

Only command lines and readiness live here; the services themselves are in
``services/`` (e.g. ``services/flaky_service.py``, chapter 07).

    service = start_flaky_service()                 # python -m services.flaky_service --port PORT
    service.call_url                                # http://127.0.0.1:PORT/call
    service.requests()                              # the calls it received, in order
    service.reset()                                 # ... forgotten
"""

from __future__ import annotations

import json
import sys
import urllib.request

from .broker import free_port
from .paths import REPO_ROOT
from .procs import Proc

ADDRESS = "127.0.0.1"


class FlakyServiceProc(Proc):
    """A running flaky service. ``url`` is its address, ``call_url`` the endpoint tasks call."""

    url: str
    port: int
    seed: int

    @property
    def call_url(self) -> str:
        return self.url + "/call"

    def _get_json(self, path: str, *, method: str = "GET", timeout: float = 5.0):
        request = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return json.load(reply)

    def answers(self, timeout: float = 1.0) -> bool:
        """True if GET /health answers {"ok": true}: the service, not just anything on the port."""
        try:
            return self._get_json("/health", timeout=timeout) == {"ok": True}
        except (OSError, ValueError):
            return False

    def requests(self) -> list[dict]:
        """The requests the service received since it started (or since reset()), in order of arrival:
        {"t", "path", "task", "attempt", "outcome", "status"} each."""
        return self._get_json("/requests")

    def reset(self) -> None:
        """Forget the requests received so far."""
        self._get_json("/reset", method="POST")


def start_flaky_service(*, seed: int = 7, unavailable: float = 0.2, timeout: float = 0.1, slow: float = 0.1,
                        hang: float = 3.0, slow_seconds: float = 0.2, port: int | None = None,
                        timeout_s: float = 15.0) -> FlakyServiceProc:
    """Start ``python -m services.flaky_service`` on ``port`` (default: a free one)
    and wait until it answers GET /health. ``unavailable``, ``timeout`` and ``slow``
    are the shares of calls that answer 503, hang ``hang`` seconds, or take
    ``slow_seconds``; ``timeout_s`` is how long we wait for it to be ready.
    A port another program has is a PortInUse error."""
    port = port or free_port()
    args = ["-m", "services.flaky_service", "--port", str(port), "--seed", str(seed)]
    defaults = {"--unavailable": (unavailable, 0.2), "--timeout": (timeout, 0.1), "--slow": (slow, 0.1),
                "--hang": (hang, 3.0), "--slow-seconds": (slow_seconds, 0.2)}
    # Only the options that differ from the service's own defaults: what a learner would type.
    for option, (given, default) in defaults.items():
        if given != default:
            args += [option, f"{given:g}"]
    proc = FlakyServiceProc("flaky", [sys.executable, *args], settings={}, cwd=REPO_ROOT)
    proc.port, proc.seed, proc.url = port, seed, f"http://{ADDRESS}:{port}"
    # Ours, not just anyone's: this process listens on the port, and answers /health there.
    proc.wait_until_listening(port, timeout_s, answers=lambda: proc.answers(0.5),
                              advice="Does `python -m services.flaky_service --port PORT` start?")
    return proc
