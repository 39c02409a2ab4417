"""The self-checks of chapters 01 and 03 judge how the learner's code waits from
events, not from upper limits on the time it took: which messages it sent (the
before_task_publish signal), whether the task sent before was done by then,
whether a view's task was done when the view returned, what ETA a message
carries, and TTLs read before and after. These tests give the checks the
wrong answers that the upper limits used to catch, and the reference answers,
against a real worker (2 child processes, like the chapters').

Notebooks 01 and 06 print a labelled verdict beside each measured figure (the
figures are blanked where outputs are compared; the verdicts are not); strict
nbval proves those verdicts on every run. The last test here reads them.
"""

from __future__ import annotations

import json
import time

import pytest

import selfcheck
from selfcheck import ch01, ch03, ch06
from tests.helpers import NOTEBOOKS


@pytest.fixture(scope="module")
def tasks(demo_app, demo_worker):
    """demo_tasks.tasks with a real worker of 2 child processes, idle at the start."""
    assert ch01._worker_idle(), demo_worker.tail(20)
    return demo_app


def problems(chapter, number: int, namespace: dict) -> list[str]:
    found = chapter.exercises.problems(number, namespace)
    assert isinstance(found, list)
    return found


# --- chapter 01, exercise 2: four tasks on two child processes -------------------------

def four_tasks_answer(tasks, how: str) -> dict:
    slow_add = tasks.slow_add

    def queued_together():
        results = [slow_add.delay(i, i, seconds=1) for i in range(4)]
        return [r.get(timeout=10) for r in results]

    def one_after_another():
        return [slow_add.delay(i, i, seconds=1).get(timeout=10) for i in range(4)]

    def called_here():
        return [slow_add(i, i, seconds=1) for i in range(4)]

    function = {"reference": queued_together, "sequential": one_after_another, "direct": called_here}[how]
    return {"predicted_2": 2.0, "four_tasks": function}


def test_exercise_2_passes_the_reference_answer(tasks):
    assert problems(ch01, 2, four_tasks_answer(tasks, "reference")) == []


def test_exercise_2_tells_tasks_sent_one_after_another_by_their_order_not_by_time(tasks):
    found = problems(ch01, 2, four_tasks_answer(tasks, "sequential"))
    assert len(found) == 1 and "一个接一个" in found[0] and "不要每个 delay() 之后马上 get()" in found[0], found


def test_exercise_2_tells_a_direct_call_by_the_messages_it_did_not_send(tasks):
    found = problems(ch01, 2, four_tasks_answer(tasks, "direct"))
    assert len(found) == 1 and "只把 0 个 slow_add 放进了队列" in found[0], found


# --- chapter 01, exercise 3: ten users, four server processes ------------------------------

def ten_users_answer(tasks, blocking: str = "direct", queued: str = "delay") -> dict:
    slow_add = tasks.slow_add
    views = {
        "direct": lambda i: slow_add(i, i, seconds=0.3),
        "delay-get": lambda i: slow_add.delay(i, i, seconds=0.3).get(timeout=30),
        "delay": lambda i: slow_add.delay(i, i, seconds=0.3),
        "delay-wait": lambda i: (lambda r: (r.get(timeout=30), r)[1])(slow_add.delay(i, i, seconds=0.3)),
        # Does the work itself, then queues it as well: returns an AsyncResult the worker has not run yet.
        "direct-delay": lambda i: (slow_add(i, i, seconds=0.3), slow_add.delay(i, i, seconds=0.3))[1],
    }
    namespace = {"blocking_view": views[blocking], "queued_view": views[queued],
                 "predicted_blocking": 0.9, "predicted_queued": 0.0}
    waits, _, _ = ch01._serve(namespace["blocking_view"])
    namespace["measured_blocking"] = max(waits)
    waits, returned, _ = ch01._serve(namespace["queued_view"])
    namespace["measured_queued"] = max(waits)
    for r in returned:
        if hasattr(r, "get"):
            r.get(timeout=30)   # the worker idle again before the check runs
    return namespace


def test_exercise_3_passes_the_reference_answer(tasks):
    assert problems(ch01, 3, ten_users_answer(tasks)) == []


def test_exercise_3_tells_a_blocking_view_that_queues_by_the_messages_it_sent(tasks):
    found = problems(ch01, 3, ten_users_answer(tasks, blocking="delay-get"))
    assert any("阻塞版的视图把 10 个任务放进了队列" in p and "delay().get()" in p for p in found), found


def test_exercise_3_tells_a_queued_view_that_waits_by_its_finished_tasks(tasks):
    found = problems(ch01, 3, ten_users_answer(tasks, queued="delay-wait"))
    assert any("等到任务做完才返回" in p for p in found), found


def test_exercise_3_tells_a_queued_view_that_also_calls_the_task_by_its_fastest_user(tasks):
    found = problems(ch01, 3, ten_users_answer(tasks, queued="direct-delay"))
    assert any("排队版最快的用户也等了" in p for p in found), found


def test_exercise_3_tells_summed_waits_by_a_ratio_to_its_own_run(tasks):
    namespace = ten_users_answer(tasks)
    namespace["measured_blocking"] = sum(ch01._serve(namespace["blocking_view"])[0])
    found = problems(ch01, 3, namespace)
    assert any("加了起来" in p for p in found), found


# --- chapter 03, exercises 1 and 2 ----------------------------------------------------------

def test_countdown_passes_the_reference_answer(tasks):
    def add_later(x, y):
        return tasks.add.apply_async((x, y), countdown=1)

    assert problems(ch03, 1, {"add_later": add_later}) == []


def test_countdown_tells_a_function_that_waits_for_its_result_by_the_order_of_events(tasks):
    def add_later(x, y):
        sent = tasks.add.apply_async((x, y), countdown=1)
        sent.get(timeout=10)
        return sent

    found = problems(ch03, 1, {"add_later": add_later})
    assert len(found) == 1 and found[0].startswith("`add_later` 返回时任务已经做完了"), found


def test_countdown_tells_sleeping_and_a_message_without_an_eta(tasks):
    def sleeps_then_sends(x, y):
        time.sleep(1)
        return tasks.add.delay(x, y)

    def no_countdown(x, y):
        return tasks.add.delay(x, y)

    assert problems(ch03, 1, {"add_later": sleeps_then_sends}) == \
        ["`add_later` 里调用了 sleep：不要在函数里等，让 worker 按 countdown 去等"]
    found = problems(ch03, 1, {"add_later": no_countdown})
    # Always the missing ETA; "arrived in 0.xx s" too unless a loaded machine took a second to run it.
    assert any("没有 ETA" in p for p in found), found
    assert all("没有 ETA" in p or "就到了" in p for p in found), found


def test_result_key_reads_its_ttl_between_two_readings_of_redis(tasks):
    import redis

    client = redis.Redis.from_url(tasks.app.conf.result_backend, decode_responses=True)

    def read_result_key(task_id):
        key = f"celery-task-meta-{task_id}"
        meta = json.loads(client.get(key))
        return meta["status"], meta["result"], client.ttl(key)

    def a_day_left(task_id):
        status, result, _ = read_result_key(task_id)
        return status, result, ch03.DAY - 5     # a made-up TTL

    try:
        assert problems(ch03, 2, {"read_result_key": read_result_key}) == []
        found = problems(ch03, 2, {"read_result_key": a_day_left})
        assert any("还剩多少秒过期" in p for p in found) and any("写死" in p for p in found), found
    finally:
        client.close()


# --- chapter 06, exercise 2: run again on the same answer -------------------------------------
# (The check itself, against the chapter's beat and worker, runs in a lab kernel as a learner
# retries it: tests/test_learner_06.py and the exercise matrix, tests/wrong_answers/ch06.py.)

def test_chapter_06_check_2_takes_a_cell_that_mentions_the_answer_for_a_new_attempt():
    history = ["", "rescheduled = periodic_task", "ch06.exercises.check(2, globals())", "print(settings.TIME_ZONE)",
               "ch06.exercises.check(2, globals())"]
    assert not ch06._answer_ran_since({"In": history}, 2), "only other cells ran since the check in cell 2"
    assert ch06._answer_ran_since({"In": history}, 0), "the answer in cell 1 ran since cell 0"
    assert not ch06._answer_ran_since({}, 2), "no history: the task's row and the answer's object decide"


# --- the notebooks: every verdict printed is true -----------------------------------------

VERDICTS = {
    "01": ["调用方至少等了任务要做的 1 秒： True", "delay() 的用时不到直接调用的十分之一： True",
           "此时任务做完了吗？ False", "比依次直接调用两次快： True",
           "两个任务同时在执行（完成时刻相差不到 1 秒）： True", "至少 2 轮，每轮 1 秒： True",
           "比依次直接调用 4 次快： True", "阻塞版实测不少于算出的时间： True",
           "排队版最慢的用户也比阻塞版最快的用户先拿到响应： True"],
    "06": ["没有一次短于 0.9 秒: True", "| 在一分钟之内: True"],
}


@pytest.mark.parametrize("chapter", sorted(VERDICTS))
def test_each_blanked_figure_has_its_verdict_beside_it(chapter):
    """The committed outputs: each verdict is printed, true, in the cell of its figure."""
    path = next(p for p in NOTEBOOKS if p.name.startswith(chapter))
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    outputs = ["".join("".join(o.get("text", "")) for o in c.get("outputs", []) if o["output_type"] == "stream")
               for c in cells if c["cell_type"] == "code"]
    everything = "\n".join(outputs)
    for verdict in VERDICTS[chapter]:
        assert verdict in everything, verdict
    assert selfcheck.FAIL not in "\n".join(o for o in outputs if "练习" not in o)
