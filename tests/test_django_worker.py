"""django_demo end to end through real processes: an embedded broker, a real
`celery -A django_demo worker`, a real `manage.py runserver`, and a SQLite
file that all of them share (migrated by `manage.py migrate` beforehand, with
the local user made by `manage.py create_course_admin`).

The pytest-django test database lives in this process only, which a worker
cannot see, so this module does not use it: it talks HTTP to the server, as a
logged-in user, and reads the database file with the sqlite3 module.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import secrets
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

import psutil
import pytest

import launcher
from launcher.django_procs import start_beat
from tests.django_stack import django_stack, query
from tests.helpers import DJANGO_DIR

TASK_NAME = "reports.tasks.generate_report"
#: What the page says about the demo's failure (a report of 4 rows fails at row 3).
DEMO_FAILURE = "第 3 行出错（演示用的故意失败）。"
#: reports.watchdog.CRASHED: the task's worker process died under it.
CRASHED = "worker 在生成报表时意外退出，任务没有完成。"
STEP_SECONDS = "0.1"
#: The lost-task deadline (REPORT_LOST_AFTER_SECONDS), long here: a report whose
#: pool process was killed must be seen failed at once, from the task's FAILURE
#: (WorkerLostError), never from this deadline, even on a loaded machine.
LOST_AFTER_SECONDS = 30.0
ERROR_ID = re.compile(r"[0-9a-f]{8}")
REPORT_PATH = re.compile(r"/reports/([0-9a-f-]{36})/")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, module_broker):
    """Database file (with the local user), worker and server for this module; all stopped at the end."""
    with django_stack(tmp_path_factory.mktemp("django_demo"), module_broker, step_seconds=STEP_SECONDS,
                      REPORT_LOST_AFTER_SECONDS=f"{LOST_AFTER_SECONDS:g}") as running:
        yield running


@dataclass
class Response:
    status: int
    url: str
    body: str
    content_type: str

    @property
    def path(self) -> str:
        return urllib.parse.urlparse(self.url).path

    def json(self) -> dict:
        assert self.content_type == "application/json", (self.status, self.content_type, self.body[:200])
        return json.loads(self.body)


def csrf_token(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


class Browser:
    """Just enough of a browser: cookies (session, CSRF), form posts, redirects."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def open(self, path: str, fields: dict | None = None) -> Response:
        """GET ``path``, or POST ``fields`` to it; redirects followed; 4xx and 5xx answered, not raised."""
        data = None if fields is None else urllib.parse.urlencode(fields).encode()
        request = urllib.request.Request(self.base_url + path, data=data,
                                         headers={"Referer": self.base_url + path})
        try:
            with self.opener.open(request, timeout=20) as r:
                return Response(r.status, r.geturl(), r.read().decode(), r.headers.get_content_type())
        except urllib.error.HTTPError as e:
            with e:
                return Response(e.code, e.geturl(), e.read().decode(), e.headers.get_content_type())

    def get(self, path: str) -> Response:
        return self.open(path)

    def post_form(self, page: str, action: str, fields: dict) -> Response:
        """POST ``fields`` to ``action`` with the CSRF token of the form on ``page``, as a browser would."""
        form = self.get(page)
        assert form.status == 200, (page, form.status)
        return self.open(action, {"csrfmiddlewaretoken": csrf_token(form.body), **fields})

    def json(self, path: str) -> dict:
        response = self.get(path)
        assert response.status == 200, (path, response.status, response.body[:200])
        return response.json()

    def log_in(self, user: str, password: str) -> None:
        """Through the login page, as a person would."""
        response = self.post_form("/accounts/login/", "/accounts/login/",
                                  {"username": user, "password": password, "next": "/"})
        assert (response.status, response.path) == (200, "/"), \
            f"login as {user!r} failed: {response.status} {response.url}"

    def submit_report(self, title: str, rows: int, fail: bool = False) -> str:
        """Post the form like a browser would; returns the report page's path."""
        fields = {"title": title, "rows": str(rows)}
        if fail:
            fields["fail_on_purpose"] = "on"
        response = self.post_form("/", "/", fields)
        assert response.status == 200 and REPORT_PATH.fullmatch(response.path), (response.status, response.url)
        return response.path


def logged_in(stack, user: str | None = None, password: str | None = None) -> Browser:
    """A Browser logged in as ``user`` (default: the stack's local user)."""
    browser = Browser(stack["server"].url)
    default_user, default_password = stack["auth"]
    browser.log_in(user or default_user, password or default_password)
    return browser


def report_id_of(path: str) -> str:
    return REPORT_PATH.fullmatch(path).group(1)


def report_row(stack, report_id: str, columns: str) -> tuple:
    """Columns of a Report row. (SQLite keeps a UUIDField as 32 hex digits, without dashes.)"""
    return query(stack["db"], f"SELECT {columns} FROM reports_report WHERE id = ?", uuid.UUID(report_id).hex)


def report_files(stack) -> list[str]:
    """Every file in MEDIA_ROOT/reports, temporary (hidden .part) ones included."""
    folder = stack["media"] / "reports"
    return sorted(os.listdir(folder)) if folder.is_dir() else []


def files_of(stack, report_id: str) -> list[str]:
    return [name for name in report_files(stack) if report_id in name]


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


def wait_until_running(browser: Browser, status_path: str, timeout: float = 30) -> dict:
    """Poll until the report shows progress (its task is past its first row)."""
    status: dict = {}

    def running() -> bool:
        status.update(browser.json(status_path))
        assert status["status"] in ("pending", "running"), f"finished before we looked: {status}"
        return status["status"] == "running" and status["progress"] > 0

    assert launcher.wait_for(running, timeout, interval=0.02), f"the report never ran: {status}"
    return status


@contextmanager
def celery_client(broker):
    """A Celery app of our own on the stack's broker, as another program would have (not django_demo's)."""
    from celery import Celery

    client = Celery("client", broker=broker.url, set_as_current=False)
    try:
        yield client
    finally:
        client.close()


def create_user(stack, username: str) -> tuple[str, str]:
    """Another user, made with `manage.py shell`; the password travels in the environment, not argv."""
    password = secrets.token_urlsafe(18)
    code = ("import os; from django.contrib.auth import get_user_model; "
            f"get_user_model().objects.create_user({username!r}, password=os.environ['TEST_USER_PASSWORD'])")
    launcher.manage("shell", "-c", code, env={**stack["env"], "TEST_USER_PASSWORD": password})
    return username, password


def test_report_goes_from_form_to_download_through_the_worker(stack):
    browser = logged_in(stack)
    page = browser.submit_report("集成测试报表", rows=5)
    report_id = report_id_of(page)

    status, seen = poll_until_finished(browser, f"/reports/{report_id}/status/")
    assert status == {"status": "done", "progress": 100, "message": None, "error_id": None,
                      "download_url": f"/reports/{report_id}/download/", "retry_url": None}
    assert any(0 < p < 100 for p in seen), f"no progress seen in between: {seen}"

    row = report_row(stack, report_id, "status, progress, file, task_id, finished")
    name = f"report-{report_id}-{row[3][:8]}.csv"
    assert row[:3] == ("done", 100, f"reports/{name}") and row[4] is not None
    assert files_of(stack, report_id) == [name]  # and no temporary .part file left behind
    csv_file = stack["media"] / row[2]
    assert csv_file.read_text(encoding="utf-8").splitlines()[:2] == ["row,value", "1,1"]
    downloaded = browser.get(status["download_url"])
    assert downloaded.status == 200
    assert downloaded.body == csv_file.read_bytes().decode("utf-8")  # CSV rows end in \r\n

    # result_extended: the TaskResult row knows the task's name and arguments.
    # The task marks the Report row done just before it returns, and the worker
    # stores the result just after: wait for that (it is STARTED until then).
    sql = "SELECT task_name, status, task_args, result FROM django_celery_results_taskresult WHERE task_id = ?"
    assert launcher.wait_for(lambda: (query(stack["db"], sql, row[3]) or (None, None))[1] == "SUCCESS", 10)
    result = query(stack["db"], sql, row[3])
    assert result[0] == TASK_NAME and result[1] == "SUCCESS"
    assert report_id in result[2]
    assert json.loads(result[3]) == row[2]
    assert row[3] in stack["worker"].log()


def test_failing_report_shows_a_message_and_an_error_id_never_the_exception(stack):
    browser = logged_in(stack)
    mark = stack["worker"].mark()
    page = browser.submit_report("会失败的报表", rows=4, fail=True)
    report_id = report_id_of(page)
    status, _ = poll_until_finished(browser, page + "status/")
    assert status["status"] == "failed" and status["download_url"] is None
    assert status["message"] == DEMO_FAILURE
    assert ERROR_ID.fullmatch(status["error_id"])
    assert status["retry_url"] == f"/reports/{report_id}/retry/"
    raw = browser.get(page + "status/").body
    assert "ReportError" not in raw and "Traceback" not in raw and ".py" not in raw
    assert files_of(stack, report_id) == []

    # The details are in the worker's log, under the error id: the line, then its traceback.
    line = stack["worker"].wait_for_log(f"report {report_id} failed, error id {status['error_id']}", 10,
                                        since=mark)
    log = stack["worker"].log(mark).splitlines()
    start = log.index(line) + 1
    end = next((i for i in range(start, len(log)) if log[i].startswith("[")), len(log))  # the next record
    traceback = log[start:end]
    assert traceback[0] == "Traceback (most recent call last):", log[start - 1:end]
    assert traceback[-1] == f"reports.tasks.ReportError: {DEMO_FAILURE}", log[start - 1:end]

    # The task still ends in FAILURE, with its traceback in the TaskResult row (the admin shows it).
    task_id = report_row(stack, report_id, "task_id")[0]
    sql = "SELECT task_name, status, traceback FROM django_celery_results_taskresult WHERE task_id = ?"
    # The Report row says failed before the worker stores the FAILURE: wait for it.
    assert launcher.wait_for(lambda: (query(stack["db"], sql, task_id) or (None, None))[1] == "FAILURE", 10)
    result = query(stack["db"], sql, task_id)
    assert result[:2] == (TASK_NAME, "FAILURE") and "ReportError" in result[2]

    html = browser.get(page).body
    assert "任务失败" in html and DEMO_FAILURE in html and status["error_id"] in html
    assert 'id="retry"' in html
    assert "ReportError" not in html and "Traceback" not in html


def test_the_same_task_run_twice_leaves_one_report_and_one_file(stack, module_broker):
    """A message delivered twice (same task id, same arguments): while the first
    run works, and after it is done. Only the first run touches the report."""
    browser = logged_in(stack)
    rows = 20  # 2 s of work: the second message arrives well before the first run ends
    page = browser.submit_report("发了两次的任务", rows=rows)
    report_id = report_id_of(page)
    task_id = report_row(stack, report_id, "task_id")[0]
    nothing_to_do = f"report {report_id} is not waiting for this task: nothing to do"

    with celery_client(module_broker) as client:
        wait_until_running(browser, page + "status/")
        mark = stack["worker"].mark()
        client.send_task(TASK_NAME, args=(report_id,), task_id=task_id)
        line = stack["worker"].wait_for_log(nothing_to_do, 30, since=mark)
        assert task_id in line
        assert browser.json(page + "status/")["status"] == "running"

        status, _ = poll_until_finished(browser, page + "status/")
        assert status["status"] == "done"
        columns = "status, progress, file, task_id, heartbeat, finished, message, error_id"
        done = report_row(stack, report_id, columns)

        mark = stack["worker"].mark()
        client.send_task(TASK_NAME, args=(report_id,), task_id=task_id)
        stack["worker"].wait_for_log(nothing_to_do, 30, since=mark)

    assert report_row(stack, report_id, columns) == done
    assert done[:4] == ("done", 100, f"reports/report-{report_id}-{task_id[:8]}.csv", task_id)
    assert files_of(stack, report_id) == [f"report-{report_id}-{task_id[:8]}.csv"]
    assert not [name for name in report_files(stack) if name.endswith(".part")]
    assert (stack["media"] / done[2]).read_text(encoding="utf-8").splitlines() == \
        ["row,value"] + [f"{n},{n * n}" for n in range(1, rows + 1)]


def test_another_users_reports_answer_404_and_are_not_listed(stack):
    owner = logged_in(stack)
    done_page = owner.submit_report("管理员的报表", rows=1)
    failed_page = owner.submit_report("管理员的失败报表", rows=2, fail=True)
    assert poll_until_finished(owner, done_page + "status/")[0]["status"] == "done"
    assert poll_until_finished(owner, failed_page + "status/")[0]["status"] == "failed"
    failed_before = report_row(stack, report_id_of(failed_page), "status, task_id, error_id")

    other = logged_in(stack, *create_user(stack, "second"))
    assert other.get(done_page).status == 404
    assert other.get(done_page + "download/").status == 404
    status = other.get(done_page + "status/")
    assert status.status == 404 and status.json() == {"detail": "没有这个报表。"}
    assert other.post_form("/", failed_page + "retry/", {}).status == 404
    assert report_row(stack, report_id_of(failed_page), "status, task_id, error_id") == failed_before
    # The owner still gets them.
    assert owner.get(done_page).status == owner.get(done_page + "download/").status == 200

    # The form page lists a user's own reports only.
    mine = other.submit_report("第二个用户的报表", rows=1)
    poll_until_finished(other, mine + "status/")
    other_list, owner_list = other.get("/").body, owner.get("/").body
    assert "第二个用户的报表" in other_list and "管理员的报表" not in other_list
    assert "管理员的报表" in owner_list and "第二个用户的报表" not in owner_list
    assert owner.get(mine).status == 404


def test_without_a_login_pages_redirect_and_the_status_answers_401(stack):
    report_page = logged_in(stack).submit_report("要登录才能看的报表", rows=1)
    anonymous = Browser(stack["server"].url)

    form = anonymous.get("/")
    assert (form.status, form.path, urllib.parse.urlparse(form.url).query) == (200, "/accounts/login/", "next=/")
    assert 'name="password"' in form.body and "登录" in form.body
    detail = anonymous.get(report_page)
    assert detail.path == "/accounts/login/" and "要登录才能看的报表" not in detail.body
    status = anonymous.get(report_page + "status/")
    assert status.status == 401 and status.json() == {"detail": "请先登录。"}


def pool_child_running(stack, broker, task_id: str, timeout: float = 10) -> int:
    """The pid of the worker's pool process (ForkPoolWorker) running ``task_id``:
    the worker says which (`celery inspect active`), psutil confirms it is its child."""
    children = {p.pid for p in psutil.Process(stack["worker"].pid).children()}
    found: list[int] = []
    with celery_client(broker) as client:
        def active() -> bool:
            # The module's broker has one worker: its reply is the only one to wait for.
            replies = client.control.inspect(timeout=2, limit=1).active() or {}
            found.extend(t["worker_pid"] for tasks in replies.values() for t in tasks
                         if t["id"] == task_id and t.get("worker_pid"))
            return bool(found)

        assert launcher.wait_for(active, timeout), f"the worker does not say it runs {task_id}"
    assert found[0] in children, f"pid {found[0]} is not a child of the worker ({children})"
    return found[0]


def crash_a_report(stack, broker, browser: Browser) -> tuple[str, str, dict, float]:
    """Start a report, SIGKILL the pool process running it, poll until the page would
    show the end. Returns (report id, task id, final status, seconds from kill to failed)."""
    page = browser.submit_report("会被中断的报表", rows=20)  # 2 s of work at 0.1 s a row
    report_id = report_id_of(page)
    wait_until_running(browser, page + "status/")
    task_id = report_row(stack, report_id, "task_id")[0]
    pid = pool_child_running(stack, broker, task_id)
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    status, _ = poll_until_finished(browser, page + "status/", timeout=LOST_AFTER_SECONDS * 2)
    elapsed = time.monotonic() - killed
    # The pool replaces the process it lost: the worker keeps working for the next tests.
    assert launcher.wait_for(lambda: len(psutil.Process(stack["worker"].pid).children()) == 2, 20)
    return report_id, task_id, status, elapsed


def test_a_report_whose_pool_process_is_killed_fails_at_once(stack, module_broker):
    """WorkerLostError: the worker records the task as failed; the page notices
    that at its next poll, not after the lost-task deadline."""
    browser = logged_in(stack)
    mark = stack["worker"].mark()
    report_id, task_id, status, elapsed = crash_a_report(stack, module_broker, browser)
    print(f"pool process killed -> status failed: {elapsed:.2f} s")
    # Which path fired, from what it says rather than how long it took (usually 0.05 s;
    # up to about 5 s when the worker's main process notices the exit only at its
    # periodic pool check): CRASHED is the message of the task's FAILURE
    # (WorkerLostError); the lost-task deadline (30 s here) would have said SILENT.
    assert status["status"] == "failed" and status["message"] == CRASHED, status
    assert ERROR_ID.fullmatch(status["error_id"]) and status["retry_url"] == f"/reports/{report_id}/retry/"
    # The record the watchdog read: the task's own result, FAILURE with WorkerLostError.
    stored = query(stack["db"], "SELECT status, result FROM django_celery_results_taskresult WHERE task_id = ?",
                   task_id)
    assert stored[0] == "FAILURE" and "WorkerLostError" in stored[1], stored
    assert 0 < report_row(stack, report_id, "progress")[0] < 100
    assert files_of(stack, report_id) == []  # neither the CSV nor a .part file
    assert "WorkerLostError" in stack["worker"].log(mark)
    stack["server"].wait_for_log(f"report {report_id}: task {task_id} is lost (running); "
                                 f"error id {status['error_id']}", 10, since=0)


def test_retry_after_a_crash_runs_again_under_a_new_task_id(stack, module_broker):
    browser = logged_in(stack)
    report_id, old_task_id, status, _ = crash_a_report(stack, module_broker, browser)
    assert status["status"] == "failed"
    page = f"/reports/{report_id}/"

    response = browser.post_form(page, status["retry_url"], {})
    assert (response.status, response.path) == (200, page)
    new_task_id = report_row(stack, report_id, "task_id")[0]
    assert new_task_id and new_task_id != old_task_id

    status, _ = poll_until_finished(browser, page + "status/")
    assert status == {"status": "done", "progress": 100, "message": None, "error_id": None,
                      "download_url": page + "download/", "retry_url": None}
    name = f"report-{report_id}-{new_task_id[:8]}.csv"
    assert report_row(stack, report_id, "file")[0] == f"reports/{name}"
    assert files_of(stack, report_id) == [name]
    assert not [n for n in report_files(stack) if n.endswith(".part")]


def test_beat_starts_with_the_database_scheduler(stack, module_broker):
    beat = start_beat("django_demo", broker=module_broker, cwd=str(DJANGO_DIR), env=stack["env"])
    try:
        assert "DatabaseScheduler" in beat.log()
        assert "celery -A django_demo beat" in beat.display
        # Its schedule is in the database: no schedule file, neither made nor shown.
        assert beat.schedule_dir is None and "--schedule" not in beat.display
    finally:
        beat.cleanup()


def test_report_exists_logs_what_the_worker_sees_before_it_stores_the_result(stack, module_broker):
    """Chapter 05 waits for this log line inside a transaction, then commits."""
    report_id = report_id_of(logged_in(stack).submit_report("看得见的报表", rows=1))
    sql = "SELECT status, result FROM django_celery_results_taskresult WHERE task_id = ?"

    def stored(task_id: str) -> bool:
        return (query(stack["db"], sql, task_id) or ("",))[0] == "SUCCESS"

    with celery_client(module_broker) as client:
        for pk, found in ((report_id, "True"), (str(uuid.uuid4()), "False")):
            mark = stack["worker"].mark()
            task_id = client.send_task("reports.tasks.report_exists", args=(pk,)).id
            line = stack["worker"].wait_for_log(f"report {pk} visible to the worker:", 30, since=mark)
            assert line.endswith(f"report {pk} visible to the worker: {found}") and task_id in line
            assert launcher.wait_for(lambda: stored(task_id), 30)  # noqa: B023 - used at once, in this iteration
            assert query(stack["db"], sql, task_id)[1] == found.lower()  # the JSON result
