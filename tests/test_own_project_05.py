"""Chapter 05's own-project blocks (the five steps: INSTALLED_APPS and the CELERY_ settings are two
blocks of proj/settings.py; the async view, the view's test),
assembled as printed into a fresh ``django-admin startproject proj`` + ``startapp
myapp`` and run against a real broker and a real ``celery -A proj worker``
(tests/own_project.py says how)."""

from __future__ import annotations

import re

import pytest

from tests import own_project
from tests.own_project import checks

EMAIL_TIMEOUT = 15.0


@pytest.fixture(scope="module")
def chapter():
    with own_project.running("05") as running:
        yield running


def wait_for_email(chapter, to: str, since: int = 0) -> str:
    """The worker printed the e-mail (the console backend of step 3) to ``to``; return its log from ``since``."""
    chapter.worker.wait_for_log(f"To: {to}", EMAIL_TIMEOUT, since=since)
    return chapter.worker.log(since)


@checks("05:proj/celery.py", "05:proj/__init__.py", "05:proj/settings.py", "05:proj/settings.py#2", "05:myapp/tasks.py")
def test_the_task_runs_on_the_worker_and_its_result_is_in_the_database(chapter):
    mark = chapter.worker.mark()
    result = chapter.project.django("""
from django.contrib.auth import get_user_model
from django_celery_results.models import TaskResult
from myapp.tasks import send_welcome_email

user = get_user_model().objects.create_user("bob", "bob@example.com")
sent = send_welcome_email.delay(user.pk)
result = {"returned": sent.get(timeout=15), "app": send_welcome_email.app.main,
          "stored": TaskResult.objects.get(task_id=sent.id).status}
""")
    assert result == {"returned": "bob", "app": "proj", "stored": "SUCCESS"}, result
    log = wait_for_email(chapter, "bob@example.com", mark)
    assert "bob，欢迎加入！" in log, log


@checks("05:myapp/views.py", "05:myapp/templates/myapp/signup.html", "05:proj/urls.py")
def test_signing_up_in_the_page_sends_the_email_after_the_commit(chapter):
    mark = chapter.worker.mark()
    # As a browser does: the page, its CSRF token, the form posted back, the redirect followed.
    result = chapter.project.django("""
from django.test import Client
from django.test.utils import setup_test_environment

setup_test_environment()          # the test client's host, "testserver", is allowed
browser = Client(enforce_csrf_checks=True)
page = browser.get("/signup/")
answer = browser.post("/signup/", {
    "csrfmiddlewaretoken": browser.cookies["csrftoken"].value, "username": "carol",
    "email": "carol@example.com", "password1": "correct-horse-battery", "password2": "correct-horse-battery",
}, follow=True)
result = {"page": page.status_code, "form": "password2" in page.content.decode(),
          "redirects": answer.redirect_chain, "after": answer.content.decode()}
""")
    assert result["page"] == 200 and result["form"], result
    assert result["redirects"] == [["/signup/", 302]], result
    assert "注册成功" in result["after"], result["after"]
    wait_for_email(chapter, "carol@example.com", mark)


@checks("05:myapp/views.py#2", "05:proj/urls.py#2")
def test_the_async_view_sends_the_email_for_the_user_logged_in(chapter):
    mark = chapter.worker.mark()
    result = chapter.project.django("""
from django.contrib.auth import get_user_model
from django.test import Client
from django.test.utils import setup_test_environment

setup_test_environment()
dave = get_user_model().objects.create_user("dave", "dave@example.com")
anonymous = Client().post("/welcome/resend/")
browser = Client()
browser.force_login(dave)
answer = browser.post("/welcome/resend/")
result = {"anonymous": anonymous.status_code, "status": answer.status_code, "json": answer.json()}
""")
    assert result == {"anonymous": 302, "status": 200, "json": {"queued": True}}, result
    wait_for_email(chapter, "dave@example.com", mark)


@checks("05:myapp/tests.py")
def test_the_view_test_passes_with_manage_py_test(chapter):
    done = chapter.project.manage("test", "--verbosity=2")   # a failing test exits non-zero: ProcessError
    output = done.stdout + done.stderr
    assert re.search(r"^test_the_welcome_email_is_sent_after_commit .* \.\.\. ok$", output, re.M), output
    assert re.search(r"^Ran 1 test ", output, re.M), output
