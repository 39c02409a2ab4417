import os
import time

from celery import Celery

# The article's broker and result backend, 'redis://127.0.0.1', are the
# defaults; REDIS_URL points both at another server (make lab and the tests
# set it). Learners copying the article's file keep working unchanged.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1")

app = Celery('tasks', broker=REDIS_URL, backend=REDIS_URL)

# Celery 5 warns at every worker start-up unless this is said explicitly:
# keep retrying the broker connection while the worker starts.
app.conf.broker_connection_retry_on_startup = True
# With Redis down, the result backend would silently retry ~20 times before
# failing; two quick retries make delay() and get() fail within seconds.
app.conf.result_backend_transport_options = {
    "retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
}


@app.task
def add(x, y):
    return x + y


# --- Added by the course (chapters 01 and 03) --------------------------------

@app.task
def slow_add(x, y, seconds=1.0):
    """add() that takes a while: the 'expensive' work of chapter 01."""
    time.sleep(seconds)
    return x + y


@app.task
def divide(x, y):
    """Fails on purpose when y == 0: ZeroDivisionError travels back to get()."""
    return x / y
