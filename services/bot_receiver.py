"""The course's group-bot receiver (chapter 09): a local stand-in for a DingTalk
custom group bot (钉钉自定义机器人) with signing (加签), and a webhook of our own.

Chapter 09 sends instant messages from Celery tasks -- the article's "email and
IM notifications". A real DingTalk bot lives on DingTalk's servers and posts
into a real group; this server speaks the same protocol on your laptop, checks
every request the way DingTalk does, and remembers what a person in the group
would have seen. Standard library only::

    DINGTALK_SECRET="$(cat .secrets/dingtalk-secret)" python -m services.bot_receiver --port 8009
    DINGTALK_SECRET=SEC... python -m services.bot_receiver --port 8009 --token course-bot --hang 3

The secret is read from the environment variable DINGTALK_SECRET, never from the
command line: a command line is visible to every user of the machine (``ps``).

DingTalk's protocol, as documented
(https://open.dingtalk.com/document/orgapp/customize-robot-security-settings,
https://open.dingtalk.com/document/orgapp/custom-bot-send-message-type):

- ``POST /robot/send?access_token=TOKEN&timestamp=MS&sign=SIGN`` with a JSON body:
  ``{"msgtype": "text", "text": {"content": "..."}}`` or
  ``{"msgtype": "markdown", "markdown": {"title": "...", "text": "..."}}``
  (this receiver knows these two message types).
- The signature: ``string_to_sign = f"{timestamp}\\n{secret}"``, ``sign =
  base64(HMAC-SHA256(key=secret, msg=string_to_sign))``, then URL-encoded in the
  query (a base64 "+" sent unencoded arrives as a space: "sign not match").
  ``timestamp`` is the sender's clock in milliseconds; one more than an hour
  away from the receiver's clock is refused, so a captured URL stops working
  within the hour (a replay). ``dingtalk_sign()`` computes it.
- Every answer is HTTP 200 with a JSON ``errcode``, errors included -- a sender
  must read ``errcode``, not only the HTTP status:

  * ``{"errcode": 0, "errmsg": "ok"}``: delivered;
  * ``{"errcode": 300001, "errmsg": "token is not exist"}``: unknown access_token;
  * ``{"errcode": 310000, "errmsg": "invalid timestamp"}``: timestamp missing, not
    a number, or more than 3600 s away;
  * ``{"errcode": 310000, "errmsg": "sign not match"}``: wrong signature.

  (DingTalk's own errmsg texts change over time -- ", more: [a link]" appended, or
  since 2024 "description:机器人发送签名不匹配;solution:..." -- compare errcode.)
- A body that is not JSON, or has no known msgtype with its content, is answered
  HTTP 200 ``{"errcode": 40035, "errmsg": "缺少参数 json"}``: what DingTalk was seen
  answering (reported by its users; its documentation does not list it). A sender
  that reads errcode treats it as what it is: the request is wrong, never retried.

The signature is compared with ``hmac.compare_digest``, which takes the same time
wherever the first wrong character is: a plain ``==`` stops at the first
difference, and timing many tries would reveal a valid signature byte by byte.

Our own webhook (a recipient that is ours, so it can deduplicate):

- ``POST /hooks/notify``, JSON ``{"event": str, "text": str}``, header
  ``Idempotency-Key: KEY`` (required: else 400 ``{"error": "Idempotency-Key header
  required"}``; a body that is not such JSON: 400). The first request with a key is
  delivered: 200 ``{"ok": true, "duplicate": false}``. Every later one with the same
  key gets 200 ``{"ok": true, "duplicate": true}`` and is not delivered again: a
  sender's retry after a lost answer does no harm.

Faults, for the retry demos (a control endpoint, not part of DingTalk):

- ``POST /faults`` ``{"path": "/robot/send" | "/hooks/notify", "answers": [503, "hang", ...]}``
  replaces what is queued for that path: each of its next requests takes one
  answer, in order, then requests are answered normally again. A number (400-599)
  is answered with that HTTP status and ``{"error": ...}``, and the message is
  *not* delivered (an overloaded gateway in front of the bot). A DingTalk error,
  ``{"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}``
  (``/robot/send`` only; any errcode other than 0, errmsg a string): answered HTTP
  200 with that body, *not* delivered -- the robot's rate limit (130101: more than
  20 messages a minute) or "系统繁忙" (-1), without sending 20 messages. ``"hang"``: the
  message *is* handled (delivered if valid, recorded), then the answer is held
  ``--hang`` seconds (3 by default): a sender whose timeout is shorter gives up
  and retries a message that already arrived. ``GET /faults`` shows what is
  queued; ``DELETE /faults`` clears it all.

What it remembers:

- ``GET /messages``: every request to ``/robot/send`` and ``/hooks/notify``, in order of
  arrival: ``{"t": unix time, "path", "status" (HTTP), "errcode" (or null),
  "verdict" ("ok", "token is not exist", "invalid timestamp", "sign not match",
  "bad request", "duplicate", "fault 503", "fault errcode 130101", ...), "delivered" (a message a person
  would see), "msgtype", "content" (the text, or the markdown's text), "event" (the
  webhook's), "key" (the Idempotency-Key, or null), "timestamp" (the request's),
  "sign_ok" (true/false, null when it was not checked), "fault" (the fault that
  request got: a status, "hang", an errcode's answer, or null)}.
- ``POST /reset`` forgets the messages, the idempotency keys and the faults.
- ``GET /health``: ``{"ok": true}``. (``/health``, ``/messages``, ``/reset`` and
  ``/faults`` are not recorded.)

The server prints one line per recorded request (stdout).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http
import json
import os
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

from .json_http import JsonHandler, QuietServer, serve_until_stopped

ADDRESS = "127.0.0.1"  # never reachable from another machine
SECRET_VARIABLE = "DINGTALK_SECRET"
DEFAULT_TOKEN = "course-bot"
DEFAULT_HANG = 3.0
SEND_PATH = "/robot/send"
HOOK_PATH = "/hooks/notify"
MESSAGE_PATHS = (SEND_PATH, HOOK_PATH)
#: How far a request's timestamp may be from the receiver's clock (DingTalk: 1 hour).
TIMESTAMP_WINDOW_MS = 3600 * 1000
#: The largest body read (a bot message is a few kilobytes).
MAX_BODY = 1 << 20

OK = {"errcode": 0, "errmsg": "ok"}
TOKEN_UNKNOWN = {"errcode": 300001, "errmsg": "token is not exist"}
INVALID_TIMESTAMP = {"errcode": 310000, "errmsg": "invalid timestamp"}
SIGN_MISMATCH = {"errcode": 310000, "errmsg": "sign not match"}
#: DingTalk's answer to a body it cannot read (observed, not documented: see the module's docstring).
MISSING_JSON = {"errcode": 40035, "errmsg": "缺少参数 json"}


def dingtalk_sign(secret: str, timestamp_ms: int | str) -> str:
    """DingTalk's signature of a request sent at ``timestamp_ms`` (base64, *not* URL-encoded):
    base64(HMAC-SHA256(key=secret, msg=f"{timestamp_ms}\\n{secret}")), UTF-8 throughout."""
    string_to_sign = f"{timestamp_ms}\n{secret}"
    digest = hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def check_request(query: dict[str, str], *, secret: str, token: str, now_ms: int) -> tuple[dict, bool | None]:
    """DingTalk's checks of a ``/robot/send`` query (its parameters URL-decoded), in order:
    the token, the timestamp, the signature. Returns (the answer: OK or the error, sign_ok:
    whether the signature matched, None if it was not checked)."""
    if not hmac.compare_digest(query.get("access_token", "").encode("utf-8"), token.encode("utf-8")):
        return TOKEN_UNKNOWN, None
    timestamp = query.get("timestamp", "")
    if not (timestamp.isascii() and timestamp.isdigit()) or abs(now_ms - int(timestamp)) > TIMESTAMP_WINDOW_MS:
        return INVALID_TIMESTAMP, None
    expected = dingtalk_sign(secret, timestamp)
    # Constant time: how long the comparison takes says nothing about where the first wrong byte is.
    if not hmac.compare_digest(query.get("sign", "").encode("utf-8"), expected.encode("utf-8")):
        return SIGN_MISMATCH, False
    return OK, True


def robot_message(body: object) -> tuple[str, str]:
    """(msgtype, the text a person reads) of a DingTalk message body; ValueError saying what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    msgtype = body.get("msgtype")
    if msgtype == "text":
        content = body.get("text")
        if isinstance(content, dict) and isinstance(content.get("content"), str) and content["content"]:
            return "text", content["content"]
        raise ValueError('msgtype "text" needs "text": {"content": "..."}')
    if msgtype == "markdown":
        content = body.get("markdown")
        if (isinstance(content, dict) and isinstance(content.get("title"), str)
                and isinstance(content.get("text"), str) and content["text"]):
            return "markdown", content["text"]
        raise ValueError('msgtype "markdown" needs "markdown": {"title": "...", "text": "..."}')
    raise ValueError(f'unknown msgtype {msgtype!r} (this receiver knows "text" and "markdown")')


def hook_message(body: object) -> tuple[str, str]:
    """(event, text) of a /hooks/notify body; ValueError saying what is wrong."""
    if isinstance(body, dict) and isinstance(body.get("event"), str) and isinstance(body.get("text"), str):
        return body["event"], body["text"]
    raise ValueError('the body must be JSON {"event": "...", "text": "..."}')


def check_faults(path: object, answers: object) -> str | None:
    """What is wrong with a POST /faults request (None if nothing)."""
    if path not in MESSAGE_PATHS:
        return f"path must be one of {list(MESSAGE_PATHS)}, not {path!r}"
    if not isinstance(answers, list):
        return 'answers must be a list, e.g. [503, "hang"]'
    for answer in answers:
        if isinstance(answer, dict):
            if path != SEND_PATH:
                return f"an errcode answer is DingTalk's: only for {SEND_PATH}, not {path}"
            if (set(answer) != {"errcode", "errmsg"} or type(answer["errcode"]) is not int
                    or answer["errcode"] == 0 or not isinstance(answer["errmsg"], str)):
                return ('an errcode answer is {"errcode": a number other than 0, "errmsg": "..."}, '
                        f"e.g. {{\"errcode\": 130101, \"errmsg\": \"send too fast\"}}, not {answer!r}")
        elif answer != "hang" and not (type(answer) is int and 400 <= answer <= 599):
            return (f'each answer is an HTTP status from 400 to 599, "hang" or {{"errcode": ..., "errmsg": ...}}, '
                    f"not {answer!r}")
    return None


class BotServer(QuietServer):
    """The server and what it remembers: messages, idempotency keys and queued faults."""

    def __init__(self, port: int, *, secret: str, token: str, hang: float):
        self.secret, self.token, self.hang = secret, token, hang
        self.recorded: list[dict] = []
        self.keys: set[str] = set()
        self.faults: dict[str, list] = {path: [] for path in MESSAGE_PATHS}
        # Requests arrive on many threads at once: one lock for what is remembered and for stdout.
        self.lock = threading.Lock()
        super().__init__((ADDRESS, port), Handler)

    def next_fault(self, path: str) -> int | str | dict | None:
        with self.lock:
            queued = self.faults[path]
            return queued.pop(0) if queued else None

    def record(self, entry: dict) -> None:
        """Remember one request and print its line (the caller holds the lock)."""
        self.recorded.append(entry)
        what = entry["msgtype"] or entry["event"] or "-"
        extra = f" key={entry['key']}" if entry["key"] is not None else ""
        code = f" errcode {entry['errcode']}" if entry["errcode"] is not None else ""
        held = f" (answer held {self.hang:g} s)" if entry["fault"] == "hang" else ""
        print(f"POST {entry['path']} {what}{extra} -> {entry['status']}{code} {entry['verdict']}"
              f"{' delivered' if entry['delivered'] else ''}{held}", flush=True)


class Handler(JsonHandler):
    server: BotServer
    server_version = "CourseBotReceiver/1.0"

    def read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(min(max(length, 0), MAX_BODY)) if length > 0 else b""

    @staticmethod
    def json_body(data: bytes) -> object:
        """The body as JSON; ValueError saying why not."""
        try:
            return json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ValueError(f"the body is not UTF-8 ({exc.reason})") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"the body is not JSON ({exc.msg} at position {exc.pos})") from None

    # --- routing ------------------------------------------------------------------

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/health":
            self.send_json(200, {"ok": True})
        elif path == "/messages":
            with self.server.lock:
                recorded = list(self.server.recorded)
            self.send_json(200, recorded)
        elif path == "/faults":
            with self.server.lock:
                queued = {p: list(q) for p, q in self.server.faults.items()}
            self.send_json(200, queued)
        elif path in MESSAGE_PATHS:
            self.send_json(405, {"error": f"use POST for {path}"})
        else:
            self.send_json(404, {"error": "not found"})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        body = self.read_body()
        if url.path == SEND_PATH:
            self.robot_send(url.query, body)
        elif url.path == HOOK_PATH:
            self.hook_notify(body)
        elif url.path == "/faults":
            self.queue_faults(body)
        elif url.path == "/reset":
            with self.server.lock:
                cleared = len(self.server.recorded)
                self.server.recorded.clear()
                self.server.keys.clear()
                for queued in self.server.faults.values():
                    queued.clear()
            self.send_json(200, {"ok": True, "cleared": cleared})
        else:
            self.send_json(404, {"error": "not found"})

    def do_DELETE(self) -> None:
        if urlsplit(self.path).path == "/faults":
            with self.server.lock:
                for queued in self.server.faults.values():
                    queued.clear()
            self.send_json(200, {"ok": True})
        else:
            self.send_json(404, {"error": "not found"})

    # --- the endpoints --------------------------------------------------------------

    def queue_faults(self, data: bytes) -> None:
        try:
            body = self.json_body(data)
        except ValueError as exc:
            self.send_json(400, {"error": str(exc)})
            return
        body = body if isinstance(body, dict) else {}
        problem = check_faults(body.get("path"), body.get("answers"))
        if problem:
            self.send_json(400, {"error": problem})
            return
        with self.server.lock:
            self.server.faults[body["path"]] = list(body["answers"])
        self.send_json(200, {"ok": True, "queued": {body["path"]: body["answers"]}})

    def entry(self, path: str, arrived: float, fault) -> dict:
        return {"t": arrived, "path": path, "status": 200, "errcode": None, "verdict": "", "delivered": False,
                "msgtype": None, "content": None, "event": None, "key": None, "timestamp": None,
                "sign_ok": None, "fault": fault}

    def answer_fault(self, entry: dict, fault: int) -> None:
        """An injected failure: answered with that status, nothing delivered."""
        entry.update(status=fault, verdict=f"fault {fault}")
        with self.server.lock:
            self.server.record(entry)
        try:
            phrase = http.HTTPStatus(fault).phrase
        except ValueError:  # a status without a name, e.g. 599
            phrase = "Error"
        self.send_json(fault, {"error": f"{phrase} (a fault queued with POST /faults)"})

    def finish_answer(self, entry: dict, status: int, answer: dict) -> None:
        if entry["fault"] == "hang":
            time.sleep(self.server.hang)  # handled and recorded already; only the answer is late
        self.send_json(status, answer)

    def robot_send(self, query_text: str, data: bytes) -> None:
        arrived = time.time()  # recorded at arrival, before any deliberate wait
        query = {name: values[0] for name, values in parse_qs(query_text, keep_blank_values=True).items()}
        fault = self.server.next_fault(SEND_PATH)
        entry = self.entry(SEND_PATH, arrived, fault)
        timestamp = query.get("timestamp")
        numeric = timestamp is not None and timestamp.isascii() and timestamp.isdigit()
        entry["timestamp"] = int(timestamp) if numeric else timestamp
        try:  # what the message says, for the record, whatever the verdict
            entry["msgtype"], entry["content"] = robot_message(self.json_body(data))
            problem = None
        except ValueError as exc:
            problem = str(exc)
        if isinstance(fault, int):
            self.answer_fault(entry, fault)
            return
        if isinstance(fault, dict):   # DingTalk's own refusal, HTTP 200: rate limited, busy
            entry.update(status=200, errcode=fault["errcode"], verdict=f"fault errcode {fault['errcode']}")
            with self.server.lock:
                self.server.record(entry)
            self.send_json(200, fault)
            return
        answer, entry["sign_ok"] = check_request(query, secret=self.server.secret, token=self.server.token,
                                                 now_ms=int(time.time() * 1000))
        if answer is OK and problem is not None:
            answer = MISSING_JSON   # what DingTalk answers, HTTP 200 like every other answer
            entry["verdict"] = "bad request"
        else:
            entry["verdict"] = answer["errmsg"]
        status = 200
        entry.update(status=status, errcode=answer["errcode"], delivered=answer is OK)
        with self.server.lock:
            self.server.record(entry)
        self.finish_answer(entry, status, answer)

    def hook_notify(self, data: bytes) -> None:
        arrived = time.time()
        fault = self.server.next_fault(HOOK_PATH)
        entry = self.entry(HOOK_PATH, arrived, fault)
        entry["key"] = key = self.headers.get("Idempotency-Key") or None
        try:
            entry["event"], entry["content"] = hook_message(self.json_body(data))
            problem = None
        except ValueError as exc:
            problem = str(exc)
        if isinstance(fault, int):
            self.answer_fault(entry, fault)
            return
        if key is None or problem is not None:
            error = "Idempotency-Key header required" if key is None else problem
            entry.update(status=400, verdict="bad request")
            with self.server.lock:
                self.server.record(entry)
            self.finish_answer(entry, 400, {"error": error})
            return
        with self.server.lock:  # the check and the record together: two retries at once deliver once
            duplicate = key in self.server.keys
            self.server.keys.add(key)
            entry.update(verdict="duplicate" if duplicate else "ok", delivered=not duplicate)
            self.server.record(entry)
        self.finish_answer(entry, 200, {"ok": True, "duplicate": duplicate})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.bot_receiver",
        description="A local stand-in for a DingTalk custom group bot with signing (加签), "
                    f"and a deduplicating webhook. The secret is read from {SECRET_VARIABLE}.")
    parser.add_argument("--port", type=int, required=True, help="the port on 127.0.0.1 to listen on")
    parser.add_argument("--token", default=DEFAULT_TOKEN,
                        help=f"the access_token the bot answers to (default {DEFAULT_TOKEN})")
    parser.add_argument("--hang", type=float, default=DEFAULT_HANG,
                        help=f'how long a "hang" fault holds the answer ({DEFAULT_HANG:g} s)')
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("--token must not be empty")
    if not args.hang >= 0:
        parser.error("--hang must be a number of seconds >= 0")
    secret = os.environ.get(SECRET_VARIABLE, "")
    if not secret:
        print(f"bot receiver: {SECRET_VARIABLE} is not set. The receiver checks each message's signature "
              f"with the bot's secret (加签), read from the environment only, never from the command line "
              f"(every user of the machine can see a command line). Start it with the secret the sender "
              f"signs with, e.g.:\n  {SECRET_VARIABLE}=\"$(cat .secrets/dingtalk-secret)\" "
              f"python -m services.bot_receiver --port {args.port}", file=sys.stderr, flush=True)
        return 2

    try:
        server = BotServer(args.port, secret=secret, token=args.token, hang=args.hang)
    except OSError as exc:
        print(f"bot receiver: cannot listen on {ADDRESS}:{args.port}: {exc.strerror or exc}", file=sys.stderr,
              flush=True)
        return 1

    ready = (f"bot receiver ready on http://{ADDRESS}:{args.port}{SEND_PATH}?access_token={args.token} "
             f"and http://{ADDRESS}:{args.port}{HOOK_PATH}")
    return serve_until_stopped(server, ready, "bot receiver stopped")


if __name__ == "__main__":
    sys.exit(main())
