"""launcher.prepare_chapter(): what every chapter's preparation does, in a fresh
interpreter as a kernel would run it: its own emptied Redis database on the
shared broker, a scratch folder, a Django database of its own, and a second run
that replaces the first instead of adding to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import launcher
from launcher.chapter import chapter_url
from launcher.procs import SESSION_VARIABLE, group_alive, session_processes, sweep
from tests.helpers import script


def test_chapter_url_names_the_chapters_database():
    assert chapter_url("redis://127.0.0.1:6379/0", 3) == "redis://127.0.0.1:6379/3"
    assert chapter_url("redis://:p%40ss@h:1", 12) == "redis://:p%40ss@h:1/12"
    for number in (0, 16, 99):  # what to do instead is in the message
        with pytest.raises(ValueError, match=r"a broker of its own: broker = launcher\.start_embedded\(\)"):
            chapter_url("redis://h:1/0", number)


KERNEL = """
import json, os, launcher
from pathlib import Path

broker = launcher.Broker(os.environ["REDIS_URL"], "REDIS_URL")
with broker.client() as conn:
    conn.select(3); conn.set("left-over", 1)        # an earlier run's state in database 3
    conn.select(0); conn.set("the-learners-own", 1)  # database 0: the article's, not a chapter's
first = launcher.prepare_chapter(3)
worker = launcher.start_worker("demo_tasks.tasks", broker=first.broker, fast=True)
from demo_tasks.tasks import add
result = {"url": first.broker.url, "env": os.environ["REDIS_URL"], "keys after prepare": [],
          "sum": add.delay(2, 3).get(timeout=60), "scratch": str(first.scratch)}
second = launcher.prepare_chapter(3)                  # the preparation cell, run again
result.update({"first worker running": worker.running(), "running": [p.name for p in launcher.running()],
               "first scratch exists": first.scratch.exists(), "second scratch exists": second.scratch.exists(),
               "chapter keys": second.broker.keys(), "database 0 keys": broker.keys()})
django = launcher.prepare_chapter(5, django=True)
result.update({"DATABASE_URL": os.environ["DATABASE_URL"], "MEDIA_ROOT": os.environ["MEDIA_ROOT"],
               "database exists": (django.scratch / "db.sqlite3").is_file()})
launcher.stop_all()
result["scratch after stop_all"] = django.scratch.exists()
print(json.dumps(result))
"""


def test_prepare_chapter_isolates_empties_and_replaces_itself(broker, tmp_path):
    env = dict(os.environ, REDIS_URL=broker.url)
    env.pop("DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(KERNEL)], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["url"] == result["env"] == broker.url[:-2] + "/3"
    assert result["sum"] == 5
    # Run again: the first run's worker is stopped, not duplicated; its scratch folder is gone.
    assert result["first worker running"] is False and result["running"] == []
    assert result["first scratch exists"] is False and result["second scratch exists"] is True
    # The chapter's database was emptied but for its owner record (launcher.owner); database 0
    # (a terminal worker's) was left alone.
    assert result["chapter keys"] == ["course:owner"]
    assert "the-learners-own" in result["database 0 keys"]
    # A Django chapter gets its own migrated database and media folder in its scratch folder.
    assert result["DATABASE_URL"].endswith("/db.sqlite3") and result["database exists"] is True
    assert result["MEDIA_ROOT"].endswith("/media")
    assert result["scratch after stop_all"] is False


def test_sweep_stops_what_a_session_left_behind():
    """A kernel killed before it could stop its workers: sweep() finds them by their marker."""
    marked = launcher.Proc("marked", [sys.executable, "-c", "import subprocess, sys, time; "
                                      "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
                                      "time.sleep(120)"],
                           env=dict(os.environ, **{SESSION_VARIABLE: "test-sweep-session"}))
    unmarked = script("import time; time.sleep(120)", name="unmarked")
    try:
        assert launcher.wait_for(lambda: len(session_processes("test-sweep-session")) == 2, 30)
        stopped = sweep("test-sweep-session")
        assert marked.pid in stopped and len(stopped) == 2
        assert not group_alive(marked.pid)
        assert unmarked.running()
    finally:
        launcher.stop_together([marked, unmarked])

