"""Mail for notifications and reports: which SMTP errors are worth a retry, and a
message that carries the same Message-ID on every attempt.

``classify_smtp_error(exc)`` is the one rule (chapter 07's, for SMTP): what may
pass -- the server down or restarting, a dropped connection, a timeout, a 4xx
answer ("try again later": greylisting, a full queue) -- is "retry"; a 5xx
answer ("no such user", "message rejected") and anything unexpected is
"permanent": sending it again gets the same answer.

A retry after a timeout may send a mail the server had already accepted (it
stored the mail, and its "250 OK" came too late). ``build_message()`` gives a
notification's mail the same Message-ID every time it is built, so both copies
carry one id, and a receiver that keeps one message per Message-ID (mail
clients do) shows it once.
"""

from __future__ import annotations

import errno
import smtplib
import socket
from email.utils import parseaddr

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import EmailMessage
from django.template.loader import render_to_string

from .delivery import PermanentFailure, TemporaryFailure

RETRY, PERMANENT = "retry", "permanent"

#: Network errors (OSError.errno) that say "not now" rather than "never".
_TRANSIENT_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNABORTED, errno.ETIMEDOUT}


def classify_smtp_error(exc: BaseException) -> str:
    """"retry" if sending ``exc``'s mail again later may work, else "permanent".

    - no connection, or it broke (refused, reset, timed out, the server hung up,
      SMTPServerDisconnected): "retry";
    - an SMTP answer with a code (SMTPResponseException: SMTPConnectError, the
      greeting; SMTPDataError, SMTPSenderRefused, SMTPHeloError, ...): 4xx "retry",
      5xx "permanent" (a "554" greeting: this server will not take our mail);
    - every recipient refused (SMTPRecipientsRefused, a dict address -> (code,
      message)): "retry" only if every code is 4xx;
    - anything else (a bad address, TLS or login misconfigured, a bug): "permanent".
    """
    # smtplib's exceptions are OSErrors too: the SMTP ones first.
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return RETRY
    if isinstance(exc, smtplib.SMTPResponseException):
        return RETRY if 400 <= exc.smtp_code < 500 else PERMANENT
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return RETRY if codes and all(400 <= code < 500 for code in codes) else PERMANENT
    if isinstance(exc, smtplib.SMTPException):
        return PERMANENT
    if isinstance(exc, ConnectionError | TimeoutError):   # refused, reset, aborted, broken pipe; timeouts
        return RETRY
    if isinstance(exc, socket.gaierror):   # the host name: "temporary failure in name resolution" only
        return RETRY if exc.errno == socket.EAI_AGAIN else PERMANENT
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return RETRY
    return PERMANENT


def _text(message) -> str:
    return message.decode("utf-8", errors="replace") if isinstance(message, bytes) else str(message)


def timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` is a timeout waiting for the server's answer: smtplib turns a read
    timeout into SMTPServerDisconnected("Connection unexpectedly closed: timed out"),
    raised while it handles the socket's TimeoutError (that is its __context__). A bare
    TimeoutError is a connect timeout: no connection, so nothing was sent."""
    return isinstance(exc, smtplib.SMTPServerDisconnected) and isinstance(exc.__context__, TimeoutError)


def describe_smtp_error(exc: BaseException) -> str:
    """The server's answer ("550 5.1.1 No such user here"), or the error, in one line."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "; ".join(f"{address}: {code} {_text(message)}" for address, (code, message) in exc.recipients.items())
    if timed_out(exc):
        return f"no answer within {settings.EMAIL_TIMEOUT:g} s (EMAIL_TIMEOUT)"
    if isinstance(exc, TimeoutError):
        return f"no connection within {settings.EMAIL_TIMEOUT:g} s (EMAIL_TIMEOUT)"
    return str(exc) or type(exc).__name__


def smtp_failure(exc: BaseException) -> TemporaryFailure | PermanentFailure:
    """``exc`` (raised while sending mail) as a DeliveryError of the right kind."""
    server = f"{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
    detail = describe_smtp_error(exc)
    if isinstance(exc, smtplib.SMTPResponseException | smtplib.SMTPRecipientsRefused):
        if classify_smtp_error(exc) == RETRY:
            return TemporaryFailure(f"SMTP server {server} refused the mail for now", detail,
                                    f"邮件服务器 {server} 暂时不收：{detail}")
        return PermanentFailure(f"SMTP server {server} refused the mail", detail,
                                f"邮件服务器 {server} 拒收：{detail}")
    if timed_out(exc):   # retried; the server may have stored the mail and answered too late
        return TemporaryFailure(f"SMTP server {server} did not answer", detail,
                                f"{settings.EMAIL_TIMEOUT:g} 秒内没有等到邮件服务器的回答（信可能已经送达）")
    if classify_smtp_error(exc) == RETRY:
        return TemporaryFailure(f"SMTP server {server} unreachable", detail,
                                f"连不上邮件服务器 {server}：{detail}")
    return PermanentFailure(f"sending mail through {server} failed ({type(exc).__name__})", detail,
                            f"发送邮件出错（{type(exc).__name__}）：{detail}")


def send_or_classify(message: EmailMessage) -> None:
    """Send ``message`` through the configured backend (EMAIL_BACKEND, EMAIL_TIMEOUT);
    any error comes out as a TemporaryFailure or a PermanentFailure."""
    try:
        message.send()
    except Exception as exc:
        raise smtp_failure(exc) from exc


def message_domain() -> str:
    """The right-hand side of our Message-IDs: DEFAULT_FROM_EMAIL's domain."""
    _, address = parseaddr(settings.DEFAULT_FROM_EMAIL)
    return address.rpartition("@")[2] or "localhost"


def stable_message_id(name: str) -> str:
    """``<NAME@DOMAIN>``: the same for every attempt to send the same thing."""
    return f"<{name}@{message_domain()}>"


def build_message(notification) -> EmailMultiAlternatives:
    """The mail of an e-mail notification: plain text and HTML (escaped by the
    template engine: a "<" in the text stays a "<"), and a Message-ID made from the
    notification's id, the same on every attempt."""
    message = EmailMultiAlternatives(
        subject=notification.subject,
        body=notification.body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[notification.recipient],
        headers={"Message-ID": stable_message_id(f"notification-{notification.pk}")},
    )
    html = render_to_string("notifications/email.html", {"notification": notification})
    message.attach_alternative(html, "text/html")
    return message
