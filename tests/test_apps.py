"""One Celery app per chapter: importing the chapters' modules in any order,
each order in a fresh interpreter, gives every app the same configuration and
the same tasks. (Chapters share tasks by import, never by changing another
chapter's app.)

Which app is "current" does depend on the order, by Celery's design: an app
created with the defaults (the article's ``Celery('tasks', ...)``) becomes the
current one, and a Django project's @shared_task tasks use the current app.
The test pins that rule down, and that chapter 06's app does not take part in it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import permutations

import pytest

from tests.helpers import UNREACHABLE_BROKER

CHAPTER_MODULES = ("demo_tasks.tasks", "demo_tasks.periodic", "django_demo")

SNAPSHOT = """
import importlib, json, sys

import django

for name in sys.argv[1:]:
    importlib.import_module(name)
    if name == "django_demo":
        django.setup()

from celery import current_app
from celery.app.defaults import SETTING_KEYS

from demo_tasks import periodic, tasks
from django_demo import celery_app
from reports.tasks import generate_report


def describe(app):
    # Every Celery setting (a Django project's conf also carries Django's own settings).
    return {"main": app.main, "tasks": sorted(app.tasks),
            "conf": {key: repr(app.conf.get(key)) for key in sorted(SETTING_KEYS)}}


print(json.dumps({
    "demo_tasks.tasks": describe(tasks.app),
    "demo_tasks.periodic": describe(periodic.app),
    "django_demo": describe(celery_app),
    "generate_report's app": generate_report.app.main,
    "current app": current_app.main,
}))
"""


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory) -> dict[tuple[str, ...], dict]:
    """Every order of CHAPTER_MODULES -> what the apps look like after importing them in it."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(REDIS_URL=UNREACHABLE_BROKER, DEBUG="true",
               DATABASE_URL=f"sqlite:///{tmp_path_factory.mktemp('apps') / 'db.sqlite3'}")
    runs = {order: subprocess.Popen([sys.executable, "-c", SNAPSHOT, *order], env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for order in permutations(CHAPTER_MODULES)}
    found = {}
    for order, proc in runs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"importing in the order {order} failed:\n{err}"
        found[order] = json.loads(out)
    return found


def test_every_import_order_gives_the_same_apps(snapshots):
    (first_order, first), *others = snapshots.items()
    for order, snapshot in others:
        for part in CHAPTER_MODULES:
            assert snapshot[part] == first[part], f"{part} differs between {first_order} and {order}"


def test_shared_tasks_use_the_app_created_last_with_the_defaults(snapshots):
    for order, snapshot in snapshots.items():
        last = "django_demo" if order.index("django_demo") > order.index("demo_tasks.tasks") else "tasks"
        # demo_tasks.periodic's position never matters: its app is not made current.
        assert snapshot["generate_report's app"] == snapshot["current app"] == last, order


def test_each_chapter_has_its_own_app(snapshots):
    apps = next(iter(snapshots.values()))
    assert [apps[m]["main"] for m in CHAPTER_MODULES] == ["tasks", "demo_tasks.periodic", "django_demo"]
    # Chapter 06's schedule and time zone live on chapter 06's app only.
    assert "tick-every-second" in apps["demo_tasks.periodic"]["conf"]["beat_schedule"]
    assert apps["demo_tasks.periodic"]["conf"]["timezone"] == "'Asia/Shanghai'"
    assert apps["demo_tasks.tasks"]["conf"]["beat_schedule"] == "{}"
    assert apps["demo_tasks.tasks"]["conf"]["timezone"] == "None"
