"""Chapter 09's group-bot receiver (services/bot_receiver.py): DingTalk's signature
and checks as pure functions, and a real receiver process started by
launcher.start_bot_receiver(), talked to over HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shlex
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
import requests

import launcher
from launcher.credentials import DINGTALK_FILE, dingtalk_secret, secrets_dir
from launcher.paths import REPO_ROOT
from services.bot_receiver import (
    INVALID_TIMESTAMP,
    OK,
    SIGN_MISMATCH,
    TOKEN_UNKNOWN,
    check_request,
    dingtalk_sign,
    robot_message,
)

SECRET = "SEC" + "0123456789abcdef" * 4  # the shape of a DingTalk secret; this module's own
#: How long a "hang" fault holds its answer here, and the client's patience: shorter.
HANG = 1.0
#: (connect, read) for a client that gives up on a held answer: it waits CLIENT_TIMEOUT for the answer.
CLIENT_TIMEOUT = 0.3
IMPATIENT = (10.0, CLIENT_TIMEOUT)
#: DingTalk's documented Python sample, with a fixed time (the docs use time.time()).
DOC_SECRET, DOC_TIMESTAMP = "this is secret", 1577262236757
#: Its signature, computed once with the documented algorithm (URL-decoded).
DOC_SIGN = "hmPWwU+7lVdm3ZZz0r9tSfx0L4Q26jWOZr9+Gs6EZQM="
HOUR_MS = 3600 * 1000


def documented_sample(secret: str, timestamp: str) -> str:
    """The Python sample of https://open.dingtalk.com/document/orgapp/customize-robot-security-settings
    (#python 3.8), step by step: what a sender puts in the URL, URL-encoded."""
    secret_enc = secret.encode("utf-8")
    string_to_sign = f"{timestamp}\n{secret}"
    string_to_sign_enc = string_to_sign.encode("utf-8")
    hmac_code = hmac.new(secret_enc, string_to_sign_enc, digestmod=hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(hmac_code))


def now_ms() -> int:
    return round(time.time() * 1000)


@pytest.fixture(scope="module")
def bot():
    proc = launcher.start_bot_receiver(secret=SECRET, hang=HANG)
    try:
        yield proc
    finally:
        proc.cleanup()


@pytest.fixture
def fresh(bot):
    """The module's receiver, its messages, keys and faults forgotten."""
    bot.reset()
    return bot


def post_robot(bot, body=None, *, data: bytes | None = None, timestamp=None, sign: str | None = None,
               token: str | None = None, timeout: float | tuple = 10.0) -> requests.Response:
    """POST to the bot as a sender does: signed now (unless told otherwise), sign URL-encoded."""
    timestamp = now_ms() if timestamp is None else timestamp
    params = {"access_token": bot.token if token is None else token, "timestamp": timestamp,
              "sign": dingtalk_sign(bot.secret, timestamp) if sign is None else sign}
    return requests.post(bot.url + "/robot/send", params=params, json=body, data=data, timeout=timeout)


def text(content: str = "报表已生成") -> dict:
    return {"msgtype": "text", "text": {"content": content}}


def post_hook(bot, key: str | None, body=None, timeout: float | tuple = 10.0) -> requests.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return requests.post(bot.hook_url, json={"event": "report.ready", "text": "周报好了"} if body is None else body,
                         headers=headers, timeout=timeout)


def seen(bot, *fields: str) -> list[tuple]:
    return [tuple(m[f] for f in fields) for m in bot.messages()]


# --- the pure functions ---------------------------------------------------------------

def test_the_signature_is_dingtalks_documented_one():
    assert dingtalk_sign(DOC_SECRET, DOC_TIMESTAMP) == DOC_SIGN
    assert dingtalk_sign(DOC_SECRET, str(DOC_TIMESTAMP)) == DOC_SIGN  # the number or its digits
    for secret, timestamp in [(DOC_SECRET, "1577262236757"), (SECRET, "1700000000000"), ("加签的密钥", "1")]:
        assert urllib.parse.unquote_plus(documented_sample(secret, timestamp)) == dingtalk_sign(secret, timestamp)
    assert dingtalk_sign(DOC_SECRET, DOC_TIMESTAMP + 1) != DOC_SIGN


def test_the_django_senders_copy_signs_the_same():
    """django_demo/notifications/dingtalk.py has its own copy (a sender must not import the receiver)."""
    from notifications.dingtalk import sign

    for secret, timestamp in [(DOC_SECRET, DOC_TIMESTAMP), (SECRET, now_ms()), ("加签的密钥", 1)]:
        assert sign(secret, timestamp) == dingtalk_sign(secret, timestamp)


def test_check_request_checks_the_token_then_the_timestamp_then_the_signature():
    now = 1_700_000_000_000

    def check(**query):
        query = {"access_token": "t", "timestamp": str(now), "sign": dingtalk_sign("s", now), **query}
        return check_request({k: v for k, v in query.items() if v is not None}, secret="s", token="t", now_ms=now)

    assert check() == (OK, True)
    assert check(access_token="other") == (TOKEN_UNKNOWN, None)
    assert check(access_token="other", timestamp="x") == (TOKEN_UNKNOWN, None)  # the token first
    for timestamp in (None, "", "x", "-5", "1.5e12", "１２３"):
        assert check(timestamp=timestamp) == (INVALID_TIMESTAMP, None), timestamp
    # Up to an hour away, either way, is on time (signed for that time); more is not.
    for shift, answer in [(HOUR_MS, OK), (-HOUR_MS, OK), (HOUR_MS + 1, INVALID_TIMESTAMP),
                          (-2 * HOUR_MS, INVALID_TIMESTAMP)]:
        ts = now + shift
        assert check(timestamp=str(ts), sign=dingtalk_sign("s", ts))[0] == answer, shift
    assert check(sign=dingtalk_sign("wrong secret", now)) == (SIGN_MISMATCH, False)
    assert check(sign=dingtalk_sign("s", now - 1)) == (SIGN_MISMATCH, False)  # signed for another time
    assert check(sign=None) == (SIGN_MISMATCH, False)
    assert check(sign="签名") == (SIGN_MISMATCH, False)  # not ASCII: still just a mismatch


def test_robot_message_reads_text_and_markdown_and_says_what_is_wrong():
    assert robot_message(text("你好")) == ("text", "你好")
    assert robot_message({"msgtype": "markdown", "markdown": {"title": "周报", "text": "## 周报\n- 完成"}}) == (
        "markdown", "## 周报\n- 完成")
    for body, says in [([], "JSON object"), ({}, "unknown msgtype None"), ({"msgtype": "image"}, "'image'"),
                       ({"msgtype": "text", "text": "hi"}, '"text": {"content"'),
                       ({"msgtype": "text", "text": {"content": ""}}, '"text": {"content"'),
                       ({"msgtype": "markdown", "markdown": {"text": "x"}}, '"title"')]:
        with pytest.raises(ValueError) as error:
            robot_message(body)
        assert says in str(error.value)


# --- the receiver, for real: DingTalk's protocol ------------------------------------------

def test_a_signed_text_message_is_delivered(fresh):
    sent_at = now_ms()
    reply = post_robot(fresh, text("日报已发送"), timestamp=sent_at)
    assert (reply.status_code, reply.json()) == (200, {"errcode": 0, "errmsg": "ok"})
    [entry] = fresh.messages()
    assert entry["path"] == "/robot/send" and entry["verdict"] == "ok" and entry["delivered"] is True
    assert (entry["status"], entry["errcode"], entry["msgtype"], entry["content"]) == (200, 0, "text", "日报已发送")
    assert (entry["timestamp"], entry["sign_ok"], entry["key"], entry["fault"]) == (sent_at, True, None, None)
    assert abs(entry["t"] - time.time()) < 60
    assert launcher.wait_for(lambda: "POST /robot/send text -> 200 errcode 0 ok delivered" in fresh.log(), 5)


def test_a_markdown_message_is_delivered_with_its_text(fresh):
    reply = post_robot(fresh, {"msgtype": "markdown", "markdown": {"title": "周报", "text": "### 周报\n已完成"}})
    assert reply.json() == OK
    assert seen(fresh, "msgtype", "content", "delivered") == [("markdown", "### 周报\n已完成", True)]


def test_a_wrong_signature_is_answered_200_with_errcode_310000(fresh):
    timestamp = now_ms()
    reply = post_robot(fresh, text(), timestamp=timestamp, sign=dingtalk_sign("SEC-not-the-bots", timestamp))
    assert (reply.status_code, reply.json()) == (200, {"errcode": 310000, "errmsg": "sign not match"})
    assert seen(fresh, "verdict", "delivered", "sign_ok", "errcode") == [("sign not match", False, False, 310000)]


def test_a_signature_sent_without_url_encoding_does_not_match(fresh):
    """A base64 "+" put into the URL as it is arrives as a space: encode the sign."""
    timestamp = next(t for t in range(now_ms(), now_ms() + 10_000) if "+" in dingtalk_sign(fresh.secret, t))
    raw = f"{fresh.url}/robot/send?access_token={fresh.token}&timestamp={timestamp}&sign=" \
          + dingtalk_sign(fresh.secret, timestamp)
    assert requests.post(raw, json=text(), timeout=10).json() == SIGN_MISMATCH
    assert post_robot(fresh, text(), timestamp=timestamp).json() == OK  # the same, encoded


def test_a_timestamp_two_hours_old_is_invalid_even_when_signed_right(fresh):
    old = now_ms() - 2 * HOUR_MS
    reply = post_robot(fresh, text(), timestamp=old)
    assert (reply.status_code, reply.json()) == (200, {"errcode": 310000, "errmsg": "invalid timestamp"})
    assert post_robot(fresh, text(), timestamp="yesterday", sign="x").json() == INVALID_TIMESTAMP
    assert seen(fresh, "verdict", "delivered", "timestamp", "sign_ok") == [
        ("invalid timestamp", False, old, None), ("invalid timestamp", False, "yesterday", None)]


def test_an_unknown_token_is_errcode_300001(fresh):
    reply = post_robot(fresh, text(), token="not-the-bots-token")
    assert (reply.status_code, reply.json()) == (200, {"errcode": 300001, "errmsg": "token is not exist"})
    assert seen(fresh, "verdict", "delivered", "content") == [("token is not exist", False, "报表已生成")]


def test_a_body_that_is_not_a_message_is_answered_200_with_errcode_40035_as_dingtalk_does(fresh):
    """Observed DingTalk behaviour: HTTP 200 {"errcode": 40035, "errmsg": "缺少参数 json"}, not a 400."""
    for data in [b"{not json", b"\xff\xfe"]:
        reply = post_robot(fresh, data=data)
        assert (reply.status_code, reply.json()) == (200, {"errcode": 40035, "errmsg": "缺少参数 json"})
    reply = post_robot(fresh, {"msgtype": "image", "image": {}})
    assert (reply.status_code, reply.json()) == (200, {"errcode": 40035, "errmsg": "缺少参数 json"})
    reply = post_robot(fresh, {"msgtype": "text", "text": {}})   # no content
    assert (reply.status_code, reply.json()["errcode"]) == (200, 40035)
    assert seen(fresh, "status", "errcode", "verdict", "delivered") == [(200, 40035, "bad request", False)] * 4


def test_a_get_is_not_a_message_and_is_not_recorded(fresh):
    assert requests.get(fresh.send_url, timeout=10).status_code == 405
    assert requests.get(fresh.url + "/health", timeout=10).json() == {"ok": True}
    assert requests.get(fresh.url + "/nowhere", timeout=10).status_code == 404
    assert fresh.messages() == []


# --- faults ------------------------------------------------------------------------------

def test_a_503_is_not_delivered_and_a_hang_is_delivered_but_answered_late(fresh):
    fresh.faults("/robot/send", [503, "hang", "hang"])
    first = post_robot(fresh, text("第一次"))
    assert first.status_code == 503 and "Service Unavailable" in first.json()["error"]
    with pytest.raises(requests.ReadTimeout):  # the client gives up before the held answer comes
        post_robot(fresh, text("第二次"), timeout=IMPATIENT)
    assert launcher.wait_for(lambda: len(fresh.messages()) == 2, 10)  # it arrived all the same
    started = time.monotonic()
    third = post_robot(fresh, text("第三次"))  # a patient client gets the 200, after the hang
    assert time.monotonic() - started >= HANG and third.json() == OK
    assert post_robot(fresh, text("第四次")).json() == OK  # the queue is used up: normal again
    assert seen(fresh, "content", "status", "verdict", "delivered", "fault") == [
        ("第一次", 503, "fault 503", False, 503),
        ("第二次", 200, "ok", True, "hang"),  # delivered, although its sender saw a timeout
        ("第三次", 200, "ok", True, "hang"),
        ("第四次", 200, "ok", True, None)]


def test_an_errcode_fault_is_dingtalks_rate_limit_or_busy_answer_and_is_not_delivered(fresh):
    too_fast = {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
    busy = {"errcode": -1, "errmsg": "系统繁忙"}
    fresh.faults("/robot/send", [too_fast, busy])
    first, second = post_robot(fresh, text("第一次")), post_robot(fresh, text("第二次"))
    assert (first.status_code, first.json()) == (200, too_fast)
    assert (second.status_code, second.json()) == (200, busy)
    assert post_robot(fresh, text("第三次")).json() == OK  # the queue is used up: normal again
    assert seen(fresh, "content", "status", "errcode", "verdict", "delivered", "fault") == [
        ("第一次", 200, 130101, "fault errcode 130101", False, too_fast),
        ("第二次", 200, -1, "fault errcode -1", False, busy),
        ("第三次", 200, 0, "ok", True, None)]


def test_faults_are_per_path_can_be_cleared_and_bad_ones_are_refused(fresh):
    fresh.faults("/hooks/notify", [500, 502])
    assert requests.get(fresh.url + "/faults", timeout=10).json() == {"/robot/send": [], "/hooks/notify": [500, 502]}
    assert post_robot(fresh, text()).json() == OK  # the other path is not affected
    fresh.faults("/hooks/notify", [429])  # replaces what was queued
    assert post_hook(fresh, "k-1").status_code == 429
    assert post_hook(fresh, "k-1").json() == {"ok": True, "duplicate": False}  # the 429 did not deliver it
    fresh.faults("/robot/send", [503])
    fresh.clear_faults()
    assert post_robot(fresh, text()).json() == OK
    for bad in [{"path": "/elsewhere", "answers": [503]}, {"path": "/robot/send", "answers": 503},
                {"path": "/robot/send", "answers": [200]}, {"path": "/robot/send", "answers": ["slow"]},
                {"path": "/robot/send", "answers": [True]},
                {"path": "/robot/send", "answers": [{"errcode": 0, "errmsg": "ok"}]},
                {"path": "/robot/send", "answers": [{"errcode": "130101", "errmsg": "x"}]},
                {"path": "/robot/send", "answers": [{"errcode": 130101}]},
                {"path": "/hooks/notify", "answers": [{"errcode": 130101, "errmsg": "x"}]}]:
        reply = requests.post(fresh.url + "/faults", json=bad, timeout=10)
        assert reply.status_code == 400 and reply.json()["error"], bad
    assert requests.get(fresh.url + "/faults", timeout=10).json() == {"/robot/send": [], "/hooks/notify": []}


# --- our own webhook ----------------------------------------------------------------------

def test_the_same_idempotency_key_is_delivered_once(fresh):
    first = post_hook(fresh, "notification-42-attempt-any")
    again = post_hook(fresh, "notification-42-attempt-any")
    other = post_hook(fresh, "notification-43")
    assert [r.status_code for r in (first, again, other)] == [200] * 3
    assert [r.json()["duplicate"] for r in (first, again, other)] == [False, True, False]
    assert seen(fresh, "path", "key", "event", "content", "verdict", "delivered") == [
        ("/hooks/notify", "notification-42-attempt-any", "report.ready", "周报好了", "ok", True),
        ("/hooks/notify", "notification-42-attempt-any", "report.ready", "周报好了", "duplicate", False),
        ("/hooks/notify", "notification-43", "report.ready", "周报好了", "ok", True)]


def test_a_hang_on_the_hook_delivers_and_the_retry_is_a_duplicate(fresh):
    fresh.faults("/hooks/notify", ["hang"])
    with pytest.raises(requests.ReadTimeout):
        post_hook(fresh, "k-retry", timeout=IMPATIENT)
    assert launcher.wait_for(lambda: len(fresh.messages()) == 1, 10)
    assert post_hook(fresh, "k-retry").json() == {"ok": True, "duplicate": True}  # the sender's retry
    assert seen(fresh, "verdict", "delivered") == [("ok", True), ("duplicate", False)]


def test_the_hook_needs_a_key_and_json(fresh):
    missing = post_hook(fresh, None)
    assert (missing.status_code, missing.json()) == (400, {"error": "Idempotency-Key header required"})
    bad = requests.post(fresh.hook_url, data=b"{oops", headers={"Idempotency-Key": "k"}, timeout=10)
    assert bad.status_code == 400 and "not JSON" in bad.json()["error"]
    wrong = post_hook(fresh, "k", body={"event": "x"})
    assert wrong.status_code == 400 and '"text"' in wrong.json()["error"]
    assert seen(fresh, "status", "verdict", "delivered") == [(400, "bad request", False)] * 3
    assert post_hook(fresh, "k").json() == {"ok": True, "duplicate": False}  # a bad request used no key


def test_reset_forgets_messages_keys_and_faults(fresh):
    post_hook(fresh, "k-reset")
    fresh.faults("/robot/send", [503])
    fresh.reset()
    assert fresh.messages() == []
    assert post_hook(fresh, "k-reset").json()["duplicate"] is False
    assert post_robot(fresh, text()).json() == OK


# --- the process ----------------------------------------------------------------------------

def test_without_a_secret_it_exits_at_once_and_says_how_to_start_it():
    env = {k: v for k, v in os.environ.items() if k != "DINGTALK_SECRET"}
    for value in (None, ""):
        if value is not None:
            env["DINGTALK_SECRET"] = value
        done = subprocess.run([sys.executable, "-m", "services.bot_receiver", "--port", "1"], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 2, done.stderr
        assert "DINGTALK_SECRET is not set" in done.stderr
        assert 'DINGTALK_SECRET="$(cat .secrets/dingtalk-secret)" python -m services.bot_receiver' in done.stderr


def test_a_taken_port_is_a_clear_error(bot):
    started = time.monotonic()
    with pytest.raises(launcher.PortInUse, match=rf"port {bot.port} .*another program"):
        launcher.start_bot_receiver(secret=SECRET, port=bot.port)
    assert time.monotonic() - started < 10
    assert bot.answers()


def test_the_shown_command_hides_the_secret_and_works_in_a_clean_terminal():
    shown = launcher.start_bot_receiver()  # this installation's generated secret
    try:
        port, display = shown.port, shown.display
        assert shown.secret == dingtalk_secret() and shown.secret.startswith("SEC")
        assert shown.secret not in display
        # The test run's own secrets folder, by its absolute path (launcher/credentials.py).
        assert display == (f'DINGTALK_SECRET="$(cat {secrets_dir() / DINGTALK_FILE})" '
                           f"python -m services.bot_receiver --port {port}")
    finally:
        shown.cleanup()
    own = launcher.start_bot_receiver(secret="SEC-a-learners-own", token="team", hang=0.5)
    try:  # a secret of the learner's own is shown as their variable; options only when not the default
        assert own.display == f'DINGTALK_SECRET="$DINGTALK_SECRET" python -m services.bot_receiver --port ' \
                              f"{own.port} --token team --hang 0.5"
        assert own.send_url == f"http://127.0.0.1:{own.port}/robot/send?access_token=team"
    finally:
        own.cleanup()
    activate = Path(sys.prefix) / "bin" / "activate"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    terminal = launcher.Proc("terminal-bot", ["bash", "-c", f"set -e\nsource {shlex.quote(str(activate))}\n{display}"],
                             env=env, cwd=REPO_ROOT)
    try:
        url = f"http://127.0.0.1:{port}"
        terminal.wait_until_listening(port, 30, answers=lambda: launcher.procs.http_answers(url + "/health", 0.5))
        timestamp = now_ms()
        reply = requests.post(f"{url}/robot/send", params={"access_token": "course-bot", "timestamp": timestamp,
                                                           "sign": dingtalk_sign(dingtalk_secret(), timestamp)},
                              json=text("终端里的机器人"), timeout=10)
        assert reply.json() == OK  # the terminal's receiver has the same secret
    finally:
        terminal.cleanup()
