"""The report page in a real browser: headless Chromium (Playwright) against a
real `manage.py runserver`, a real `celery -A django_demo worker` and an
embedded broker, sharing a migrated SQLite file.

What a learner does by hand: log in, fill in the form, watch the bar move,
download the CSV; ask for a report that fails and read its message; send bad
input and get a validation message, with nothing queued; kill the worker in
the middle of a report and see the page say so, then retry.

Never skipped: without a Chromium, launcher.browser raises BrowserNotFound and
says how to get one.

The lost-task deadline is short here (LOST_AFTER_SECONDS). To measure the
kill-to-failure time with the settings' default deadline instead, run this
module with TEST_REPORT_LOST_AFTER_SECONDS= (empty) and -s.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from playwright.sync_api import expect

from launcher.browser import chromium
from tests.django_stack import django_stack, query, restart_worker

TIMEOUT_MS = 20_000
#: Long enough per step that the page's poll (every 0.3 s) sees the bar part-way.
STEP_SECONDS = "0.2"
#: A running report without progress for this long is lost (the watchdog's
#: REPORT_LOST_AFTER_SECONDS): ten steps, so that a slow step on a loaded
#: machine is never taken for a dead worker. Empty: the settings' default.
LOST_AFTER_SECONDS = os.environ.get("TEST_REPORT_LOST_AFTER_SECONDS", "2")
#: The deadline the server applies (settings: default max(10, 4 * step)).
DEADLINE = float(LOST_AFTER_SECONDS) if LOST_AFTER_SECONDS else max(10.0, 4 * float(STEP_SECONDS))
#: reports.watchdog.SILENT, as the page shows it.
LOST_MESSAGE = f"任务丢失：{DEADLINE:g} 秒没有收到进度（worker 可能被停止了）。"
DEMO_FAILURE = "第 3 行出错（演示用的故意失败）。"
ERROR_ID = re.compile(r"^[0-9a-f]{8}$")
REQUIRED = "这个字段是必填项。"
BAD_ROWS = "行数必须在 1 到 20 之间。"
#: Instead of a field's value: a POST without the field at all (only the CSRF token is sent).
NO_FIELD = object()

#: How often the report page polls its status (detail.html: setTimeout(poll, 300)).
POLL_MS = 300

#: Installed before any page script runs: records every value the page's
#: script gives the progress bar (<progress>.value reflects to its "value"
#: attribute, so a MutationObserver sees each update), and every status text
#: with the time (Date.now(), the wall clock) it appeared.
#: It also counts the page's status requests and its poll timers (a
#: setTimeout(poll, ...) armed and not yet fired, or a poll running), and gives
#: two ways to watch for polls without a fixed wait on this side:
#: __pollsDuring(ms) counts the status requests made while one timer of ``ms``
#: runs in the page (timers fire in order: a poll armed earlier with a timeout
#: no longer than ``ms`` fires first, and its request starts at once), and
#: __nextPollArmed() resolves when the page next arms its poll timer (and fails
#: after a deadline, for a page that has stopped polling).
RECORD_PAGE = """
window.__statusFetches = 0;
window.__pollsArmed = 0;
window.__pollsRunning = 0;
window.__pollArmedWaiters = [];
const pageFetch = window.fetch.bind(window);
window.fetch = (url, ...rest) => {
  if (String(url).endsWith("/status/")) window.__statusFetches += 1;
  return pageFetch(url, ...rest);
};
const pageSetTimeout = window.setTimeout.bind(window);
window.setTimeout = (fn, ms, ...args) => {
  if (typeof fn !== "function" || fn.name !== "poll") return pageSetTimeout(fn, ms, ...args);
  window.__pollsArmed += 1;
  const id = pageSetTimeout(() => {
    window.__pollsArmed -= 1;
    window.__pollsRunning += 1;
    Promise.resolve(fn(...args)).finally(() => { window.__pollsRunning -= 1; });
  }, ms);
  window.__pollArmedWaiters.splice(0).forEach(resolve => resolve());
  return id;
};
window.__pollsDuring = ms => new Promise(resolve => {
  const before = window.__statusFetches;
  pageSetTimeout(() => resolve(window.__statusFetches - before), ms);
});
window.__nextPollArmed = (deadline = 10000) => new Promise((resolve, reject) => {
  window.__pollArmedWaiters.push(resolve);
  pageSetTimeout(() => reject(new Error(`no poll armed within ${deadline} ms`)), deadline);
});
window.__progressSeen = [];
window.__statusSeen = [];
document.addEventListener("DOMContentLoaded", () => {
  const bar = document.getElementById("progress");
  const status = document.getElementById("status");
  if (!bar || !status) return;
  window.__progressSeen.push(Number(bar.value));
  new MutationObserver(() => window.__progressSeen.push(Number(bar.value)))
    .observe(bar, {attributes: true, attributeFilter: ["value"]});
  window.__statusSeen.push([status.textContent, Date.now()]);
  new MutationObserver(() => window.__statusSeen.push([status.textContent, Date.now()]))
    .observe(status, {childList: true, characterData: true, subtree: true});
});
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory, module_broker):
    """A migrated database file with the local user, a worker and the server; all stopped at the end."""
    extra = {"REPORT_LOST_AFTER_SECONDS": LOST_AFTER_SECONDS} if LOST_AFTER_SECONDS else {}
    with django_stack(tmp_path_factory.mktemp("django_browser"), module_broker, step_seconds=STEP_SECONDS,
                      worker_name="bw", **extra) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    # One browser for the module (nothing else in it starts Playwright), closed at its end.
    with chromium() as b:
        yield b


def new_context(browser, stack, **options):
    context = browser.new_context(base_url=stack["server"].url, accept_downloads=True,
                                  viewport={"width": 1280, "height": 800}, locale="zh-CN", **options)
    context.set_default_timeout(TIMEOUT_MS)
    return context


def log_in(page, stack, user: str, password: str) -> None:
    """What a person does: open the site, land on the login page, fill it in."""
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    page.get_by_label("用户名").fill(user)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()
    expect(page).to_have_url(stack["server"].url + "/")
    expect(page.locator("#username")).to_have_text(user)


@pytest.fixture(scope="module")
def login_state(browser, stack):
    """Log in once through the login page; each test's context starts with that session."""
    context = new_context(browser, stack)
    try:
        log_in(context.new_page(), stack, *stack["auth"])
        return context.storage_state()
    finally:
        context.close()


@pytest.fixture
def page(browser, stack, login_state):
    """A fresh, logged-in context per test: its own downloads and page records."""
    context = new_context(browser, stack, storage_state=login_state)
    context.add_init_script(RECORD_PAGE)
    try:
        yield context.new_page()
    finally:
        context.close()


def count(db: Path, table: str) -> int:
    return query(db, f"SELECT COUNT(*) FROM {table}")[0]


def report_files(stack) -> list[str]:
    """Every file in MEDIA_ROOT/reports, temporary (hidden .part) ones included."""
    folder = stack["media"] / "reports"
    return sorted(os.listdir(folder)) if folder.is_dir() else []


def submit(page, title, rows, fail: bool = False):
    """Fill in the form on "/" and send it; returns the response to the POST.
    For ``title`` and ``rows``: a string is typed in, None leaves the field as
    it is, NO_FIELD removes it from the form (then it is not sent at all)."""
    page.goto("/")
    for label, value in (("标题", title), ("行数", rows)):
        if value is NO_FIELD:
            page.get_by_label(label).evaluate("field => field.remove()")
        elif value is not None:
            page.get_by_label(label).fill(value)
    if fail:
        page.get_by_label("故意失败").check()
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="生成报表").click()
    return posted.value


def open_report(page, title: str, rows: str, fail: bool = False) -> str:
    """Submit a report and land on its page; returns its id."""
    submit(page, title, rows, fail)
    page.wait_for_url(re.compile(r"/reports/[0-9a-f-]{36}/$"))
    return str(uuid.UUID(page.url.rstrip("/").split("/")[-1]))


def test_the_bar_reaches_100_and_the_report_downloads(page, stack):
    rows = 10
    report_id = open_report(page, "浏览器测试报表", str(rows))
    expect(page.get_by_role("heading", level=1)).to_have_text("浏览器测试报表")
    # A template comment shows as text when it spans lines ({# #} is one line only).
    assert "{#" not in page.locator("body").inner_text()

    download = page.locator("#download")
    expect(download).to_be_visible()
    expect(page.locator("#status")).to_have_text("已完成")
    expect(page.locator("#progress-text")).to_have_text("100%")
    assert page.locator("#progress").evaluate("bar => bar.value") == 100
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("body")).to_have_attribute("data-polling", "stopped")

    seen = page.evaluate("window.__progressSeen")
    assert any(0 < p < 100 for p in seen), f"the bar never showed progress in between: {seen}"
    assert seen == sorted(seen), f"the bar went backwards: {seen}"

    with page.expect_download() as info:
        download.click()
    csv_text = Path(info.value.path()).read_text(encoding="utf-8")
    name = f"report-{report_id}-{page.locator('#task-id').inner_text()[:8]}.csv"
    assert info.value.suggested_filename == name
    assert csv_text.splitlines() == ["row,value"] + [f"{n},{n * n}" for n in range(1, rows + 1)]
    assert csv_text == (stack["media"] / "reports" / name).read_text(encoding="utf-8")
    assert [f for f in report_files(stack) if report_id in f] == [name]


def test_a_failing_report_shows_a_message_and_an_error_id_not_the_exception(page):
    open_report(page, "会失败的报表", "4", fail=True)

    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("任务失败")
    expect(page.locator("#error-text")).to_have_text(DEMO_FAILURE)
    expect(page.locator("#error-id")).to_have_text(ERROR_ID)
    expect(page.get_by_role("button", name="重试")).to_be_visible()
    expect(page.locator("#status")).to_have_text("失败")
    expect(page.locator("#download")).to_be_hidden()
    # Two of four rows were made before the failure: the bar stops where the task did.
    expect(page.locator("#progress-text")).to_have_text("50%")
    expect(page.locator("body")).to_have_attribute("data-polling", "stopped")
    html = page.content()
    assert "ReportError" not in html and "Traceback" not in html and "tasks.py" not in html


@pytest.mark.parametrize("title, rows, messages", [
    (None, None, [REQUIRED]),
    ("", "", [REQUIRED, REQUIRED]),
    ("   ", "", [REQUIRED, REQUIRED]),
    ("", "5", [REQUIRED]),
    ("   ", "5", [REQUIRED]),
    ("行数太多", "21", [BAD_ROWS]),
    ("行数为零", "0", [BAD_ROWS]),
    ("没有行数", "", [REQUIRED]),
    (NO_FIELD, NO_FIELD, [REQUIRED, REQUIRED]),
], ids=["untouched", "all-empty", "all-blank", "empty-title", "blank-title", "too-many-rows", "zero-rows",
        "no-rows", "no-fields-at-all"])
def test_bad_input_gets_a_message_and_queues_nothing(page, stack, title, rows, messages):
    reports, results = count(stack["db"], "reports_report"), \
        count(stack["db"], "django_celery_results_taskresult")
    received = stack["worker"].log().count("Task reports.tasks.generate_report[")

    response = submit(page, title, rows)
    assert response.status == 400  # the form again, with its errors; not a redirect to a report page
    expect(page.locator("#form-error")).to_be_visible()
    expect(page.locator("#form-error")).to_have_text("请改正下面标出的错误。")
    expect(page.locator(".errorlist")).to_have_text(messages)
    assert page.url == stack["server"].url + "/"
    assert count(stack["db"], "reports_report") == reports
    assert count(stack["db"], "django_celery_results_taskresult") == results
    assert stack["worker"].log().count("Task reports.tasks.generate_report[") == received


def test_the_login_page_and_the_report_pages_never_show_the_password(browser, stack):
    user, password = stack["auth"]
    context = new_context(browser, stack)
    try:
        page = context.new_page()
        page.goto("/")
        expect(page.get_by_role("heading", level=1)).to_have_text("登录")
        assert password not in page.content()
        expect(page.get_by_label("密码")).to_have_attribute("type", "password")

        # A failed attempt shows the form again, without what was typed into the password field.
        page.get_by_label("用户名").fill(user + "-nobody")
        page.get_by_label("密码").fill(password)
        with page.expect_response(lambda r: r.request.method == "POST") as posted:
            page.get_by_role("button", name="登录").click()
        assert posted.value.status == 200
        expect(page.get_by_role("alert")).to_have_text("用户名或密码不对，请重试。")
        expect(page.get_by_label("密码")).to_have_value("")
        assert password not in page.content()

        log_in(page, stack, user, password)
        assert password not in page.content()
        report_id = open_report(page, "不显示密码的报表", "1")
        expect(page.locator("#status")).to_have_text("已完成")
        assert password not in page.content()
        assert password not in page.request.get(f"/reports/{report_id}/status/").text()
    finally:
        context.close()


def stored_time(value: str) -> datetime:
    """A DateTimeField as the SQLite file keeps it (UTC, USE_TZ): an aware datetime."""
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def test_the_page_shows_a_report_lost_when_the_whole_worker_is_killed(page, stack, record_property):
    """SIGKILL to the worker's process group in the middle of a report: nobody
    records anything, so the page learns of it from the watchdog's deadline."""
    report_id = open_report(page, "worker 会被杀掉的报表", "15")  # 3 s of work at 0.2 s a row
    status_path = f"/reports/{report_id}/status/"
    polls: list[float] = []
    page.on("request", lambda r: polls.append(time.monotonic()) if r.url.endswith(status_path) else None)
    old_task_id = page.locator("#task-id").inner_text()
    expect(page.locator("#status")).to_have_text("生成中")
    expect(page.locator("#progress-text")).not_to_have_text("0%")
    # The positive control of the watch below: while the page polls, a watch of one
    # poll interval, started when the page arms its next poll, sees that poll's request.
    assert page.evaluate(f"async () => {{ await window.__nextPollArmed(); return window.__pollsDuring({POLL_MS}); }}") \
        >= 1, "the watch does not see the polls of a page that polls"

    try:
        killed_at = time.time()
        stack["worker"].stop(mode="kill")
        gone_at = time.time()
        expect(page.locator("#status")).to_have_text("失败", timeout=(DEADLINE + 20) * 1000)
        shown_at = next(t for text, t in page.evaluate("window.__statusSeen") if text == "失败") / 1000
        seconds = shown_at - killed_at
        record_property("kill_to_failure_seconds", round(seconds, 2))
        print(f"\nworker killed -> the page shows 失败 after {seconds:.2f} s "
              f"(REPORT_LOST_AFTER_SECONDS={DEADLINE:g}, step {STEP_SECONDS} s)")

        expect(page.locator("#error")).to_be_visible()
        expect(page.locator("#error-text")).to_have_text(LOST_MESSAGE)
        expect(page.locator("#error-id")).to_have_text(ERROR_ID)
        expect(page.get_by_role("button", name="重试")).to_be_visible()
        expect(page.locator("#download")).to_be_hidden()
        # The page waited for the deadline, counted from the last progress, which came
        # before the worker was gone: from the times in the database, not a range of
        # seconds (a loaded machine only makes the wait longer).
        heartbeat, finished = (stored_time(v) for v in query(
            stack["db"], "SELECT heartbeat, finished FROM reports_report WHERE id = ?", uuid.UUID(report_id).hex))
        assert heartbeat.timestamp() <= gone_at, "progress recorded after the worker was killed"
        assert (finished - heartbeat).total_seconds() >= DEADLINE, (heartbeat, finished)
        assert shown_at >= finished.timestamp() - 0.001, "the page showed 失败 before the server decided it"
        # ... and it was the watchdog, woken by one of the page's polls, that decided.
        stack["server"].wait_for_log(f"report {report_id}: task {old_task_id} is lost (running)", 10, since=0)

        # The polling has stopped, and stays stopped: no poll armed or running, and a
        # watch like the positive control above sees no request.
        expect(page.locator("body")).to_have_attribute("data-polling", "stopped")
        before = len(polls)
        assert page.evaluate("[window.__pollsArmed, window.__pollsRunning]") == [0, 0]
        assert page.evaluate(f"window.__pollsDuring({POLL_MS})") == 0, "a status request after the polling stopped"
        assert len(polls) == before, f"{len(polls) - before} status requests after the polling stopped"
        # Killed before it wrote anything: neither a CSV nor a half-written .part file.
        assert not [f for f in report_files(stack) if report_id in f or f.endswith(".part")], report_files(stack)
    finally:
        if not stack["worker"].running():
            restart_worker(stack)  # the module's later tests need a worker

    # With a worker again, 重试 runs the report anew, under a new task id.
    with page.expect_navigation():
        page.get_by_role("button", name="重试").click()
    expect(page.locator("#status")).to_have_text("已完成", timeout=TIMEOUT_MS * 2)
    expect(page.locator("#download")).to_be_visible()
    new_task_id = page.locator("#task-id").inner_text()
    assert new_task_id != old_task_id
    assert [f for f in report_files(stack) if report_id in f or f.endswith(".part")] == \
        [f"report-{report_id}-{new_task_id[:8]}.csv"]
