"""Chapter 09's own-project blocks: the SMTP settings (EMAIL_HOST and EMAIL_PORT from the
learner's terminal) and ``mail_notice`` (retried when the server is unreachable or says 4xx,
never on a 5xx; its Message-ID made of the task's id), added to the project of chapters
05-08, assembled as printed (tests/own_project.py) and run by a real worker against the
course's real SMTP server (services/smtp_sink.py: ``tempfail@`` gets 451 at RCPT TO,
``reject@`` 550, anyone else is accepted into a Maildir)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import launcher
from launcher.services import SmtpServerProc
from tests import own_project
from tests.own_project import checks

#: Seconds a task has to reach its outcome (the worker is already up; mail is local).
OUTCOME_TIMEOUT = 30


@dataclass
class Mail:
    """The SMTP server of this module; ``restart()`` starts it again on the same port and Maildir."""

    server: SmtpServerProc

    def restart(self) -> None:
        self.server = launcher.start_smtp_server(self.server.maildir, port=self.server.port)

    def refusals(self, address: str) -> list[str]:
        """The server's refusals of ``address`` at RCPT TO (one line per attempt to send to it)."""
        return [line for line in self.server.log().splitlines() if line.startswith(f"RCPT TO:<{address}>")]

    def with_message_id(self, message_id: str) -> list[dict]:
        return [m for m in self.server.messages() if m["message_id"] == message_id]


@pytest.fixture(scope="module")
def mail(tmp_path_factory) -> Iterator[Mail]:
    mail = Mail(launcher.start_smtp_server(tmp_path_factory.mktemp("mail") / "Maildir"))
    try:
        yield mail
    finally:
        mail.server.stop()


@pytest.fixture(scope="module")
def chapter(mail):
    # What the learner's terminal has before `celery -A proj worker`: where the mail server is.
    settings = {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(mail.server.port)}
    with own_project.running("09", settings=settings) as running:
        yield running


def send(chapter, address: str, subject: str, body: str) -> str:
    """``mail_notice.delay(...)`` from the project (manage.py shell); the task's id."""
    return chapter.project.django(f"""
from myapp.tasks import mail_notice

result = mail_notice.delay({address!r}, {subject!r}, {body!r}).id
""")


def outcome(chapter, task_id: str, revoke: bool = False) -> dict:
    """Wait for the task's outcome (after revoking it, with ``revoke``): its state and
    result, or the name and text of its exception."""
    return chapter.project.django(f"""
from myapp.tasks import mail_notice

sent = mail_notice.AsyncResult({task_id!r})
if {revoke!r}:
    sent.revoke()
value = sent.get(timeout={OUTCOME_TIMEOUT}, propagate=False)
result = {{"state": sent.state, "result": value if sent.successful() else type(value).__name__,
          "error": "" if sent.successful() else str(value)}}
""")


def task_lines(chapter, task_id: str) -> list[str]:
    """The worker's log lines about this task."""
    return [line for line in chapter.worker.log().splitlines() if f"mail_notice[{task_id}]" in line]


def wait_for_retry(chapter, task_id: str) -> str:
    """The worker's first "retry: Retry in ..." line of this task; its failure fails at once."""
    return chapter.worker.wait_for_log(f"mail_notice[{task_id}] retry: Retry in", OUTCOME_TIMEOUT, since=0,
                                       fail_on=(f"mail_notice[{task_id}] raised unexpected",))


@checks("09:proj/settings.py", "09:myapp/tasks.py")
def test_a_mail_arrives_with_the_task_id_as_its_message_id(chapter, mail):
    task_id = send(chapter, "ok@example.com", "主题", "正文")
    done = outcome(chapter, task_id)
    assert done == {"state": "SUCCESS", "result": f"<notice-{task_id}@example.com>", "error": ""}, done
    mails = mail.with_message_id(done["result"])
    assert len(mails) == 1, mail.server.messages()
    received = {key: mails[0][key] for key in ("from", "to", "subject", "rcpt_to")}
    assert received == {"from": "notify@example.com", "to": "ok@example.com", "subject": "主题",
                        "rcpt_to": "ok@example.com"}, mails[0]
    assert mails[0]["text"].strip() == "正文", mails[0]


@checks("09:myapp/tasks.py")
def test_a_5xx_fails_after_one_attempt(chapter, mail):
    task_id = send(chapter, "reject@example.com", "退信", "没有这个用户")
    done = outcome(chapter, task_id)
    assert done["state"] == "FAILURE" and done["result"] == "SMTPRecipientsRefused", done
    assert "550" in done["error"], done
    # One attempt: the server was asked once, and the worker never scheduled a retry.
    assert len(mail.refusals("reject@example.com")) == 1, mail.server.tail(20)
    lines = task_lines(chapter, task_id)
    assert not [line for line in lines if " retry: " in line], lines
    assert any("raised unexpected: SMTPRecipientsRefused" in line for line in lines), lines


@checks("09:myapp/tasks.py")
def test_a_4xx_is_retried(chapter, mail):
    task_id = send(chapter, "tempfail@example.com", "稍后再试", "服务器说 451")
    line = wait_for_retry(chapter, task_id)
    assert "TryLater" in line and "451" in line, line
    # Not all five retries (up to half a minute): revoked, its next attempt is discarded
    # (the revoke marks it REVOKED at once; the worker drops the waiting retry when it is due).
    done = outcome(chapter, task_id, revoke=True)
    assert done["state"] == "REVOKED", done
    chapter.worker.wait_for_log(f"Discarding revoked task: myapp.tasks.mail_notice[{task_id}]", OUTCOME_TIMEOUT,
                                since=0)
    # Every attempt was refused with 451 and followed by a retry; the discarded one never asked.
    retries = [line for line in task_lines(chapter, task_id) if " retry: Retry in" in line]
    assert len(mail.refusals("tempfail@example.com")) == len(retries), (mail.server.tail(20), retries)
    assert mail.with_message_id(f"<notice-{task_id}@example.com>") == []


@checks("09:proj/settings.py", "09:myapp/tasks.py")
def test_a_server_that_is_down_gets_the_mail_once_it_is_back(chapter, mail):
    mail.server.stop()
    try:
        task_id = send(chapter, "back@example.com", "恢复之后", "服务器回来了才送到")
        line = wait_for_retry(chapter, task_id)
    finally:
        mail.restart()   # at once: retry_backoff's first retries come within a second or two
    assert "SMTP server unreachable" in line and "TryLater" in line, line
    done = outcome(chapter, task_id)
    assert done == {"state": "SUCCESS", "result": f"<notice-{task_id}@example.com>", "error": ""}, done
    assert len(mail.with_message_id(done["result"])) == 1, mail.server.messages()
