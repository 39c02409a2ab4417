"""Chapter 07's idempotency helpers: do a piece of work once, however often a task runs.

A retried task, a message delivered twice (chapter 07's visibility timeout), two
workers racing for the same order: each may start the same work again. Two
tools, both on the Redis the course already has (chapters 09 and 12 import them):

``claim(client, key, ttl)``
    ``SET key token NX EX ttl``: true for exactly one caller until the key
    expires or is released. "Do I own this work right now?"

``run_once(client, key, work, ttl=...)`` (and the decorator ``once``)
    Check before acting: if ``key`` is recorded done, skip and return the stored
    result; if another caller holds the claim, skip; otherwise claim it, run
    ``work()``, record it done (with its JSON result), and release the claim.
    If ``work()`` raises, the claim is released (only if still ours) and the
    error goes on: a retry can then do the work.

    from demo_tasks.idempotency import run_once
    outcome = run_once(client, f"charge:{order_id}", lambda: charge(order_id), ttl=60)
    outcome.ran, outcome.state, outcome.result

The claim's ``ttl`` must be longer than the work can take (else a second caller
may start while the first still runs) and short enough that a crashed worker's
claim frees the work again. Done records keep ``done_ttl`` seconds (a week).
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

#: Where the claims and done records live (prefix + the caller's key).
CLAIM_PREFIX = "claim:"
DONE_PREFIX = "done:"
#: How long a done record is kept: longer than any retry or redelivery of the same work.
DONE_TTL = 7 * 24 * 3600

# Delete the claim only if it still holds our token: a claim that expired and was
# taken by another caller is theirs, not ours to release.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def claim(client: redis.Redis, key: str, ttl: float, token: str | None = None) -> bool:
    """Claim ``key`` for ``ttl`` seconds with ``SET NX EX``: True if this caller owns the
    work now, False if another caller does. ``token`` (default: a random one) is what
    release() compares; pass your own to release it later from elsewhere."""
    ms = max(1, int(ttl * 1000))
    return bool(client.set(CLAIM_PREFIX + key, token or uuid.uuid4().hex, nx=True, px=ms))


def release(client: redis.Redis, key: str, token: str) -> bool:
    """Give the claim back, if it is still ours (its value is ``token``). True if released."""
    return bool(client.eval(_RELEASE, 1, CLAIM_PREFIX + key, token))


def is_done(client: redis.Redis, key: str) -> bool:
    return bool(client.exists(DONE_PREFIX + key))


@dataclass(frozen=True)
class Outcome:
    """What run_once() did: state "ran", "already-done" (result is the stored one) or "busy"."""

    state: str
    result: Any = None

    @property
    def ran(self) -> bool:
        return self.state == "ran"


def run_once(client: redis.Redis, key: str, work: Callable[[], Any], *, ttl: float = 60,
             done_ttl: float = DONE_TTL) -> Outcome:
    """Check before acting: run ``work()`` unless ``key`` is done or claimed by another caller.
    ``work()``'s result must be JSON-serialisable (it is stored with the done record)."""
    stored = client.get(DONE_PREFIX + key)
    if stored is not None:
        return Outcome("already-done", json.loads(stored))
    token = uuid.uuid4().hex
    if not claim(client, key, ttl, token):
        return Outcome("busy")
    try:
        # Checked again under the claim: another caller may have finished between our two reads.
        stored = client.get(DONE_PREFIX + key)
        if stored is not None:
            return Outcome("already-done", json.loads(stored))
        result = work()
        client.set(DONE_PREFIX + key, json.dumps(result), ex=int(done_ttl))
        return Outcome("ran", result)
    finally:
        release(client, key, token)  # on success and on failure: a failed attempt frees the work for a retry


def once(key: Callable[..., str], *, client: Callable[[], redis.Redis], ttl: float = 60,
         done_ttl: float = DONE_TTL) -> Callable:
    """Decorator form of run_once(): ``key(*args, **kwargs)`` names the work, ``client()``
    gives a Redis client. The decorated function returns {"state": ..., "result": ...}
    (a dict, so that a task's result stays JSON).

        @app.task
        @once(key=lambda order_id: f"charge:{order_id}", client=lambda: redis.Redis.from_url(URL))
        def charge(order_id): ...
    """
    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args, **kwargs) -> dict:
            outcome = run_once(client(), key(*args, **kwargs), lambda: func(*args, **kwargs), ttl=ttl,
                               done_ttl=done_ttl)
            return {"state": outcome.state, "result": outcome.result}
        return wrapper
    return decorate
