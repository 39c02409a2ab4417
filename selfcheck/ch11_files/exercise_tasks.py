"""Chapter 11's exercises: three tasks to write tests for (the tests go into test_ex1.py ... test_ex3.py).

The app reads its broker from REDIS_URL; the rate service's address from RATE_URL."""

import os

import requests
from celery import Celery
from celery.schedules import crontab

app = Celery("exercise_tasks", broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
             backend=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_default_queue=os.environ.get("EXERCISE_QUEUE", "ch11-exercises"),  # this file's own queue
    timezone="Asia/Shanghai",                                              # crontab hours are Beijing time
    beat_schedule={
        "weekday-report": {
            "task": "exercise_tasks.send_report",
            "schedule": crontab(minute=30, hour=7, day_of_week="mon-fri", app=app),  # 07:30 Beijing, Mon-Fri
        },
    },
)

RATE_URL = os.environ.get("RATE_URL", "https://rates.example.com/api/rate")


class ServerError(Exception):
    """The rate service answered 5xx: it may answer tomorrow, so the task retries."""


@app.task
def split_batches(ids, size):
    """``ids`` in lists of at most ``size``, in order; ``size`` below 1 raises ValueError."""
    if size < 1:
        raise ValueError(f"size must be at least 1, not {size}")
    return [ids[i:i + size] for i in range(0, len(ids), size)]


@app.task(bind=True, autoretry_for=(requests.ConnectionError, ServerError), max_retries=3,
          default_retry_delay=0.1)
def fetch_rate(self, currency):
    """The exchange rate of ``currency`` from the rate service: 5xx and lost connections are
    retried (3 times, 0.1 s apart); 4xx fail at once."""
    reply = requests.get(RATE_URL, params={"currency": currency}, timeout=2)
    if reply.status_code >= 500:
        raise ServerError(f"HTTP {reply.status_code}")
    reply.raise_for_status()
    return reply.json()["rate"]


@app.task
def send_report():
    """What the weekday schedule sends (the exercise tests the schedule, not this task)."""
    return "sent"
