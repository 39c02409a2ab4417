"""The terminal blocks of the README and the chapters, checked against what the
course sets for the same kind of process (launcher.celery_settings): a Celery
program of a plain app that keeps results (a worker, Flower), started on one of
the chapters' databases, gets REDIS_URL for that database -- the apps read
their result backend from it. With only ``--broker``, its results would go to
the article's database 0 and the chapter would see them PENDING for ever.

(Every block also runs as printed: tests/test_commands.py; the commands the
notebooks print are generated from what runs: tests/test_shown_commands.py.)"""

from __future__ import annotations

import re

import pytest

from launcher.celery_procs import celery_settings
from launcher.paths import REPO_ROOT
from tests.commands import blocks_in, collect, words

CHAPTER_DB = re.compile(r"redis://127\.0\.0\.1:6379/(?:[1-9]|1[0-5])\b")
#: Subcommands whose process reads or writes task results.
WITH_RESULTS = ("worker", "flower")


def simple_commands(command: str) -> list[list[str]]:
    """A command line's simple commands, as the shell splits them, assignments included."""
    found, simple = [], []
    for word in [*words(command), ";"]:
        if word in ("&&", "||", ";", "|", "&") or set(word) <= set(";&|()"):
            if simple:
                found.append(simple)
            simple = []
        else:
            simple.append(word)
    return found


def celery_lines(block):
    """(line, app, subcommand, settings set for it) for each `celery -A APP ... SUB` in the block."""
    exported: dict[str, str] = {}
    for command in block.commands():
        for program in simple_commands(command):
            assignments = {}
            while program and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", program[0]):
                name, _, value = program.pop(0).partition("=")
                assignments[name] = value
            if program[:1] == ["export"]:
                exported.update(dict(w.partition("=")[::2] for w in program[1:] if "=" in w))
                continue
            if program[:2] == ["celery", "-A"] and len(program) > 2:
                sub = next((w for w in program[3:] if not w.startswith("-")), None)
                yield command, program[2], sub, {**exported, **assignments}


def cases():
    found = []
    for block in collect():
        for line, app, sub, settings in celery_lines(block):
            if sub in WITH_RESULTS and CHAPTER_DB.search(line + " " + " ".join(settings.values())):
                found.append(pytest.param(block, line, app, settings, id=f"{block.id}:{sub}"))
    return found


def test_the_check_finds_the_chapters_worker_and_flower_blocks():
    ids = [case.id for case in cases()]
    assert any(":worker" in i for i in ids) and any(":flower" in i for i in ids), ids


@pytest.mark.parametrize(("block", "line", "app", "settings"), cases())
def test_a_block_on_a_chapters_database_sets_what_the_course_sets(block, line, app, settings):
    url = CHAPTER_DB.search(line + " " + " ".join(settings.values())).group(0)
    needed = celery_settings(app, url)
    assert settings.get("REDIS_URL") == url, (
        f"{block.id}: `{line}` runs on {url} but does not set REDIS_URL={url}, which the course "
        f"sets for the same process ({sorted(needed)}): its results would land elsewhere")


def test_the_check_catches_a_worker_with_only_broker_and_passes_one_with_redis_url():
    def settings_of(text: str) -> dict:
        block = blocks_in(f"```shell\n{text}\n```\n", REPO_ROOT / "x.md")[0]
        ((_line, _app, sub, settings),) = celery_lines(block)
        assert sub == "worker"
        return settings

    assert "REDIS_URL" not in settings_of("celery -A demo_tasks.tasks --broker=redis://127.0.0.1:6379/4 worker")
    url = "redis://127.0.0.1:6379/4"
    assert settings_of(f"REDIS_URL={url} celery -A demo_tasks.tasks worker")["REDIS_URL"] == url
    assert settings_of(f"export REDIS_URL={url}\ncelery -A demo_tasks.tasks worker -E")["REDIS_URL"] == url
