"""Chapter 08's own-project blocks: a chord (``welcome_all``) and CELERY_TASK_ROUTES
sending the welcome e-mail to its own queue ``email``, added to the project of chapter
05's five steps, assembled as printed (tests/own_project.py). Two real workers, as
the chapter says: ``celery -A proj worker`` (the default queue) and ``celery -A proj
worker -Q email -n email@%h``."""

from __future__ import annotations

import pytest

from tests import own_project
from tests.own_project import checks


@pytest.fixture(scope="module")
def chapter():
    with own_project.running("08", workers={"w1": (), "email": ["email"]}) as running:
        yield running


def received(worker, task: str) -> int:
    """How many messages of ``task`` this worker received."""
    return sum(1 for line in worker.log().splitlines() if f"Task {task}[" in line and line.endswith(" received"))


@checks("08:proj/settings.py")
def test_the_welcome_email_goes_to_the_email_queue_and_its_worker(chapter):
    result = chapter.project.django("""
from django.contrib.auth import get_user_model
from myapp.tasks import send_welcome_email

erin = get_user_model().objects.create_user("erin", "erin@example.com")
result = send_welcome_email.delay(erin.pk).get(timeout=15)
""")
    assert result == "erin", result
    chapter.workers["email"].wait_for_log("To: erin@example.com", 10, since=0)
    assert received(chapter.workers["email"], "myapp.tasks.send_welcome_email") == 1
    assert received(chapter.worker, "myapp.tasks.send_welcome_email") == 0, chapter.worker.tail(20)


@checks("08:myapp/tasks.py", "08:proj/settings.py")
def test_the_chord_sends_one_email_per_user_then_counts_them(chapter):
    mark = chapter.workers["email"].mark()
    result = chapter.project.django("""
from django.contrib.auth import get_user_model
from myapp.tasks import welcome_all

users = [get_user_model().objects.create_user(name, f"{name}@example.com")
         for name in ("fay", "gus", "hal")]
result = welcome_all([user.pk for user in users]).get(timeout=15)
""")
    assert result == 3, result
    emails = chapter.workers["email"].log(mark)
    assert all(f"To: {name}@example.com" in emails for name in ("fay", "gus", "hal")), emails
    # The header went to `email`, the callback stayed on the default queue `celery`.
    assert received(chapter.worker, "myapp.tasks.count_sent") == 1, chapter.worker.tail(20)
    assert received(chapter.workers["email"], "myapp.tasks.count_sent") == 0
