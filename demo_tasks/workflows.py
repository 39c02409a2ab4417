"""Chapter 08's app: workflows (canvas) and routing.

Small tasks that are put together into bigger work: signatures (``add.s(2)``),
chains (``a | b``), groups, chords, chunks, map/starmap; a task that fails in
the middle of a workflow and an error callback that sees it; the mistake of
waiting for a result inside a task; queues; rate limits, per worker
(``rate_limit``) and over all workers (a token bucket in Redis,
demo_tasks/ratelimit.py). Start a worker for
this module with::

    celery -A demo_tasks.workflows worker --loglevel=info

(``-A demo_tasks.workflows`` finds the ``app`` below: this chapter's own app.)
That worker takes tasks from the default queue, ``celery``. The routing
section sends ``slow_report`` to the queue ``slow`` (``task_routes`` below),
which only a worker started with ``-Q slow`` takes; give it its own name, so
the two workers can be told apart::

    celery -A demo_tasks.workflows worker -Q slow -n slow@%h

Every task takes and returns plain JSON values (numbers, lists, dicts), and
the records the tasks leave in Redis are JSON: nothing depends on pickle.
"""

from __future__ import annotations

import json
import os
import time

import redis
from celery import Celery

# As in tasks.py: the article's server unless REDIS_URL names another.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1")

# set_as_current=False: importing this module beside another app (a notebook
# that also uses Django, a test) must not change which app @shared_task uses.
app = Celery("demo_tasks.workflows", broker=REDIS_URL, backend=REDIS_URL, set_as_current=False)

# Keep retrying the broker connection while the worker starts (Celery 5 warns otherwise).
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-connection-retry-on-startup
app.conf.broker_connection_retry_on_startup = True
# Results expire after an hour (Redis deletes them itself): enough for a chapter.
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#result-expires
app.conf.result_expires = 3600
# Which queue a task goes to, decided when it is sent (by delay(), a chain, beat, ...):
# slow reports wait in their own queue, so a burst of them never holds up quick tasks.
# Every other task goes to the default queue, "celery".
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-routes
# https://docs.celeryq.dev/en/stable/userguide/routing.html
app.conf.task_routes = {"demo_tasks.workflows.slow_report": {"queue": "slow"}}

#: The Redis list where the error callback (link_error) leaves its records.
ERRBACKS_KEY = "demo:workflows:errbacks"
#: The Redis list where slow_report and fast_ping record which worker ran them, and when.
RUNS_KEY = "demo:workflows:runs"


# --- Building blocks: small tasks that signatures, chains and groups combine -------

@app.task
def add(x: int, y: int) -> int:
    """The article's task. ``add.s(2)`` is a partial signature: in a chain the
    parent's result comes first, so ``add.s(1, 1) | add.s(2)`` computes (1 + 1) + 2."""
    return x + y


@app.task
def mul(x: int, y: int) -> int:
    """A second link for chains: ``add.s(2, 2) | mul.s(10)`` is (2 + 2) * 10."""
    return x * y


@app.task
def xsum(numbers: list[int]) -> int:
    """The callback of a chord: it receives the list of the group's results."""
    return sum(numbers)


@app.task
def average(numbers: list[float]) -> float:
    """Another chord callback; with an empty list it fails (ZeroDivisionError)."""
    return sum(numbers) / len(numbers)


@app.task
def fail_if(x: int, bad: int) -> int:
    """Passes x on unchanged, unless x == bad: then it fails. A failing link of a
    chain (the links after it never run) or a failing member of a chord's group
    (the callback never runs)."""
    if x == bad:
        raise ValueError(f"refusing {x}")
    return x


@app.task
def slow_step(x: int, seconds: float = 0.3) -> int:
    """A link that takes a while (it sleeps), so a timeline can show it: x + 1.
    ``slow_step.s(0) | slow_step.s() | slow_step.s()`` gives 3 after about 0.9 s."""
    time.sleep(seconds)
    return x + 1


# --- Work to measure: CPU-bound and I/O-bound ---------------------------------------

@app.task
def count_primes(limit: int) -> int:
    """CPU-bound work: how many primes are below ``limit``, by trial division in
    pure Python (it holds the GIL the whole time, as most Python code does)."""
    return count_primes_here(limit)


def count_primes_here(limit: int) -> int:
    """The same count, in the calling process (the serial baseline)."""
    found = 0
    for n in range(2, limit):
        if all(n % d for d in range(2, int(n ** 0.5) + 1)):
            found += 1
    return found


@app.task
def wait_on(url: str, call: str) -> int:
    """I/O-bound work: one call of chapter 07's flaky service (started with every
    call slow), which answers after a fixed wait. The process mostly waits."""
    return wait_on_here(url, call)


def wait_on_here(url: str, call: str) -> int:
    """The same call, in the calling process (the serial baseline)."""
    import requests

    reply = requests.get(url, params={"task": call, "attempt": 0}, timeout=10)
    reply.raise_for_status()
    return reply.json()["value"]


# --- When a workflow fails ----------------------------------------------------------

@app.task
def record_error(request, exc, traceback) -> None:
    """An error callback (``link_error`` / ``on_error``): Celery calls it in the
    worker with the failed task's request, its exception and the traceback text."""
    with _redis() as client:
        client.rpush(ERRBACKS_KEY, json.dumps({"task": request.task, "id": request.id,
                                               "error": f"{type(exc).__name__}: {exc}"}))


@app.task
def get_inside(x: int) -> int:
    """The mistake this chapter warns about: waiting for another task's result
    *inside* a task. With every worker process waiting like this, nobody is left
    to run the tasks they wait for: a deadlock. Celery refuses: get() raises
    RuntimeError("Never call result.get() within a task! ..."). Put the two in a
    chain instead, or a chord when several results are needed."""
    return add.delay(x, x).get(timeout=5)


# --- Routing: which worker runs what --------------------------------------------------

@app.task(bind=True)
def slow_report(self, seconds: float) -> str:
    """A slow task, routed to the queue "slow" (task_routes above): only a worker
    started with ``-Q slow`` takes it."""
    _record_run(RUNS_KEY, self)
    time.sleep(seconds)
    return f"report done in {seconds:g} s"


@app.task(bind=True)
def fast_ping(self) -> str:
    """A quick task on the default queue: the slow ones never stand in its way."""
    _record_run(RUNS_KEY, self)
    return "pong"


# --- Priorities (Redis) ----------------------------------------------------------------
# On Redis, kombu keeps one list per priority step for each queue: with the default
# steps [0, 3, 6, 9], priorities 0-2 share the queue's own list ("celery"), 3-5 go
# to "celery\x06\x163", 6-8 to "...6", 9 to "...9". A worker's BRPOP names the lists
# in step order, so a LOWER number is served FIRST (0 is the highest priority: the
# opposite of RabbitMQ), and only four levels are told apart unless
# broker_transport_options sets "priority_steps" (e.g. list(range(10))).
# Priority decides only among messages still in Redis: what a worker has already
# prefetched runs first whatever its priority (--prefetch-multiplier=1 narrows that).
# https://docs.celeryq.dev/en/stable/userguide/routing.html#redis-message-priorities
# kombu/transport/redis.py: PRIORITY_STEPS, Channel._q_for_pri, Channel._brpop_start

#: The Redis list where every run of ``prioritized`` records its label.
PRIORITY_KEY = "demo:workflows:priority"


@app.task(bind=True)
def prioritized(self, label: str) -> str:
    """Records that it ran (the label says which message it was), so the order is visible."""
    _record_run(PRIORITY_KEY, self, label=label)
    return label


# --- Rate limits -------------------------------------------------------------------------

# rate_limit is enforced by each worker on its own: a token bucket in the worker's
# main process, shared by its pool processes, but not with other workers. Two
# workers each run up to 5 a second: 10 together. For a limit over all workers
# (an API that allows 5 calls a second in total) every run takes a token from one
# bucket in Redis first (demo_tasks/ratelimit.py), and a run that finds none
# retries a moment later. (The other way: a queue of its own that one single
# worker consumes; its rate_limit is then the whole limit, whatever its --concurrency.)
# https://docs.celeryq.dev/en/stable/userguide/tasks.html#Task.rate_limit

#: The limit both tasks below keep: 5 calls a second.
RATE = 5
#: Celery's own rate_limit for it (per worker).
RATE_LIMIT = f"{RATE}/s"
#: The shared bucket's key in Redis (demo_tasks.ratelimit adds its prefix).
BUCKET_KEY = "flaky-service"


@app.task(rate_limit=RATE_LIMIT)
def call_per_worker(url: str, call: str) -> int:
    """One call of the service, at most RATE a second -- per worker: the worker holds
    the others back, and another worker has a bucket of its own."""
    return wait_on_here(url, call)


@app.task(bind=True, max_retries=None)
def call_throttled(self, url: str, call: str) -> dict:
    """One call of the service, at most RATE a second over ALL workers: a token from
    the bucket in Redis first; none left, and the task retries a moment later
    (max_retries=None: every wait for a token counts as a retry). Returns the value,
    the Redis time the token was granted, and how many times it waited."""
    from demo_tasks import ratelimit

    with _redis() as client:
        token = ratelimit.take_or_retry(self, client, BUCKET_KEY, RATE)
    return {"value": wait_on_here(url, call), "granted_at": token.at, "waits": self.request.retries}


# --- A real pipeline: count the words of a corpus with a chord ------------------------
# split (in the caller) -> count_piece for every piece, in parallel (a group) ->
# merge_counts once all are done (the chord's callback) -> the top words stored
# in Redis under TOP_WORDS_KEY. Pieces travel as text (they are small here);
# with big inputs pass a file name or an id instead, and read it in the task.

#: Where merge_counts stores the pipeline's result (JSON).
TOP_WORDS_KEY = "demo:workflows:top-words"


@app.task
def count_piece(text: str) -> dict[str, int]:
    """One piece of the corpus: {word: count} (jieba for Chinese, see demo_tasks/wordcount.py)."""
    from demo_tasks import wordcount

    return wordcount.count_words(text)


@app.task
def merge_counts(counts_list: list[dict[str, int]], n: int = 10) -> list[list]:
    """The chord's callback: add the pieces' counts, store and return the top n words."""
    from demo_tasks import wordcount

    best = [[word, count] for word, count in wordcount.top(wordcount.merge(counts_list), n)]
    with _redis() as client:
        client.set(TOP_WORDS_KEY, json.dumps(best, ensure_ascii=False))
    return best


def word_count_pipeline(texts, pieces: int, n: int = 10):
    """The chord, ready to run: `word_count_pipeline(corpus, 8).apply_async()`."""
    from celery import chord

    from demo_tasks import wordcount

    header = [count_piece.s(piece) for piece in wordcount.split(texts, pieces)]
    return chord(header, merge_counts.s(n=n))


# --- Reading the records -----------------------------------------------------------------

def _redis() -> redis.Redis:
    return redis.Redis.from_url(app.conf.broker_url, decode_responses=True)


def _record_run(key: str, task, **extra) -> None:
    """Leave a record of this run: the task, its id, the worker that ran it
    (its name, e.g. "slow@laptop") and the time it started."""
    record = {"task": task.name, "id": task.request.id, "hostname": task.request.hostname,
              "time": time.time(), **extra}
    with _redis() as client:
        client.rpush(key, json.dumps(record))


def read_stored_top_words() -> list[list] | None:
    """What merge_counts stored last (None before any run)."""
    with _redis() as client:
        stored = client.get(TOP_WORDS_KEY)
    return json.loads(stored) if stored else None


def read_records(key: str) -> list[dict]:
    """The records left in ERRBACKS_KEY, RUNS_KEY or PRIORITY_KEY, oldest first."""
    with _redis() as client:
        return [json.loads(item) for item in client.lrange(key, 0, -1)]
