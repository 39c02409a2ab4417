"""Chapter 09: notifications by mail, to a DingTalk group robot and to the internal
webhook, sent by a real worker to real servers.

One stack for the module: an embedded broker, a migrated SQLite file, a real
`celery -A django_demo worker`, `manage.py runserver`, the course's SMTP server
(aiosmtpd, a Maildir: services/smtp_sink.py) and its bot receiver (DingTalk's
protocol with signing, and the internal hook: services/bot_receiver.py). Every
notification is sent the way a person sends it: the form at /notifications/new,
through a logged-in session; what happened is read from the row (the SQLite
file), Celery's TaskResult, the worker's log, the Maildir and the receiver's record.

Retries are quick here (NOTIFY_RETRY_DELAY, NOTIFY_MAX_RETRIES below) so that a
notification given up on fails within seconds. The pure parts (which SMTP error
is worth a retry, the robot's signature, the form) run in this process.
"""

from __future__ import annotations

import itertools
import json
import smtplib
import socket
import ssl
import time
import uuid
from datetime import datetime

import pytest
from celery import Celery
from django.urls import reverse

import launcher
from launcher.django_procs import django_env
from services.bot_receiver import dingtalk_sign
from tests.django_stack import django_stack, logged_in, query
from tests.helpers import returns_within

# An autouse fixture: django_demo's Celery app is the current one in this process.
from tests.test_django_reports import celery_broker, current_celery_app  # noqa: F401 (an autouse fixture)

#: The robot's signing secret (加签) in this module: the receiver checks with it, the worker signs with it.
SECRET = "SECcourse0123456789abcdef"
#: Retries: at most 3 after the first attempt (4 attempts), 0.3 s, then 0.6, 1.2 s apart: 2.1 s, the
#: window a test has to start the mail server again after its first refused attempt (it takes 0.1 s).
MAX_RETRIES, RETRY_DELAY = 3, 0.3
ATTEMPTS = MAX_RETRIES + 1
#: The worker's HTTP timeout, and how long a "hang" fault holds the receiver's answer (longer).
NOTIFY_TIMEOUT, HANG = 1.5, 3.0
FROM = "notify@course.example"
#: Generous: a loaded machine (the suite runs beside other files) only makes things slower.
DEADLINE = 45


# --- In this process: the rules, pure ------------------------------------------------

def refused(*codes: int) -> smtplib.SMTPRecipientsRefused:
    return smtplib.SMTPRecipientsRefused({f"user{n}@example.com": (code, b"answer") for n, code in enumerate(codes)})


@pytest.mark.parametrize("exc, verdict", [
    (ConnectionRefusedError(111, "Connection refused"), "retry"),
    (ConnectionResetError(104, "Connection reset by peer"), "retry"),
    (BrokenPipeError(32, "Broken pipe"), "retry"),
    (TimeoutError("timed out"), "retry"),
    (OSError(113, "No route to host"), "retry"),
    (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), "retry"),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "permanent"),
    (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), "retry"),
    (smtplib.SMTPConnectError(421, b"4.3.2 Service not available"), "retry"),
    (smtplib.SMTPConnectError(554, b"5.7.1 No SMTP service here"), "permanent"),
    (smtplib.SMTPHeloError(421, b"4.7.0 Try again later"), "retry"),
    (smtplib.SMTPHeloError(501, b"5.5.4 Invalid domain name"), "permanent"),
    (smtplib.SMTPSenderRefused(451, b"4.3.0 Temporary failure", "a@example.com"), "retry"),
    (smtplib.SMTPSenderRefused(553, b"5.7.1 Sender address rejected", "a@example.com"), "permanent"),
    (smtplib.SMTPDataError(452, b"4.3.1 Insufficient system storage"), "retry"),
    (smtplib.SMTPDataError(554, b"5.7.1 Message rejected as spam"), "permanent"),
    (smtplib.SMTPAuthenticationError(535, b"5.7.8 Authentication credentials invalid"), "permanent"),
    (smtplib.SMTPResponseException(421, b"4.4.2 Timeout"), "retry"),
    (refused(451), "retry"),
    (refused(451, 450), "retry"),
    (refused(451, 550), "permanent"),
    (refused(550), "permanent"),
    (smtplib.SMTPRecipientsRefused({}), "permanent"),
    (smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."), "permanent"),
    (ssl.SSLError(1, "wrong version number"), "permanent"),
    (ValueError("Header values may not contain linefeed or carriage return characters"), "permanent"),
], ids=lambda v: v if isinstance(v, str) else type(v).__name__)
def test_which_smtp_errors_are_retried(exc, verdict):
    from notifications.mail import classify_smtp_error

    assert classify_smtp_error(exc) == verdict


def test_a_failure_names_the_servers_answer():
    from notifications.delivery import PermanentFailure, TemporaryFailure
    from notifications.mail import describe_smtp_error, smtp_failure

    answer = smtplib.SMTPRecipientsRefused({"reject@example.com": (550, b"5.1.1 No such user here")})
    assert describe_smtp_error(answer) == "reject@example.com: 550 5.1.1 No such user here"
    assert describe_smtp_error(smtplib.SMTPDataError(451, b"4.3.0 Try later")) == "451 4.3.0 Try later"
    assert isinstance(smtp_failure(answer), PermanentFailure) and "550 5.1.1" in smtp_failure(answer).reason
    down = smtp_failure(ConnectionRefusedError(111, "Connection refused"))
    assert isinstance(down, TemporaryFailure) and down.detail == "[Errno 111] Connection refused"


def test_a_554_greeting_is_a_permanent_refusal_by_its_code(settings):
    from notifications.delivery import PermanentFailure
    from notifications.mail import smtp_failure

    greeting = smtp_failure(smtplib.SMTPConnectError(554, b"5.7.1 No SMTP service here"))
    assert isinstance(greeting, PermanentFailure) and greeting.detail == "554 5.7.1 No SMTP service here"


def test_a_server_that_does_not_answer_in_time_is_a_timeout_not_unreachable(settings):
    """smtplib turns a read timeout into SMTPServerDisconnected('Connection unexpectedly closed:
    timed out'); the failure says "no answer within", and that the mail may have arrived."""
    from django.core.mail import EmailMessage

    from notifications.delivery import TemporaryFailure
    from notifications.mail import send_or_classify

    silent = socket.create_server(("127.0.0.1", 0))   # accepts the connection, never greets
    try:
        port = silent.getsockname()[1]
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 0.5
        with pytest.raises(TemporaryFailure) as failed:
            returns_within(30, lambda: send_or_classify(EmailMessage("s", "b", "a@example.com", ["b@example.com"])),
                           "a mail to a server that never answers")
    finally:
        silent.close()
    assert isinstance(failed.value.__cause__, smtplib.SMTPServerDisconnected)
    assert str(failed.value.__cause__) == "Connection unexpectedly closed: timed out"
    assert failed.value.what == f"SMTP server 127.0.0.1:{port} did not answer"
    assert failed.value.detail == "no answer within 0.5 s (EMAIL_TIMEOUT)"
    assert failed.value.reason == "0.5 秒内没有等到邮件服务器的回答（信可能已经送达）"


def test_retry_waits_have_equal_jitter_unless_turned_off(settings):
    from notifications.delivery import backoff

    settings.NOTIFY_RETRY_DELAY, settings.NOTIFY_RETRY_MAX_DELAY = 1.0, 600.0
    settings.NOTIFY_RETRY_JITTER = False
    assert [backoff(n) for n in range(5)] == [1, 2, 4, 8, 16]
    settings.NOTIFY_RETRY_JITTER = True
    waits = [backoff(3) for _ in range(200)]
    # Never near 0 s: a retry at once can finish before its sender stores RETRY (django-db keeps the RETRY).
    assert all(4 <= w <= 8 for w in waits) and len(set(waits)) > 100, "random between 4 and 8 s"
    assert min(waits) < 6 < max(waits)


def test_the_robots_temporary_errcodes_and_its_rate_limit():
    from notifications import dingtalk
    from notifications.tasks import send_dingtalk

    assert dingtalk.TRANSIENT_ERRCODES == {-1: 60, 130101: 600}
    assert 300005 in dingtalk.CONFIG_ERRORS and 300001 in dingtalk.CONFIG_ERRORS
    assert send_dingtalk.rate_limit == "20/m"


#: DingTalk's documented algorithm (its Python example, run once): timestamp 1700000000000 and
#: this secret sign as below; quote_plus() of it is what goes into the URL ("+" and "/" encoded).
VECTOR = ("SECcourse0123456789abcdef", 1700000000000, "kinAmhwootns1rorsq4+bzVSjIZ1NMewXz/0YDQBB94=",
          "kinAmhwootns1rorsq4%2BbzVSjIZ1NMewXz%2F0YDQBB94%3D")


def test_the_robots_signature_matches_dingtalks_documented_algorithm():
    from notifications import dingtalk

    secret, timestamp, signed, encoded = VECTOR
    assert dingtalk.sign(secret, timestamp) == signed
    url = dingtalk.signed_url("https://oapi.dingtalk.com/robot/send?access_token=abc", secret, now=timestamp / 1000)
    assert url == f"https://oapi.dingtalk.com/robot/send?access_token=abc&timestamp={timestamp}&sign={encoded}"
    # Signed again later: the old timestamp and sign are replaced, not repeated; the token stays.
    later = dingtalk.signed_url(url, secret, now=timestamp / 1000 + 3600)
    assert later.count("timestamp=") == 1 and later.count("sign=") == 1 and "access_token=abc" in later
    assert f"timestamp={timestamp + 3_600_000}&sign=" in later
    assert dingtalk.signed_url("https://x/robot/send?access_token=abc", "") == "https://x/robot/send?access_token=abc"
    # The receiver's own implementation (written separately) agrees, for other inputs too.
    for n in range(20):
        secret_n = f"SEC{uuid.UUID(int=n).hex}中文"
        assert dingtalk.sign(secret_n, timestamp + n) == dingtalk_sign(secret_n, timestamp + n)
    assert dingtalk.text_payload("你好") == {"msgtype": "text", "text": {"content": "你好"}}
    assert dingtalk.markdown_payload("标题", "## 正文") == {"msgtype": "markdown",
                                                           "markdown": {"title": "标题", "text": "## 正文"}}


def test_a_missing_robot_or_hook_address_fails_at_once_and_says_so(settings):
    from notifications import dingtalk, webhooks
    from notifications.delivery import PermanentFailure
    from notifications.models import Notification

    settings.DINGTALK_WEBHOOK_URL = settings.NOTIFY_WEBHOOK_URL = ""
    note = Notification(subject="s", body="b", channel=Notification.Channel.WEBHOOK)
    with pytest.raises(PermanentFailure, match="DINGTALK_WEBHOOK_URL is not set"):
        dingtalk.send_text("hello")
    with pytest.raises(PermanentFailure, match="NOTIFY_WEBHOOK_URL is not set"):
        webhooks.post_to_hook(note)


@pytest.mark.parametrize("name, value, message", [
    ("NOTIFY_MAX_RETRIES", "many", "NOTIFY_MAX_RETRIES='many' is not a whole number; unset it for the default (5)."),
    ("EMAIL_TIMEOUT", "-1", "EMAIL_TIMEOUT='-1' is negative; unset it for the default (10.0)."),
], ids=["not-a-number", "negative"])
def test_a_bad_setting_stops_the_process_at_once_and_names_it(tmp_path, name, value, message):
    env = django_env(tmp_path, launcher.DEFAULT_URL, **{name: value})
    done = returns_within(60, lambda: launcher.manage("check", env=env, check=False), f"manage.py check with {name}")
    assert done.returncode != 0
    assert f"django.core.exceptions.ImproperlyConfigured: {message}" in done.stderr


@pytest.fixture
def user_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("sender", password="a-long-test-password-9"))
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("data, field, message", [
    ({"channel": "email", "recipient": "not-an-address", "subject": "s", "body": "b"}, "recipient",
     "这不是一个有效的邮件地址，例如 someone@example.com。"),
    ({"channel": "email", "recipient": "two@@example.com", "subject": "s", "body": "b"}, "recipient",
     "这不是一个有效的邮件地址，例如 someone@example.com。"),
    ({"channel": "email", "recipient": "", "subject": "s", "body": "b"}, "recipient", "发邮件需要收件地址。"),
    ({"channel": "email", "recipient": "a@example.com", "subject": "", "body": "b"}, "subject", "这个字段是必填项。"),
    ({"channel": "fax", "subject": "s", "body": "b"}, "channel", "选择一个有效的选项。 fax 不在可用的选项中。"),
], ids=["bad-address", "two-ats", "no-address", "no-subject", "unknown-channel"])
def test_bad_input_is_refused_before_anything_is_saved_or_queued(user_client, django_capture_on_commit_callbacks,
                                                                 data, field, message):
    from notifications.models import Notification

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = user_client.post(reverse("notifications:create"), data)
    assert response.status_code == 400
    assert response.context["form"].errors[field] == [message]
    assert "请改正下面标出的错误。" in response.content.decode()
    assert callbacks == [] and not Notification.objects.exists()


@pytest.mark.django_db
def test_the_pages_need_a_login_and_show_nobody_elses_notifications(client, django_user_model):
    from notifications.models import Notification

    page = client.get(reverse("notifications:create"))
    assert page.status_code == 302 and page["Location"].startswith("/accounts/login/")
    other = django_user_model.objects.create_user("stranger", password="a-long-test-password-8")
    theirs = Notification.objects.create(owner=other, recipient="x@example.com", subject="s", body="b")
    client.force_login(django_user_model.objects.create_user("sender", password="a-long-test-password-9"))
    assert client.get(theirs.get_absolute_url()).status_code == 404
    client.force_login(other)
    assert client.get(theirs.get_absolute_url()).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_with_the_broker_down_the_page_answers_503_and_keeps_no_row(user_client):
    from notifications.models import Notification

    url = f"redis://127.0.0.1:{launcher.free_port()}/0"  # nobody listens there
    with celery_broker(url):
        response = returns_within(30, lambda: user_client.post(reverse("notifications:create"), {
            "channel": "email", "recipient": "a@example.com", "subject": "s", "body": "b"}),
            "a notification with the broker down")
    assert response.status_code == 503
    assert "无法连接消息代理（broker），通知没有发出。" in response.content.decode()
    assert not Notification.objects.exists()


# --- The stack -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smtp(tmp_path_factory):
    """The SMTP server, in a holder: a test may stop it and start a new one on the same port."""
    holder = {"proc": launcher.start_smtp_server(tmp_path_factory.mktemp("maildir"))}
    yield holder
    holder["proc"].cleanup()


@pytest.fixture(scope="module")
def bot_holder():
    holder = {"proc": launcher.start_bot_receiver(secret=SECRET, hang=HANG)}
    yield holder
    holder["proc"].cleanup()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, module_broker, smtp, bot_holder):
    server, bot = smtp["proc"], bot_holder["proc"]
    with django_stack(tmp_path_factory.mktemp("notifications"), module_broker, step_seconds="0.2",
                      worker_name="notify",
                      EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend", EMAIL_HOST=server.host,
                      EMAIL_PORT=str(server.port), EMAIL_TIMEOUT="5", DEFAULT_FROM_EMAIL=FROM,
                      DINGTALK_WEBHOOK_URL=bot.send_url, DINGTALK_SECRET=SECRET, NOTIFY_WEBHOOK_URL=bot.hook_url,
                      NOTIFY_TIMEOUT=str(NOTIFY_TIMEOUT), NOTIFY_MAX_RETRIES=str(MAX_RETRIES),
                      NOTIFY_RETRY_DELAY=str(RETRY_DELAY), NOTIFY_RETRY_JITTER="false") as running:
        yield running


@pytest.fixture(scope="module")
def session(stack):
    """A requests session logged in as the local user, the way a browser does it."""
    web = logged_in(stack)
    yield web
    web.close()


@pytest.fixture
def bot(stack, bot_holder):
    """The bot receiver, its record and faults forgotten."""
    bot_holder["proc"].reset()
    return bot_holder["proc"]


@pytest.fixture
def mailbox(stack, smtp):
    return smtp["proc"]


def send(stack, session, **fields) -> str:
    """Send the form at /notifications/new; returns the new notification's id."""
    url = stack["server"].url + "/notifications/new"
    session.get(url, timeout=10)
    reply = session.post(url, timeout=30, allow_redirects=False,
                         data={"csrfmiddlewaretoken": session.cookies["csrftoken"], **fields})
    assert reply.status_code == 302, reply.text[:2000]
    return str(uuid.UUID(reply.headers["Location"].rstrip("/").split("/")[-1]))


COLUMNS = ("status", "attempts", "reason", "message_id", "history", "task_id", "delivery", "channel")


def row(stack, notification_id: str) -> dict:
    values = query(stack["db"], f"SELECT {', '.join(COLUMNS)} FROM notifications_notification WHERE id = ?",
                   uuid.UUID(notification_id).hex)
    found = dict(zip(COLUMNS, values, strict=True))
    found["history"] = json.loads(found["history"])
    return found


def task_result(stack, task_id: str) -> tuple[str, str] | None:
    return query(stack["db"], "SELECT status, result FROM django_celery_results_taskresult WHERE task_id = ?",
                 task_id)


def finished(stack, notification_id: str) -> dict:
    """The row once the notification is sent or failed, and its task's result stored."""
    def done() -> bool:
        found = row(stack, notification_id)
        stored = task_result(stack, found["task_id"])
        return found["status"] != "pending" and stored is not None and stored[0] in ("SUCCESS", "FAILURE")

    assert launcher.wait_for(done, DEADLINE, 0.05), (row(stack, notification_id), stack["worker"].tail(30))
    found = row(stack, notification_id)
    found["task_status"], result = task_result(stack, found["task_id"])
    found["result"] = json.loads(result)
    return found


def attempt_lines(stack, notification_id: str, channel: str) -> list[str]:
    """The worker's log lines of this notification's attempts: one per attempt."""
    needle = f"notification {notification_id} via {channel}: attempt "
    return [line for line in stack["worker"].log().splitlines() if needle in line]


def with_id(messages: list[dict], message_id: str) -> list[dict]:
    return [m for m in messages if m["message_id"] == message_id]


# --- Mail ----------------------------------------------------------------------------

def test_a_mail_arrives_with_text_and_html_a_chinese_subject_and_a_stable_message_id(stack, session, mailbox):
    subject = "周报已生成：<第 9 期> & 附件"
    body = "第一行 <b>不是粗体</b> & 不是实体 &amp;\n第二行"
    notification_id = send(stack, session, channel="email", recipient="learner@example.com", subject=subject,
                           body=body)
    done = finished(stack, notification_id)
    message_id = f"<notification-{notification_id}@course.example>"
    assert (done["status"], done["attempts"], done["message_id"], done["task_status"]) == \
        ("sent", 1, message_id, "SUCCESS")
    assert [entry["outcome"] for entry in done["history"]] == ["sent"] and done["reason"] == ""
    assert done["result"] == f"sent to learner@example.com, Message-ID {message_id}"

    [mail] = with_id(mailbox.messages(), message_id)
    assert mail["subject"] == subject and mail["from"] == FROM and mail["to"] == "learner@example.com"
    assert mail["rcpt_to"] == "learner@example.com"
    assert mail["parts"] == ["text/plain", "text/html"] and mail["attachments"] == []
    assert mail["text"].replace("\r\n", "\n").strip() == body
    # The HTML part shows the text as typed: escaped, never markup.
    html = mail["html"]
    assert "第一行 &lt;b&gt;不是粗体&lt;/b&gt; &amp; 不是实体 &amp;amp;<br>第二行" in html, html
    assert "<b>不是粗体" not in html and "&lt;第 9 期&gt; &amp; 附件" in html
    [line] = attempt_lines(stack, notification_id, "email")
    assert line.endswith(f"attempt 1 of {ATTEMPTS}: sent to learner@example.com, Message-ID {message_id}")


def test_a_permanent_refusal_is_not_retried(stack, session, mailbox):
    notification_id = send(stack, session, channel="email", recipient="reject@example.com", subject="不会送达",
                           body="收件人不存在")
    done = finished(stack, notification_id)
    assert (done["status"], done["attempts"], done["task_status"]) == ("failed", 1, "FAILURE")
    assert "550 5.1.1 No such user here" in done["reason"] and "不会重试" in done["reason"]
    assert done["result"]["exc_type"] == "NotificationFailed"
    assert done["result"]["exc_message"] == [
        f"SMTP server 127.0.0.1:{mailbox.port} refused the mail: reject@example.com: 550 5.1.1 No such user here"]
    [line] = attempt_lines(stack, notification_id, "email")
    assert "failed for good (not retried)" in line and "550 5.1.1" in line
    assert with_id(mailbox.messages(), done["message_id"]) == []


def test_a_temporary_refusal_is_retried_with_growing_waits_then_given_up(stack, session, mailbox):
    notification_id = send(stack, session, channel="email", recipient="tempfail@example.com", subject="稍后再试",
                           body="服务器说 451")
    done = finished(stack, notification_id)
    assert (done["status"], done["attempts"], done["task_status"]) == ("failed", ATTEMPTS, "FAILURE")
    assert [entry["outcome"] for entry in done["history"]] == ["retry"] * MAX_RETRIES + ["failed"]
    assert "451 4.3.0" in done["reason"] and f"共尝试 {ATTEMPTS} 次" in done["reason"]
    assert done["result"]["exc_message"] == [
        f"SMTP server 127.0.0.1:{mailbox.port} refused the mail for now after {ATTEMPTS} attempts: "
        "tempfail@example.com: 451 4.3.0 Mailbox temporarily unavailable, try again later"]
    lines = attempt_lines(stack, notification_id, "email")
    assert len(lines) == ATTEMPTS, lines
    waits = [RETRY_DELAY * 2 ** n for n in range(MAX_RETRIES)]
    for line, wait in zip(lines, waits, strict=False):
        assert f"failed, retry in {wait:g} s" in line, line
    assert "giving up" in lines[-1]
    # The waits really were that long (at least; a loaded machine only adds to them).
    times = [datetime.fromisoformat(entry["at"]) for entry in done["history"]]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert all(gap >= wait - 0.01 for gap, wait in zip(gaps, waits, strict=True)), (gaps, waits)
    assert with_id(mailbox.messages(), done["message_id"]) == []


def test_while_the_mail_server_is_down_mail_is_retried_and_given_up_or_delivered_once_it_is_back(
        stack, session, smtp):
    server = smtp["proc"]
    port, maildir = server.port, server.maildir
    server.stop()
    try:
        # (1) Down for good: every attempt refused; given up after the last retry, within seconds.
        started = time.monotonic()
        lost = send(stack, session, channel="email", recipient="someone@example.com", subject="发不出去",
                    body="服务器停了")
        done = finished(stack, lost)
        took = time.monotonic() - started
        assert (done["status"], done["attempts"], done["task_status"]) == ("failed", ATTEMPTS, "FAILURE")
        assert done["result"]["exc_message"] == [
            f"SMTP server 127.0.0.1:{port} unreachable after {ATTEMPTS} attempts: [Errno 111] Connection refused"]
        assert f"连不上邮件服务器 127.0.0.1:{port}" in done["reason"] and f"共尝试 {ATTEMPTS} 次" in done["reason"]
        print(f"\nSMTP server down: given up after {ATTEMPTS} attempts, {took:.1f} s after the click")

        # (2) Back after the first failed attempt: the retry delivers it, exactly once.
        mark = stack["worker"].mark()
        rescued = send(stack, session, channel="email", recipient="someone@example.com", subject="服务器回来了",
                       body="重试送达")
        stack["worker"].wait_for_log(f"notification {rescued} via email: attempt 1 of {ATTEMPTS} failed, retry in",
                                     DEADLINE, since=mark)
    finally:
        if not smtp["proc"].running():
            smtp["proc"] = launcher.start_smtp_server(maildir, port=port)
    done = finished(stack, rescued)
    assert (done["status"], done["task_status"]) == ("sent", "SUCCESS"), done
    assert done["attempts"] >= 2 and [e["outcome"] for e in done["history"]][-1] == "sent"
    assert "Message-ID 相同" in done["reason"]
    assert len(with_id(smtp["proc"].messages(), done["message_id"])) == 1
    lines = attempt_lines(stack, rescued, "email")
    assert "Connection refused" in lines[0] and lines[-1].endswith(f"Message-ID {done['message_id']}")
    assert len(lines) == done["attempts"]


def test_the_daily_report_mail_without_recipients_fails_at_once(stack, module_broker):
    """This stack sets no REPORT_MAIL_TO: the daily report's task says so, and is not retried.
    (Sent by name, as beat sends it; test_daily_report.py has beat send it for real.)"""
    app = Celery("notify-test-client", broker=module_broker.url, set_as_current=False)
    try:
        task_id = app.send_task("notifications.tasks.mail_daily_report", kwargs={"day": "2026-12-07"}).id
    finally:
        app.close()
    assert launcher.wait_for(lambda: (task_result(stack, task_id) or ("",))[0] == "FAILURE", DEADLINE, 0.05)
    result = json.loads(task_result(stack, task_id)[1])
    assert result["exc_message"] == ["REPORT_MAIL_TO is empty: nobody to send the daily report to"]
    lines = [line for line in stack["worker"].log().splitlines() if "daily report 2026-12-07 by mail: attempt" in line]
    assert len(lines) == 1 and "failed for good (not retried)" in lines[0]


# --- The DingTalk robot -----------------------------------------------------------------

def robot(bot) -> list[dict]:
    return [m for m in bot.messages() if m["path"] == "/robot/send"]


def test_a_robot_message_is_signed_and_delivered(stack, session, bot):
    notification_id = send(stack, session, channel="dingtalk", subject="部署完成", body="版本 1.2.3 已上线")
    done = finished(stack, notification_id)
    assert (done["status"], done["attempts"], done["task_status"], done["delivery"]) == \
        ("sent", 1, "SUCCESS", "at-least-once")
    [message] = robot(bot)
    assert (message["verdict"], message["delivered"], message["sign_ok"], message["msgtype"]) == \
        ("ok", True, True, "text")
    assert message["content"] == "部署完成\n版本 1.2.3 已上线"
    # Signed when sent: the timestamp is the worker's clock of that moment.
    assert abs(int(message["timestamp"]) / 1000 - message["t"]) < 30
    assert done["result"] == "posted to the group: errcode 0 ok"


def test_a_wrong_secret_is_an_error_in_a_200_answer_and_is_not_retried(stack, session, bot_holder):
    """DingTalk answers HTTP 200 {"errcode": 310000, "errmsg": "sign not match"}: a failure,
    and a configuration error that a retry cannot fix: one request only."""
    bot = bot_holder["proc"]
    port = bot.port
    bot.stop()
    bot_holder["proc"] = launcher.start_bot_receiver(secret=SECRET + "-rotated", hang=HANG, port=port)
    try:
        notification_id = send(stack, session, channel="dingtalk", subject="密钥换了", body="签名对不上")
        done = finished(stack, notification_id)
        [message] = robot(bot_holder["proc"])
    finally:
        bot_holder["proc"].stop()
        bot_holder["proc"] = launcher.start_bot_receiver(secret=SECRET, hang=HANG, port=port)
    assert (message["status"], message["errcode"], message["verdict"], message["delivered"]) == \
        (200, 310000, "sign not match", False)
    assert (done["status"], done["attempts"], done["task_status"]) == ("failed", 1, "FAILURE")
    assert "310000" in done["reason"] and "DINGTALK_SECRET" in done["reason"]
    assert done["result"]["exc_message"] == [
        "DingTalk robot refused the message (HTTP 200): errcode 310000 sign not match"]


def test_a_503_is_retried_and_the_message_delivered_once(stack, session, bot):
    bot.faults("/robot/send", [503])
    notification_id = send(stack, session, channel="dingtalk", subject="网关过载", body="第二次才成功")
    done = finished(stack, notification_id)
    assert (done["status"], done["attempts"], done["task_status"]) == ("sent", 2, "SUCCESS")
    assert [(m["status"], m["delivered"]) for m in robot(bot)] == [(503, False), (200, True)]
    assert [e["outcome"] for e in done["history"]] == ["retry", "sent"]
    assert done["history"][0]["detail"].startswith("HTTP 503")


@pytest.mark.parametrize("errcode, errmsg", [(130101, "send too fast, exceed 20 times per minute"), (-1, "系统繁忙")],
                         ids=["too-fast", "busy"])
def test_the_robots_rate_limit_and_busy_answers_are_retried_after_a_long_wait(stack, session, bot, module_broker,
                                                                             errcode, errmsg):
    """HTTP 200 with errcode 130101 (more than 20 a minute) or -1 (busy): temporary. The retry
    waits at least dingtalk.TRANSIENT_ERRCODES[errcode] s (600 s, 60 s), not the short backoff;
    the test reads that wait from the worker's log and the row, then revokes the waiting retry."""
    from notifications.dingtalk import TRANSIENT_ERRCODES

    floor = TRANSIENT_ERRCODES[errcode]
    bot.faults("/robot/send", [{"errcode": errcode, "errmsg": errmsg}])
    mark = stack["worker"].mark()
    notification_id = send(stack, session, channel="dingtalk", subject="告警风暴", body=f"errcode {errcode}")
    line = stack["worker"].wait_for_log(f"notification {notification_id} via dingtalk: attempt 1 of {ATTEMPTS} failed",
                                        DEADLINE, since=mark)
    task_id = row(stack, notification_id)["task_id"]
    try:
        assert f"failed, retry in {floor:g} s" in line and f"errcode {errcode} {errmsg}" in line, line
        assert launcher.wait_for(lambda: row(stack, notification_id)["history"], DEADLINE, 0.05)
        found = row(stack, notification_id)
        assert (found["status"], [e["outcome"] for e in found["history"]]) == ("pending", ["retry"])
        assert found["history"][0]["detail"] == f"errcode {errcode} {errmsg}"
        assert f"（{floor:g} 秒后重试）" in found["reason"], found["reason"]
        assert [(m["status"], m["errcode"], m["delivered"]) for m in robot(bot)] == [(200, errcode, False)]
    finally:
        app = Celery("notify-test-control", broker=module_broker.url, set_as_current=False)
        try:
            app.control.revoke(task_id)   # the retry would come minutes later: not in this test
        finally:
            app.close()
    stack["worker"].wait_for_log(f"Tasks flagged as revoked: {task_id}", DEADLINE, since=mark)


def test_at_least_once_a_timeout_after_delivery_posts_the_message_twice(stack, session, bot):
    """The robot posted the message, then held its answer past NOTIFY_TIMEOUT: the task
    cannot tell that from a lost message, retries, and the group sees it twice."""
    bot.faults("/robot/send", ["hang"])
    notification_id = send(stack, session, channel="dingtalk", subject="至少一次", body="可能重复",
                           delivery="at-least-once")
    done = finished(stack, notification_id)
    assert (done["status"], done["attempts"], done["delivery"]) == ("sent", 2, "at-least-once")
    delivered = [m for m in robot(bot) if m["delivered"]]
    assert len(delivered) == 2 and {m["content"] for m in delivered} == {"至少一次\n可能重复"}
    assert f"no answer within {NOTIFY_TIMEOUT:g} s" in done["history"][0]["detail"]
    assert "群里可能有两条" in done["reason"]
    # Each attempt signed anew: two timestamps (never the first one reused).
    assert len({m["timestamp"] for m in delivered}) == 2


def test_at_most_once_the_retry_finds_the_claim_and_never_posts_twice(stack, session, bot, module_broker):
    bot.faults("/robot/send", ["hang"])
    notification_id = send(stack, session, channel="dingtalk", subject="至多一次", body="绝不重复",
                           delivery="at-most-once")
    done = finished(stack, notification_id)
    assert [m["delivered"] for m in robot(bot)] == [True]   # the group saw it once
    assert (done["status"], done["attempts"], done["delivery"], done["task_status"]) == \
        ("failed", 2, "at-most-once", "FAILURE")
    assert [e["outcome"] for e in done["history"]] == ["retry", "failed"]
    assert "至多一次" in done["reason"] and "可能送达了，也可能丢了" in done["reason"]
    with module_broker.client() as redis:
        assert redis.exists(f"claim:dingtalk:{notification_id}") == 1   # claimed, never released


def test_at_most_once_a_message_whose_first_attempt_failed_is_lost(stack, session, bot):
    """The price of at-most-once: the 503 meant "not delivered", and the claim still forbids the retry."""
    bot.faults("/robot/send", [503])
    notification_id = send(stack, session, channel="dingtalk", subject="丢了", body="没人收到",
                           delivery="at-most-once")
    done = finished(stack, notification_id)
    assert [(m["status"], m["delivered"]) for m in robot(bot)] == [(503, False)]   # nobody saw it
    assert (done["status"], done["attempts"]) == ("failed", 2)


# --- The internal webhook ----------------------------------------------------------------

def hook(bot) -> list[dict]:
    return [m for m in bot.messages() if m["path"] == "/hooks/notify"]


def test_the_hook_deduplicates_a_retry_after_a_timeout_by_its_idempotency_key(stack, session, bot):
    bot.faults("/hooks/notify", ["hang"])
    notification_id = send(stack, session, channel="webhook", subject="构建失败", body="main 分支")
    done = finished(stack, notification_id)
    requests_seen = hook(bot)
    assert [m["key"] for m in requests_seen] == [f"notification-{notification_id}"] * 2   # stable across retries
    assert [(m["delivered"], m["verdict"]) for m in requests_seen] == [(True, "ok"), (False, "duplicate")]
    assert requests_seen[0]["event"] == "notification" and requests_seen[0]["content"] == "构建失败\nmain 分支"
    assert (done["status"], done["attempts"], done["task_status"]) == ("sent", 2, "SUCCESS")
    assert "只投递了一次" in done["reason"] and "duplicate" in done["result"]


def test_a_4xx_from_the_hook_is_not_retried(stack, session, bot):
    bot.faults("/hooks/notify", [400])
    notification_id = send(stack, session, channel="webhook", subject="坏请求", body="接收方说 400")
    done = finished(stack, notification_id)
    assert [m["status"] for m in hook(bot)] == [400]
    assert (done["status"], done["attempts"], done["task_status"]) == ("failed", 1, "FAILURE")
    assert "HTTP 400" in done["reason"] and "不会重试" in done["reason"]
    assert done["result"]["exc_message"][0].startswith("internal webhook answered HTTP 400: HTTP 400")


def test_an_invalid_address_on_the_live_page_queues_nothing(stack, session):
    before = query(stack["db"], "SELECT COUNT(*) FROM notifications_notification")[0]
    mark = stack["worker"].mark()
    url = stack["server"].url + "/notifications/new"
    session.get(url, timeout=10)
    reply = returns_within(30, lambda: session.post(url, timeout=30, allow_redirects=False, data={
        "csrfmiddlewaretoken": session.cookies["csrftoken"], "channel": "email", "recipient": "someone at example",
        "subject": "地址不对", "body": "不该发出"}), "a form with a bad address")
    assert reply.status_code == 400 and "这不是一个有效的邮件地址" in reply.text
    assert query(stack["db"], "SELECT COUNT(*) FROM notifications_notification")[0] == before
    assert "notifications.tasks" not in stack["worker"].log(mark)


def test_the_admins_resend_sends_a_failed_row_again_and_keeps_its_history(stack, session, bot):
    """«重新发送» in the admin (the action, through the live admin page): a webhook row that
    failed (503 on every attempt) is pending again, its task sent anew, and delivered now
    that the hook is fine; the failed attempts stay in its history."""
    bot.faults("/hooks/notify", [503] * ATTEMPTS)
    notification_id = send(stack, session, channel="webhook", subject="重新发送", body="服务器好了再发")
    failed = finished(stack, notification_id)
    assert (failed["status"], failed["attempts"]) == ("failed", ATTEMPTS)

    changelist = stack["server"].url + "/admin/notifications/notification/"
    session.get(changelist, timeout=10)
    reply = session.post(changelist, timeout=30, data={
        "csrfmiddlewaretoken": session.cookies["csrftoken"], "action": "resend_failed", "index": "0",
        "_selected_action": [notification_id]})
    assert reply.status_code == 200 and "已重新发送 1 条通知。" in reply.text, reply.text[-3000:]
    again = row(stack, notification_id)
    assert again["task_id"] != failed["task_id"], "a new task, with a new id"
    done = finished(stack, notification_id)
    assert (done["status"], done["task_status"]) == ("sent", "SUCCESS"), done
    assert [e["outcome"] for e in done["history"]] == ["retry"] * MAX_RETRIES + ["failed", "resent", "sent"]
    assert done["history"][-2]["detail"] == f"sent again from the admin by {stack['auth'][0]}"
    assert [(m["status"], m["delivered"]) for m in hook(bot)] == [(503, False)] * ATTEMPTS + [(200, True)]
    assert done["reason"] == ""   # this send went through at once

    # A row that is not failed is left alone.
    session.get(changelist, timeout=10)
    reply = session.post(changelist, timeout=30, data={
        "csrfmiddlewaretoken": session.cookies["csrftoken"], "action": "resend_failed", "index": "0",
        "_selected_action": [notification_id]})
    assert "1 条不是“失败”状态，没有重新发送。" in reply.text
    assert row(stack, notification_id)["task_id"] == done["task_id"]
