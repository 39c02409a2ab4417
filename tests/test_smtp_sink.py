"""Chapter 09's mail server (services/smtp_sink.py): its address rules, and a real
aiosmtpd process started by launcher.start_smtp_server(), talked to with smtplib."""

from __future__ import annotations

import os
import shlex
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace

import pytest

import launcher
from launcher.paths import REPO_ROOT
from launcher.procs import port_taken
from launcher.scratch import make_scratch, remove_scratch
from launcher.services import smtp_greets
from services.smtp_sink import delivery_order, local_part, rcpt_answer, read_mailbox, slow_ack

#: The server's slow acknowledgement here, and the client's patience: shorter.
SLOW_ACK = 3.0
CLIENT_TIMEOUT = 1.0
TEMPFAIL = "451 4.3.0 Mailbox temporarily unavailable, try again later"
REJECT = "550 5.1.1 No such user here"


@pytest.fixture(scope="module")
def smtp(tmp_path_factory):
    """One server for the module, its Maildir in a temporary folder."""
    proc = launcher.start_smtp_server(tmp_path_factory.mktemp("mail") / "maildir", slow_ack_seconds=SLOW_ACK)
    try:
        yield proc
    finally:
        proc.cleanup()


def mail(subject: str = "日报", to: str = "team@example.com", text: str = "今天一切正常。") -> EmailMessage:
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = subject, "reports@example.com", to
    message["Message-ID"] = f"<{time.monotonic_ns()}@course.test>"
    message.set_content(text)
    return message


def send(server, message: EmailMessage, timeout: float = 10.0, to: list[str] | None = None) -> dict:
    with smtplib.SMTP(server.host, server.port, timeout=timeout) as client:
        return client.send_message(message, to_addrs=to)


def clean_terminal(name: str, command: str) -> launcher.Proc:
    """``command`` typed into a new terminal at the repository's root (only PATH and HOME
    from outside), after activating the venv (as tests/test_shown_commands.py does)."""
    activate = Path(sys.prefix) / "bin" / "activate"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    return launcher.Proc(name, ["bash", "-c", f"set -e\nsource {shlex.quote(str(activate))}\n{command}"], env=env,
                         cwd=REPO_ROOT)


def ids(server) -> list[str]:
    return [m["message_id"] for m in server.messages()]


# --- the pure rules ---------------------------------------------------------------------

@pytest.mark.parametrize(("address", "answer"), [
    ("tempfail@example.com", TEMPFAIL),
    ("TempFail@Example.ORG", TEMPFAIL),     # any case, any domain
    ("<tempfail@x>", TEMPFAIL),
    ("reject@example.com", REJECT),
    ("REJECT@mail.test", REJECT),
    ("slowack@example.com", None),         # accepted: only its acknowledgement is late
    ("team@example.com", None),
    ("tempfail.not@example.com", None),    # the whole local part decides, not a prefix
    ("reject", REJECT),                    # no domain at all
])
def test_rcpt_answer_decides_by_the_local_part(address, answer):
    assert rcpt_answer(address) == answer


def test_only_slowack_is_acknowledged_late():
    assert slow_ack("slowack@example.com") and slow_ack("SlowAck@x.org")
    assert not slow_ack("team@example.com") and not slow_ack("tempfail@example.com")
    assert local_part("a@b@example.com") == "a@b"  # the last "@" separates the domain


def test_delivery_order_is_the_time_then_the_counter_of_mailbox_maildir_names():
    names = ["1700000001.M5P9Q1.host", "1700000000.M999999P9Q3.host", "1700000001.M5P9Q0.host",
             "1700000001.M10P8Q0.host", "someone-elses-name"]
    assert sorted(names, key=delivery_order) == [
        "1700000000.M999999P9Q3.host", "1700000001.M5P9Q0.host", "1700000001.M5P9Q1.host",
        "1700000001.M10P8Q0.host", "someone-elses-name"]


# --- the server, for real -------------------------------------------------------------------

def test_a_multipart_chinese_mail_comes_back_decoded_with_its_attachment(smtp):
    workbook = bytes(range(256)) * 40  # binary, as an .xlsx is
    message = mail(subject="销售周报（第 12 周）", to="老板 <boss@example.com>", text="附件是本周的报表。")
    message.add_alternative("<p>附件是<b>本周</b>的报表。</p>", subtype="html")
    message.add_attachment(workbook, maintype="application",
                           subtype="vnd.openxmlformats-officedocument.spreadsheetml.sheet", filename="周报.xlsx")
    assert send(smtp, message) == {}  # every recipient accepted
    [got] = [m for m in smtp.messages() if m["message_id"] == message["Message-ID"]]
    assert got["subject"] == "销售周报（第 12 周）"
    assert got["from"] == "reports@example.com"
    assert got["to"] == "老板 <boss@example.com>"
    assert got["rcpt_to"] == "boss@example.com"  # aiosmtpd's X-RcptTo: the envelope's recipients
    assert got["parts"] == ["text/plain", "text/html"]
    assert got["text"].strip() == "附件是本周的报表。"
    assert got["html"].strip() == "<p>附件是<b>本周</b>的报表。</p>"
    [attachment] = got["attachments"]
    assert attachment["filename"] == "周报.xlsx"
    assert attachment["content_type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert attachment["data"] == workbook and attachment["size"] == len(workbook)
    # One file per message, in new/, as any Maildir reader expects.
    assert (smtp.maildir / "new" / got["key"]).is_file()
    assert "DATA from <reports@example.com> to boss@example.com: stored as new/" in smtp.log()


def test_a_plain_mail_has_no_html_and_no_attachments(smtp):
    message = mail(text="只有文字。")
    send(smtp, message)
    [got] = [m for m in smtp.messages() if m["message_id"] == message["Message-ID"]]
    assert (got["parts"], got["html"], got["attachments"]) == (["text/plain"], None, [])
    assert got["text"].strip() == "只有文字。" and got["date"] is None


def test_tempfail_is_a_temporary_refusal_and_nothing_is_stored(smtp):
    before = ids(smtp)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(smtp, mail(to="tempfail@example.com"))
    code, text = refused.value.recipients["tempfail@example.com"]
    assert (code, text.decode()) == (451, TEMPFAIL.split(" ", 1)[1])
    assert ids(smtp) == before


def test_reject_is_a_permanent_refusal(smtp):
    before = ids(smtp)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(smtp, mail(to="Reject@example.com"))
    assert refused.value.recipients["Reject@example.com"] == (550, b"5.1.1 No such user here")
    assert ids(smtp) == before


def test_a_refused_recipient_does_not_stop_the_others(smtp):
    message = mail(to="team@example.com, reject@example.com")
    refused = send(smtp, message, to=["team@example.com", "reject@example.com"])
    assert refused == {"reject@example.com": (550, b"5.1.1 No such user here")}
    [got] = [m for m in smtp.messages() if m["message_id"] == message["Message-ID"]]
    assert got["rcpt_to"] == "team@example.com"


def test_slowack_times_the_client_out_although_the_message_was_delivered(smtp):
    message = mail(to="slowack@example.com")
    with smtplib.SMTP(smtp.host, smtp.port, timeout=10) as client:
        client.ehlo()
        client.mail("reports@example.com")
        assert client.rcpt("slowack@example.com")[0] == 250  # accepted: only the last "250" is late
        client.sock.settimeout(CLIENT_TIMEOUT)  # how long this client waits for the answer to DATA
        started = time.monotonic()
        with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
            client.data(message.as_bytes())
        assert time.monotonic() - started >= CLIENT_TIMEOUT
    # The sender saw a failure, yet the message was stored before the server began to wait.
    assert launcher.wait_for(lambda: message["Message-ID"] in ids(smtp), 10), smtp.log()
    assert f"answering 250 only after {SLOW_ACK:g} s" in smtp.log()
    # The server goes on serving everyone else.
    other = mail()
    send(smtp, other)
    assert other["Message-ID"] in ids(smtp)


def test_slowack_answers_a_retried_copy_at_once_and_keeps_both(smtp):
    message = mail(to="slowack@example.com")
    with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
        send(smtp, message, timeout=CLIENT_TIMEOUT)          # the first copy: stored, answered late
    started = time.monotonic()
    assert send(smtp, message) == {}                          # the retry, same Message-ID: 250 at once
    assert time.monotonic() - started < SLOW_ACK
    assert launcher.wait_for(lambda: ids(smtp).count(message["Message-ID"]) == 2, 10), smtp.log()
    assert "was acknowledged late before: 250 at once" in smtp.log()


def test_messages_are_listed_in_the_order_they_arrived(smtp):
    sent = [mail(subject=f"第 {n} 封") for n in range(5)]
    for message in sent:
        send(smtp, message)
    mine = [m["subject"] for m in smtp.messages() if m["message_id"] in {s["Message-ID"] for s in sent}]
    assert mine == [f"第 {n} 封" for n in range(5)]


def test_stop_and_start_on_the_same_port_keeps_the_mail_and_takes_new_mail(tmp_path):
    first = launcher.start_smtp_server(tmp_path / "box")
    port, maildir = first.port, first.maildir
    try:
        before = mail(subject="重启之前")
        send(first, before)
    finally:
        first.cleanup()
    assert not port_taken(port)
    with pytest.raises(OSError):  # nobody there while it is down: a sender's retry case
        send(first, mail(), timeout=2)
    again = launcher.start_smtp_server(maildir, port=port)
    try:
        assert again.port == port and again.display == first.display
        after = mail(subject="重启之后")
        send(again, after)
        assert [m["subject"] for m in again.messages()] == ["重启之前", "重启之后"]
    finally:
        again.cleanup()


def test_a_taken_port_is_a_clear_error_within_seconds(smtp, tmp_path):
    started = time.monotonic()
    with pytest.raises(launcher.PortInUse, match=rf"port {smtp.port} .*another program"):
        launcher.start_smtp_server(tmp_path / "other", port=smtp.port)
    assert time.monotonic() - started < 10
    assert smtp.answers()  # the one that has the port is untouched


def test_the_shown_command_is_what_runs_and_works_in_a_clean_terminal():
    scratch = make_scratch("smtp-test-")
    try:
        shown = launcher.start_smtp_server(scratch / "maildir", slow_ack_seconds=2)
        try:
            port, display, maildir = shown.port, shown.display, shown.maildir
            relative = maildir.relative_to(REPO_ROOT)
            assert display == (f"python -m aiosmtpd -n -l 127.0.0.1:{port} -c services.smtp_sink.MaildirSink "
                               f"{relative} 2")
            assert shlex.split(display)[1:] == shown.argv[1:]  # exactly the argv that runs
        finally:
            shown.cleanup()
        # Pasted into a new terminal at the repository's root, .venv activated: the same server.
        terminal = clean_terminal("terminal-smtp", display)
        try:
            terminal.wait_until_listening(port, 30, answers=lambda: smtp_greets("127.0.0.1", port, 0.5))
            message = mail(subject="终端里的服务器")
            send(SimpleNamespace(host="127.0.0.1", port=port), message)
            assert [m["subject"] for m in read_mailbox(maildir)] == ["终端里的服务器"]
        finally:
            terminal.cleanup()
    finally:
        remove_scratch(scratch)


@pytest.mark.parametrize(("args", "says"), [
    ([], "MaildirSink needs the Maildir folder"),
    (["{tmp}/box", "soon"], "must be a number of seconds >= 0, not 'soon'"),
    (["{tmp}/box", "5", "6"], "takes a Maildir folder and, optionally"),
    (["{tmp}/a-file"], "is a file, not a folder"),
    (["{tmp}"], "not a Maildir (no new/ and cur/ inside)"),
])
def test_bad_arguments_are_clear_errors_at_once(tmp_path, args, says):
    (tmp_path / "a-file").write_text("x")
    argv = [sys.executable, "-m", "aiosmtpd", "-n", "-l", "127.0.0.1:1", "-c", "services.smtp_sink.MaildirSink",
            *(a.format(tmp=tmp_path) for a in args)]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and says in done.stderr, done.stderr


def test_reading_a_folder_that_is_not_a_maildir_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a Maildir"):
        read_mailbox(tmp_path / "nowhere")


def test_a_long_chinese_subject_folded_by_django_comes_back_without_the_folds_space(smtp):
    """Django folds a long encoded subject as "Subject: \\n =?utf-8?b?...?="; the decoded
    subject is the subject as written, not " 欢迎..." with the fold's space in front."""
    from django.core.mail import EmailMessage as DjangoMessage
    from django.core.mail import get_connection

    subject = "欢迎来到《Django Celery 快速入门》：第 09 章的通知、日报和重试"
    message_id = "<long-subject-test@course.example>"
    connection = get_connection("django.core.mail.backends.smtp.EmailBackend", host=smtp.host, port=smtp.port,
                                timeout=10)
    DjangoMessage(subject, "正文", "reports@example.com", ["team@example.com"], connection=connection,
                  headers={"Message-ID": message_id}).send()
    [got] = [m for m in smtp.messages() if m["message_id"] == message_id]
    raw = (smtp.maildir / "new" / got["key"]).read_bytes()
    assert b"Subject: \n =?utf-8?" in raw.replace(b"\r\n", b"\n"), "the header really is folded"
    assert got["subject"] == subject
