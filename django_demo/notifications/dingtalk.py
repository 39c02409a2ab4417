"""A DingTalk group robot (钉钉自定义机器人): signing its webhook URL, its message
bodies, and reading its answers.

The robot's admin page gives a webhook URL with an access token and, with the
"加签" security setting, a secret ("SEC..."). Every request then carries the
time in milliseconds and a signature of it (DingTalk's documented algorithm):

    sign = URL-encode(Base64(HMAC-SHA256(key=secret, message=f"{timestamp}\\n{secret}")))

DingTalk refuses a timestamp more than an hour old, so a request is signed when
it is sent, every attempt anew (a retry an hour later must not reuse the first
signature).

The trap: DingTalk answers errors with HTTP 200 too, and says what went wrong in
the body, by its ``errcode`` (read that; DingTalk's docs say its errmsg texts may
change): 310000 (wrong secret, or the clock is off), 300001 or 300005 "token is
not exist" (wrong token). Only errcode 0 is a success. Two errcodes are
temporary and retried, after a wait of at least TRANSIENT_ERRCODES[errcode]
seconds: -1 "系统繁忙" (DingTalk's global error codes: retry once later, at most 3
times) and 130101 "send too fast, exceed 20 times per minute" (a robot takes 20
messages a minute, then is throttled for 10 minutes). Every other errcode is a
robot set up wrong: the same request gets the same answer, so it is never retried.
https://open.dingtalk.com/document/orgapp/customize-robot-security-settings
https://open.dingtalk.com/document/orgapp/custom-robot-access
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings

from .delivery import PermanentFailure, TemporaryFailure
from .webhooks import post_json

#: errcodes DingTalk answers for a robot that is set up wrong (errmsg texts vary: compare the errcode).
CONFIG_ERRORS = {
    310000: "签名不对或时间不准：检查 DINGTALK_SECRET（加签的密钥）和本机时钟",
    300001: "token 不存在：检查 DINGTALK_WEBHOOK_URL 里的 access_token",
    300005: "token 不存在（外部群的机器人也会这样回答）：检查 DINGTALK_WEBHOOK_URL 里的 access_token",
}
#: errcodes that pass: errcode -> the shortest wait (seconds) before the retry. -1: 系统繁忙
#: (DingTalk: retry later); 130101: more than 20 messages a minute, throttled for 10 minutes.
TRANSIENT_ERRCODES = {-1: 60, 130101: 600}
#: What a person reads for a temporary errcode.
TRANSIENT_HINTS = {
    -1: "钉钉系统繁忙，等一会儿再发",
    130101: "发得太快：每个机器人每分钟最多 20 条，超过后限流 10 分钟，等 10 分钟再发",
}

def sign(secret: str, timestamp_ms: int) -> str:
    """Base64(HMAC-SHA256(secret, "TIMESTAMP\\nSECRET")): the ``sign`` parameter before URL-encoding."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_url(webhook_url: str, secret: str, now: float | None = None) -> str:
    """``webhook_url`` with ``&timestamp=MS&sign=...`` for the time ``now`` (seconds since
    the epoch; default: this moment). The URL's own parameters (access_token) stay; a
    timestamp or sign already in it is replaced. Without a secret: the URL unchanged."""
    if not secret:
        return webhook_url
    timestamp_ms = round((time.time() if now is None else now) * 1000)
    parts = urlsplit(webhook_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ("timestamp", "sign")]
    query += [("timestamp", str(timestamp_ms)), ("sign", sign(secret, timestamp_ms))]
    return urlunsplit(parts._replace(query=urlencode(query)))


def text_payload(content: str) -> dict:
    """A plain text message."""
    return {"msgtype": "text", "text": {"content": content}}


def markdown_payload(title: str, text: str) -> dict:
    """A Markdown message: ``title`` shows in the conversation list, ``text`` in the group."""
    return {"msgtype": "markdown", "markdown": {"title": title, "text": text}}


def check_answer(reply) -> str:
    """A 2xx answer of the robot: "errcode 0 ok"; a TemporaryFailure for an errcode in
    TRANSIENT_ERRCODES (with its shortest wait), a PermanentFailure for any other."""
    try:
        body = reply.json()
        errcode, errmsg = int(body["errcode"]), str(body.get("errmsg", ""))   # no errcode: not DingTalk's
    except (ValueError, TypeError, AttributeError, KeyError):
        detail = f"HTTP {reply.status_code}, not DingTalk's JSON answer: {reply.text.strip()[:200]}"
        raise PermanentFailure("DingTalk robot gave an unreadable answer", detail,
                               f"钉钉的回答看不懂：{detail}") from None
    if errcode in TRANSIENT_ERRCODES:
        detail = f"errcode {errcode} {errmsg}"
        raise TemporaryFailure(f"DingTalk robot is busy or throttled (HTTP {reply.status_code})", detail,
                               f"{TRANSIENT_HINTS[errcode]}（{detail}）", at_least=TRANSIENT_ERRCODES[errcode])
    if errcode != 0:
        detail = f"errcode {errcode} {errmsg}"
        hint = CONFIG_ERRORS.get(errcode, "钉钉拒绝了这条消息")
        raise PermanentFailure(f"DingTalk robot refused the message (HTTP {reply.status_code})", detail,
                               f"{hint}（{detail}）")
    return f"errcode 0 {errmsg}".strip()


def send_text(content: str) -> str:
    """One attempt to post ``content`` to the configured robot, signed now; what it answered."""
    url = settings.DINGTALK_WEBHOOK_URL
    if not url:
        raise PermanentFailure("DINGTALK_WEBHOOK_URL is not set", "nothing was sent",
                               "没有设置 DINGTALK_WEBHOOK_URL（钉钉机器人的 Webhook 地址），消息没有发出")
    reply = post_json(signed_url(url, settings.DINGTALK_SECRET), text_payload(content), name="DingTalk robot")
    return check_answer(reply)
