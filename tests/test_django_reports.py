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
from contextlib import contextmanager

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

import launcher
from reports.forms import ReportForm
from reports.models import Report
from reports.tasks import ReportError, generate_report
from tests.helpers import DJANGO_DIR, UNREACHABLE_BROKER, returns_within

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


@pytest.mark.django_db
def test_status_dict_of_each_state():
    report = Report.objects.create(title="t", rows=2)
    assert report.as_status() == {"status": "pending", "progress": 0, "error": None, "download_url": None}
    report.status, report.progress, report.file = Report.Status.DONE, 100, "reports/report-1.csv"
    assert report.as_status()["download_url"] == reverse("reports:download", args=[report.pk])
    report.status, report.error = Report.Status.FAILED, "ReportError: boom"
    assert report.as_status()["download_url"] is None
    assert report.as_status()["error"] == "ReportError: boom"


# --- The task's code, called as a plain function (no worker, no eager mode) -------

@pytest.fixture
def progress_calls(monkeypatch):
    calls = []
    monkeypatch.setattr(generate_report, "update_state",
                        lambda state, meta: calls.append((state, meta)))
    return calls


@pytest.mark.django_db
def test_task_function_writes_the_csv_and_reports_progress(progress_calls, media_root):
    report = Report.objects.create(title="t", rows=3)
    relative = generate_report(report.pk, step_seconds=0)
    report.refresh_from_db()
    assert (report.status, report.progress, report.file) == ("done", 100, relative)
    assert report.finished is not None
    assert (media_root / relative).read_text(encoding="utf-8").splitlines() == \
        ["row,value", "1,1", "2,4", "3,9"]
    assert progress_calls == [("PROGRESS", {"current": i, "total": 3}) for i in (1, 2, 3)]


@pytest.mark.django_db
def test_task_function_that_fails_on_purpose_stores_its_error(progress_calls, media_root):
    report = Report.objects.create(title="t", rows=4, fail_on_purpose=True)
    with pytest.raises(ReportError, match="故意失败"):
        generate_report(report.pk, step_seconds=0)
    report.refresh_from_db()
    assert report.status == "failed" and report.error.startswith("ReportError: ")
    assert len(progress_calls) == 2  # rows 1 and 2 done, row 3 failed
    assert not (media_root / "reports").exists() or not any((media_root / "reports").iterdir())


# --- Views ------------------------------------------------------------------------

@pytest.mark.django_db
def test_form_page_shows_the_form_in_chinese(client):
    response = client.get(reverse("reports:create"))
    assert response.status_code == 200
    assert "新建报表" in response.content.decode()


@pytest.mark.django_db
def test_bad_input_shows_the_message_and_queues_nothing(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(reverse("reports:create"), {"title": "月报", "rows": 0})
    assert response.status_code == 200
    assert "行数必须在 1 到 20 之间" in response.content.decode()
    assert callbacks == [] and Report.objects.count() == 0


@pytest.mark.django_db
def test_good_input_stores_a_row_and_queues_on_commit(client, django_capture_on_commit_callbacks):
    # In a test transaction the commit never happens: the callback is captured, not run.
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("reports:create"), {"title": "月报", "rows": 3})
    report = Report.objects.get()
    assert response.status_code == 302 and response["Location"] == report.get_absolute_url()
    assert report.status == "pending" and len(report.task_id) == 36
    assert len(callbacks) == 1


@pytest.mark.django_db(transaction=True)
def test_good_input_sends_one_message_with_the_rows_id(client, module_broker):
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
    assert message["headers"]["argsrepr"] == f"({report.pk},)"


@pytest.mark.django_db(transaction=True)
def test_broker_down_answers_503_and_leaves_no_row(client):
    url = f"redis://127.0.0.1:{launcher.free_port()}/0"  # nobody listens there
    with celery_broker(url):
        response = returns_within(30, lambda: client.post(reverse("reports:create"), {"title": "月报", "rows": 3}),
                                  "a report request with the broker down")
    assert response.status_code == 503
    body = response.content.decode()
    assert "无法连接消息代理" in body and "broker is unreachable" in body
    assert Report.objects.count() == 0


@pytest.mark.django_db
def test_detail_page_has_the_progress_bar_and_polls_the_status_url(client):
    report = Report.objects.create(title="季度报表", rows=2)
    body = client.get(report.get_absolute_url()).content.decode()
    assert "季度报表" in body and '<progress id="progress"' in body
    assert reverse("reports:status", args=[report.pk]) in body and "fetch(" in body


@pytest.mark.django_db
def test_status_endpoint_and_download(client, media_root):
    report = Report.objects.create(title="t", rows=2)
    status_url = reverse("reports:status", args=[report.pk])
    assert client.get(status_url).json() == {
        "status": "pending", "progress": 0, "error": None, "download_url": None}
    assert client.get(reverse("reports:download", args=[report.pk])).status_code == 404

    (media_root / "reports").mkdir(parents=True)
    (media_root / "reports" / "r.csv").write_text("row,value\n1,1\n", encoding="utf-8")
    Report.objects.filter(pk=report.pk).update(status="done", progress=100, file="reports/r.csv")
    data = client.get(status_url).json()
    assert data["status"] == "done" and data["progress"] == 100
    download = client.get(data["download_url"])
    assert download.status_code == 200 and b"".join(download.streaming_content) == b"row,value\n1,1\n"
    assert "attachment" in download["Content-Disposition"]


@pytest.mark.django_db
def test_status_endpoint_shows_the_error_and_404s_for_unknown_reports(client):
    report = Report.objects.create(title="t", status="failed", error="ReportError: boom")
    assert client.get(reverse("reports:status", args=[report.pk])).json()["error"] == "ReportError: boom"
    assert client.get(reverse("reports:status", args=[report.pk + 1])).status_code == 404


@pytest.mark.django_db
def test_admin_lists_reports_task_results_and_periodic_tasks(admin_client):
    for name in ("reports_report", "django_celery_results_taskresult", "django_celery_beat_periodictask"):
        assert admin_client.get(reverse(f"admin:{name}_changelist")).status_code == 200


# --- Management commands ----------------------------------------------------------

@pytest.mark.django_db
def test_create_course_admin_creates_then_updates(settings, django_user_model):
    settings.DEBUG = True
    call_command("create_course_admin", stdout=io.StringIO())
    call_command("create_course_admin", "--password", "another-pass-123", stdout=io.StringIO())
    user = django_user_model.objects.get(username="admin")
    assert user.is_superuser and user.is_staff and user.check_password("another-pass-123")


@pytest.mark.django_db
def test_create_course_admin_refuses_when_debug_is_false(settings, django_user_model):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG is false"):
        call_command("create_course_admin")
    assert not django_user_model.objects.exists()


def manage(*args: str, tmp_path, **env: str):
    """manage.py in a fresh process with a throw-away database (never the repo's),
    and none of the settings this process may have in its environment."""
    return launcher.manage(*args, check=False, unset=("DJANGO_SETTINGS_MODULE", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS"),
                           env={"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
                                "REDIS_URL": UNREACHABLE_BROKER, **env})


def test_migrations_are_up_to_date(tmp_path):
    done = manage("makemigrations", "--check", "--dry-run", tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_deploy_check_fails_under_the_development_defaults(tmp_path):
    done = manage("check", "--deploy", "--fail-level", "WARNING", tmp_path=tmp_path)
    assert done.returncode != 0
    for warning in ("security.W018", "security.W009", "security.W008", "security.W004"):
        assert warning in done.stderr


def test_deploy_check_passes_with_production_settings(tmp_path):
    done = manage("check", "--deploy", "--fail-level", "WARNING", tmp_path=tmp_path,
                  DEBUG="false", SECRET_KEY="k" + "x7Q2-pL9#zR4!vN8" * 4, ALLOWED_HOSTS="reports.example.com")
    assert done.returncode == 0, done.stdout + done.stderr


def test_production_settings_refuse_to_start_without_a_secret_key(tmp_path):
    done = manage("check", tmp_path=tmp_path, DEBUG="false")
    assert done.returncode != 0 and "SECRET_KEY must be set" in done.stderr
