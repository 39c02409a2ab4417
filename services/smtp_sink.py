"""The course's mail server (chapter 09): a real SMTP server that keeps every
message it accepts in a Maildir folder, and turns some recipients away on purpose.

Chapter 09 sends e-mail from Celery tasks -- the article's first use case. A
task that sends mail needs a mail server that answers the way real ones do:
it accepts most messages, says "try again later" to some, "no such user" to
others, and sometimes takes so long to say "OK" that the sender gives up. This
is one, built on aiosmtpd (https://aiosmtpd.aio-libs.org/) and started with
aiosmtpd's own command line::

    python -m aiosmtpd -n -l 127.0.0.1:1025 -c services.smtp_sink.MaildirSink .scratch/maildir
    python -m aiosmtpd -n -l 127.0.0.1:1025 -c services.smtp_sink.MaildirSink .scratch/maildir 5

``-n``: do not try to switch to the user "nobody" (only root could); ``-l``: the
address to listen on (127.0.0.1: never reachable from another machine); ``-c``:
the handler class, this module's MaildirSink. What follows the options goes to
the handler: the Maildir folder (made if missing) and, optionally, how many
seconds the slow acknowledgement takes (5 by default; see ``slowack@`` below).

Who gets what -- decided by the recipient's address (its part before the "@",
in any case, whatever the domain), at ``RCPT TO``, the way a real server
decides per recipient (``rcpt_answer()`` and ``slow_ack()``):

- ``tempfail@...``: ``451 4.3.0 Mailbox temporarily unavailable, try again later``.
  A 4xx is a *temporary* failure: the sender should try again later (a retry).
- ``reject@...``: ``550 5.1.1 No such user here``. A 5xx is *permanent*: trying
  again gets the same answer, so a sender must not retry.
- ``slowack@...``: accepted. At ``DATA`` the message is stored *first*, then the
  server waits the slow-acknowledgement seconds before it answers ``250``. A
  client whose timeout is shorter gives up and reports a failure -- although
  the message was delivered. Its retry delivers it a second time: the duplicate
  that retries make (chapter 09 shows it, and how to avoid it). Only the first
  message with a given Message-ID is acknowledged late (a lost answer, once; the
  server is fine again for the retry, which gets its ``250`` at once); messages
  without a Message-ID are acknowledged late every time.
- anyone else: accepted, stored, ``250 OK`` at once.

Why a Maildir: one file per message, written to ``tmp/`` and then renamed into
``new/``, so a reader never sees half a message, even if the server is killed
while writing. Any mail client can open the folder (e.g. ``mutt -f
.scratch/maildir``), and so can Python's own ``mailbox.Maildir``:
``read_mailbox()`` gives every message, oldest first, with its headers decoded
(Chinese subjects and file names arrive RFC 2047/2231-encoded), its text and
HTML bodies and its attachments. aiosmtpd's Mailbox handler adds three headers
to each stored message: ``X-Peer`` (the client's address), ``X-MailFrom`` and
``X-RcptTo`` (the envelope's sender and accepted recipients).

The server prints one line per decision (to stdout, a terminal or the log file).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import mailbox
import math
import re
from argparse import ArgumentParser
from pathlib import Path

from aiosmtpd.handlers import Mailbox

#: A recipient's local part (lower case) -> the server's answer at RCPT TO.
REFUSALS = {
    "tempfail": "451 4.3.0 Mailbox temporarily unavailable, try again later",
    "reject": "550 5.1.1 No such user here",
}
#: The local part whose messages are acknowledged late (after being stored).
SLOW_ACK_USER = "slowack"
#: Seconds the slow acknowledgement takes unless the command line says otherwise.
DEFAULT_SLOW_ACK_SECONDS = 5.0
#: The folders of a Maildir (https://cr.yp.to/proto/maildir.html).
MAILDIR_FOLDERS = ("tmp", "new", "cur")


def local_part(address: str) -> str:
    """The part of ``address`` before its last "@", lower case: "TempFail@x.org" -> "tempfail"."""
    user, at, _domain = address.strip().strip("<>").rpartition("@")
    return (user if at else address.strip().strip("<>")).lower()


def rcpt_answer(address: str) -> str | None:
    """The server's refusal of recipient ``address`` at RCPT TO, or None if it is accepted."""
    return REFUSALS.get(local_part(address))


def slow_ack(address: str) -> bool:
    """Is a message to ``address`` acknowledged only after the slow-acknowledgement seconds?"""
    return local_part(address) == SLOW_ACK_USER


def say(line: str) -> None:
    """One line of the server's story, flushed: a log file is read while we run."""
    print(line, flush=True)


class MaildirSink(Mailbox):
    """aiosmtpd's Mailbox handler (every accepted message into a Maildir), with the
    per-recipient answers above. ``slow_ack_seconds``: how long ``slowack@`` waits."""

    def __init__(self, mail_dir: str | Path, slow_ack_seconds: float = DEFAULT_SLOW_ACK_SECONDS):
        super().__init__(mail_dir)
        self.slow_ack_seconds = slow_ack_seconds
        #: Message-IDs whose first copy was acknowledged late (slowack@): a copy of one is answered at once.
        self.acknowledged_late: set[str] = set()
        say(f"smtp sink: storing accepted mail in the Maildir {mail_dir} "
            f"(slow acknowledgement: {slow_ack_seconds:g} s)")

    async def handle_RCPT(self, server, session, envelope, address: str, rcpt_options: list[str]) -> str:
        refusal = rcpt_answer(address)
        if refusal is not None:
            say(f"RCPT TO:<{address}> -> {refusal}")
            return refusal
        # What aiosmtpd does itself when a handler has no RCPT hook: remember the recipient.
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        message = self.prepare_message(session, envelope)  # adds X-Peer, X-MailFrom, X-RcptTo
        key = self.mailbox.add(message)  # stored before anything is answered
        recipients = ", ".join(envelope.rcpt_tos)
        say(f"DATA from <{envelope.mail_from}> to {recipients}: stored as new/{key}")
        if any(slow_ack(address) for address in envelope.rcpt_tos):
            message_id = message.get("Message-ID")
            if message_id is None or message_id not in self.acknowledged_late:
                if message_id is not None:
                    self.acknowledged_late.add(message_id)
                say(f"  ... answering 250 only after {self.slow_ack_seconds:g} s (slow acknowledgement)")
                await asyncio.sleep(self.slow_ack_seconds)  # other connections are served meanwhile
            else:
                say(f"  ... {message_id} was acknowledged late before: 250 at once this time")
        return "250 OK"

    @classmethod
    def from_cli(cls, parser: ArgumentParser, *args: str) -> MaildirSink:
        """The handler from aiosmtpd's command line: ``... -c services.smtp_sink.MaildirSink PATH [SECONDS]``."""
        usage = ("python -m aiosmtpd -n -l 127.0.0.1:1025 -c services.smtp_sink.MaildirSink "
                 "PATH/TO/Maildir [SLOW_ACK_SECONDS]")
        if not args:
            parser.error(f"MaildirSink needs the Maildir folder to store mail in, e.g.: {usage}")
        if len(args) > 2:
            parser.error(f"MaildirSink takes a Maildir folder and, optionally, the seconds of the slow "
                         f"acknowledgement; got {len(args)} arguments: {' '.join(args)}. Usage: {usage}")
        folder = Path(args[0])
        seconds = DEFAULT_SLOW_ACK_SECONDS
        if len(args) == 2:
            try:
                seconds = float(args[1])
            except ValueError:
                seconds = math.nan
            if not (0 <= seconds < math.inf):
                parser.error(f"the slow acknowledgement must be a number of seconds >= 0, not {args[1]!r}")
        problem = maildir_problem(folder)
        if problem:
            parser.error(problem)
        for name in MAILDIR_FOLDERS:
            (folder / name).mkdir(parents=True, exist_ok=True)
        return cls(folder, seconds)


def maildir_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be used as a Maildir (None if it can: missing, empty, or a Maildir)."""
    if folder.exists() and not folder.is_dir():
        return f"{folder} is a file, not a folder: give a folder for the Maildir (it is made if missing)"
    if folder.is_dir() and any(folder.iterdir()) and not all((folder / n).is_dir() for n in ("new", "cur")):
        return (f"{folder} is a folder with other things in it, not a Maildir (no new/ and cur/ inside): "
                "give a new folder (it is made) or an existing Maildir")
    return None


# --- reading the Maildir -----------------------------------------------------------------

#: Python's mailbox.Maildir names a file "<seconds>.M<microseconds>P<pid>Q<count>.<host>".
_DELIVERED = re.compile(r"(\d+)\.M(\d+)P\d+Q(\d+)\.")


def delivery_order(key: str) -> tuple:
    """Sort key of a Maildir file name: by the time it was stored (seconds, then microseconds),
    then by the writing process's counter; names of another shape after those, by name."""
    match = _DELIVERED.match(key)
    if match is None:
        return (math.inf, 0, 0, key)
    seconds, micro, count = (int(g) for g in match.groups())
    return (seconds, micro, count, key)


def _text(value) -> str | None:
    """A decoded header as text, without the folding whitespace a long header starts with:
    Django folds a long encoded subject as "Subject: \\r\\n =?utf-8?b?...?=", and the email
    package keeps the fold's space (" 欢迎..."), which is not part of the subject."""
    return None if value is None else str(value).lstrip()


def parse_message(data: bytes, key: str = "") -> dict:
    """One stored message as a dict (see read_mailbox())."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    parts, attachments = [], []
    for part in message.walk():
        if part.is_multipart():
            continue
        if part.is_attachment():
            payload = part.get_payload(decode=True) or b""
            attachments.append({"filename": part.get_filename(), "content_type": part.get_content_type(),
                                "size": len(payload), "data": payload})
        else:
            parts.append(part.get_content_type())
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    return {
        "key": key,
        "message_id": _text(message["Message-ID"]),
        "from": _text(message["From"]),
        "to": _text(message["To"]),
        "subject": _text(message["Subject"]),
        "date": _text(message["Date"]),
        "rcpt_to": _text(message["X-RcptTo"]),
        "parts": parts,
        "attachments": attachments,
        "text": plain.get_content() if plain is not None else "",
        "html": html.get_content() if html is not None else None,
    }


def read_mailbox(path: str | Path) -> list[dict]:
    """Every message in the Maildir ``path``, oldest first (in the order the server stored
    them), each as a dict: {"key" (its file name), "message_id", "from", "to", "subject",
    "date", "rcpt_to" (X-RcptTo: who the server accepted it for), "parts" (content types
    of the parts that are not attachments, e.g. ["text/plain", "text/html"]),
    "attachments" ([{"filename", "content_type", "size", "data": bytes}]), "text" (the
    text/plain body, decoded; "" if none), "html" (the text/html body, or None)}.
    Headers and file names are decoded (RFC 2047/2231): a Chinese subject reads as Chinese."""
    folder = Path(path)
    if not all((folder / name).is_dir() for name in ("new", "cur")):
        raise FileNotFoundError(f"{folder} is not a Maildir (no new/ and cur/ inside): is it the folder the "
                                "SMTP server was started with (its last argument)?")
    box = mailbox.Maildir(folder, factory=None, create=False)
    return [parse_message(box.get_bytes(key), key) for key in sorted(box.keys(), key=delivery_order)]
