"""Chapter 08's tasks (demo_tasks.workflows) against real workers: signatures, chains,
groups, chords, chunks and map/starmap; failures inside a workflow and the error
callbacks that see them; link callbacks; a chord on a result backend without native
join (celery.chord_unlock); get() inside a task; routing to a second worker. (The rate
limits, per worker and global, are in tests/test_ratelimit.py.)

What a worker did is read from its own log ("Task NAME[ID] received" is logged by
the worker's main process for every message it takes) and from the records the
tasks leave in Redis. "Never ran" is proved after a sentinel task: messages are
taken from a queue in order, so once the worker has received a task sent after
the failure, it would have received anything the failed workflow had sent.
Times are checked only from below.
"""

from __future__ import annotations

import re

import pytest
from celery import chain, chord, group
from celery.canvas import Signature, _chain
from celery.exceptions import ChordError
from celery.result import AsyncResult, GroupResult

import launcher


@pytest.fixture(scope="module")
def wf(workflows_app, broker):
    broker.flush()  # this module's queues, results and records start empty
    yield workflows_app


@pytest.fixture(scope="module")
def worker(wf, broker):
    """The learner's worker: `celery -A demo_tasks.workflows worker`, the default queue only."""
    w = launcher.start_worker("demo_tasks.workflows", broker=broker, fast=True)
    yield w
    w.cleanup()


def received(worker, task_id: str, since: int = 0) -> bool:
    """Did the worker take the message of this task (logged by its main process)?"""
    return f"[{task_id}] received" in worker.log(since)


def sentinel(wf, worker) -> None:
    """A task sent now and run to the end: whatever was queued before it has been received."""
    result = wf.add.delay(0, 0)
    assert result.get(timeout=20) == 0
    assert launcher.wait_for(lambda: received(worker, result.id), 10)


def messages_received(worker, since: int) -> list[str]:
    """The names of the tasks whose messages the worker took since the mark, in order."""
    return re.findall(r"Task ([\w.]+)\[[^\]]+\] received", worker.log(since))


def errbacks_for(wf, task_id: str) -> list[dict]:
    return [r for r in wf.read_records(wf.ERRBACKS_KEY) if r["id"] == task_id]


# --- Signatures ----------------------------------------------------------------------

def test_a_partial_signature_with_options(wf, worker):
    import time

    sig = wf.add.s(2).set(countdown=0.5)
    assert isinstance(sig, Signature)
    assert (sig.task, sig.args, sig.options) == ("demo_tasks.workflows.add", (2,), {"countdown": 0.5})
    start = time.monotonic()
    result = sig.apply_async((3,), task_id="add-3-and-2")  # the missing argument comes first: add(3, 2)
    assert result.id == "add-3-and-2"
    assert result.get(timeout=20) == 5
    # countdown: the worker holds the task until its ETA; only a lower bound on the time.
    assert time.monotonic() - start >= 0.5
    assert received(worker, "add-3-and-2")


def test_an_immutable_signature_ignores_the_parents_result(wf, worker):
    sig = wf.add.si(10, 10)
    assert sig.immutable
    result = (wf.add.s(1, 1) | sig).apply_async()
    assert result.get(timeout=20) == 20, "add(10, 10): the parent's 2 was not passed"
    assert result.parent.get(timeout=20) == 2
    mutable = (wf.add.s(1, 1) | wf.add.s(10, 10)).apply_async()
    with pytest.raises(TypeError, match="takes 2 positional arguments but 3 were given"):
        mutable.get(timeout=20)


# --- Chains, groups, chords, chunks ---------------------------------------------------------

def test_a_chain_and_the_pipe_operator_pass_each_result_on(wf, worker):
    piped = wf.add.s(1, 1) | wf.add.s(2) | wf.mul.s(10)
    assert isinstance(piped, _chain)
    assert chain(wf.add.s(1, 1), wf.add.s(2), wf.mul.s(10)) == piped
    result = piped.apply_async()
    assert result.get(timeout=20) == 40, "((1 + 1) + 2) * 10"
    # The result of a chain is its last task's; the earlier ones are its parents.
    assert [result.parent.get(timeout=20), result.parent.parent.get(timeout=20)] == [4, 2]
    assert result.parent.parent.parent is None


def test_a_group_runs_side_by_side_and_its_result_can_be_saved_and_restored(wf, worker):
    result = group(wf.add.s(i, i) for i in range(5)).apply_async()
    assert isinstance(result, GroupResult)
    result.save()  # in the result backend: another process can find the group by its id
    restored = GroupResult.restore(result.id, app=wf.app)
    assert [r.id for r in restored.results] == [r.id for r in result.results]
    assert restored.get(timeout=20) == [0, 2, 4, 6, 8]
    assert restored.successful() and restored.completed_count() == 5


def test_a_groups_get_naps_a_whole_interval_and_a_smaller_interval_returns_sooner(wf, worker):
    """Chapter 08's get(interval=...): the group is not complete at get()'s first look (its
    tasks sleep 0.5 s), so get() naps a whole interval; with a small one it returns as soon
    as the work is done. An ordering with a wide margin, never an upper bound on a time."""
    import time

    def timed(interval: float) -> float:
        start = time.perf_counter()
        assert group(wf.slow_step.s(0, 0.5) for _ in range(2)).apply_async().get(timeout=30, interval=interval) \
            == [1, 1]
        return time.perf_counter() - start

    napped, small = timed(2.0), timed(0.05)
    assert napped >= 2.0
    assert small < napped


def test_a_groups_get_looks_at_the_backend_once_then_waits_for_pub_sub(wf, worker, monkeypatch):
    """Chapter 08: on the Redis result backend, GroupResult.get() reads the whole group once
    (one MGET), naps one interval if it is not complete, then returns on the results that
    arrive by pub/sub: however long the tasks take and however small the interval, the
    backend is read once -- the interval is a floor on the wait, not a polling period."""
    backend = wf.app.backend
    reads = []
    original = backend.mget

    def counted(keys):
        reads.append(len(keys))
        return original(keys)

    monkeypatch.setattr(backend, "mget", counted)
    assert group(wf.slow_step.s(0, 0.6) for _ in range(2)).apply_async().get(timeout=30, interval=0.05) == [1, 1]
    assert reads == [2], "one MGET of both members' keys, not one every 0.05 s"


def test_a_chord_sums_its_groups_results(wf, worker):
    result = chord(wf.add.s(i, i) for i in range(10))(wf.xsum.s())
    assert result.get(timeout=20) == 90
    assert isinstance(result.parent, GroupResult) and len(result.parent.results) == 10
    assert chord([wf.add.s(1, 2), wf.add.s(3, 4)], wf.average.s()).apply_async().get(timeout=20) == 5.0


def test_chunks_map_and_starmap_put_many_calls_in_few_messages(wf, worker):
    mark = worker.mark()
    chunks = wf.add.chunks(zip(range(10), range(10), strict=True), 3).apply_async()
    assert chunks.get(timeout=20) == [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]
    # Ten calls of add in four messages, each a celery.starmap over one chunk of calls.
    assert messages_received(worker, mark) == ["celery.starmap"] * 4

    mark = worker.mark()
    assert wf.xsum.map([[1, 2], [3, 4], [5]]).delay().get(timeout=20) == [3, 7, 5]
    assert wf.add.starmap([(1, 2), (3, 4)]).delay().get(timeout=20) == [3, 7]
    assert messages_received(worker, mark) == ["celery.map", "celery.starmap"]


def test_link_callbacks_get_the_result_and_get_returns_the_tasks_own(wf, worker):
    linked = wf.add.apply_async((2, 2), link=wf.mul.s(10))
    assert linked.get(timeout=20) == 4  # the task's own result, not the callback's
    callback, = linked.children  # the callback's result, kept with the task's
    assert callback.get(timeout=20) == 40  # mul(4, 10): the result comes first
    both = wf.add.apply_async((2, 2), link=[wf.mul.s(10), wf.add.s(1)])
    assert both.get(timeout=20) == 4
    fan_out, = both.children  # several links: sent together, as a group, each with the same result
    assert isinstance(fan_out, GroupResult) and fan_out.get(timeout=20) == [40, 5]


def test_a_chord_on_a_backend_without_native_join_polls_with_chord_unlock(wf, broker, worker, tmp_path):
    from celery import Celery

    url = f"file://{tmp_path}"
    unlock = launcher.start_celery("demo_tasks.workflows", "--result-backend", url, "worker", "--loglevel=INFO",
                                   "-n", "unlock@%h", "--concurrency=3", "-Q", "unlock-test",
                                   *launcher.FAST_FLAGS, broker=broker, name="worker-unlock")
    try:
        unlock.wait_for_log(" ready.", 30)
        files = Celery("demo_tasks.workflows", broker=broker.url, backend=url, set_as_current=False)
        assert not files.backend.supports_native_join and wf.app.backend.supports_native_join
        header = [files.signature("demo_tasks.workflows.slow_step", (0, 1.5), queue="unlock-test") for _ in range(2)]
        result = chord(header, files.signature("demo_tasks.workflows.xsum", queue="unlock-test"), app=files)
        assert result.apply_async().get(timeout=30) == 2
        # celery.chord_unlock asked at least once too early (retry in the default 1 s), then once more.
        log = unlock.log()
        assert len(re.findall(r"Task celery\.chord_unlock\[[^\]]+\] received", log)) >= 2
        assert re.search(r"Task celery\.chord_unlock\[[^\]]+\] retry: Retry in 1\.0s", log)
        files.close()
    finally:
        unlock.stop()
    # The Redis backend counts the header itself: no chord_unlock, for all the chords this module ran.
    assert "celery.chord_unlock" not in worker.log()


# --- Failures inside a workflow -----------------------------------------------------------

def test_a_failing_link_stops_the_chain(wf, worker):
    result = chain(wf.add.s(1, 1), wf.fail_if.s(bad=2), wf.add.s(100)).apply_async()
    last, failed, first = result, result.parent, result.parent.parent
    with pytest.raises(ValueError, match="refusing 2"):
        result.get(timeout=20)
    assert (first.state, failed.state) == ("SUCCESS", "FAILURE")
    worker.wait_for_log(f"Task demo_tasks.workflows.fail_if[{failed.id}] raised unexpected: "
                        "ValueError('refusing 2')", timeout=10, since=0)
    sentinel(wf, worker)
    assert received(worker, first.id) and received(worker, failed.id)
    assert not received(worker, last.id), "the link after the failure was never sent to a worker"
    # Yet its result says FAILURE: Celery stores the failure for every later link of the
    # chain, so that whoever waits for the chain's result gets the error, not a wait forever.
    assert last.state == "FAILURE" and isinstance(last.result, ValueError)


def test_a_failing_member_fails_the_chord_and_its_callback_never_runs(wf, worker):
    members = [wf.add.s(1, 1), wf.fail_if.s(2, 2), wf.add.s(3, 3)]
    result = chord(members)(wf.xsum.s())
    failed = result.parent.results[1]
    # get() looks at the chord's parent (the group) first: it raises the member's own error.
    with pytest.raises(ValueError, match="refusing 2"):
        result.get(timeout=20)
    # The callback's own result is a ChordError that names the member that failed.
    assert launcher.wait_for(lambda: result.state == "FAILURE", 20)
    own = AsyncResult(result.id, app=wf.app)
    with pytest.raises(ChordError) as raised:
        own.get(timeout=20)
    assert str(raised.value) == f"Dependency {failed.id} raised ValueError('refusing 2')"
    assert result.get(timeout=20, follow_parents=False, propagate=False).args == raised.value.args
    worker.wait_for_log(f"Chord '{result.parent.id}' raised: ChordError(\"Dependency {failed.id} raised "
                        "ValueError('refusing 2')\")", timeout=10, since=0)
    sentinel(wf, worker)
    assert not received(worker, result.id), "the callback (xsum) was never sent to a worker"
    assert all(received(worker, r.id) for r in result.parent.results)


def test_link_error_sees_the_failure_of_a_chain_and_of_a_chord(wf, worker):
    chained = chain(wf.add.s(1, 1), wf.fail_if.s(bad=2), wf.add.s(100)).on_error(wf.record_error.s())
    result = chained.apply_async()
    failed = result.parent
    assert isinstance(result.get(timeout=20, propagate=False), ValueError)
    assert launcher.wait_for(lambda: errbacks_for(wf, failed.id), 10)
    assert errbacks_for(wf, failed.id) == [
        {"task": "demo_tasks.workflows.fail_if", "id": failed.id, "error": "ValueError: refusing 2"}]

    # On a chord, the error callback goes on its callback (xsum): it is called once, for
    # the callback that never ran, with the ChordError; not for the failed member.
    # (chord(...).on_error(...) does the same, with a CPendingDeprecationWarning about
    # task_allow_error_cb_on_chord_header.)
    result = chord([wf.add.s(1, 1), wf.fail_if.s(2, 2)])(wf.xsum.s().on_error(wf.record_error.s()))
    member = result.parent.results[1]
    assert launcher.wait_for(lambda: errbacks_for(wf, result.id), 20)
    assert errbacks_for(wf, result.id) == [
        {"task": "demo_tasks.workflows.xsum", "id": result.id,
         "error": f"ChordError: Dependency {member.id} raised ValueError('refusing 2')"}]
    sentinel(wf, worker)
    assert errbacks_for(wf, member.id) == [], "the failed member itself has no error callback"
    assert len(errbacks_for(wf, result.id)) == 1


def test_get_inside_a_task_is_refused(wf, worker):
    result = wf.get_inside.delay(3)
    error = result.get(timeout=20, propagate=False)
    assert isinstance(error, RuntimeError) and result.state == "FAILURE"
    assert str(error).startswith("Never call result.get() within a task!")
    worker.wait_for_log(f"Task demo_tasks.workflows.get_inside[{result.id}] raised unexpected: "
                        "RuntimeError('Never call result.get() within a task!", timeout=10, since=0)
    # delay() had already sent the inner add before get() refused to wait for it: it still runs.
    inner, = result.children
    assert inner.get(timeout=20) == 6


# --- Routing and rate limits ------------------------------------------------------------------

def test_slow_reports_go_to_the_slow_worker_and_pings_to_the_default_one(wf, broker, worker):
    report = wf.slow_report.delay(0.2)
    # No worker takes the queue "slow" yet: the report waits in the broker, in its own list.
    with broker.client(timeout=5) as redis:
        assert launcher.wait_for(lambda: redis.llen("slow") == 1, 10)
    ping = wf.fast_ping.delay()
    assert ping.get(timeout=20) == "pong"
    assert report.state == "PENDING", "the default worker does not take the queue 'slow'"

    slow = launcher.start_worker("demo_tasks.workflows", broker=broker, fast=True, name="slow", queues=["slow"])
    try:
        assert ".> slow " in slow.log(), "the worker's banner lists the queue it consumes"
        assert report.get(timeout=20) == "report done in 0.2 s"
        late_ping, late_report = wf.fast_ping.delay(), wf.slow_report.delay(0)
        assert late_ping.get(timeout=20) == "pong" and late_report.get(timeout=20) == "report done in 0 s"
        sentinel(wf, worker)
        for task_id in (report.id, late_report.id):
            assert received(slow, task_id) and not received(worker, task_id)
        for task_id in (ping.id, late_ping.id):
            assert received(worker, task_id) and not received(slow, task_id)
        ran_on = {r["id"]: (r["task"], r["hostname"].split("@")[0]) for r in wf.read_records(wf.RUNS_KEY)}
        assert ran_on == {report.id: ("demo_tasks.workflows.slow_report", "slow"),
                          late_report.id: ("demo_tasks.workflows.slow_report", "slow"),
                          ping.id: ("demo_tasks.workflows.fast_ping", "w1"),
                          late_ping.id: ("demo_tasks.workflows.fast_ping", "w1")}
    finally:
        slow.cleanup()


def test_on_redis_a_lower_priority_number_is_served_first_in_four_levels(wf, broker):
    # Sent while no worker takes the queue: they wait in Redis, in one list per priority step.
    queue = "prioritized"
    lows = [wf.prioritized.apply_async((f"low-{n}",), queue=queue, priority=9) for n in range(3)]
    middle = wf.prioritized.apply_async(("middle",), queue=queue, priority=4)
    high = wf.prioritized.apply_async(("high",), queue=queue, priority=0)
    with broker.client(timeout=5, decode_responses=True) as redis:
        lists = {key: redis.llen(key) for key in redis.keys(queue + "*")}
    assert lists == {queue: 1, queue + "\x06\x163": 1, queue + "\x06\x169": 3}
    # One process, one message reserved at a time: it always takes the best one left.
    worker = launcher.start_worker("demo_tasks.workflows", broker=broker, fast=True, name="prio", queues=[queue],
                                   concurrency=1, extra_args=["--prefetch-multiplier=1"])
    try:
        assert [r.get(timeout=20) for r in (high, middle, *lows)] == ["high", "middle", "low-0", "low-1", "low-2"]
        order = [r["label"] for r in wf.read_records(wf.PRIORITY_KEY)]
        assert order == ["high", "middle", "low-0", "low-1", "low-2"]
    finally:
        worker.cleanup()


def test_the_word_count_pipeline_counts_the_corpus_in_parallel_and_stores_the_top_words(wf, worker, tmp_path,
                                                                                       monkeypatch):
    from demo_tasks import wordcount

    corpus = wordcount.corpus_files()
    pipeline = wf.word_count_pipeline(corpus, pieces=6, n=10)
    assert len(pipeline.tasks) == 6
    best = pipeline.apply_async().get(timeout=120)
    # The same answer as counting everything in this process at once.
    monkeypatch.setenv("JIEBA_CACHE_DIR", str(tmp_path))
    expected = wordcount.top(wordcount.count_words("\n\n".join(corpus.values())), 10)
    assert [tuple(pair) for pair in best] == expected
    words = [word for word, _ in best]
    # The course's own prose: its most frequent word is 任务 ("task"); every top word is in it.
    # (Which others make the top 10 changes as chapters are written: 'celery' left it with chapter 12.)
    assert words[0] == "任务"
    text = "\n".join(corpus.values()).lower()
    assert all(word.lower() in text for word in words), words
    stored = wf.read_stored_top_words()
    assert stored == best
    # Six pieces counted by the worker (each logged as received, then succeeded), then one merge.
    assert launcher.wait_for(lambda: worker.log().count("Task demo_tasks.workflows.count_piece[") >= 12, 10)
    worker.wait_for_log("Task demo_tasks.workflows.merge_counts[", timeout=10, since=0)
