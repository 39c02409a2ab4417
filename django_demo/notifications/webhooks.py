"""Calling a webhook: one POST of JSON, and what its answer means for a retry.

``post_json()`` is shared by the DingTalk robot (dingtalk.py) and the project's
own internal webhook (below). The rule is chapter 07's: no connection, a timeout
or an HTTP 5xx may pass, so it is a TemporaryFailure (retried); an HTTP 4xx says
the request itself is wrong, and the same request gets the same answer, so it is
a PermanentFailure (never retried).

The internal webhook deduplicates by the ``Idempotency-Key`` header: every attempt
to deliver one notification sends the same key (``idempotency_key()``), so a
retry after a timeout -- the first request arrived, its answer did not -- is
answered "duplicate" and delivered once.
"""

from __future__ import annotations

import requests
from django.conf import settings

from .delivery import PermanentFailure, TemporaryFailure


def post_json(url: str, payload: dict, *, name: str, headers: dict | None = None) -> requests.Response:
    """POST ``payload`` to ``url`` with NOTIFY_TIMEOUT; return a 2xx answer, raise a
    DeliveryError for anything else. ``name`` names the receiver in messages
    ("DingTalk robot"). The URL is never put in a message: it may carry a token."""
    timeout = settings.NOTIFY_TIMEOUT
    try:
        reply = requests.post(url, json=payload, headers=headers or {}, timeout=timeout, allow_redirects=False)
    except requests.ConnectTimeout:
        detail = f"no connection within {timeout:g} s (NOTIFY_TIMEOUT)"
        raise TemporaryFailure(f"{name} unreachable", detail, f"{timeout:g} 秒内没能连上接收方") from None
    except requests.Timeout:
        detail = f"no answer within {timeout:g} s (NOTIFY_TIMEOUT)"
        raise TemporaryFailure(f"{name} did not answer", detail,
                               f"{timeout:g} 秒内没有等到回答（请求可能已经送达）") from None
    except requests.ConnectionError as exc:
        detail = f"cannot connect ({type(exc).__name__})"
        raise TemporaryFailure(f"{name} unreachable", detail, "连不上接收方") from None
    answer = f"HTTP {reply.status_code} {reply.text.strip()[:200]}".strip()
    if reply.status_code >= 500:
        raise TemporaryFailure(f"{name} answered HTTP {reply.status_code}", answer, f"接收方暂时出错：{answer}")
    if not 200 <= reply.status_code < 300:
        raise PermanentFailure(f"{name} answered HTTP {reply.status_code}", answer,
                               f"接收方拒绝了请求：{answer}")
    return reply


def idempotency_key(notification) -> str:
    """The same for every attempt to deliver ``notification``: the receiver's dedupe key."""
    return f"notification-{notification.pk}"


def hook_payload(notification) -> dict:
    """What the internal webhook receives: an event name and the text."""
    text = f"{notification.subject}\n{notification.body}" if notification.subject else notification.body
    return {"event": "notification", "text": text}


def post_to_hook(notification) -> str:
    """One attempt to deliver ``notification`` to NOTIFY_WEBHOOK_URL; what happened, in a few words."""
    url = settings.NOTIFY_WEBHOOK_URL
    if not url:
        raise PermanentFailure("NOTIFY_WEBHOOK_URL is not set", "nothing was sent",
                               "没有设置 NOTIFY_WEBHOOK_URL（内部 webhook 的地址），消息没有发出")
    key = idempotency_key(notification)
    reply = post_json(url, hook_payload(notification), name="internal webhook", headers={"Idempotency-Key": key})
    try:
        duplicate = bool(reply.json().get("duplicate"))
    except (ValueError, AttributeError):
        duplicate = False
    if duplicate:
        return f"HTTP {reply.status_code}, duplicate: the hook already had Idempotency-Key {key}, delivered once"
    return f"HTTP {reply.status_code}, delivered (Idempotency-Key {key})"
