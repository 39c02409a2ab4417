"""What the learner sees is what runs: the command the course shows for each
kind of process the chapters start (``proc.display``, launcher.shown), pasted
into a clean terminal -- only PATH and HOME from outside, at the repository's
root, .venv activated -- does the same thing, proved by a round trip:

- a worker (plain app and the Django project): the test sends a task with a
  fresh id, the terminal's worker runs it, the test reads the result from the
  chapter's result backend;
- Flower: its ``/api/task/result/<id>`` answers SUCCESS for such a task;
- the Django server: it serves a row the test created in the chapter's database;
- beat (plain app and the Django project's database scheduler): its first due
  task reaches the chapter's queue;
- the flaky service: it answers a call;
- the SMTP server: it stores a mail in its Maildir;
- the bot receiver: it accepts a signed message;
- the crawl site: it serves a page and logs it.

The chapter's environment is made as ``launcher.prepare_chapter`` makes it: its
own Redis database, a scratch folder in the repository with a migrated SQLite
database, DEBUG on and this installation's SECRET_KEY.
"""

from __future__ import annotations

import json
import os
import shlex
import smtplib
import sys
import time
import urllib.request
import uuid
from base64 import b64encode
from email.message import EmailMessage
from pathlib import Path

import pytest
import redis
import requests
from celery import Celery

import launcher
from launcher.chapter import chapter_url
from launcher.credentials import (
    FLOWER_FILE,
    SECRET_KEY_FILE,
    admin_auth,
    dingtalk_secret,
    flower_auth,
    local_django_env,
    secrets_dir,
)
from launcher.paths import DJANGO_DIR, REPO_ROOT
from launcher.scratch import make_scratch, remove_scratch
from launcher.services import smtp_greets
from launcher.shown import repo_relative, shell_command
from services.bot_receiver import dingtalk_sign
from services.smtp_sink import read_mailbox
from tests.helpers import patched_environ

CHAPTER = 9  # a database no notebook of this test process uses


@pytest.fixture(scope="module")
def chapter(module_broker):
    """A chapter's environment in this process, as prepare_chapter(django=True) makes it."""
    url = chapter_url(module_broker.url, CHAPTER)
    scratch = make_scratch(f"chapter{CHAPTER:02d}-")
    env = {"REDIS_URL": url, "DATABASE_URL": f"sqlite:///{scratch / 'db.sqlite3'}",
           "MEDIA_ROOT": str(scratch / "media"), **local_django_env()}
    try:
        with patched_environ(env):
            launcher.manage("migrate", "--noinput")
            launcher.manage("create_course_admin")
            yield {"url": url, "scratch": scratch}
    finally:
        remove_scratch(scratch)


def clean_shell(name: str, command: str) -> launcher.Proc:
    """``command`` typed into a new terminal: only PATH and HOME from outside, at
    the repository's root, after activating the venv."""
    activate = Path(sys.prefix) / "bin" / "activate"
    script = f"set -e\nsource {shlex.quote(str(activate))}\n{command}"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    return launcher.Proc(name, ["bash", "-c", script], env=env, cwd=REPO_ROOT)


def shown_then_stopped(start, *args, **kwargs) -> str:
    """What the course shows for a process: start it as a chapter does, take its display, stop it."""
    proc = start(*args, **kwargs)
    try:
        return proc.display
    finally:
        proc.cleanup()


def in_terminal(name: str, command: str, ready: str):
    terminal = clean_shell(name, command)
    terminal.wait_for_log(ready, 60, since=0, stop_on_failure=True,
                          advice=f"the shown command was:\n{command}")
    return terminal


def django_shell(code: str) -> str:
    """The last line ``manage.py shell -c CODE`` prints, in the chapter's database."""
    return launcher.manage("shell", "-c", code).stdout.strip().splitlines()[-1]


NEW_REPORT = ("from reports.models import Report; from django.contrib.auth.models import User; "
              "print(Report.objects.create(owner=User.objects.get(username='admin'), title='roundtrip').pk)")


def client(url: str) -> Celery:
    return Celery("roundtrip", broker=url, backend=url, set_as_current=False)


def test_the_shown_command_names_every_setting_and_hides_secrets(chapter):
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # as chapter 05's kernel sets it, after a Run All
    try:
        worker = launcher.start_worker("django_demo", broker=chapter["url"], fast=True, name="shown")
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    try:
        shown = worker.display
        assert worker.settings["REDIS_URL"] == chapter["url"]
        for name in ("REDIS_URL", "DATABASE_URL", "MEDIA_ROOT", "DEBUG", "SECRET_KEY"):
            assert f"{name}=" in shown, f"{name} is set for the worker but not shown:\n{shown}"
        assert os.environ["SECRET_KEY"] not in shown
        assert f'SECRET_KEY="$(cat {secrets_dir() / SECRET_KEY_FILE})"' in shown  # the test run's own folder
        assert "COURSE_ADMIN_PASSWORD" not in shown  # only create_course_admin reads it
        assert "DJANGO_ALLOW_ASYNC_UNSAFE" not in shown  # the kernel's own (chapter 05), never a server's
        assert f"DATABASE_URL=sqlite:///{repo_relative(chapter['scratch'])}/db.sqlite3" in shown
        assert str(REPO_ROOT) not in shown and "/tmp/" not in shown.replace(str(secrets_dir()), "")
        assert shown.endswith(f"celery -A django_demo worker --loglevel=INFO -n shown@%h --concurrency=2 "
                              f"{' '.join(launcher.FAST_FLAGS)}")
    finally:
        worker.cleanup()
    plain = launcher.start_worker("demo_tasks.tasks", broker=chapter["url"], fast=True, name="plain")
    try:
        # A plain app's worker gets no Django setting: the command says all it needs.
        assert plain.display.startswith(f"REDIS_URL={chapter['url']} celery -A demo_tasks.tasks worker ")
        assert "\n" not in plain.display
    finally:
        plain.cleanup()


def test_an_apps_own_setting_from_the_kernel_is_given_and_shown(chapter, tmp_path, monkeypatch):
    """Chapter 08's kernel sets JIEBA_CACHE_DIR for its worker: the command says so."""
    cache = chapter["scratch"] / "jieba"
    monkeypatch.setenv("JIEBA_CACHE_DIR", str(cache))
    worker = launcher.start_worker("demo_tasks.tasks", broker=chapter["url"], fast=True, name="jieba")
    try:
        assert f"JIEBA_CACHE_DIR={repo_relative(cache)} " in worker.display
    finally:
        worker.cleanup()


def test_a_database_scheduler_gets_no_schedule_file(chapter):
    beat = launcher.start_beat("django_demo", broker=chapter["url"])
    try:
        assert "--schedule" not in beat.display and "DATABASE_URL=" in beat.display
    finally:
        beat.cleanup()


def test_a_secret_from_the_learners_own_variable_is_shown_as_that_variable():
    shown = shell_command([sys.executable, "-m", "celery", "-A", "x", "flower"],
                          settings={"FLOWER_BASIC_AUTH": "me:not-a-generated-password",
                                    "CELERY_BROKER_URL": "redis://me:s3cret@10.0.0.5:6379/0"})
    assert "not-a-generated-password" not in shown and "s3cret" not in shown
    assert 'FLOWER_BASIC_AUTH="$FLOWER_BASIC_AUTH"' in shown
    assert "CELERY_BROKER_URL=redis://me:***@10.0.0.5:6379/0" in shown


def test_a_process_outside_the_repository_root_is_shown_with_its_cd(chapter):
    shown = shell_command([sys.executable, "manage.py", "check"], cwd=DJANGO_DIR,
                          settings={"SECRET_KEY": os.environ["SECRET_KEY"]})
    # One command: a learner copying from its second line, or a cd that fails, does not run it elsewhere.
    # (The test run's secrets folder is outside the repository, so it is named by its path; a learner's
    # `.secrets/` reads `../.secrets/...` from django_demo/: tests/test_credentials.py.)
    key_file = secrets_dir() / SECRET_KEY_FILE
    assert shown == f'cd django_demo && \\\nSECRET_KEY="$(cat {key_file})" python manage.py check'


@pytest.mark.parametrize("app", ["demo_tasks.tasks", "django_demo"])
def test_a_shown_worker_command_runs_the_chapters_tasks_in_a_clean_terminal(chapter, app):
    shown = shown_then_stopped(launcher.start_worker, app, broker=chapter["url"], fast=True, name="roundtrip")
    terminal = in_terminal("terminal-worker", shown, " ready.")
    try:
        sender = client(chapter["url"])
        task_id = f"roundtrip-{uuid.uuid4()}"
        if app == "demo_tasks.tasks":
            result = sender.send_task("demo_tasks.tasks.add", (20, 22), task_id=task_id)
            assert result.get(timeout=30) == 42
        else:
            report_id = django_shell(NEW_REPORT)
            sender.send_task("reports.tasks.report_exists", (report_id,), task_id=task_id)
            terminal.wait_for_log(f"report {report_id} visible to the worker", 30, since=0)
            # The project keeps results in its database (django-celery-results): read it there.
            stored = django_shell("from django_celery_results.models import TaskResult; "
                                  f"r = TaskResult.objects.get(task_id={task_id!r}); print(r.status, r.result)")
            # True only if the terminal's worker reads the chapter's database.
            assert stored.split() == ["SUCCESS", "true"], stored
        assert task_id in terminal.log(), "the task ran somewhere else than in the terminal"
    finally:
        terminal.cleanup()


def test_shown_flower_command_serves_the_chapters_results_in_a_clean_terminal(chapter):
    shown_worker = shown_then_stopped(launcher.start_worker, "demo_tasks.tasks", broker=chapter["url"],
                                      fast=True, name="fl")
    shown_flower = shown_then_stopped(launcher.start_flower, "demo_tasks.tasks", broker=chapter["url"])
    password = flower_auth()[1]
    assert password not in shown_flower and f'FLOWER_BASIC_AUTH="$(cat {secrets_dir() / FLOWER_FILE})"' in shown_flower
    port = int(shown_flower.rsplit("--port=", 1)[1].split()[0])
    worker = in_terminal("terminal-worker", shown_worker, " ready.")
    flower = clean_shell("terminal-flower", shown_flower)
    try:
        flower.wait_until_listening(port, 60, answers=lambda: launcher.procs.http_answers(
            f"http://127.0.0.1:{port}/healthcheck", 0.5))
        result = client(chapter["url"]).send_task("demo_tasks.tasks.add", (1, 2), task_id=f"fl-{uuid.uuid4()}")
        assert result.get(timeout=30) == 3
        token = b64encode(":".join(flower_auth()).encode()).decode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/task/result/{result.id}",
                                         headers={"Authorization": f"Basic {token}"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            answer = json.load(reply)
        assert answer["state"] == "SUCCESS" and answer["result"] == 3, answer
    finally:
        launcher.stop_together([flower, worker])


def test_shown_django_server_command_serves_the_chapters_rows_in_a_clean_terminal(chapter):
    shown = shown_then_stopped(launcher.start_django_server, DJANGO_DIR)
    assert shown.splitlines()[-1].startswith("python django_demo/manage.py runserver --noreload 127.0.0.1:")
    port = int(shown.rsplit(":", 1)[1])
    report_id = django_shell(NEW_REPORT)
    server = clean_shell("terminal-django", shown)
    try:
        base = f"http://127.0.0.1:{port}"
        server.wait_until_listening(port, 60, answers=lambda: launcher.procs.http_answers(base + "/", 0.5))
        session = requests.Session()
        login = f"{base}/accounts/login/"
        session.get(login, timeout=10)
        user, password = admin_auth()
        reply = session.post(login, data={"username": user, "password": password,
                                          "csrfmiddlewaretoken": session.cookies["csrftoken"]},
                             headers={"Referer": login}, timeout=10)
        assert reply.ok, reply.text[:500]
        status = session.get(f"{base}/reports/{report_id}/status/", timeout=10)
        # 200 only if the terminal's server reads the chapter's database (its row, its user).
        assert status.status_code == 200, status.text[:500]
        assert status.json()["status"] == "pending"
    finally:
        server.cleanup()


@pytest.mark.parametrize("app", ["demo_tasks.periodic", "django_demo"])
def test_shown_beat_command_sends_to_the_chapters_queue_in_a_clean_terminal(chapter, app):
    queue = redis.Redis.from_url(chapter["url"])
    queue.delete("celery")
    if app == "django_demo":
        django_shell("from django_celery_beat.models import IntervalSchedule, PeriodicTask; "
                        "every = IntervalSchedule.objects.get_or_create(every=1, period='seconds')[0]; "
                        "PeriodicTask.objects.update_or_create(name='roundtrip', defaults=dict("
                        "interval=every, task='reports.tasks.heartbeat'))")
    shown = shown_then_stopped(launcher.start_beat, app, broker=chapter["url"])
    queue.delete("celery")  # what the course's own beat sent: only the terminal's counts
    beat = in_terminal("terminal-beat", shown, "beat: Starting...")
    try:
        assert launcher.wait_for(lambda: queue.llen("celery") > 0, 30), \
            f"nothing reached the chapter's queue from:\n{shown}\n{beat.tail(20)}"
        body = json.loads(queue.lindex("celery", 0))
        expected = "demo_tasks.periodic.tick" if app == "demo_tasks.periodic" else "reports.tasks.heartbeat"
        assert body["headers"]["task"] == expected
    finally:
        beat.cleanup()


def test_shown_flaky_service_command_answers_in_a_clean_terminal():
    shown = shown_then_stopped(launcher.start_flaky_service, unavailable=0, timeout=0, slow=0)
    assert shown.startswith("python -m services.flaky_service --port ")
    port = int(shown.split("--port ", 1)[1].split()[0])
    service = clean_shell("terminal-flaky", shown)
    try:
        url = f"http://127.0.0.1:{port}"
        service.wait_until_listening(port, 30, answers=lambda: launcher.procs.http_answers(url + "/health", 0.5))
        with urllib.request.urlopen(f"{url}/call?task=roundtrip&attempt=0", timeout=10) as reply:
            assert reply.status == 200
    finally:
        service.cleanup()


def test_shown_smtp_server_command_stores_mail_in_a_clean_terminal():
    scratch = make_scratch("shown-smtp-")
    try:
        shown = shown_then_stopped(launcher.start_smtp_server, scratch / "maildir")
        assert shown.startswith("python -m aiosmtpd -n -l 127.0.0.1:")
        port = int(shown.split("127.0.0.1:", 1)[1].split()[0])
        server = clean_shell("terminal-smtp", shown)
        try:
            server.wait_until_listening(port, 30, answers=lambda: smtp_greets("127.0.0.1", port, 0.5))
            message = EmailMessage()
            message["Subject"], message["From"], message["To"] = "往返", "a@example.com", "b@example.com"
            message.set_content("roundtrip")
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.send_message(message)
            assert [m["subject"] for m in read_mailbox(scratch / "maildir")] == ["往返"]
        finally:
            server.cleanup()
    finally:
        remove_scratch(scratch)


def test_shown_bot_receiver_command_accepts_a_signed_message_in_a_clean_terminal():
    shown = shown_then_stopped(launcher.start_bot_receiver)
    assert dingtalk_secret() not in shown and shown.startswith('DINGTALK_SECRET="$(cat ')
    port = int(shown.split("--port ", 1)[1].split()[0])
    receiver = clean_shell("terminal-bot", shown)
    try:
        url = f"http://127.0.0.1:{port}"
        receiver.wait_until_listening(port, 30, answers=lambda: launcher.procs.http_answers(url + "/health", 0.5))
        timestamp = round(time.time() * 1000)
        reply = requests.post(f"{url}/robot/send", json={"msgtype": "text", "text": {"content": "往返"}},
                              params={"access_token": "course-bot", "timestamp": timestamp,
                                      "sign": dingtalk_sign(dingtalk_secret(), timestamp)}, timeout=10)
        assert reply.json() == {"errcode": 0, "errmsg": "ok"}
    finally:
        receiver.cleanup()


def test_shown_crawl_site_command_serves_and_logs_in_a_clean_terminal():
    scratch = make_scratch("shown-crawl-")
    try:
        shown = shown_then_stopped(launcher.start_crawl_site, scratch / "site.log", pages=30)
        assert shown.startswith("python -m services.crawl_site --port ")
        port = int(shown.split("--port ", 1)[1].split()[0])
        site = clean_shell("terminal-crawl-site", shown)
        try:
            url = f"http://127.0.0.1:{port}"
            site.wait_until_listening(port, 30, answers=lambda: launcher.procs.http_answers(url + "/_health", 0.5))
            with urllib.request.urlopen(url + "/a/0.html", timeout=10) as reply:
                assert reply.status == 200
            assert '"path": "/a/0.html"' in (scratch / "site.log").read_text(encoding="utf-8")
        finally:
            site.cleanup()
    finally:
        remove_scratch(scratch)
