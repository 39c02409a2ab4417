"""The report page in a real browser: headless Chromium (Playwright) against a
real `manage.py runserver`, a real `celery -A django_demo worker` and an
embedded broker, sharing a migrated SQLite file.

What a learner does by hand: fill in the form, watch the bar move, download
the CSV; ask for a report that fails and read its error; send bad input and
get a validation message, with nothing queued.

Never skipped: without a Chromium, launcher.browser raises BrowserNotFound and
says how to get one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from launcher.browser import chromium
from tests.django_stack import django_stack, query

TIMEOUT_MS = 20_000
#: Long enough per step that the page's poll (every 0.3 s) sees the bar part-way.
STEP_SECONDS = "0.2"

#: Installed before any page script runs: records every value the page's
#: script gives the progress bar. (<progress>.value reflects to its "value"
#: attribute, so a MutationObserver sees each update.)
RECORD_PROGRESS = """
window.__progressSeen = [];
document.addEventListener("DOMContentLoaded", () => {
  const bar = document.getElementById("progress");
  if (!bar) return;
  window.__progressSeen.push(Number(bar.value));
  new MutationObserver(() => window.__progressSeen.push(Number(bar.value)))
    .observe(bar, {attributes: true, attributeFilter: ["value"]});
});
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory, module_broker):
    """A migrated database file, a worker and the server; all stopped at the end."""
    with django_stack(tmp_path_factory.mktemp("django_browser"), module_broker, step_seconds=STEP_SECONDS,
                      worker_name="bw") as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    # One browser for the module (nothing else in it starts Playwright), closed at its end.
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser, stack):
    """A fresh context per test: its own cookies, downloads and progress record."""
    context = browser.new_context(base_url=stack["server"].url, accept_downloads=True,
                                  viewport={"width": 1280, "height": 800}, locale="zh-CN")
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(RECORD_PROGRESS)
    try:
        yield context.new_page()
    finally:
        context.close()


def count(db: Path, table: str) -> int:
    return query(db, f"SELECT COUNT(*) FROM {table}")[0]


def submit(page, title: str, rows: str, fail: bool = False):
    """Fill in the form on "/" and send it; returns the response to the POST."""
    page.goto("/")
    page.get_by_label("标题").fill(title)
    page.get_by_label("行数").fill(rows)
    if fail:
        page.get_by_label("故意失败").check()
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="生成报表").click()
    return posted.value


def test_the_bar_reaches_100_and_the_report_downloads(page, stack):
    rows = 10
    submit(page, "浏览器测试报表", str(rows))
    page.wait_for_url("**/reports/*/")
    report_id = int(page.url.rstrip("/").split("/")[-1])
    expect(page.get_by_role("heading", level=1)).to_have_text("浏览器测试报表")

    download = page.locator("#download")
    expect(download).to_be_visible()
    expect(page.locator("#status")).to_have_text("已完成")
    expect(page.locator("#progress-text")).to_have_text("100%")
    assert page.locator("#progress").evaluate("bar => bar.value") == 100
    expect(page.locator("#error")).to_be_hidden()

    seen = page.evaluate("window.__progressSeen")
    assert any(0 < p < 100 for p in seen), f"the bar never showed progress in between: {seen}"
    assert seen == sorted(seen), f"the bar went backwards: {seen}"

    with page.expect_download() as info:
        download.click()
    csv_text = Path(info.value.path()).read_text(encoding="utf-8")
    assert info.value.suggested_filename == f"report-{report_id}.csv"
    assert csv_text.splitlines() == ["row,value"] + [f"{n},{n * n}" for n in range(1, rows + 1)]
    assert csv_text == (stack["media"] / "reports" / f"report-{report_id}.csv").read_text(encoding="utf-8")


def test_a_failing_report_shows_its_error(page):
    submit(page, "会失败的报表", "4", fail=True)
    page.wait_for_url("**/reports/*/")

    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("任务失败")
    expect(error).to_contain_text("ReportError: 第 3 行出错")
    expect(error).to_contain_text("故意失败")
    expect(page.locator("#status")).to_have_text("失败")
    expect(page.locator("#download")).to_be_hidden()
    # Two of four rows were made before the failure: the bar stops where the task did.
    expect(page.locator("#progress-text")).to_have_text("50%")


@pytest.mark.parametrize("title, rows, message", [
    ("", "5", "这个字段是必填项。"),
    ("   ", "5", "这个字段是必填项。"),
    ("行数太多", "21", "行数必须在 1 到 20 之间。"),
    ("行数为零", "0", "行数必须在 1 到 20 之间。"),
    ("没有行数", "", "这个字段是必填项。"),
], ids=["empty-title", "blank-title", "too-many-rows", "zero-rows", "no-rows"])
def test_bad_input_gets_a_message_and_queues_nothing(page, stack, title, rows, message):
    reports, results = count(stack["db"], "reports_report"), \
        count(stack["db"], "django_celery_results_taskresult")
    received = stack["worker"].log().count("Task reports.tasks.generate_report[")

    response = submit(page, title, rows)
    assert response.status == 200  # the form again, not a redirect to a report page
    expect(page.locator(".errorlist")).to_have_text(message)
    assert page.url == stack["server"].url + "/"
    assert count(stack["db"], "reports_report") == reports
    assert count(stack["db"], "django_celery_results_taskresult") == results
    assert stack["worker"].log().count("Task reports.tasks.generate_report[") == received
