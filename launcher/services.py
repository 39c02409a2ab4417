"""Small services the chapters' tasks talk to, as background processes.

Only command lines and readiness live here; the services themselves are in
``services/`` (``services/flaky_service.py``, chapter 07; ``services/smtp_sink.py``
and ``services/bot_receiver.py``, chapter 09; ``services/crawl_site.py``, chapter 10).

    service = start_flaky_service()                 # python -m services.flaky_service --port PORT
    service.call_url                                # http://127.0.0.1:PORT/call
    service.requests()                              # the calls it received, in order
    service.reset()                                 # ... forgotten

    smtp = start_smtp_server(".scratch/.../maildir")  # python -m aiosmtpd ... -c services.smtp_sink.MaildirSink ...
    smtp.host, smtp.port, smtp.messages()           # where to send mail; what arrived, oldest first
    smtp.stop(); start_smtp_server(smtp.maildir, port=smtp.port)   # the same server again

    bot = start_bot_receiver()                      # DINGTALK_SECRET=... python -m services.bot_receiver --port PORT
    bot.send_url, bot.hook_url                      # the DingTalk-style endpoint; our own webhook
    bot.faults("/robot/send", [503, "hang"])        # what its next requests get
    bot.messages(); bot.reset()                     # what it received, in order; ... forgotten

    site = start_crawl_site(".scratch/.../site.log", pages=30)   # python -m services.crawl_site --port PORT ...
    site.url                                        # http://127.0.0.1:PORT: the seed URL of a crawl
    site.requests()                                 # its request log, in order of arrival
    site.reset()                                    # flaky pages fail again first; the log emptied
    site.site()                                     # the generated pages (services.crawl_site.Site): tests only
"""

from __future__ import annotations

import json
import os
import socket
import sys
import urllib.request
from pathlib import Path

from .broker import free_port
from .credentials import dingtalk_secret
from .paths import REPO_ROOT
from .procs import Proc
from .shown import repo_relative

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


# --- chapter 09: the SMTP server --------------------------------------------------------

def smtp_greets(host: str, port: int, timeout: float = 1.0) -> bool:
    """Does a connection to ``host:port`` get an SMTP greeting ("220 ...")?"""
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            greeting = connection.makefile("rb").readline()
            connection.sendall(b"QUIT\r\n")
    except OSError:
        return False
    return greeting.startswith(b"220")


class SmtpServerProc(Proc):
    """A running SMTP server (services/smtp_sink.py): mail to ``host``:``port`` lands in ``maildir``."""

    host: str
    port: int
    maildir: Path
    slow_ack_seconds: float | None

    def answers(self, timeout: float = 1.0) -> bool:
        """True if a connection to the port gets an SMTP greeting ("220 ..."): a mail server, not just anything."""
        return smtp_greets(self.host, self.port, timeout)

    def messages(self) -> list[dict]:
        """Every message in the Maildir, oldest first (services.smtp_sink.read_mailbox)."""
        from services.smtp_sink import read_mailbox

        return read_mailbox(self.maildir)


def start_smtp_server(maildir: str | os.PathLike, port: int | None = None, slow_ack_seconds: float | None = None,
                      timeout_s: float = 15.0) -> SmtpServerProc:
    """Start ``python -m aiosmtpd -n -l 127.0.0.1:PORT -c services.smtp_sink.MaildirSink MAILDIR``
    on ``port`` (default: a free one) and wait until it greets a client with "220".
    ``maildir`` is made if missing (a path under the repository is passed relative to its
    root, as a learner would type it); messages already in it stay. ``slow_ack_seconds``:
    how long mail to ``slowack@...`` waits for its "250" (default: the server's, 5 s).
    A port another program has is a PortInUse error."""
    port = port or free_port()
    folder = Path(os.path.abspath(maildir))
    args = ["-m", "aiosmtpd", "-n", "-l", f"{ADDRESS}:{port}", "-c", "services.smtp_sink.MaildirSink",
            repo_relative(folder)]
    if slow_ack_seconds is not None:
        args.append(f"{slow_ack_seconds:g}")
    proc = SmtpServerProc("smtp", [sys.executable, *args], settings={}, cwd=REPO_ROOT)
    proc.host, proc.port, proc.maildir, proc.slow_ack_seconds = ADDRESS, port, folder, slow_ack_seconds
    # Ours, not just anyone's: this process listens on the port, and greets there.
    proc.wait_until_listening(port, timeout_s, answers=lambda: proc.answers(0.5),
                              advice="Does `python -m aiosmtpd -n -l 127.0.0.1:PORT -c "
                                     "services.smtp_sink.MaildirSink MAILDIR` start?")
    return proc


# --- chapter 09: the group-bot receiver -------------------------------------------------

class BotReceiverProc(Proc):
    """A running DingTalk-style bot receiver (services/bot_receiver.py). ``send_url`` is the bot's
    webhook (sign it: timestamp and sign in the query), ``hook_url`` the course's own webhook."""

    url: str
    port: int
    token: str
    secret: str
    hang: float | None

    @property
    def send_url(self) -> str:
        return f"{self.url}/robot/send?access_token={self.token}"

    @property
    def hook_url(self) -> str:
        return f"{self.url}/hooks/notify"

    def _call(self, path: str, *, method: str = "GET", body: object = None, timeout: float = 5.0):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return json.load(reply)

    def answers(self, timeout: float = 1.0) -> bool:
        """True if GET /health answers {"ok": true}: the receiver, not just anything on the port."""
        try:
            return self._call("/health", timeout=timeout) == {"ok": True}
        except (OSError, ValueError):
            return False

    def messages(self) -> list[dict]:
        """Every request to /robot/send and /hooks/notify since it started (or since reset()),
        in order of arrival: {"t", "path", "status", "errcode", "verdict", "delivered", ...} each."""
        return self._call("/messages")

    def reset(self) -> None:
        """Forget the messages, the idempotency keys and the queued faults."""
        self._call("/reset", method="POST")

    def faults(self, path: str, answers: list) -> dict:
        """Queue what the next requests to ``path`` ("/robot/send" or "/hooks/notify") get, one
        each: an HTTP status (not delivered), "hang" (delivered, answered late), or for /robot/send a DingTalk error
        {"errcode": 130101, "errmsg": "..."} (HTTP 200, not delivered)."""
        return self._call("/faults", method="POST", body={"path": path, "answers": list(answers)})

    def clear_faults(self) -> None:
        self._call("/faults", method="DELETE")


def start_bot_receiver(secret: str | None = None, *, token: str = "course-bot", port: int | None = None,
                       hang: float | None = None, timeout_s: float = 15.0) -> BotReceiverProc:
    """Start ``DINGTALK_SECRET=... python -m services.bot_receiver --port PORT`` on ``port``
    (default: a free one) and wait until it answers GET /health. ``secret``: the bot's
    signing secret (default: DINGTALK_SECRET, else this installation's generated one,
    launcher.credentials.dingtalk_secret()); shown as where it is read from, never its
    value. ``hang``: how long a "hang" fault holds its answer (default: the receiver's, 3 s).
    A port another program has is a PortInUse error."""
    port = port or free_port()
    secret = dingtalk_secret() if secret is None else secret
    if not secret:
        raise ValueError("the bot's secret must not be empty (leave secret out for this installation's own)")
    args = ["-m", "services.bot_receiver", "--port", str(port)]
    if token != "course-bot":  # only what differs from the receiver's defaults: what a learner would type
        args += ["--token", token]
    if hang is not None:
        args += ["--hang", f"{hang:g}"]
    proc = BotReceiverProc("bot-receiver", [sys.executable, *args], settings={"DINGTALK_SECRET": secret},
                           cwd=REPO_ROOT)
    proc.port, proc.token, proc.secret, proc.hang = port, token, secret, hang
    proc.url = f"http://{ADDRESS}:{port}"
    proc.wait_until_listening(port, timeout_s, answers=lambda: proc.answers(0.5),
                              advice="Does `DINGTALK_SECRET=... python -m services.bot_receiver --port PORT` start?")
    return proc


# --- chapter 10: the site to crawl ------------------------------------------------------

class CrawlSiteProc(Proc):
    """A running crawl site (services/crawl_site.py): ``url`` is its address, the seed of a crawl;
    ``log_file`` its request log (JSON lines), read by ``requests()``."""

    url: str
    port: int
    log_file: Path
    pages: int
    seed: int
    delay: float
    slow_delay: float
    hang: float

    def _call(self, path: str, *, method: str = "GET", timeout: float = 5.0):
        request = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return json.load(reply)

    def answers(self, timeout: float = 1.0) -> bool:
        """True if GET /_health answers {"ok": true}: the crawl site, not just anything on the port."""
        try:
            return self._call("/_health", timeout=timeout) == {"ok": True}
        except (OSError, ValueError):
            return False

    def requests(self) -> list[dict]:
        """Every request the site received since it started (or since reset()), in order of
        arrival, from its log: {"id", "t" (arrival, unix time), "path" (as requested),
        "method", "ua" (User-Agent or None), "t_done", "status", "bytes"} each -- the last
        three None while it is not answered yet (or was cut off by a stop)."""
        try:
            text = self.log_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        arrived: dict[int, dict] = {}
        for line in text.split("\n")[:-1]:  # the last piece: empty, or a line still being written
            entry = json.loads(line)
            if "t" in entry:
                arrived[entry["id"]] = {**entry, "t_done": None, "status": None, "bytes": None}
            elif entry["id"] in arrived:  # (an answer to a request from before a reset has no arrival)
                arrived[entry["id"]].update(t_done=entry["t_done"], status=entry["status"], bytes=entry["bytes"])
        return list(arrived.values())

    def reset(self) -> None:
        """Empty the log and let the flaky pages fail their first request again."""
        self._call("/_reset", method="POST")

    def site(self):
        """The pages it serves (services.crawl_site.generate(pages, seed)), for tests and checks:
        a crawler finds them from ``url`` and the links alone."""
        from services.crawl_site import generate

        return generate(self.pages, self.seed)


def start_crawl_site(log: str | os.PathLike, *, pages: int = 120, seed: int = 10, delay: float = 0.02,
                     slow_delay: float = 1.0, hang: float = 30.0, port: int | None = None,
                     timeout_s: float = 15.0) -> CrawlSiteProc:
    """Start ``python -m services.crawl_site --port PORT --log LOG`` on ``port`` (default: a
    free one) and wait until it answers GET /_health. ``log``: its request log (emptied at
    start; a path under the repository is passed relative to its root, as a learner would
    type it). ``pages`` articles generated from ``seed``; every request waits ``delay``
    seconds, the slow pages ``slow_delay`` more, /hang.html ``hang`` seconds. A port
    another program has is a PortInUse error."""
    port = port or free_port()
    log_file = Path(os.path.abspath(log))
    args = ["-m", "services.crawl_site", "--port", str(port)]
    defaults = {"--pages": (pages, 120), "--seed": (seed, 10), "--delay": (delay, 0.02),
                "--slow-delay": (slow_delay, 1.0), "--hang": (hang, 30.0)}
    # Only the options that differ from the site's own defaults: what a learner would type.
    for option, (given, default) in defaults.items():
        if given != default:
            args += [option, f"{given:g}"]
    args += ["--log", repo_relative(log_file)]
    proc = CrawlSiteProc("crawl-site", [sys.executable, *args], settings={}, cwd=REPO_ROOT)
    proc.port, proc.url, proc.log_file = port, f"http://{ADDRESS}:{port}", log_file
    proc.pages, proc.seed, proc.delay, proc.slow_delay, proc.hang = pages, seed, delay, slow_delay, hang
    proc.wait_until_listening(port, timeout_s, answers=lambda: proc.answers(0.5),
                              advice="Does `python -m services.crawl_site --port PORT --log LOG` start?")
    return proc
