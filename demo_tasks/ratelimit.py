"""Chapter 08: a rate limit over ALL workers -- a token bucket in Redis.

Celery's ``rate_limit="5/s"`` is a token bucket in each worker's main process:
two workers each let 5 a second through, 10 together. When the limit belongs to
someone else (an API that allows 5 calls a second, a website a crawler must not
hammer -- chapter 10 imports this module), every worker must take its tokens
from ONE bucket. Here that bucket is a Redis hash, and taking a token is ONE
Lua script (``BUCKET``): Redis runs a script to the end before it serves any
other command, so two workers can never both take the last token.

    decision = acquire(client, "api.example.com", 5)            # 5 a second
    if decision:            # a token: call the API now
        ...
    else:                   # none left: decision.retry_after seconds until the next one
        ...

Inside a task, ``take_or_retry(self, client, key, rate)`` does the ``else`` for
you: ``self.retry(countdown=...)`` with a short countdown, so the task comes
back when a token is likely to be there (see ``take_or_retry`` for why the
countdown must stay short, and why such a task needs ``max_retries=None``).

The bucket holds at most ``burst`` tokens and gains ``rate`` tokens every
``per`` seconds, continuously (one token every ``per / rate`` seconds); a call
takes one whole token. The time is the Redis server's (its ``TIME`` command,
microseconds), never a worker's clock: workers on machines whose clocks differ
share one time line.

**The guarantee.** In any window of ``per`` seconds -- any, not only windows
that start on a whole second -- fewer than ``burst + rate`` tokens are handed
out, that is at most ``rate + burst - 1``. With the default ``burst=1``: at most
``rate`` calls in any window of ``per`` seconds, over all workers together.
(Why: at the window's start the bucket holds at most ``burst`` tokens; before
the window's last grant, which comes less than ``per`` seconds later, it gains
less than ``rate``; every grant takes one and the bucket never goes below zero.)
A bigger ``burst`` lets an idle client make ``burst`` calls at once, at the
price of that looser bound.

What the guarantee is about is the moment Redis hands out a token. The call
itself happens a few milliseconds later, and that delay varies (the worker is
scheduled, the request travels). Seen from the called service, a window of
``per`` seconds of ARRIVALS is contained in a window of ``per + slack`` seconds
of GRANTS, where ``slack`` is the largest minus the smallest delay; so in the
service's own log, any window of ``per - slack`` seconds holds at most
``rate + burst - 1`` calls (``instruments/rate_windows.py`` measures both).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

#: The Redis key of a bucket: one hash per limited thing (an API, a host).
KEY_PREFIX = "ratelimit:"

# KEYS[1]: the bucket (a hash: tokens, updated -- the time of the last update, in µs).
# ARGV: rate (tokens per period), per (the period, seconds), burst (the bucket's size).
# Returns {allowed (1/0), seconds until a token is there, the server's time: seconds,
# microseconds}. Numbers go out as strings made with string.format: Redis turns a Lua
# number into an integer reply, and Lua's tostring keeps only 14 digits (the time in
# microseconds has 16).
BUCKET = """
local rate = tonumber(ARGV[1])
local per = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local time = redis.call('time')    -- the server's clock: seconds, microseconds
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local per_us = rate / (per * 1000000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
    tokens = burst
elseif now > updated then
    tokens = math.min(burst, tokens + (now - updated) * per_us)
end
local allowed = 0
local wait = 0
if tokens >= 1 then
    tokens = tokens - 1
    allowed = 1
else
    wait = (1 - tokens) / per_us / 1000000
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'updated', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.ceil(burst / per_us / 1000) + 1000))
return {allowed, string.format('%.6f', wait), time[1], time[2]}
"""


@dataclass(frozen=True)
class Decision:
    """What the bucket said: ``allowed`` (true also as ``bool(decision)``), how many
    seconds until the next token (``retry_after``, 0 when allowed), and the Redis
    server's time of the decision (``at``, Unix seconds with microseconds)."""

    allowed: bool
    retry_after: float
    at: float

    def __bool__(self) -> bool:
        return self.allowed


_script = None  # the Script object (its SHA1); called with each caller's own client


def acquire(client, key: str, rate: float, per: float = 1.0, burst: int = 1) -> Decision:
    """Take one token from the bucket ``key`` (shared by everyone who uses the same
    Redis and key), refilled with ``rate`` tokens every ``per`` seconds, holding at
    most ``burst``. Never waits: says whether a token was there. ``client`` is a
    ``redis.Redis``."""
    if rate <= 0 or per <= 0 or burst < 1:
        raise ValueError(f"rate and per must be > 0 and burst >= 1, not {rate}, {per}, {burst}")
    global _script
    if _script is None:  # EVALSHA by the script's SHA1; loaded into Redis the first time it is missing
        _script = client.register_script(BUCKET)
    allowed, wait, seconds, micros = _script(keys=[KEY_PREFIX + key], args=[rate, per, burst], client=client)
    return Decision(bool(int(allowed)), float(wait), int(seconds) + int(micros) / 1_000_000)


def take_or_retry(task, client, key: str, rate: float, per: float = 1.0, burst: int = 1) -> Decision:
    """Inside a bound task (``@app.task(bind=True, max_retries=None)``): take a token,
    or retry the task when the next token should be there.

    The countdown is the bucket's ``retry_after`` plus a random share of one token's
    time (``per / rate``), so tasks that found the bucket empty together do not all
    come back in the same millisecond. It is well under a second for any sensible
    rate, and it must stay far below the broker's ``visibility_timeout`` (one hour
    on Redis): a task waiting for its countdown sits unacknowledged in a worker's
    memory, and on Redis a message unacknowledged for longer than that timeout is
    delivered again, to another worker -- the call would then be made twice. A
    short countdown also means a worker that stops leaves little waiting behind.

    Every wait is a retry (``self.request.retries`` counts it), so the task must
    declare ``max_retries=None``: with Celery's default of 3 it would give up after
    the third empty bucket with ``MaxRetriesExceededError``."""
    decision = acquire(client, key, rate, per, burst)
    if not decision:
        raise task.retry(countdown=decision.retry_after + random.uniform(0, per / rate))
    return decision


def reset(client, key: str) -> None:
    """Forget the bucket ``key`` (it starts full again)."""
    client.delete(KEY_PREFIX + key)
