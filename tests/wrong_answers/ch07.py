"""Plausible wrong answers to chapter 07's exercises, each with a piece of the
hint its check must print (run by tests/exercise_matrix.py)."""

from tests.exercise_matrix import Wrong

_POLITE = "%%writeblock my_tasks.py exercise-1\n"
_EXPORT = "%%writeblock my_tasks.py exercise-2\n"
_REPORT = "%%writeblock my_tasks.py exercise-3\n"

WRONG = {
    1: [
        Wrong([_POLITE + '''@app.task(bind=True, autoretry_for=(Exception,), max_retries=3, default_retry_delay=0.2)
def fetch_politely(self, url):
    return call_service(url, self.request.id, self.request.retries)'''],
              hint="ClientError 不在 autoretry_for 里", why="retries a 404 too"),
        Wrong([_POLITE + '''@app.task(bind=True, autoretry_for=(ServiceUnavailable, ServiceTimeout), max_retries=3)
def fetch_politely(self, url):
    return call_service(url, self.request.id, self.request.retries)'''],
              hint="default_retry_delay = 180 秒", why="no retry delay given"),
        Wrong([_POLITE + '''@app.task(bind=True, autoretry_for=(ServiceUnavailable,),
          max_retries=3, default_retry_delay=0.2)
def fetch_politely(self, url):
    return call_service(url, self.request.id, self.request.retries)'''],
              hint="autoretry_for 里要有 ServiceUnavailable 和 ServiceTimeout", why="retries 503 only"),
    ],
    2: [
        Wrong([_EXPORT + '''@app.task
def export_rows(seconds):
    import time

    PARTS.mkdir(exist_ok=True)
    part = PARTS / "export.part"
    with part.open("w") as f:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            f.write("a row\\n")
            time.sleep(0.05)
    part.rename(PARTS / "export.csv")
    return "exported"'''],
              hint="给任务加上 soft_time_limit=1", why="no soft time limit"),
        Wrong([_EXPORT + '''@app.task(soft_time_limit=1)
def export_rows(seconds):
    import time

    PARTS.mkdir(exist_ok=True)
    part = PARTS / "export.part"
    try:
        with part.open("w") as f:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                f.write("a row\\n")
                time.sleep(0.05)
    except SoftTimeLimitExceeded:
        return "stopped by the soft time limit"
    part.rename(PARTS / "export.csv")
    return "exported"'''],
              hint="parts/ 里还留着 ['export.part']", why="half-written file left"),
    ],
    3: [
        Wrong([_REPORT + '''@app.task(bind=True, autoretry_for=(Exception,), max_retries=None, default_retry_delay=0.2)
def fetch_report(self, url):
    return call_service(url, self.request.id, self.request.retries)'''],
              hint="autoretry_for=(Exception,) 连 404 也重试", why="the bug left as it was"),
        Wrong([_REPORT + '''@app.task(bind=True, autoretry_for=(ServiceError,), max_retries=5, default_retry_delay=0.2)
def fetch_report(self, url):
    return call_service(url, self.request.id, self.request.retries)'''],
              hint="ClientError 是 ServiceError 的子类", why="the 4xx class is a ServiceError too"),
        Wrong([_REPORT + '''@app.task(bind=True)
def fetch_report(self, url):
    return call_service(url, self.request.id, self.request.retries)'''],
              hint="503 和超时还要重试", why="no retry at all"),
    ],
}
