"""Chapter 08's Django example: a view starts a chord (one count_piece per piece
of a text, then merge_counts), keeps the header's GroupResult id on a WordCount
row, and a progress page follows it by that id.

Against the real thing: headless Chromium (Playwright), a real `manage.py
runserver`, a real `celery -A django_demo worker` (started without -Q, as make
lab, the chapters and compose start it) and an embedded broker, sharing a
migrated SQLite file. The broker is inspected directly: its queues (LLEN,
LRANGE) and every message pushed to it (MONITOR). The forms, the login and the
broker-down path run in this process (pytest-django), with messages going to
a broker of their own or to nobody.

Run with -s to see the measured times (click to merged words, click to the
chord's error on the page).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid

import pytest
import redis
from celery import Celery
from celery.result import GroupResult
from django.apps import apps
from django.urls import reverse
from django_celery_results.models import ChordCounter, TaskResult
from django_celery_results.models import GroupResult as GroupResultRow
from playwright.sync_api import expect

import launcher
from demo_tasks import wordcount
from tests.django_stack import django_stack, logged_in, query
from tests.helpers import returns_within

# browser, login_state: one Chromium per module, logged in once through the login page (this module's stack).
from tests.test_django_browser import browser, login_state, new_context  # noqa: F401 (fixtures)
from tests.test_django_reports import celery_broker, current_celery_app  # noqa: F401 (an autouse fixture)

TIMEOUT_MS = 20_000
#: settings.WORDCOUNT_PIECE_SECONDS for the stack: each piece waits this long, so the
#: page's poll (every 0.3 s) sees pieces finish one after another.
PIECE_SECONDS = "0.3"
QUEUE = "wordcounts"
PIECE_TASK = "wordcounts.tasks.count_piece"
MERGE_TASK = "wordcounts.tasks.merge_counts"
#: The model, from Django's registry (the app lives in django_demo/, on sys.path through make install's .pth file).
WordCount = apps.get_model("wordcounts", "WordCount")

#: Installed before any page script runs: every "k / N 段完成" the page shows, with the time.
RECORD_PAGE = """
window.__progressSeen = [];
document.addEventListener("DOMContentLoaded", () => {
  const text = document.getElementById("progress-text");
  if (!text) return;
  const record = () => window.__progressSeen.push([text.textContent, Date.now()]);
  record();
  new MutationObserver(record).observe(text, {childList: true, characterData: true, subtree: true});
});
"""


@pytest.fixture(scope="module")
def text() -> str:
    """The course's own prose: the README and chapter 08 (a few hundred paragraphs)."""
    corpus = wordcount.corpus_files()
    return "\n\n".join([corpus["README.md"], corpus["notebooks/08_workflows.ipynb"]])


@pytest.fixture(scope="module")
def stack(tmp_path_factory, module_broker):
    with django_stack(tmp_path_factory.mktemp("django_chord"), module_broker, step_seconds="0.2",
                      worker_name="chord", WORDCOUNT_PIECE_SECONDS=PIECE_SECONDS) as running:
        yield running


@pytest.fixture
def page(browser, stack, login_state):  # noqa: F811 (the imported fixtures)
    context = new_context(browser, stack, storage_state=login_state)
    context.add_init_script(RECORD_PAGE)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="module")
def control(stack):
    """A bare Celery app on the stack's broker, for `celery inspect` and `control` commands."""
    app = Celery("chord-test-control", broker=stack["broker"].url, set_as_current=False)
    yield app
    app.close()


def start_in_browser(page, text: str, pieces: int, fail_piece: int | None = None) -> tuple[str, float]:
    """Fill in the form of /wordcounts/ and send it; land on the progress page.
    Returns the word count's id and the time of the click (time.time())."""
    page.goto("/wordcounts/")
    page.get_by_label("文本").fill(text)
    page.get_by_label("段数").fill(str(pieces))
    if fail_piece is not None:
        page.get_by_label("故意失败的段").fill(str(fail_piece))
    clicked = time.time()
    page.get_by_role("button", name="开始统计").click()
    page.wait_for_url(re.compile(r"/wordcounts/[0-9a-f-]{36}/$"))
    return str(uuid.UUID(page.url.rstrip("/").split("/")[-1])), clicked


def progress_seen(page) -> list[tuple[int, int, float]]:
    """(done, total, time in s) for every progress text the page showed, in order."""
    seen = []
    for shown, at in page.evaluate("window.__progressSeen"):
        done, total = re.fullmatch(r"(\d+) / (\d+) 段完成", shown).groups()
        seen.append((int(done), int(total), at / 1000))
    return seen


def row(stack, counting_id: str) -> dict:
    """The WordCount row as the SQLite file holds it."""
    names = ("status", "pieces", "group_id", "task_id", "top", "words", "message")
    values = query(stack["db"], f"SELECT {', '.join(names)} FROM wordcounts_wordcount WHERE id = ?",
                   uuid.UUID(counting_id).hex)
    return dict(zip(names, values, strict=True))


def expected_top(text: str) -> list[list]:
    """What the chord must find: the whole text counted here at once (the pieces are cut
    between paragraphs, so their counts add up to the same)."""
    return [[word, count] for word, count in wordcount.top(wordcount.count_words(text), 10)]


class Pushes:
    """Every message pushed onto a queue of the broker while the block runs (Redis MONITOR
    sees every command any client sends): (queue, task name) in order. Messages without a
    task (replies to control commands) are left out."""

    def __init__(self, url: str):
        self.url = url
        self.seen: list[tuple[str, str]] = []
        self._stop = f"stop-monitor-{uuid.uuid4().hex}"

    def __enter__(self):
        self._conn = redis.Redis.from_url(self.url)  # no socket timeout: MONITOR may be quiet for a while
        self._monitor = self._conn.monitor()
        self._monitor.__enter__()  # MONITOR is on once this returns
        self._thread = threading.Thread(target=self._listen, name="broker monitor", daemon=True)
        self._thread.start()
        return self

    def _listen(self) -> None:
        for command in self._monitor.listen():
            text = command["command"]
            if text == f"ECHO {self._stop}":
                return
            pushed = re.match(r'LPUSH (\S+) .*?"task": "([^"]+)"', text, re.S)
            if pushed:
                self.seen.append(pushed.groups())

    def __exit__(self, *exc):
        with launcher.broker.client(self.url) as other:
            other.echo(self._stop)
        self._thread.join(10)
        self._monitor.__exit__(*exc)
        self._conn.close()
        assert not self._thread.is_alive(), "the MONITOR connection never saw the stop"


# --- In a real browser --------------------------------------------------------------

def test_a_word_count_from_the_click_to_the_merged_words(page, stack, text, record_property):
    pieces = 6
    counting_id, clicked = start_in_browser(page, text, pieces)
    expect(page.get_by_role("heading", level=1)).to_have_text("词频统计的进度")
    # Timeout: the first count in a worker process loads the tokenizer's dictionary (seconds, more under load).
    expect(page.locator("#status")).to_have_text("已完成", timeout=TIMEOUT_MS)
    expect(page.locator("#progress-text")).to_have_text(f"{pieces} / {pieces} 段完成")
    expect(page.locator("body")).to_have_attribute("data-polling", "stopped")
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#pieces li")).to_have_text([f"第 {n} 段：完成" for n in range(1, pieces + 1)])

    seen = progress_seen(page)
    done_at = next(at for done, _, at in seen if done == pieces)
    record_property("click_to_done_seconds", round(done_at - clicked, 2))
    print(f"\n{pieces} pieces, {PIECE_SECONDS} s each on 2 pool processes: click -> the merged words shown "
          f"after {done_at - clicked:.2f} s (the pieces' wait alone: {pieces / 2 * float(PIECE_SECONDS):.1f} s)")
    counts = [done for done, _, _ in seen]
    assert counts == sorted(counts), f"the progress went backwards: {counts}"
    assert {total for _, total, _ in seen} == {pieces}
    assert any(0 < done < pieces for done in counts), f"no progress seen in between: {counts}"

    # The merged words, on the page and on the row, are those of the whole text counted here.
    best = expected_top(text)
    cells = page.locator("#top tbody tr").evaluate_all("rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    assert cells == [[str(rank), word, str(count)] for rank, (word, count) in enumerate(best, 1)]
    stored = row(stack, counting_id)
    assert stored["status"] == "done" and json.loads(stored["top"]) == best and stored["pieces"] == pieces
    assert page.locator("#words").inner_text() == str(stored["words"])
    # The ids on the page are the row's; the callback's result is the merge's.
    assert page.locator("#group-id").inner_text() == stored["group_id"]
    assert page.locator("#task-id").inner_text() == stored["task_id"]
    merged = query(stack["db"], "SELECT task_name, status FROM django_celery_results_taskresult WHERE task_id = ?",
                   stored["task_id"])
    assert merged == (MERGE_TASK, "SUCCESS")


def test_the_chord_waits_in_its_own_queue_and_the_page_counts_up_from_zero(page, stack, control, text):
    """The worker (no -Q) consumes both queues of the settings; with its consumer of
    "wordcounts" cancelled the chord's pieces wait there, none in "celery", and the page
    shows 0 of N; once it consumes again, the page counts up to N. Every message of the
    chord, the merge sent by the worker included, was pushed onto "wordcounts"."""
    pieces = 5
    # limit=1: the stack has one worker; its answer ends the wait (else each waits the whole timeout).
    replies = control.control.inspect(timeout=5, limit=1).active_queues()
    assert replies and len(replies) == 1, replies
    consumed = {q["name"]: q["routing_key"] for q in next(iter(replies.values()))}
    assert consumed == {"celery": "celery", QUEUE: QUEUE}  # each under its own key: no message lands in both

    # Nothing of an earlier test left in the queue (a chord still merging when it ended).
    def settled() -> bool:
        with stack["broker"].client() as conn:
            busy = query(stack["db"], "SELECT COUNT(*) FROM wordcounts_wordcount WHERE status = 'running'")[0]
            return conn.llen(QUEUE) == 0 and busy == 0
    assert launcher.wait_for(settled, timeout=30), "an earlier word count is still running"
    cancelled = control.control.cancel_consumer(QUEUE, reply=True, timeout=5, limit=1)
    assert len(cancelled) == 1 and "ok" in next(iter(cancelled[0].values())), cancelled
    consuming = False
    try:
        with Pushes(stack["broker"].url) as pushes:
            counting_id, _ = start_in_browser(page, text, pieces)
            expect(page.locator("#progress-text")).to_have_text(f"0 / {pieces} 段完成")
            expect(page.locator("#pieces li")).to_have_text([f"第 {n} 段：排队中" for n in range(1, pieces + 1)])
            expect(page.locator("#status")).to_have_text("统计中")

            stored = row(stack, counting_id)
            with stack["broker"].client() as conn:
                waiting = [json.loads(m) for m in conn.lrange(QUEUE, 0, -1)]
                assert conn.llen("celery") == 0
            assert [m["headers"]["task"] for m in waiting] == [PIECE_TASK] * pieces
            assert {m["headers"]["group"] for m in waiting} == {stored["group_id"]}
            # Ids travel, not texts: each message names the row and its piece.
            assert sorted(m["headers"]["argsrepr"] for m in waiting) == \
                sorted(repr((counting_id, index)) for index in range(pieces))

            added = control.control.add_consumer(QUEUE, reply=True, timeout=5, limit=1)
            consuming = len(added) == 1 and "ok" in next(iter(added[0].values()))
            assert consuming, added
            expect(page.locator("#status")).to_have_text("已完成", timeout=TIMEOUT_MS)
    finally:
        if not consuming:  # the test failed early: the module's later tests need the queue consumed
            control.control.add_consumer(QUEUE, reply=True, timeout=5, limit=1)

    counts = [done for done, _, _ in progress_seen(page)]
    assert counts[0] == 0 and counts[-1] == pieces and counts == sorted(counts), counts
    assert pushes.seen == [(QUEUE, PIECE_TASK)] * pieces + [(QUEUE, MERGE_TASK)], pushes.seen


def test_a_failing_piece_shows_the_chords_error_and_the_polling_stops(page, stack, text, record_property):
    pieces, failing = 4, 2
    counting_id, clicked = start_in_browser(page, text, pieces, fail_piece=failing)
    expect(page.locator("#status")).to_have_text("失败", timeout=TIMEOUT_MS)
    shown_at = time.time()
    record_property("click_to_error_seconds", round(shown_at - clicked, 2))
    print(f"\n{pieces} pieces, piece {failing} raising: click -> the chord's error on the page within "
          f"{shown_at - clicked:.2f} s")

    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error-text")).to_have_text(
        f"第 {failing} 段出错（演示用的故意失败）。合并没有运行：chord 的回调记为失败（ChordError）。")
    expect(page.locator("#pieces li")).to_have_text(
        [f"第 {n} 段：{'失败' if n == failing else '完成'}" for n in range(1, pieces + 1)])
    expect(page.locator("#progress-text")).to_have_text(f"{pieces - 1} / {pieces} 段完成")
    expect(page.locator("#result")).to_be_hidden()
    expect(page.locator("body")).to_have_attribute("data-polling", "stopped")
    html = page.content()
    assert "Traceback" not in html and "Dependency" not in html

    # django-db's chord counter, at the last piece: the merge never ran; its result is the ChordError.
    stored = row(stack, counting_id)
    assert stored["status"] == "failed" and stored["message"] == page.locator("#error-text").inner_text()
    status, result = query(stack["db"], "SELECT status, result FROM django_celery_results_taskresult WHERE task_id = ?",
                           stored["task_id"])
    assert status == "FAILURE" and json.loads(result)["exc_type"] == "ChordError"
    assert f"Task {MERGE_TASK}[{stored['task_id']}]" not in stack["worker"].log()


# --- The records behind the page, without a browser -----------------------------------

@pytest.fixture(scope="module")
def session(stack):
    """A requests session logged in as the local user, the way a browser does it."""
    web = logged_in(stack)
    yield web
    web.close()


def test_the_group_is_restored_by_the_id_on_the_row_in_another_process(stack, session, text):
    pieces = 3
    reply = session.post(stack["server"].url + "/wordcounts/", timeout=30, allow_redirects=False, data={
        "csrfmiddlewaretoken": session.cookies["csrftoken"], "text": text, "pieces": pieces})
    assert reply.status_code == 302
    page = reply.headers["Location"]
    counting_id = page.rstrip("/").split("/")[-1]

    def status() -> dict:
        return session.get(stack["server"].url + page + "status/", timeout=10).json()

    assert launcher.wait_for(lambda: status()["status"] == "done", 30, 0.2)
    stored = row(stack, counting_id)

    # A new process (manage.py shell) finds the whole chord from the two ids on the row.
    probe = f"""
import json
from celery.result import AsyncResult, GroupResult
counting = WordCount.objects.get(pk="{counting_id}")
header = GroupResult.restore(counting.group_id)
print(json.dumps({{"ids": [r.id for r in header.results], "completed": header.completed_count(), "total": len(header),
                  "merged": AsyncResult(counting.task_id).get(timeout=5),
                  "unknown": GroupResult.restore("no-such-group") is None}}))
"""
    found = json.loads(launcher.manage("shell", "-c", probe, env=stack["env"]).stdout.strip().splitlines()[-1])
    assert (found["completed"], found["total"], found["unknown"]) == (pieces, pieces, True)
    assert found["merged"] == json.loads(stored["top"]) == status()["top"]
    # The members, in piece order, are the tasks that counted piece 0, 1, 2 of this row.
    args = [query(stack["db"], "SELECT task_args FROM django_celery_results_taskresult WHERE task_id = ?", member)[0]
            for member in found["ids"]]
    assert args == [json.dumps(repr((counting_id, index))) for index in range(pieces)]
    assert query(stack["db"], "SELECT COUNT(*) FROM django_celery_results_groupresult WHERE group_id = ?",
                 stored["group_id"]) == (1,)
    # django-db counts the chord in its own table, and removes the counter at the last piece.
    assert query(stack["db"], "SELECT COUNT(*) FROM django_celery_results_chordcounter WHERE group_id = ?",
                 stored["group_id"]) == (0,)


# --- The view in this process (pytest-django), no worker ---------------------------

@pytest.fixture
def user_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("counter", password="a-long-test-password-4"))
    return client


@pytest.mark.django_db
def test_the_pages_need_a_login(client):
    page = client.get(reverse("wordcounts:create"))
    assert page.status_code == 302 and page["Location"].startswith("/accounts/login/")
    status = client.get(reverse("wordcounts:status", args=[uuid.uuid4()]))
    assert status.status_code == 401 and status.json() == {"detail": "请先登录。"}


@pytest.mark.django_db
def test_another_users_word_count_is_not_found(user_client, django_user_model):
    other = django_user_model.objects.create_user("stranger", password="a-long-test-password-5")
    theirs = WordCount.objects.create(owner=other, text="一", pieces=1)
    assert user_client.get(reverse("wordcounts:detail", args=[theirs.pk])).status_code == 404
    status = user_client.get(reverse("wordcounts:status", args=[theirs.pk]))
    assert status.status_code == 404 and status.json() == {"detail": "没有这次统计。"}


@pytest.mark.django_db
@pytest.mark.parametrize("data, field, message", [
    ({"text": "", "pieces": "4"}, "text", "这个字段是必填项。"),
    ({"text": "   ", "pieces": "4"}, "text", "这个字段是必填项。"),
    ({"text": "一段文字", "pieces": "0"}, "pieces", "段数必须在 1 到 20 之间。"),
    ({"text": "一段文字", "pieces": "21"}, "pieces", "段数必须在 1 到 20 之间。"),
    ({"text": "第一段\n\n第二段", "pieces": "4", "fail_piece": "3"}, "fail_piece",
     "这段文字切成了 2 段：段号要在 1 到 2 之间。"),
], ids=["empty-text", "blank-text", "zero-pieces", "too-many-pieces", "no-such-piece"])
def test_bad_input_shows_the_message_and_sends_nothing(user_client, django_capture_on_commit_callbacks,
                                                       data, field, message):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = user_client.post(reverse("wordcounts:create"), data)
    assert response.status_code == 400
    assert response.context["form"].errors[field] == [message]
    assert callbacks == [] and not GroupResultRow.objects.exists() and not WordCount.objects.exists()


@pytest.mark.django_db
def test_good_input_keeps_the_chords_ids_and_saves_the_group_before_anything_is_sent(
        user_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = user_client.post(reverse("wordcounts:create"), {"text": "一\n\n二\n\n三", "pieces": "5"})
    counting = WordCount.objects.get()
    assert response.status_code == 302 and response["Location"] == counting.get_absolute_url()
    assert counting.pieces == 3  # three paragraphs: three pieces
    assert len(callbacks) == 1  # the chord itself, sent after the commit
    # Saved in the view's transaction: GroupResult.restore() finds the header's three members.
    assert GroupResultRow.objects.filter(group_id=counting.group_id).count() == 1
    assert len(GroupResult.restore(counting.group_id)) == 3
    assert counting.task_id and counting.task_id != counting.group_id


@pytest.mark.django_db(transaction=True)
def test_good_input_puts_the_pieces_on_the_wordcounts_queue(user_client):
    # A broker of its own: the stack's worker (on module_broker) would take the messages.
    broker = launcher.start_embedded()
    try:
        with celery_broker(broker.url):
            response = user_client.post(reverse("wordcounts:create"), {"text": "一\n\n二", "pieces": "2"})
        with broker.client() as conn:
            queued = [json.loads(m) for m in conn.lrange(QUEUE, 0, -1)]
            in_celery = conn.llen("celery")
    finally:
        broker.stop()
    assert response.status_code == 302
    assert in_celery == 0
    assert [m["headers"]["task"] for m in queued] == [PIECE_TASK, PIECE_TASK]
    assert {m["headers"]["group"] for m in queued} == {WordCount.objects.get().group_id}


@pytest.mark.django_db(transaction=True)
def test_broker_down_answers_503_and_leaves_no_records(user_client):
    url = f"redis://127.0.0.1:{launcher.free_port()}/0"  # nobody listens there
    with celery_broker(url):
        response = returns_within(30, lambda: user_client.post(reverse("wordcounts:create"),
                                                                {"text": "一\n\n二", "pieces": "2"}),
                                  "a word count request with the broker down")
    assert response.status_code == 503
    assert "无法连接消息代理" in response.content.decode()
    assert not WordCount.objects.exists()
    assert not GroupResultRow.objects.exists() and not ChordCounter.objects.exists()
    assert not TaskResult.objects.exists()
