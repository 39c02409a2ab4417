"""django_demo end to end through real processes: an embedded broker, a real
`celery -A django_demo worker`, a real `manage.py runserver`, and a SQLite
file that all of them share (migrated by `manage.py migrate` beforehand).

The pytest-django test database lives in this process only, which a worker
cannot see, so this module does not use it: it talks HTTP to the server and
reads the database file with the sqlite3 module.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import urllib.parse
import urllib.request

import pytest

import launcher
from launcher.django_procs import start_beat
from tests.django_stack import django_stack, query
from tests.helpers import DJANGO_DIR

TASK_NAME = "reports.tasks.generate_report"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, module_broker):
    """Database file, worker and server for this module; all stopped at the end."""
    with django_stack(tmp_path_factory.mktemp("django_demo"), module_broker, step_seconds="0.1") as running:
        yield running


class Browser:
    """Just enough of a browser: cookies (CSRF), form posts, redirects."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str) -> tuple[str, str]:
        with self.opener.open(self.base_url + path, timeout=10) as response:
            return response.geturl(), response.read().decode()

    def json(self, path: str) -> dict:
        return json.loads(self.get(path)[1])

    def submit_report(self, title: str, rows: int, fail: bool = False) -> str:
        """Post the form like a browser would; returns the report page's path."""
        _, page = self.get("/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        fields = {"csrfmiddlewaretoken": token, "title": title, "rows": str(rows)}
        if fail:
            fields["fail_on_purpose"] = "on"
        request = urllib.request.Request(self.base_url + "/", data=urllib.parse.urlencode(fields).encode(),
                                         headers={"Referer": self.base_url + "/"})
        with self.opener.open(request, timeout=20) as response:
            return urllib.parse.urlparse(response.geturl()).path


def poll_until_finished(browser: Browser, status_path: str, timeout: float = 60) -> tuple[dict, list[int]]:
    """Poll the status URL like the page does; return the final status and every progress seen."""
    seen: list[int] = []
    status: dict = {}

    def finished() -> bool:
        status.update(browser.json(status_path))
        seen.append(status["progress"])
        return status["status"] in ("done", "failed")

    assert launcher.wait_for(finished, timeout, interval=0.03), \
        f"the report did not finish within {timeout} s; last status {status}"
    return status, seen


def test_report_goes_from_form_to_download_through_the_worker(stack):
    browser = Browser(stack["server"].url)
    page = browser.submit_report("集成测试报表", rows=5)
    report_id = int(re.fullmatch(r"/reports/(\d+)/", page).group(1))

    status, seen = poll_until_finished(browser, f"/reports/{report_id}/status/")
    assert status == {"status": "done", "progress": 100, "error": None,
                      "download_url": f"/reports/{report_id}/download/"}
    assert any(0 < p < 100 for p in seen), f"no progress seen in between: {seen}"

    row = query(stack["db"], "SELECT status, progress, file, task_id, finished FROM reports_report WHERE id = ?",
                report_id)
    assert row[:3] == ("done", 100, f"reports/report-{report_id}.csv") and row[4] is not None
    csv_file = stack["media"] / row[2]
    assert csv_file.read_text(encoding="utf-8").splitlines()[:2] == ["row,value", "1,1"]
    _, downloaded = browser.get(status["download_url"])
    assert downloaded == csv_file.read_bytes().decode("utf-8")  # CSV rows end in \r\n

    # result_extended: the TaskResult row knows the task's name and arguments.
    # The task marks the Report row done just before it returns, and the worker
    # stores the result just after: wait for that (it is STARTED until then).
    sql = "SELECT task_name, status, task_args, result FROM django_celery_results_taskresult WHERE task_id = ?"
    assert launcher.wait_for(lambda: (query(stack["db"], sql, row[3]) or (None, None))[1] == "SUCCESS", 10)
    result = query(stack["db"], sql, row[3])
    assert result[0] == TASK_NAME and result[1] == "SUCCESS"
    assert str(report_id) in result[2]
    assert json.loads(result[3]) == row[2]
    assert row[3] in stack["worker"].log()


def test_failing_report_shows_its_error(stack):
    browser = Browser(stack["server"].url)
    page = browser.submit_report("会失败的报表", rows=4, fail=True)
    status, _ = poll_until_finished(browser, page + "status/")
    assert status["status"] == "failed" and status["download_url"] is None
    assert status["error"].startswith("ReportError: ") and "故意失败" in status["error"]

    task_id = query(stack["db"], "SELECT task_id FROM reports_report WHERE id = ?",
                    int(page.strip("/").split("/")[-1]))[0]
    sql = "SELECT task_name, status, traceback FROM django_celery_results_taskresult WHERE task_id = ?"
    # The Report row says failed before the worker stores the FAILURE: wait for it.
    assert launcher.wait_for(lambda: (query(stack["db"], sql, task_id) or (None, None))[1] == "FAILURE", 10)
    result = query(stack["db"], sql, task_id)
    assert result[:2] == (TASK_NAME, "FAILURE") and "ReportError" in result[2]
    _, html = browser.get(page)
    assert "任务失败" in html and "故意失败" in html


def test_beat_starts_with_the_database_scheduler(stack, module_broker):
    beat = start_beat("django_demo", broker=module_broker, cwd=str(DJANGO_DIR), env=stack["env"])
    try:
        assert "DatabaseScheduler" in beat.log()
        assert beat.display.startswith("celery -A django_demo beat")
    finally:
        beat.cleanup()
    assert not beat.schedule_dir.exists()


def test_report_exists_logs_what_the_worker_sees_before_it_stores_the_result(stack, module_broker):
    """Chapter 05 waits for this log line inside a transaction, then commits."""
    from celery import Celery

    browser = Browser(stack["server"].url)
    report_id = int(browser.submit_report("看得见的报表", rows=1).strip("/").split("/")[-1])
    client = Celery("client", broker=module_broker.url, set_as_current=False)
    sql = "SELECT status, result FROM django_celery_results_taskresult WHERE task_id = ?"

    def stored(task_id: str) -> bool:
        return (query(stack["db"], sql, task_id) or ("",))[0] == "SUCCESS"

    try:
        for pk, found in ((report_id, "True"), (10**6, "False")):
            mark = stack["worker"].mark()
            task_id = client.send_task("reports.tasks.report_exists", args=(pk,)).id
            line = stack["worker"].wait_for_log(f"report {pk} visible to the worker:", 30, since=mark)
            assert line.endswith(f"report {pk} visible to the worker: {found}") and task_id in line
            assert launcher.wait_for(lambda: stored(task_id), 30)  # noqa: B023 - used at once, in this iteration
            assert query(stack["db"], sql, task_id)[1] == found.lower()  # the JSON result
    finally:
        client.close()
