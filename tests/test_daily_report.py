"""Chapter 09: the daily report that leaves the building. The day's reports, read
from the database, as an XLSX workbook (reports/daily.py); downloaded from the
report page in a real browser; and mailed by a real beat (django-celery-beat's
DatabaseScheduler) through a real worker to the course's SMTP server, where the
attachment is opened again with openpyxl.

The workbook and the download view also run in this process (pytest-django),
against rows made around the day's edges in TIME_ZONE (Asia/Shanghai).
"""

from __future__ import annotations

import io
import json
import re
import uuid
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest
from celery import Celery
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook
from playwright.sync_api import expect

import launcher
from launcher.django_procs import start_beat
from tests.django_stack import django_stack, query
from tests.helpers import DJANGO_DIR

# browser, login_state: one Chromium per module, logged in once through the login page (this module's stack).
from tests.test_django_browser import browser, login_state, new_context  # noqa: F401 (fixtures)
from tests.test_django_reports import current_celery_app  # noqa: F401 (an autouse fixture)

DAY = date(2026, 3, 14)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DETAIL_HEADERS = ["标题", "所有者", "状态", "行数", "创建于", "结束于", "用时（秒）"]
RECIPIENTS = ["boss@example.com", "team@example.com"]
FROM = "reports@course.example"
DEADLINE = 45


def workbook(data: bytes):
    return load_workbook(io.BytesIO(data))


def detail_rows(book) -> list[list]:
    return [list(r) for r in book["报表明细"].iter_rows(min_row=2, values_only=True)]


def summary(book) -> dict:
    """The summary sheet's "状态 | 数量" table, as {label: count}."""
    rows = list(book["汇总"].iter_rows(values_only=True))
    start = rows.index(("状态", "数量"))
    return {label: count for label, count in rows[start + 1:] if label}


# --- In this process: the workbook and the view ------------------------------------------

def local(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour, minute, second)), timezone.get_default_timezone())


@pytest.fixture
def day_of_reports(django_user_model):
    """Reports of DAY (from its first second to its last) and of the days around it, of two users."""
    from reports.models import Report

    alice = django_user_model.objects.create_user("alice", password="a-long-test-password-6")
    bob = django_user_model.objects.create_user("bob", password="a-long-test-password-7")
    made = [
        # (owner, title, status, rows, created, seconds to finish)
        (alice, "午夜第一秒", Report.Status.RUNNING, 8, local(DAY, 0), None),
        (bob, "早上的月报（很长的标题，用来撑开这一列的宽度）", Report.Status.DONE, 5, local(DAY, 8, 30), 12.5),
        (alice, "失败的报表", Report.Status.FAILED, 3, local(DAY, 12), 2),
        (bob, "最后一秒排队", Report.Status.PENDING, 1, local(DAY, 23, 59, 59), None),
        (alice, "前一天", Report.Status.DONE, 1, local(DAY, 0) - timedelta(seconds=1), 1),
        (alice, "后一天", Report.Status.DONE, 1, local(DAY + timedelta(days=1), 0), 1),
    ]
    for owner, title, status, rows, created, seconds in made:
        report = Report.objects.create(owner=owner, title=title, status=status, rows=rows)
        finished = created + timedelta(seconds=seconds) if seconds is not None else None
        Report.objects.filter(pk=report.pk).update(created=created, finished=finished)   # auto_now_add: after
    return alice, bob


@pytest.mark.django_db
def test_the_workbook_holds_the_days_reports_in_local_time(day_of_reports):
    from reports.daily import build_daily_workbook

    book = workbook(build_daily_workbook(DAY))
    assert book.sheetnames == ["汇总", "报表明细"]
    sheet = book["报表明细"]
    assert [c.value for c in sheet[1]] == DETAIL_HEADERS and all(c.font.bold for c in sheet[1])
    # Oldest first; the day's first and last second are in, the seconds around them are not.
    # Times as the page shows them: in TIME_ZONE (00:00 in Shanghai is 16:00 UTC the day before).
    assert detail_rows(book) == [
        ["午夜第一秒", "alice", "生成中", 8, datetime(2026, 3, 14, 0, 0), None, None],
        ["早上的月报（很长的标题，用来撑开这一列的宽度）", "bob", "已完成", 5, datetime(2026, 3, 14, 8, 30),
         datetime(2026, 3, 14, 8, 30, 12), 12.5],
        ["失败的报表", "alice", "失败", 3, datetime(2026, 3, 14, 12), datetime(2026, 3, 14, 12, 0, 2), 2],
        ["最后一秒排队", "bob", "排队中", 1, datetime(2026, 3, 14, 23, 59, 59), None, None],
    ]
    assert sheet["E2"].number_format == "yyyy-mm-dd hh:mm:ss" and sheet.freeze_panes == "A2"
    # Wide enough to read: the long Chinese title (two columns per character) and a date-time.
    assert sheet.column_dimensions["A"].width >= 2 * len("早上的月报（很长的标题，用来撑开这一列的宽度）")
    assert sheet.column_dimensions["E"].width >= len("2026-03-14 08:30:00")
    front = book["汇总"]
    assert front["A1"].value == "2026-03-14 报表日报"
    assert summary(book) == {"排队中": 1, "生成中": 1, "已完成": 1, "失败": 1, "合计": 4}


@pytest.mark.django_db
def test_one_owners_workbook_and_an_empty_day(day_of_reports):
    from reports.daily import build_daily_workbook

    _, bob = day_of_reports
    mine = workbook(build_daily_workbook(DAY, owner=bob))
    assert [row[0] for row in detail_rows(mine)] == ["早上的月报（很长的标题，用来撑开这一列的宽度）", "最后一秒排队"]
    assert summary(mine)["合计"] == 2
    empty = workbook(build_daily_workbook(DAY + timedelta(days=30)))
    assert detail_rows(empty) == [] and summary(empty) == {"排队中": 0, "生成中": 0, "已完成": 0, "失败": 0, "合计": 0}


@pytest.mark.django_db
def test_the_download_is_the_users_own_day_as_an_attachment(client, day_of_reports):
    alice, _ = day_of_reports
    url = reverse("reports:daily")
    anonymous = client.get(url, {"day": DAY.isoformat()})
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    client.force_login(alice)
    answer = client.get(url, {"day": DAY.isoformat()})
    assert answer.status_code == 200 and answer["Content-Type"] == XLSX
    assert answer["Content-Disposition"] == 'attachment; filename="daily-report-2026-03-14.xlsx"'
    assert [row[0] for row in detail_rows(workbook(answer.content))] == ["午夜第一秒", "失败的报表"]
    today = client.get(url)
    assert today["Content-Disposition"] == f'attachment; filename="daily-report-{timezone.localdate()}.xlsx"'


@pytest.mark.django_db
@pytest.mark.parametrize("day", ["2026-02-30", "14.03.2026", "yesterday", "2026-3-1x"])
def test_a_bad_day_is_a_400_that_says_how_to_write_it(client, django_user_model, day):
    client.force_login(django_user_model.objects.create_user("carol", password="a-long-test-password-3"))
    answer = client.get(reverse("reports:daily"), {"day": day})
    assert answer.status_code == 400 and answer["Content-Type"] == "text/plain; charset=utf-8"
    text = answer.content.decode()
    assert f"日期 {day!r} 看不懂：请写成 YYYY-MM-DD" in text and "Bad day" in text


# --- The stack: beat mails it, the browser downloads it -------------------------------------

@pytest.fixture(scope="module")
def smtp(tmp_path_factory):
    server = launcher.start_smtp_server(tmp_path_factory.mktemp("maildir"))
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, module_broker, smtp):
    """No DINGTALK_WEBHOOK_URL here: the robot is not configured (see the last test)."""
    with django_stack(tmp_path_factory.mktemp("daily_report"), module_broker, step_seconds="0.2",
                      worker_name="daily", EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
                      EMAIL_HOST=smtp.host, EMAIL_PORT=str(smtp.port), DEFAULT_FROM_EMAIL=FROM,
                      REPORT_MAIL_TO=",".join(RECIPIENTS), NOTIFY_MAX_RETRIES="2",
                      NOTIFY_RETRY_DELAY="0.2") as running:
        yield running


#: Run by `manage.py shell` in the stack: today's reports of the local user, and a one-off
#: periodic task (a ClockedSchedule due a second from now) that mails today's report.
SEED = """
import json
from datetime import datetime, time, timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, PeriodicTask
from reports.models import Report

day = timezone.localdate()
owner = get_user_model().objects.get(username={user!r})
first = timezone.make_aware(datetime.combine(day, time(0, 0, 1)))
for n, (title, status, rows, seconds) in enumerate({seeds!r}):
    report = Report.objects.create(owner=owner, title=title, status=status, rows=rows)
    created = first + timedelta(minutes=n)
    finished = created + timedelta(seconds=seconds) if seconds is not None else None
    Report.objects.filter(pk=report.pk).update(created=created, finished=finished)
due = ClockedSchedule.objects.create(clocked_time=timezone.now() + timedelta(seconds=1))
PeriodicTask.objects.create(name="daily report (once)", task="notifications.tasks.mail_daily_report", clocked=due,
                            one_off=True, kwargs=json.dumps({{"day": day.isoformat()}}))
print(json.dumps({{"day": day.isoformat()}}))
"""
#: (title, status, rows, seconds taken)
SEEDS = [("日报里的第一份", "done", 4, 3.5), ("日报里失败的", "failed", 2, 1.0),
         ("日报里还在排队的", "pending", 6, None)]


@pytest.fixture(scope="module")
def seeded(stack) -> str:
    """Today (in TIME_ZONE, as the stack's Django sees it), with its reports and the one-off in the database."""
    code = SEED.format(user=stack["auth"][0], seeds=SEEDS)
    printed = launcher.manage("shell", "-v", "0", "-c", code, env=stack["env"]).stdout.strip().splitlines()[-1]
    return json.loads(printed)["day"]


def test_beat_sends_the_daily_report_and_the_mail_carries_the_workbook(stack, smtp, seeded, module_broker):
    day = seeded

    def reports_of_the_day() -> list[dict]:
        return [m for m in smtp.messages() if (m["message_id"] or "").startswith(f"<daily-report-{day}-")]

    beat = start_beat("django_demo", broker=module_broker, cwd=str(DJANGO_DIR), env=stack["env"])
    try:
        sent = beat.wait_for_log("Sending due task daily report (once)", DEADLINE, since=0)
        assert sent.endswith("Sending due task daily report (once) (notifications.tasks.mail_daily_report)"), sent
        assert launcher.wait_for(lambda: len(reports_of_the_day()) == 1, DEADLINE, 0.1), stack["worker"].tail(30)
    finally:
        beat.cleanup()
    [mail] = reports_of_the_day()
    # The Message-ID is keyed to this send (the task's id: the same for each of its retries).
    task_id = query(stack["db"], "SELECT task_id FROM django_celery_results_taskresult "
                                 "WHERE periodic_task_name = 'daily report (once)'")[0]
    message_id = f"<daily-report-{day}-{task_id}@course.example>"
    assert mail["message_id"] == message_id
    assert mail["subject"] == f"报表日报 {day}" and mail["from"] == FROM
    assert sorted(re.split(r",\s*", mail["rcpt_to"])) == RECIPIENTS
    assert "合计：3" in mail["text"] and f"daily-report-{day}.xlsx" in mail["text"]
    [attached] = mail["attachments"]
    assert (attached["filename"], attached["content_type"]) == (f"daily-report-{day}.xlsx", XLSX)
    assert attached["size"] == len(attached["data"]) > 0
    book = workbook(attached["data"])
    owner = stack["auth"][0]
    labels = {"done": "已完成", "failed": "失败", "pending": "排队中"}
    assert [row[:4] + row[6:] for row in detail_rows(book)] == [
        [title, owner, labels[status], rows, seconds] for title, status, rows, seconds in SEEDS]
    assert summary(book) == {"排队中": 1, "生成中": 0, "已完成": 1, "失败": 1, "合计": 3}
    # Run by the worker as beat's periodic task, in one attempt.
    def stored():
        return query(stack["db"], "SELECT status FROM django_celery_results_taskresult "
                                  "WHERE periodic_task_name = 'daily report (once)'")

    assert launcher.wait_for(lambda: stored() == ("SUCCESS",), DEADLINE, 0.1), stored()
    lines = [line for line in stack["worker"].log().splitlines() if f"daily report {day} by mail: attempt" in line]
    assert len(lines) == 1 and lines[0].endswith(f"sent to {', '.join(RECIPIENTS)}, Message-ID {message_id}")

    # A deliberate re-send of the same day (e.g. after its data was corrected) is a new message,
    # with a new Message-ID: a mail client that keeps one message per id still shows it.
    app = Celery("daily-test-client", broker=module_broker.url, set_as_current=False)
    try:
        again = app.send_task("notifications.tasks.mail_daily_report", kwargs={"day": day}).id
    finally:
        app.close()
    assert launcher.wait_for(lambda: len(reports_of_the_day()) == 2, DEADLINE, 0.1), stack["worker"].tail(30)
    assert [m["message_id"] for m in reports_of_the_day()] == [
        message_id, f"<daily-report-{day}-{again}@course.example>"]


@pytest.fixture
def page(browser, stack, login_state):  # noqa: F811 (the imported fixtures)
    context = new_context(browser, stack, storage_state=login_state)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_the_report_page_links_todays_workbook(page, seeded):
    page.goto("/")
    link = page.get_by_role("link", name="下载今天的报表汇总（Excel）")
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename == f"daily-report-{seeded}.xlsx"
    book = workbook(Path(download.path()).read_bytes())   # Playwright's file has no .xlsx: openpyxl wants one
    assert [row[0] for row in detail_rows(book)] == [title for title, *_ in SEEDS]
    assert summary(book)["合计"] == 3


def test_a_robot_notification_without_a_webhook_address_fails_at_once_and_the_page_says_why(page, stack):
    """This stack sets no DINGTALK_WEBHOOK_URL: one attempt, no retry, and the reason on the page."""
    page.goto("/notifications/new")
    page.get_by_label("渠道").select_option(label="钉钉群机器人")
    page.get_by_label("主题").fill("没有配置的机器人")
    page.get_by_label("正文").fill("发不出去")
    page.get_by_role("button", name="发送").click()
    page.wait_for_url(re.compile(r"/notifications/[0-9a-f-]{36}/$"))
    notification_id = str(uuid.UUID(page.url.rstrip("/").split("/")[-1]))
    # The page refreshes itself while the notification is pending.
    expect(page.locator("#status")).to_have_text("失败", timeout=DEADLINE * 1000)
    expect(page.locator("#attempts")).to_have_text("1")
    expect(page.locator("#reason")).to_contain_text("没有设置 DINGTALK_WEBHOOK_URL")
    expect(page.locator("#history tr")).to_have_count(2)   # the header and one attempt
    status, attempts = query(stack["db"], "SELECT status, attempts FROM notifications_notification WHERE id = ?",
                             uuid.UUID(notification_id).hex)
    assert (status, attempts) == ("failed", 1)
    [line] = [line for line in stack["worker"].log().splitlines()
              if f"notification {notification_id} via dingtalk: attempt" in line]
    assert "failed for good (not retried): DINGTALK_WEBHOOK_URL is not set" in line
