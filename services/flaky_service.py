"""The course's flaky service (chapter 07): a small HTTP server that fails on purpose.

Chapter 07 teaches retries, and retries need something that fails *sometimes*:
an overloaded API that answers 503, a request that hangs until the client gives
up, an answer that comes late. This server plays that API, with the standard
library only::

    python -m services.flaky_service --port 8007
    python -m services.flaky_service --port 8007 --seed 7 --unavailable 0.2 --timeout 0.1 --slow 0.1

The protocol (every answer is JSON):

- ``GET /call?task=ID&attempt=N``: one call of a task's N-th attempt (0 for the
  first run, 1 for the first retry, ...). The service decides its fate:

  * "unavailable" (a share ``--unavailable`` of calls): 503 ``{"error": "service unavailable"}``
    at once, as an overloaded server would;
  * "timeout" (``--timeout``): it holds the request ``--hang`` seconds (3 by
    default) before it answers 200 -- a client with a shorter timeout has given up long before;
  * "slow" (``--slow``): 200 after ``--slow-seconds`` (0.2 by default), within any sensible timeout;
  * "ok" (the rest): 200 at once.

  A 200 is ``{"task": ID, "attempt": N, "value": <an int>}``. Without ``task`` or
  a whole ``attempt`` the answer is 400.

  An ``Idempotency-Key`` header makes the call idempotent, as payment APIs do:
  the first call with a key that is not answered 503 does the work and stores
  its answer under the key; every later call with the same key (a retry after
  a timeout, say) gets the stored answer and does nothing again. Its fate
  (503, hang, slow) is still drawn, as the network's would be.
- ``GET /missing`` (and any other unknown path): 404 ``{"error": "not found"}``.
  Asking again gives the same 404: a 4xx is the caller's mistake, not worth a retry.
- ``GET /requests``: every call so far, in order of arrival: ``{"t": unix time,
  "path", "task", "attempt", "outcome", "status", "key", "replayed"}``: ``key`` is
  the Idempotency-Key sent (or null), ``replayed`` true when the call only got the
  stored answer of an earlier call with that key. The work was done once for each
  200 that is not ``replayed``. ``POST /reset`` forgets the calls and the keys.
- ``GET /config``: the options it was started with: ``{"seed", "unavailable",
  "timeout", "slow", "hang", "slow_seconds"}`` (chapter 07 computes the failures
  it expects from these shares).
- ``GET /health``: 200 ``{"ok": true}``. (Requests to ``/health``, ``/config``,
  ``/requests`` and ``/reset`` are not recorded.)

Why a hash and not ``random.random()``? The fate of a call is
``verdict(task, attempt)``: the first 8 bytes of sha256("seed:task:attempt") read
as a fraction of 1 and compared with the rates. So the same task's same attempt
fails the same way on every run, on every machine: a chapter can pick a task
whose attempts 0 and 1 answer 503 and whose attempt 2 succeeds (``task_ids()``),
and show Celery retrying it twice -- the same story every time the notebook runs.
A retry is a new attempt, so it gets a new, independent draw, as it would
against a real service whose trouble comes and goes.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from .json_http import JsonHandler, QuietServer, serve_until_stopped

#: The possible fates of a call, in the order their shares are laid out on [0, 1).
VERDICTS = ("unavailable", "timeout", "slow", "ok")
#: What a call answers, per verdict (a "timeout" does answer 200 -- after the client has gone).
STATUS = {"unavailable": 503, "timeout": 200, "slow": 200, "ok": 200}
#: How many attempts task_ids() shows its ``where`` (0..4: a first run and up to four retries).
ATTEMPTS_SHOWN = 5

ADDRESS = "127.0.0.1"  # never reachable from another machine


def _digest(task: str, attempt: int, seed: int) -> bytes:
    return hashlib.sha256(f"{seed}:{task}:{attempt}".encode()).digest()


def draw(task: str, attempt: int, *, seed: int = 7) -> float:
    """The call's fraction in [0, 1): its first 8 hash bytes over 2**64."""
    return int.from_bytes(_digest(task, attempt, seed)[:8], "big") / 2**64


def verdict(task: str, attempt: int, *, seed: int = 7, unavailable: float = 0.2, timeout: float = 0.1,
            slow: float = 0.1) -> str:
    """The fate of attempt ``attempt`` of ``task``: "unavailable", "timeout", "slow" or "ok".
    The same arguments give the same verdict, on every machine."""
    u = draw(task, attempt, seed=seed)
    if u < unavailable:
        return "unavailable"
    if u < unavailable + timeout:
        return "timeout"
    if u < unavailable + timeout + slow:
        return "slow"
    return "ok"


def value(task: str, attempt: int, *, seed: int = 7) -> int:
    """The "value" of a 200 answer: a number in [0, 1000) from other bytes of the same hash."""
    return int.from_bytes(_digest(task, attempt, seed)[8:12], "big") % 1000


def task_ids(prefix: str, count: int, *, where: Callable[[list[str]], bool] | None = None, seed: int = 7,
             unavailable: float = 0.2, timeout: float = 0.1, slow: float = 0.1, limit: int = 100_000) -> list[str]:
    """The first ``count`` ids f"{prefix}-000", f"{prefix}-001", ... -- only those for
    which ``where(verdicts of attempts 0..4)`` is true, when ``where`` is given.
    ValueError if fewer than ``count`` of the first ``limit`` ids fit.

        # a task that answers 503 twice, then succeeds on its second retry:
        task_ids("ch07", 1, where=lambda v: v[:3] == ["unavailable", "unavailable", "ok"])
    """
    found: list[str] = []
    for n in range(limit):
        if len(found) >= count:
            break
        task = f"{prefix}-{n:03d}"
        if where is None or where([verdict(task, attempt, seed=seed, unavailable=unavailable, timeout=timeout,
                                           slow=slow) for attempt in range(ATTEMPTS_SHOWN)]):
            found.append(task)
    if len(found) < count:
        raise ValueError(f"only {len(found)} of the first {limit} ids with prefix {prefix!r} "
                         f"satisfy `where` ({count} wanted)")
    return found


class FlakyServer(QuietServer):
    """The server and what it remembers: its options and the calls recorded so far."""

    def __init__(self, port: int, *, seed: int, unavailable: float, timeout: float, slow: float,
                 hang: float, slow_seconds: float):
        self.seed, self.hang, self.slow_seconds = seed, hang, slow_seconds
        self.rates = {"unavailable": unavailable, "timeout": timeout, "slow": slow}
        self.recorded: list[dict] = []
        #: Idempotency-Key -> the answer of the call that did the work.
        self.answers_by_key: dict[str, dict] = {}
        # Requests arrive on many threads at once: one lock for the list and for stdout.
        self.lock = threading.Lock()
        super().__init__((ADDRESS, port), Handler)

    def config(self) -> dict:
        """The options the service was started with (GET /config)."""
        return {"seed": self.seed, **self.rates, "hang": self.hang, "slow_seconds": self.slow_seconds}

    def record(self, entry: dict, line: str) -> None:
        with self.lock:
            self.recorded.append(entry)
            print(line, flush=True)  # flushed: the log file is read while we run


class Handler(JsonHandler):
    server: FlakyServer
    server_version = "FlakyService/1.0"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/health":
            self.send_json(200, {"ok": True})
        elif url.path == "/config":
            self.send_json(200, self.server.config())
        elif url.path == "/requests":
            with self.server.lock:
                recorded = list(self.server.recorded)
            self.send_json(200, recorded)
        elif url.path == "/call":
            self.call(parse_qs(url.query))
        else:
            self.not_found(url.path)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/reset":
            with self.server.lock:
                cleared = len(self.server.recorded)
                self.server.recorded.clear()
                self.server.answers_by_key.clear()
            self.send_json(200, {"ok": True, "cleared": cleared})
        else:
            self.not_found(url.path)

    def not_found(self, path: str) -> None:
        self.server.record({"t": time.time(), "path": path, "task": None, "attempt": None,
                            "outcome": "not-found", "status": 404, "key": None, "replayed": False},
                           f"{self.command} {path} -> 404 not-found")
        self.send_json(404, {"error": "not found"})

    def call(self, query: dict[str, list[str]]) -> None:
        arrived = time.time()  # recorded at arrival, before any deliberate wait
        task = query.get("task", [""])[0] or None
        key = self.headers.get("Idempotency-Key") or None
        attempt_text = query.get("attempt", [""])[0]
        try:
            attempt: int | None = int(attempt_text)
        except ValueError:
            attempt = None
        if attempt is not None and attempt < 0:
            attempt = None
        where = f"{self.command} /call task={task} attempt={attempt_text or None}"
        if task is None or attempt is None:
            self.server.record({"t": arrived, "path": "/call", "task": task, "attempt": attempt,
                                "outcome": "bad-request", "status": 400, "key": key, "replayed": False},
                               f"{where} -> 400 bad-request")
            self.send_json(400, {"error": "give task=ID and attempt=N (a whole number >= 0)"})
            return
        outcome = verdict(task, attempt, seed=self.server.seed, **self.server.rates)
        status = STATUS[outcome]
        wait = {"timeout": self.server.hang, "slow": self.server.slow_seconds}.get(outcome, 0.0)
        answer = {"task": task, "attempt": attempt, "value": value(task, attempt, seed=self.server.seed)}
        replayed = False
        with self.server.lock:
            # The work is done at arrival (a 503 does none); a key already used gets that call's answer.
            if key is not None and outcome != "unavailable":
                if key in self.server.answers_by_key:
                    answer, replayed = self.server.answers_by_key[key], True
                else:
                    self.server.answers_by_key[key] = answer
        self.server.record({"t": arrived, "path": "/call", "task": task, "attempt": attempt,
                            "outcome": outcome, "status": status, "key": key, "replayed": replayed},
                           f"{where} -> {status} {outcome}" + (f" (answers after {wait:g} s)" if wait else "")
                           + (f" key={key} replayed: done once already" if replayed else ""))
        if outcome == "unavailable":
            self.send_json(503, {"error": "service unavailable"})
            return
        if wait:
            time.sleep(wait)
        self.send_json(200, answer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.flaky_service",
                                     description="An HTTP service that fails on purpose, deterministically.")
    parser.add_argument("--port", type=int, required=True, help="the port on 127.0.0.1 to listen on")
    parser.add_argument("--seed", type=int, default=7, help="another seed, other calls fail (default 7)")
    parser.add_argument("--unavailable", type=float, default=0.2, help="share of calls answering 503 (0.2)")
    parser.add_argument("--timeout", type=float, default=0.1, help="share of calls held --hang seconds (0.1)")
    parser.add_argument("--slow", type=float, default=0.1, help="share of calls held --slow-seconds (0.1)")
    parser.add_argument("--hang", type=float, default=3.0, help="how long a 'timeout' call is held (3.0 s)")
    parser.add_argument("--slow-seconds", type=float, default=0.2, help="how long a 'slow' call is held (0.2 s)")
    args = parser.parse_args(argv)
    if min(args.unavailable, args.timeout, args.slow) < 0 or args.unavailable + args.timeout + args.slow > 1:
        parser.error("the shares --unavailable, --timeout and --slow must be >= 0 and add up to 1 at most")

    try:
        server = FlakyServer(args.port, seed=args.seed, unavailable=args.unavailable, timeout=args.timeout,
                             slow=args.slow, hang=args.hang, slow_seconds=args.slow_seconds)
    except OSError as exc:
        print(f"flaky service: cannot listen on {ADDRESS}:{args.port}: {exc.strerror or exc}", file=sys.stderr,
              flush=True)
        return 1

    return serve_until_stopped(server, f"flaky service ready on http://{ADDRESS}:{args.port} (seed {args.seed})",
                               "flaky service stopped")


if __name__ == "__main__":
    sys.exit(main())
