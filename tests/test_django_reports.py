"""django_demo without a worker: forms, models, views, the status endpoint,
the task's code as a plain function call, management commands and checks.

The real worker is in test_django_worker.py. Nothing here runs a task in eager
mode; the only messages sent go to this module's own embedded broker.

Django is set up by tests/conftest.py (tests.helpers.configure_django), without
leaving DJANGO_SETTINGS_MODULE in os.environ: every Celery program the other
tests start would inherit it and install Celery's Django fix-up.
"""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from contextlib import contextmanager
from datetime import timedelta

import pytest
from celery.exceptions import Ignore
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from django_celery_results.models import TaskResult

import launcher
from reports import tasks as report_tasks
from reports import watchdog
from reports.forms import ReportForm
from reports.models import Report
from reports.tasks import UNEXPECTED, ReportError, generate_report
from tests.helpers import DJANGO_DIR, returns_within

TASK_NAME = "reports.tasks.generate_report"


@pytest.fixture(autouse=True)
def current_celery_app():
    """Make django_demo's app the current one. @shared_task resolves to the
    *current* app each time it is used; in a Django process that is always
    django_demo's, but in this pytest process another test may have imported
    demo_tasks.tasks afterwards, whose app (created with Celery's defaults,
    as in the article) became the current one (see tests/test_apps.py)."""
    from celery import _state

    from django_demo import celery_app

    previous = _state.get_current_app()
    celery_app.set_current()
    yield celery_app
    previous.set_current()


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@contextmanager
def celery_broker(url: str):
    """Point the project's Celery app (in this process) at ``url``, with fresh connections."""
    from django_demo import celery_app

    def reset():
        if celery_app._pool is not None:
            celery_app._pool.force_close_all()
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    old = celery_app.conf.broker_url
    reset()
    celery_app.conf.broker_url = url
    try:
        yield celery_app
    finally:
        reset()
        celery_app.conf.broker_url = old


# --- The Celery app and its settings --------------------------------------------

def test_shared_task_binds_to_the_projects_app():
    assert generate_report.app.main == "django_demo"


def test_celery_app_is_configured_from_django_settings():
    from django_demo import celery_app

    assert celery_app.main == "django_demo"
    conf = celery_app.conf
    assert conf.accept_content == ["json"]
    assert conf.task_serializer == conf.result_serializer == "json"
    assert conf.result_backend == "django-db" and conf.result_extended is True
    assert conf.beat_scheduler == "django_celery_beat.schedulers:DatabaseScheduler"
    assert conf.worker_send_task_events is True and conf.task_send_sent_event is True
    assert TASK_NAME in celery_app.tasks  # found by autodiscover_tasks()


def test_every_celery_setting_has_a_documentation_link_above_it():
    lines = (DJANGO_DIR / "django_demo" / "settings.py").read_text(encoding="utf-8").splitlines()
    names = [i for i, line in enumerate(lines) if line.startswith("CELERY_")]
    assert len(names) >= 10
    for i in names:
        comments = []
        for above in reversed(lines[:i]):
            if not above.startswith("#"):
                break
            comments.append(above)
        assert any("https://docs.celeryq.dev/" in c for c in comments), f"no link above {lines[i]}"


def test_sqlite_is_set_up_for_a_web_process_and_a_worker_writing_at_once(settings):
    options = settings.DATABASES["default"]["OPTIONS"]
    assert options["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in options["init_command"]


# --- Forms and models -----------------------------------------------------------

@pytest.mark.parametrize("data, field, message", [
    ({"title": "   ", "rows": 5}, "title", "必填"),
    ({"title": "月报", "rows": 0}, "rows", "1 到 20"),
    ({"title": "月报", "rows": 21}, "rows", "1 到 20"),
    ({"title": "月报", "rows": "abc"}, "rows", ""),
])
def test_form_rejects_bad_input(data, field, message):
    form = ReportForm(data)
    assert not form.is_valid()
    assert message in " ".join(form.errors[field])


def test_form_accepts_good_input_and_strips_the_title():
    form = ReportForm({"title": "  月报  ", "rows": 3, "fail_on_purpose": "on"})
    assert form.is_valid(), form.errors
    assert form.cleaned_data == {"title": "月报", "rows": 3, "fail_on_purpose": True}


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("learner", password="a-long-test-password-1")


@pytest.fixture
def stranger(django_user_model):
    return django_user_model.objects.create_user("stranger", password="a-long-test-password-2")


@pytest.fixture
def user_client(client, owner):
    client.force_login(owner)
    return client


def new_report(owner, **fields) -> Report:
    fields.setdefault("task_id", str(uuid.uuid4()))
    fields.setdefault("heartbeat", timezone.now())
    return Report.objects.create(owner=owner, title=fields.pop("title", "t"), **fields)


@pytest.mark.django_db
def test_ids_are_random_uuids_not_counters(owner):
    first, second = new_report(owner), new_report(owner)
    assert isinstance(first.pk, uuid.UUID) and first.pk.version == 4
    assert first.pk != second.pk
    assert str(first.pk) in first.get_absolute_url()


@pytest.mark.django_db
def test_status_dict_of_each_state(owner):
    report = new_report(owner, rows=2)
    assert report.as_status() == {"status": "pending", "progress": 0, "message": None, "error_id": None,
                                  "download_url": None, "retry_url": None}
    report.status, report.progress, report.file = Report.Status.DONE, 100, "reports/r.csv"
    assert report.as_status()["download_url"] == reverse("reports:download", args=[report.pk])
    report.status, report.message, report.error_id = Report.Status.FAILED, "第 3 行出错。", "0badc0de"
    assert report.as_status()["download_url"] is None
    assert report.as_status()["retry_url"] == reverse("reports:retry", args=[report.pk])
    assert (report.as_status()["message"], report.as_status()["error_id"]) == ("第 3 行出错。", "0badc0de")


# --- The task's code, called as a plain function (no worker, no eager mode) -------

@pytest.fixture
def progress_calls(monkeypatch):
    calls = []
    monkeypatch.setattr(generate_report, "update_state",
                        lambda state, meta: calls.append((state, meta)))
    return calls


def run_task(report: Report, task_id: str | None = None, **kwargs):
    """Call the task's function in this process as the worker would, with the
    request (its task id) a worker sets: a plain call, not eager mode."""
    generate_report.push_request(id=task_id or report.task_id)
    try:
        return generate_report.run(str(report.pk), **kwargs)
    finally:
        generate_report.pop_request()


def files(media_root) -> list[str]:
    folder = media_root / "reports"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.django_db
def test_task_function_writes_the_csv_and_reports_progress(owner, progress_calls, media_root):
    report = new_report(owner, rows=3)
    relative = run_task(report, step_seconds=0)
    report.refresh_from_db()
    assert (report.status, report.progress, report.file) == ("done", 100, relative)
    assert relative == f"reports/report-{report.pk}-{report.task_id[:8]}.csv"
    assert report.finished is not None
    assert (media_root / relative).read_text(encoding="utf-8").splitlines() == \
        ["row,value", "1,1", "2,4", "3,9"]
    assert progress_calls == [("PROGRESS", {"current": i, "total": 3}) for i in (1, 2, 3)]
    assert files(media_root) == [f"report-{report.pk}-{report.task_id[:8]}.csv"]  # no .part left


@pytest.mark.django_db
def test_running_the_task_twice_leaves_the_finished_report_alone(owner, progress_calls, media_root):
    report = new_report(owner, rows=2)
    first = run_task(report, step_seconds=0)
    report.refresh_from_db()
    with pytest.raises(Ignore):  # the same message delivered again: Celery records nothing for it
        run_task(report, step_seconds=0)
    again = Report.objects.get(pk=report.pk)
    assert (again.status, again.file, again.finished, again.progress) == \
        ("done", first, report.finished, 100)
    assert files(media_root) == [first.split("/")[-1]]


@pytest.mark.django_db
def test_a_task_the_report_does_not_wait_for_does_nothing(owner, progress_calls, media_root):
    report = new_report(owner, rows=2)
    with pytest.raises(Ignore):  # an old attempt
        run_task(report, task_id=str(uuid.uuid4()), step_seconds=0)
    report.refresh_from_db()
    assert (report.status, report.progress) == ("pending", 0)
    assert progress_calls == [] and files(media_root) == []


@pytest.mark.django_db
def test_failing_on_purpose_stores_a_short_message_and_logs_the_details(owner, progress_calls, media_root,
                                                                        caplog):
    report = new_report(owner, rows=4, fail_on_purpose=True)
    with caplog.at_level(logging.ERROR, logger="reports.tasks"), pytest.raises(ReportError):
        run_task(report, step_seconds=0)
    report.refresh_from_db()
    assert report.status == "failed" and report.message == "第 3 行出错（演示用的故意失败）。"
    assert re.fullmatch(r"[0-9a-f]{8}", report.error_id)
    logged = caplog.text
    assert f"report {report.pk} failed, error id {report.error_id}" in logged and "Traceback" in logged
    assert len(progress_calls) == 2  # rows 1 and 2 done, row 3 failed
    assert files(media_root) == []


@pytest.mark.django_db
def test_an_unexpected_error_shows_no_exception_text_and_leaves_no_partial_file(owner, progress_calls,
                                                                                 media_root, monkeypatch):
    report = new_report(owner, rows=2)
    real_writer = report_tasks.csv.DictWriter

    class BrokenWriter(real_writer):
        def writerows(self, rows):
            super().writerows(rows[:1])
            raise OSError(28, "No space left on device: '/srv/secret/path'")

    monkeypatch.setattr(report_tasks.csv, "DictWriter", BrokenWriter)
    with pytest.raises(OSError):
        run_task(report, step_seconds=0)
    report.refresh_from_db()
    assert (report.status, report.message) == ("failed", UNEXPECTED)
    assert "secret" not in json.dumps(report.as_status()) and "OSError" not in json.dumps(report.as_status())
    assert files(media_root) == []  # the half-written temporary file is gone too


@pytest.mark.django_db
def test_a_task_given_up_on_stops_at_its_next_step(owner, progress_calls, media_root, monkeypatch):
    report = new_report(owner, rows=5)

    def sleep(seconds):  # the watchdog gives up on the report while row 2 is being made
        if len(progress_calls) == 1:
            Report.objects.filter(pk=report.pk).update(status=Report.Status.FAILED, message="lost")

    monkeypatch.setattr(report_tasks.time, "sleep", sleep)
    assert run_task(report, step_seconds=0) is None
    report.refresh_from_db()
    assert (report.status, report.message, report.progress) == ("failed", "lost", 20)
    assert files(media_root) == []


# --- Noticing a lost task ----------------------------------------------------------

@pytest.mark.django_db
def test_a_running_report_without_progress_past_the_deadline_is_failed(owner, settings, caplog):
    settings.REPORT_LOST_AFTER_SECONDS = 10
    fresh = new_report(owner, status="running", heartbeat=timezone.now() - timedelta(seconds=5))
    stale = new_report(owner, status="running", heartbeat=timezone.now() - timedelta(seconds=11))
    assert watchdog.notice_lost(fresh).status == "running"
    with caplog.at_level(logging.WARNING, logger="reports.watchdog"):
        lost = watchdog.notice_lost(stale)
    assert lost.status == "failed" and lost.message == "任务丢失：10 秒没有收到进度（worker 可能被停止了）。"
    assert lost.error_id in caplog.text and str(lost.pk) in caplog.text
    assert lost.as_status()["retry_url"]


@pytest.mark.django_db
def test_giving_up_removes_what_a_task_killed_while_writing_left(owner, settings, media_root):
    settings.REPORT_LOST_AFTER_SECONDS = 10
    stale = new_report(owner, status="running", heartbeat=timezone.now() - timedelta(seconds=11))
    other = new_report(owner, status="running")
    folder = media_root / "reports"
    folder.mkdir(parents=True)
    for report in (stale, other):  # what tasks.write_csv's temporary files are called
        stem = report_tasks.report_path(report.pk, report.task_id).stem
        (folder / f".{stem}-k1ll3d.part").write_text("row,value\n1,")
    watchdog.notice_lost(stale)
    assert files(media_root) == [f".{report_tasks.report_path(other.pk, other.task_id).stem}-k1ll3d.part"]


@pytest.mark.django_db
def test_a_report_no_worker_started_is_failed_after_the_queue_timeout(owner, settings):
    settings.REPORT_QUEUE_TIMEOUT_SECONDS = 60
    waiting = new_report(owner, heartbeat=timezone.now() - timedelta(seconds=30))
    forgotten = new_report(owner, heartbeat=timezone.now() - timedelta(seconds=61))
    assert watchdog.notice_lost(waiting).status == "pending"
    assert watchdog.notice_lost(forgotten).message.startswith("等了 60 秒仍没有 worker 接手")


@pytest.mark.django_db
def test_a_task_celery_recorded_as_failed_fails_its_report_at_once(owner):
    report = new_report(owner, status="running")  # heartbeat: now
    TaskResult.objects.create(task_id=report.task_id, status="FAILURE",
                              result=json.dumps({"exc_type": "WorkerLostError", "exc_message": []}))
    assert watchdog.notice_lost(report).message == watchdog.CRASHED


@pytest.mark.django_db
def test_finished_reports_are_left_alone(owner, settings):
    settings.REPORT_LOST_AFTER_SECONDS = 0
    done = new_report(owner, status="done", heartbeat=timezone.now() - timedelta(days=1))
    assert watchdog.notice_lost(done).status == "done"


# --- Views ------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("name", ["create", "detail", "download"])
def test_pages_need_a_login(client, owner, name):
    args = [] if name == "create" else [new_report(owner).pk]
    response = client.get(reverse(f"reports:{name}", args=args))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_status_answers_401_json_without_a_login(client, owner):
    response = client.get(reverse("reports:status", args=[new_report(owner).pk]))
    assert response.status_code == 401 and "登录" in response.json()["detail"]


@pytest.mark.django_db
def test_the_login_page_is_in_chinese_and_logs_in(client, owner):
    page = client.get(reverse("login"))
    assert page.status_code == 200 and "登录" in page.content.decode()
    response = client.post(reverse("login"), {"username": "learner", "password": "a-long-test-password-1"})
    assert response.status_code == 302 and response["Location"] == reverse("reports:create")


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["detail", "status", "download"])
def test_another_users_report_answers_404(client, owner, stranger, name):
    report = new_report(owner, status="done", file="reports/r.csv")
    client.force_login(stranger)
    assert client.get(reverse(f"reports:{name}", args=[report.pk])).status_code == 404


@pytest.mark.django_db
def test_another_users_report_cannot_be_retried(client, owner, stranger, django_capture_on_commit_callbacks):
    report = new_report(owner, status="failed", message="m")
    client.force_login(stranger)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert client.post(reverse("reports:retry", args=[report.pk])).status_code == 404
    assert callbacks == [] and Report.objects.get(pk=report.pk).status == "failed"


@pytest.mark.django_db
def test_the_form_page_lists_only_the_users_own_reports(user_client, owner, stranger):
    new_report(owner, title="我的报表")
    new_report(stranger, title="别人的报表")
    body = user_client.get(reverse("reports:create")).content.decode()
    assert "我的报表" in body and "别人的报表" not in body


@pytest.mark.django_db
def test_form_page_shows_the_form_in_chinese(user_client):
    response = user_client.get(reverse("reports:create"))
    assert response.status_code == 200
    assert "新建报表" in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("data", [{}, {"title": "", "rows": ""}], ids=["nothing", "blank"])
def test_an_empty_post_shows_the_forms_errors(user_client, data, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = user_client.post(reverse("reports:create"), data)
    body = response.content.decode()
    assert response.status_code == 400
    assert 'id="form-error"' in body and body.count("这个字段是必填项。") == 2
    assert callbacks == [] and Report.objects.count() == 0


@pytest.mark.django_db
def test_bad_input_shows_the_message_and_queues_nothing(user_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = user_client.post(reverse("reports:create"), {"title": "月报", "rows": 0})
    assert response.status_code == 400
    assert "行数必须在 1 到 20 之间" in response.content.decode()
    assert callbacks == [] and Report.objects.count() == 0


@pytest.mark.django_db
def test_good_input_stores_a_row_and_queues_on_commit(user_client, owner, django_capture_on_commit_callbacks):
    # In a test transaction the commit never happens: the callback is captured, not run.
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = user_client.post(reverse("reports:create"), {"title": "月报", "rows": 3})
    report = Report.objects.get()
    assert response.status_code == 302 and response["Location"] == report.get_absolute_url()
    assert report.owner == owner and report.status == "pending" and len(report.task_id) == 36
    assert len(callbacks) == 1


@pytest.mark.django_db(transaction=True)
def test_good_input_sends_one_message_with_the_rows_id(client, module_broker, django_user_model):
    client.force_login(django_user_model.objects.create_user("sender", password="a-long-test-password-3"))
    with celery_broker(module_broker.url):
        response = client.post(reverse("reports:create"), {"title": "月报", "rows": 3})
    report = Report.objects.get()
    assert response.status_code == 302
    with module_broker.client() as conn:
        queued = conn.lrange("celery", 0, -1)
        conn.delete("celery")
    assert len(queued) == 1
    message = json.loads(queued[0])
    assert message["headers"]["task"] == TASK_NAME
    assert message["headers"]["id"] == report.task_id
    assert message["headers"]["argsrepr"] == repr((str(report.pk),))  # an id, not an object


@pytest.mark.django_db(transaction=True)
def test_broker_down_answers_503_and_leaves_no_row(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("sender", password="a-long-test-password-3"))
    url = f"redis://127.0.0.1:{launcher.free_port()}/0"  # nobody listens there
    with celery_broker(url):
        response = returns_within(30, lambda: client.post(reverse("reports:create"), {"title": "月报", "rows": 3}),
                                  "a report request with the broker down")
    assert response.status_code == 503
    body = response.content.decode()
    assert "无法连接消息代理" in body and "broker is unreachable" in body
    assert Report.objects.count() == 0


@pytest.mark.django_db
def test_retry_sends_a_failed_report_again_under_a_new_task_id(user_client, owner,
                                                               django_capture_on_commit_callbacks):
    report = new_report(owner, status="failed", message="m", error_id="0badc0de", progress=50)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = user_client.post(reverse("reports:retry", args=[report.pk]))
    again = Report.objects.get(pk=report.pk)
    assert response.status_code == 302 and response["Location"] == report.get_absolute_url()
    assert (again.status, again.progress, again.message, again.error_id) == ("pending", 0, "", "")
    assert again.task_id != report.task_id and len(callbacks) == 1


@pytest.mark.django_db
def test_retry_leaves_a_report_that_has_not_failed_alone(user_client, owner, django_capture_on_commit_callbacks):
    report = new_report(owner, status="done", file="reports/r.csv")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        user_client.post(reverse("reports:retry", args=[report.pk]))
    assert callbacks == [] and Report.objects.get(pk=report.pk).task_id == report.task_id
    assert user_client.get(reverse("reports:retry", args=[report.pk])).status_code == 405


@pytest.mark.django_db
def test_detail_page_has_the_progress_bar_and_polls_the_status_url(user_client, owner):
    report = new_report(owner, title="季度报表", rows=2)
    body = user_client.get(report.get_absolute_url()).content.decode()
    assert "季度报表" in body and '<progress id="progress"' in body
    assert reverse("reports:status", args=[report.pk]) in body and "fetch(" in body


@pytest.mark.django_db
def test_status_endpoint_and_download(user_client, owner, media_root):
    report = new_report(owner, rows=2)
    status_url = reverse("reports:status", args=[report.pk])
    assert user_client.get(status_url).json()["status"] == "pending"
    assert user_client.get(reverse("reports:download", args=[report.pk])).status_code == 404

    (media_root / "reports").mkdir(parents=True)
    (media_root / "reports" / "r.csv").write_text("row,value\n1,1\n", encoding="utf-8")
    Report.objects.filter(pk=report.pk).update(status="done", progress=100, file="reports/r.csv")
    data = user_client.get(status_url).json()
    assert data["status"] == "done" and data["progress"] == 100
    download = user_client.get(data["download_url"])
    assert download.status_code == 200 and b"".join(download.streaming_content) == b"row,value\n1,1\n"
    assert "attachment" in download["Content-Disposition"]


@pytest.mark.django_db
def test_status_endpoint_answers_404_json_for_unknown_reports(user_client):
    response = user_client.get(reverse("reports:status", args=[uuid.uuid4()]))
    assert response.status_code == 404 and response.json() == {"detail": "没有这个报表。"}


@pytest.mark.django_db
def test_the_status_endpoint_notices_a_lost_task(user_client, owner, settings):
    settings.REPORT_LOST_AFTER_SECONDS = 2
    report = new_report(owner, status="running", heartbeat=timezone.now() - timedelta(seconds=3))
    data = user_client.get(reverse("reports:status", args=[report.pk])).json()
    assert data["status"] == "failed" and data["message"].startswith("任务丢失")
    assert data["retry_url"] == reverse("reports:retry", args=[report.pk])


@pytest.mark.django_db
def test_admin_lists_reports_task_results_and_periodic_tasks(admin_client):
    for name in ("reports_report", "django_celery_results_taskresult", "django_celery_beat_periodictask"):
        assert admin_client.get(reverse(f"admin:{name}_changelist")).status_code == 200


# --- Management commands ----------------------------------------------------------

@pytest.mark.django_db
def test_create_course_admin_takes_the_password_from_the_environment_or_a_file(settings, django_user_model,
                                                                                monkeypatch, tmp_path):
    settings.DEBUG = True
    monkeypatch.setenv("COURSE_ADMIN_PASSWORD", "first-pass-123")
    call_command("create_course_admin", stdout=io.StringIO())
    assert django_user_model.objects.get(username="admin").check_password("first-pass-123")
    (tmp_path / "pw").write_text("another-pass-123\n")
    call_command("create_course_admin", "--password-file", str(tmp_path / "pw"), stdout=io.StringIO())
    user = django_user_model.objects.get(username="admin")
    assert user.is_superuser and user.is_staff and user.check_password("another-pass-123")


@pytest.mark.django_db
def test_create_course_admin_has_no_default_password(settings, django_user_model, monkeypatch):
    settings.DEBUG = True
    monkeypatch.delenv("COURSE_ADMIN_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="No password"):
        call_command("create_course_admin")
    with pytest.raises(CommandError, match="unrecognized arguments"):
        call_command("create_course_admin", "--password", "on-the-command-line")
    assert not django_user_model.objects.exists()


@pytest.mark.django_db
def test_create_course_admin_refuses_when_debug_is_false(settings, django_user_model, monkeypatch):
    settings.DEBUG = False
    monkeypatch.setenv("COURSE_ADMIN_PASSWORD", "first-pass-123")
    with pytest.raises(CommandError, match="DEBUG is false"):
        call_command("create_course_admin")
    assert not django_user_model.objects.exists()


# --- Settings, loaded in a fresh process ----------------------------------------------

#: Every variable the settings read: a "bare" environment has none of them.
SETTINGS_VARIABLES = ("DJANGO_SETTINGS_MODULE", "DEBUG", "SECRET_KEY", "SECRET_KEY_FILE", "ALLOWED_HOSTS",
                      "CSRF_TRUSTED_ORIGINS", "REDIS_URL", "REDIS_PASSWORD", "REDIS_PASSWORD_FILE",
                      "DATABASE_URL", "DATABASE_PASSWORD", "DATABASE_PASSWORD_FILE", "MEDIA_ROOT",
                      "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_HSTS_PRELOAD", "BEHIND_TLS_PROXY")
SHOW_SETTINGS = ("from django.conf import settings as s; import json; "
                 "print(json.dumps({'DEBUG': s.DEBUG, 'KEY': s.SECRET_KEY, 'BROKER': s.CELERY_BROKER_URL, "
                 "'DB_PASSWORD': s.DATABASES['default'].get('PASSWORD', '')}))")


def manage(*args: str, tmp_path, database: bool = True, **env: str):
    """manage.py in a fresh process with none of the settings' variables but ``env``
    (and a throw-away database, never the repo's, unless ``database=False``)."""
    if database:
        env.setdefault("DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite3'}")
    return launcher.manage(*args, check=False, unset=SETTINGS_VARIABLES, env=env)


def settings_of(tmp_path, **env: str) -> dict:
    done = manage("shell", "--verbosity=0", "-c", SHOW_SETTINGS, tmp_path=tmp_path, **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_bare_environment_means_debug_off_and_no_key_refuses_to_start(tmp_path):
    done = manage("check", tmp_path=tmp_path, database=False)
    assert done.returncode != 0
    assert "SECRET_KEY is not set, and DEBUG is off (the default)" in done.stderr
    assert settings_of(tmp_path, SECRET_KEY="k" * 50)["DEBUG"] is False


def test_debug_on_without_a_key_makes_up_one_per_process(tmp_path):
    first, second = settings_of(tmp_path, DEBUG="true"), settings_of(tmp_path, DEBUG="true")
    assert first["DEBUG"] is True and len(first["KEY"]) >= 50 and first["KEY"] != second["KEY"]


def test_secrets_can_come_from_files(tmp_path):
    for name, value in (("key", "file-key-" + "z" * 40), ("redis", "r/p@ss"), ("db", "db-pass")):
        (tmp_path / name).write_text(value + "\n")
    shown = settings_of(tmp_path, SECRET_KEY_FILE=str(tmp_path / "key"),
                        REDIS_URL="redis://celery@redis.example:6379/0",
                        REDIS_PASSWORD_FILE=str(tmp_path / "redis"),
                        DATABASE_PASSWORD_FILE=str(tmp_path / "db"))
    assert shown == {"DEBUG": False, "KEY": "file-key-" + "z" * 40,
                     "BROKER": "redis://celery:r%2Fp%40ss@redis.example:6379/0", "DB_PASSWORD": "db-pass"}


def test_a_missing_secret_file_says_which(tmp_path):
    done = manage("check", tmp_path=tmp_path, SECRET_KEY_FILE=str(tmp_path / "nope"))
    assert done.returncode != 0 and f"SECRET_KEY_FILE={tmp_path / 'nope'}: cannot read it" in done.stderr


def test_a_sqlite_file_in_a_folder_that_is_gone_is_refused_at_start(tmp_path):
    """A command printed by a chapter, pasted after its kernel stopped: its .scratch folder is gone."""
    gone = tmp_path / "chapter05-gone" / "db.sqlite3"
    done = manage("check", tmp_path=tmp_path, DEBUG="true", DATABASE_URL=f"sqlite:///{gone}")
    assert done.returncode != 0
    assert f"DATABASE_URL names the SQLite file {gone}, whose folder does not exist" in done.stderr
    assert manage("check", tmp_path=tmp_path, DEBUG="true").returncode == 0  # its folder exists: fine


def test_migrations_are_up_to_date(tmp_path):
    done = manage("makemigrations", "--check", "--dry-run", tmp_path=tmp_path, DEBUG="true")
    assert done.returncode == 0, done.stdout + done.stderr


def test_deploy_check_fails_under_the_development_settings(tmp_path):
    done = manage("check", "--deploy", "--fail-level", "WARNING", tmp_path=tmp_path, DEBUG="true")
    assert done.returncode != 0
    for warning in ("security.W018", "security.W008", "security.W004"):
        assert warning in done.stderr


def test_deploy_check_passes_with_production_settings(tmp_path):
    done = manage("check", "--deploy", "--fail-level", "WARNING", tmp_path=tmp_path,
                  SECRET_KEY="k" + "x7Q2-pL9#zR4!vN8" * 4, ALLOWED_HOSTS="reports.example.com")
    assert done.returncode == 0, done.stdout + done.stderr


# --- Every page as rendered: no template syntax shows as text ----------------------

#: Template syntax that must never reach a page: a multi-line {# #} (it is one line
#: only) or a broken {% %} tag shows up as text, as actions.html's comment once did.
TEMPLATE_SYNTAX = re.compile(r"\{#|#\}|\{%|%\}")


def rendered_pages(client, owner) -> dict[str, str]:
    """Every page of the project a learner opens, as the server renders it (the
    report pages with a report in each state, the login pages, and the admin: its
    index, and the list, add and change pages of every registered model)."""
    from django.contrib import admin
    from django.urls import NoReverseMatch

    pages = {}

    def get(url: str) -> None:
        response = client.get(url)
        assert response.status_code == 200, f"{url}: {response.status_code}"
        if response["Content-Type"].startswith("text/html"):
            pages[url] = response.content.decode()

    get(reverse("login"))
    client.force_login(owner)
    for name in ("password_change", "password_change_done", "reports:create"):
        get(reverse(name))
    for status in ("queued", "running", "done", "failed"):
        report = new_report(owner, status=status, error_id="0badc0de" if status == "failed" else "",
                            message="第 3 行出错（演示用的故意失败）。" if status == "failed" else "")
        get(reverse("reports:detail", args=[report.pk]))
    get(reverse("admin:index"))
    for model in admin.site._registry:
        meta = model._meta
        for view, args in (("changelist", []), ("add", [])):
            try:
                get(reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=args))
            except NoReverseMatch:
                continue
        first = model._default_manager.first()
        if first is not None:
            get(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[first.pk]))
    return pages


@pytest.mark.django_db
def test_no_rendered_page_shows_template_syntax(client, django_user_model):
    admin_user = django_user_model.objects.create_superuser("boss", password="a-long-test-password-3")
    pages = rendered_pages(client, admin_user)
    assert len(pages) >= 15, sorted(pages)  # the report pages, the login pages, the admin's
    shown = {url: TEMPLATE_SYNTAX.findall(html) for url, html in pages.items()}
    assert not {url: found for url, found in shown.items() if found}, "template syntax shown as text"


def test_the_check_above_catches_a_multi_line_comment():
    from django.template import engines

    page = engines["django"].from_string("{# What can be done\n with a report #}<p>ok</p>").render({})
    assert TEMPLATE_SYNTAX.findall(page) == ["{#", "#}"]


# --- chapter 05's view test: django_demo/reports/tests.py, printed by the chapter, run as printed ----------

def manage_py_test(project_dir) -> str:
    """``DEBUG=true python manage.py test reports -v 2`` in ``project_dir``, as a learner's terminal
    runs it (none of the course's settings); its output. A failing test exits non-zero."""
    import os
    import subprocess
    import sys

    from launcher.shown import without_settings

    env = {**without_settings(os.environ), "DEBUG": "true", "PYTHONPATH": str(project_dir)}
    done = subprocess.run([sys.executable, "manage.py", "test", "reports", "-v", "2"], cwd=project_dir, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    return f"exit {done.returncode}\n{done.stdout}{done.stderr}"


def test_the_view_test_the_chapter_prints_passes():
    output = manage_py_test(DJANGO_DIR)
    assert output.startswith("exit 0\n"), output
    assert re.search(r"^test_the_task_is_sent_after_commit_with_the_reports_id .* \.\.\. ok$", output, re.M), output
    assert re.search(r"^test_without_a_login_the_view_does_not_run .* \.\.\. ok$", output, re.M), output
    assert re.search(r"^Ran 2 tests ", output, re.M), output


def test_the_view_test_fails_without_its_login(tmp_path):
    """The review's finding: the snippet posted to create_report (@login_required) without logging
    in, got a 302 and captured no callback. The same test without force_login must fail."""
    import shutil

    copy = tmp_path / "django_demo"
    shutil.copytree(DJANGO_DIR, copy, ignore=shutil.ignore_patterns("db.sqlite3*", "media", "__pycache__",
                                                                     "*.egg-info", "staticfiles"))
    tests_py = copy / "reports" / "tests.py"
    printed = tests_py.read_text()
    login = "        self.client.force_login(self.user)   # create_report is @login_required\n"
    assert login in printed
    tests_py.write_text(printed.replace(login, ""))
    output = manage_py_test(copy)
    assert output.startswith("exit 1\n"), output
    assert re.search(r"^test_the_task_is_sent_after_commit_with_the_reports_id .* \.\.\. FAIL$", output, re.M), output
    assert "AssertionError: 0 != 1" in output, output
