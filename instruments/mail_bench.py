"""Chapter 09's figures: how fast a real worker sends mail, and how many duplicates
forced retries make on each channel.

(a) ``measure_throughput(...)``: ``mails`` e-mail notifications (rows made first, each
to its own recipient user{i}@example.com), their ``send_email_notification`` tasks
sent one after the other to a ``celery -A django_demo worker -c 4``, which mails
them through the course's SMTP server (aiosmtpd, one file per message in a
Maildir). The clock runs from sending the first task to the moment the last of
these mails was stored (the time in its Maildir file name, which the server's
``mailbox.Maildir`` writes when it stores it); setting up Django, making the rows
and starting the processes are outside it. Each run has fresh rows; every run
checks that each row's mail arrived exactly once.

(b) ``measure_duplicates(...)``: ``count`` notifications per case, each of whose
first attempt is delivered but answered too late (the worker gives up after
NOTIFY_TIMEOUT / EMAIL_TIMEOUT = 1 s, the receiver answers after 3 s), so that
every one is retried once:

- the DingTalk robot, at-least-once (``send_dingtalk(id, "at-least-once")``): the
  group cannot tell a retry from a new message; every request is a message;
- the internal webhook (``post_webhook(id)``) with its Idempotency-Key: the
  receiver answers a retry "duplicate" and delivers it once;
- mail to ``slowack@`` (``send_email_notification(id)``; the SMTP server stores the
  message, then acknowledges it after 3 s): the retry stores a second copy, with
  the same Message-ID.

Everything runs on processes of its own: an embedded broker
(``launcher.start_embedded()``), a temporary migrated SQLite database, the SMTP
server, the bot receiver and the workers, all stopped at the end (also on errors).
The rows are made and read with Django's ORM in this process, on the same
database. The figures for the chapter's closing note come from::

    python -m instruments.mail_bench

which prints them as Markdown.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import launcher
from instruments.tables import Table
from launcher.django_procs import django_env
from launcher.paths import DJANGO_DIR
from services.smtp_sink import delivery_order

#: How long the receivers hold a late answer, and the worker's timeouts (shorter): every
#: first attempt is delivered, and reported to the worker as a timeout.
HANG_SECONDS = 3.0
TIMEOUT_SECONDS = 1.0
#: The duplicates worker's retries: quick, so that a case takes seconds.
RETRY_DELAY, MAX_RETRIES = 0.2, 3
#: The worker's concurrency: the chapter's (`celery -A django_demo worker -c 4`).
CONCURRENCY = 4
#: Generous deadlines for a loaded machine (they end a stuck run, they are not measurements).
DEADLINE = 180.0
SENDER = "bench@example.com"


@dataclass
class ThroughputRun:
    """One run of measure_throughput."""

    mails: int
    seconds: float          # from sending the first task to the last mail stored
    settled_seconds: float  # from sending the first task to every row marked sent

    @property
    def per_second(self) -> float:
        return self.mails / self.seconds


@dataclass
class DuplicatesCase:
    """One case of measure_duplicates."""

    label: str
    notifications: int
    received: int               # requests (robot, webhook) or copies stored (mail)
    delivered: int              # what a person sees (see measure_duplicates)
    duplicates: int             # delivered beyond one per notification
    received_unit: str          # "requests" or "copies"
    delivered_note: str         # what "delivered" counts
    timed_out_first: int        # notifications whose first attempt was a retry (timed out)
    attempts: dict[int, int]    # {attempts: notifications}
    statuses: dict[str, int]    # {row status: notifications}
    seconds: float              # from sending the first task to every row settled


# --- Django in this process ---------------------------------------------------------------

def _setup_django(env: dict[str, str]):
    """Django set up in this process on the bench's database (its settings read the
    environment once, at django.setup()); returns the local user, the rows' owner."""
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username=env["COURSE_ADMIN_USER"])


def _make_rows(owner, channel: str, count: int, *, subject: str, recipient=None) -> list:
    """``count`` new notifications of ``channel``, delivered at-least-once (the robot's
    choice; mail and the webhook have no other), each with the id of the task that will
    deliver it (as the page's send_on_commit() gives it); not sent yet."""
    from celery.utils import uuid

    from notifications.models import Notification

    rows = [Notification(owner=owner, channel=channel, recipient=recipient(i) if recipient else "",
                         subject=f"{subject} {i:03d}", body=f"{subject}: notification {i} of {count}",
                         delivery=Notification.Delivery.AT_LEAST_ONCE, task_id=uuid())
            for i in range(1, count + 1)]
    return Notification.objects.bulk_create(rows)


def _send(rows: list) -> float:
    """Send each row's task (notifications.tasks.task_for: the page's choice), in order;
    returns the wall-clock time (time.time()) just before the first was sent."""
    from notifications.tasks import task_for

    started = time.time()
    for row in rows:
        task, args = task_for(row)
        task.apply_async(args, task_id=row.task_id)
    return started


def _settled(rows: list, worker: launcher.Proc) -> list:
    """The rows again, once none is pending (sent or failed); a RuntimeError after DEADLINE."""
    from notifications.models import Notification

    ids = [row.pk for row in rows]
    pending = Notification.objects.filter(pk__in=ids, status=Notification.Status.PENDING)
    if not launcher.wait_for(lambda: not pending.exists(), DEADLINE, 0.05):
        raise RuntimeError(f"{pending.count()} of {len(ids)} notifications still pending after {DEADLINE:g} s; "
                           f"the worker's log ends with:\n{worker.tail(30)}")
    return list(Notification.objects.filter(pk__in=ids))


# --- the Maildir --------------------------------------------------------------------------

def _stored(maildir: Path) -> set[str]:
    """The names of the message files in the Maildir (new/ and cur/)."""
    return {name for folder in ("new", "cur") for name in os.listdir(maildir / folder)}


def _stored_at(name: str) -> float | None:
    """When the server stored the message (time.time()), from its Maildir file name
    ("<seconds>.M<microseconds>P<pid>Q<count>.<host>"); None for a name of another shape."""
    seconds, micro, *_ = delivery_order(name)
    return None if seconds == float("inf") else seconds + micro / 1e6


# --- (a) throughput -----------------------------------------------------------------------

def measure_throughput(smtp: launcher.SmtpServerProc, worker: launcher.Proc, owner, mails: int,
                       run: int) -> ThroughputRun:
    """Make ``mails`` e-mail notifications, send their tasks and time them until the last
    mail is stored (see the module's docstring). Checks that every row is "sent" and its
    Message-ID is in the Maildir exactly once."""
    rows = _make_rows(owner, "email", mails, subject=f"throughput run {run}",
                      recipient=lambda i: f"user{i}@example.com")
    before = _stored(smtp.maildir)
    started = _send(rows)
    if not launcher.wait_for(lambda: len(_stored(smtp.maildir) - before) >= mails, DEADLINE, 0.01):
        raise RuntimeError(f"only {len(_stored(smtp.maildir) - before)} of {mails} mails arrived within "
                           f"{DEADLINE:g} s; the worker's log ends with:\n{worker.tail(30)}")
    seen_at = time.time()
    new = _stored(smtp.maildir) - before
    stored_at = [_stored_at(name) for name in new]
    ended = max(stored_at) if None not in stored_at else seen_at
    done = _settled(rows, worker)
    settled = time.time() - started
    wrong = Counter(row.status for row in done if row.status != "sent")
    if wrong:
        raise RuntimeError(f"not every notification was sent: {dict(wrong)}; see the worker's log:\n"
                           f"{worker.tail(30)}")
    new = _stored(smtp.maildir) - before  # again: a late extra copy counts too
    copies = Counter(message["message_id"] for message in smtp.messages() if message["key"] in new)
    expected = {row.message_id for row in done}
    if set(copies) != expected or any(n != 1 for n in copies.values()) or len(new) != mails:
        raise RuntimeError(f"expected one mail per notification ({mails}); the Maildir got {len(new)} "
                           f"files, {len(set(copies) & expected)} of the {mails} Message-IDs, "
                           f"{sum(n - 1 for n in copies.values())} extra copies")
    return ThroughputRun(mails, ended - started, settled)


def throughput_table(runs: list[ThroughputRun]) -> Table:
    rows = [[str(n), str(r.mails), f"{r.seconds:.2f}", f"{r.per_second:.1f}", f"{r.settled_seconds:.2f}"]
            for n, r in enumerate(runs, 1)]
    rows.append(["**median**", "", f"{statistics.median(r.seconds for r in runs):.2f}",
                 f"**{statistics.median(r.per_second for r in runs):.1f}**",
                 f"{statistics.median(r.settled_seconds for r in runs):.2f}"])
    return Table(["run", "mails", "seconds (first task sent → last mail stored)", "mails/s",
                  "seconds until every row is \"sent\""], rows)


# --- (b) duplicates -----------------------------------------------------------------------

def _summary(rows: list) -> tuple[int, dict[int, int], dict[str, int]]:
    """(how many first attempts timed out and were retried, {attempts: rows}, {status: rows})."""
    first_retried = sum(1 for row in rows if row.history and row.history[0]["outcome"] == "retry")
    attempts = dict(sorted(Counter(row.attempts for row in rows).items()))
    return first_retried, attempts, dict(Counter(row.status for row in rows))


def measure_duplicates(smtp: launcher.SmtpServerProc, bot: launcher.BotReceiverProc, worker: launcher.Proc,
                       owner, count: int) -> list[DuplicatesCase]:
    """The three cases of the module's docstring, one after the other, ``count``
    notifications each. What a person sees: the robot's messages in the group (every
    request the receiver delivered); the webhook's deliveries (requests not answered
    "duplicate"); for mail, the distinct Message-IDs, which is what a mail client that
    keeps one message per Message-ID shows (one that does not shows every copy)."""
    cases = []

    def run(channel: str, subject: str, fault_path: str | None = None, **fields) -> tuple[list, float]:
        """``count`` notifications of ``channel``, each first attempt answered late; the rows once settled."""
        if fault_path:
            bot.reset()
            bot.faults(fault_path, ["hang"] * count)
        rows = _make_rows(owner, channel, count, subject=subject, **fields)
        started = _send(rows)
        done = _settled(rows, worker)
        return done, time.time() - started

    # (a) The DingTalk robot, at-least-once.
    done, seconds = run("dingtalk", "duplicates robot", "/robot/send")
    subjects = {row.subject for row in done}
    ours = [m for m in bot.messages()
            if m["path"] == "/robot/send" and (m["content"] or "").split("\n")[0] in subjects]
    delivered = [m for m in ours if m["delivered"]]
    distinct = len({m["content"] for m in delivered})
    cases.append(DuplicatesCase("DingTalk robot, at-least-once (no receiver-side dedupe)", count, len(ours),
                                len(delivered), len(delivered) - distinct, "requests", "messages in the group",
                                *_summary(done), seconds))

    # (b) The internal webhook with an Idempotency-Key.
    done, seconds = run("webhook", "duplicates webhook", "/hooks/notify")
    keys = {f"notification-{row.pk}" for row in done}
    ours = [m for m in bot.messages() if m["path"] == "/hooks/notify" and m["key"] in keys]
    delivered = [m for m in ours if m["delivered"]]
    replays = sum(1 for m in ours if m["verdict"] == "duplicate")
    cases.append(DuplicatesCase("internal webhook + Idempotency-Key (receiver dedupes)", count, len(ours),
                                len(delivered), len(delivered) - len({m["key"] for m in delivered}), "requests",
                                f"delivered; {replays} retries answered \"duplicate\"", *_summary(done), seconds))

    # (c) Mail to slowack@: stored first, acknowledged after the worker gave up.
    done, seconds = run("email", "duplicates mail", recipient=lambda i: "slowack@example.com")
    ids = {row.message_id for row in done}
    copies = [m for m in smtp.messages() if m["message_id"] in ids]
    distinct = len({m["message_id"] for m in copies})
    cases.append(DuplicatesCase("mail to slowack@ (same Message-ID on every attempt)", count, len(copies),
                                distinct, len(copies) - distinct, "copies stored",
                                f"distinct Message-IDs; a client that does not merge by Message-ID shows "
                                f"{len(copies)}", *_summary(done), seconds))
    return cases


def duplicates_table(cases: list[DuplicatesCase]) -> Table:
    rows = [[c.label, str(c.notifications), f"{c.received} {c.received_unit}", f"{c.delivered} ({c.delivered_note})",
             str(c.duplicates)] for c in cases]
    return Table(["case", "notifications", "requests / copies received", "delivered (what a person sees)",
                  "duplicates"], rows)


def duplicates_details(cases: list[DuplicatesCase]) -> str:
    """One line per case: how the attempts went (the rows' own record)."""
    return "\n".join(f"- {c.label}: first attempt timed out and was retried for {c.timed_out_first} of "
                     f"{c.notifications}; attempts per notification {c.attempts}; statuses {c.statuses}; "
                     f"{c.seconds:.1f} s from the first task sent to every row settled" for c in cases)


# --- python -m instruments.mail_bench ---------------------------------------------------------

def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        pass
    load = ", ".join(f"{n:.2f}" for n in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    return (f"{os.cpu_count()} CPUs{f' ({model})' if model else ''}, {platform.platform()}, "
            f"Python {platform.python_version()}, Celery {version('celery')}, Django {version('django')}; "
            f"load average at the end {load} (1, 5, 15 min: other programs share the cores)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m instruments.mail_bench",
        description="Measure chapter 09's mail throughput (a real worker, a real SMTP server) and the duplicates "
                    "forced retries make on the robot, the webhook and mail. Prints Markdown.")
    parser.add_argument("--mails", type=_positive, default=200, help="mails per throughput run (200)")
    parser.add_argument("--runs", type=_positive, default=3, help="throughput runs; the median is reported (3)")
    parser.add_argument("--duplicates", type=_positive, default=20,
                        help="notifications per duplicates case (20)")
    args = parser.parse_args(argv)

    wall = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="mail-bench-"))
    try:
        broker = launcher.start_embedded()
        smtp = launcher.start_smtp_server(tmp / "Maildir", slow_ack_seconds=HANG_SECONDS)
        dingtalk = "SEC" + secrets.token_hex(32)  # the bench's own robot secret: the installation's stays unread
        bot = launcher.start_bot_receiver(dingtalk, hang=HANG_SECONDS)
        env = django_env(tmp, broker, EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
                         EMAIL_HOST=smtp.host, EMAIL_PORT=str(smtp.port), DEFAULT_FROM_EMAIL=SENDER,
                         DINGTALK_WEBHOOK_URL=bot.send_url, DINGTALK_SECRET=dingtalk,
                         NOTIFY_WEBHOOK_URL=bot.hook_url)
        launcher.manage("migrate", "--noinput", env=env)
        launcher.manage("create_course_admin", env=env)
        owner = _setup_django(env)

        # (a) Throughput, with the settings' default timeouts (EMAIL_TIMEOUT 10 s).
        worker = launcher.start_worker("django_demo", broker=broker, name="mail-bench", fast=True,
                                       concurrency=CONCURRENCY, cwd=str(DJANGO_DIR), env=env)
        runs = []
        for n in range(1, args.runs + 1):
            runs.append(measure_throughput(smtp, worker, owner, args.mails, n))
            print(f"throughput run {n} of {args.runs}: {runs[-1].per_second:.1f} mails/s", file=sys.stderr,
                  flush=True)
        worker.stop()

        # (b) Duplicates: a worker whose timeouts are shorter than the receivers' late answers.
        timeouts = {"EMAIL_TIMEOUT": f"{TIMEOUT_SECONDS:g}", "NOTIFY_TIMEOUT": f"{TIMEOUT_SECONDS:g}",
                    "NOTIFY_RETRY_DELAY": f"{RETRY_DELAY:g}", "NOTIFY_MAX_RETRIES": str(MAX_RETRIES)}
        worker = launcher.start_worker("django_demo", broker=broker, name="dup-bench", fast=True,
                                       concurrency=CONCURRENCY, cwd=str(DJANGO_DIR), env={**env, **timeouts})
        cases = measure_duplicates(smtp, bot, worker, owner, args.duplicates)
        worker.stop()

        print("## Chapter 09: mail throughput\n")
        print(f"Machine: {_machine()}.\n")
        print(f"`celery -A django_demo worker -c {CONCURRENCY}` (prefork) → the course's SMTP server (aiosmtpd, "
              f"Maildir), SQLite (WAL) for rows and results, an embedded Valkey broker. Each run: {args.mails} "
              f"new e-mail notifications (user1..user{args.mails}@example.com), their send_email_notification "
              "tasks sent one by one; the clock runs from the first task sent to the last of these mails stored "
              "(its Maildir file's time). Each mail arrived exactly once.\n")
        print(throughput_table(runs))
        print(f"\nMedian of {args.runs} runs: {statistics.median(r.per_second for r in runs):.1f} mails/s.\n")
        print("## Chapter 09: duplicates under forced retries\n")
        print(f"{args.duplicates} notifications per case; each receiver accepts the first attempt and "
              f"holds its answer {HANG_SECONDS:g} s (robot and webhook: "
              f"`bot.faults(path, [\"hang\"] * {args.duplicates})`; mail: `slowack@`, whose first copy of each "
              f"Message-ID is stored, then acknowledged late), the worker "
              f"gives up after {TIMEOUT_SECONDS:g} s (NOTIFY_TIMEOUT, EMAIL_TIMEOUT) and retries after "
              f"{RETRY_DELAY:g} s (NOTIFY_RETRY_DELAY, at most {MAX_RETRIES} retries).\n")
        print(duplicates_table(cases))
        print()
        print(duplicates_details(cases))
        print(f"\nWall time of the whole bench: {time.monotonic() - wall:.0f} s.")
    finally:
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # Django was never set up: nothing to close
            pass
        launcher.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
