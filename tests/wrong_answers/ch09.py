"""Plausible wrong answers to chapter 09's exercises, each with a piece of the
hint its check must print (run by tests/exercise_matrix.py, and without a
notebook by tests/test_verdicts_09.py)."""

from tests.exercise_matrix import Wrong

_NOTIFY = "%%writeblock my_tasks.py exercise-2\n"

#: The imports a wrong answer to exercise 3 needs (each answer runs on its own).
_BEAT = "from django_celery_beat.models import CrontabSchedule, PeriodicTask\n\n"


def _weekday_report(*, minute: str = "30", hour: str = "7", day_of_week: str = "mon-fri",
                    timezone: str = "Asia/Shanghai", task: str = "notifications.tasks.mail_daily_report",
                    enabled: str = "True", comment: str = "") -> str:
    """Exercise 3's answer with one thing changed: the row found by name is updated."""
    return (f"{_BEAT}"
            f"morning, _ = CrontabSchedule.objects.get_or_create(\n"
            f"    minute=\"{minute}\", hour=\"{hour}\", day_of_week=\"{day_of_week}\",{comment}\n"
            f"    day_of_month=\"*\", month_of_year=\"*\", timezone=\"{timezone}\",\n"
            f")\n"
            f"weekday_report, _ = PeriodicTask.objects.update_or_create(\n"
            f"    name=\"daily report weekdays\",\n"
            f"    defaults={{\"task\": \"{task}\", \"crontab\": morning, \"interval\": None,\n"
            f"              \"enabled\": {enabled}}},\n"
            f")\n")


def _notify(*, retry_on: str = "requests.Timeout, requests.ConnectionError, ServerError",
            headers: str = '{"Idempotency-Key": key}', timeout: str = ", timeout=1",
            server_error: bool = True, before: str = "") -> str:
    """Exercise 2's answer with one thing changed."""
    check_5xx = ("    if reply.status_code >= 500:\n"
                 "        raise ServerError(f\"HTTP {reply.status_code}\")\n") if server_error else ""
    return (f"{_NOTIFY}{before}"
            f"@app.task(bind=True, autoretry_for=({retry_on}),\n"
            f"          max_retries=3, default_retry_delay=0.2)\n"
            f"def notify_ops(self, text, key):\n"
            f"    reply = requests.post(HOOK_URL, json={{\"event\": \"ops\", \"text\": text}},\n"
            f"                          headers={headers}{timeout})\n"
            f"{check_5xx}"
            f"    reply.raise_for_status()\n"
            f"    return reply.json()\n")


WRONG = {
    1: [
        Wrong(['''def classify_bot_answer(status, body):
    if 200 <= status < 300:
        return "sent"            # HTTP 200: it worked?
    if status >= 500:
        return "retry"
    return "permanent"
'''], hint="HTTP 200 不等于发送成功", why="the HTTP status only, errcode not read"),
        Wrong(['''def classify_bot_answer(status, body):
    if status >= 400:
        return "retry"           # any HTTP error: try again
    if body is not None and body.get("errcode") == 0:
        return "sent"
    return "permanent"
'''], hint="是请求本身有错（4xx）", why="a 4xx retried"),
        Wrong(['''def classify_bot_answer(status, body):
    if status >= 500:
        return "retry"
    if status >= 400 or body is None:
        return "permanent"
    return "sent" if body.get("errcode") == 0 else "retry"   # a refusal may pass?
'''], hint="不是暂时的错误", why="errcode != 0 retried"),
        Wrong(['''def classify_bot_answer(status, body):
    if status >= 500:
        return "retry"
    if status >= 400:
        return "permanent"
    return "sent" if body["errcode"] == 0 else "permanent"
'''], hint="回答不是 JSON 时 body 是 None，先判断它", why="crashes on an answer that is not JSON"),
        Wrong(['''def classify_bot_answer(status, body):
    if 500 <= status < 600:
        return "retry"
    if not 200 <= status < 300:
        return "permanent"
    if body is not None and body.get("errcode") == 0:
        return "sent"
    return "permanent"           # every errcode != 0: the robot is set up wrong?
'''], hint="130101 是发得太快（每分钟 20 条），-1 是系统繁忙：等一会儿再发", why="every errcode != 0 permanent"),
        Wrong(['''def classify_bot_answer(status, body):
    if body is None:
        return "retry"
    return "sent" if body.get("errcode") == 0 else "permanent"
'''], hint='HTTP 5xx 都是 "retry"', why="the body only, the HTTP status not read"),
    ],
    2: [
        Wrong([_notify(headers="{}")], hint="每次尝试都要带同一个 Idempotency-Key", why="no Idempotency-Key header"),
        Wrong([_notify(headers='{"Idempotency-Key": str(uuid.uuid4())}', before="import uuid\n\n\n")],
              hint="不要在任务里新生成", why="a new key for every attempt"),
        Wrong([_notify(timeout="")], hint="requests.post 要给 timeout=1", why="no timeout"),
        Wrong([_notify(retry_on="requests.RequestException, ServerError")],
              hint="4xx 是请求本身有错", why="HTTPError (a 400) retried too"),
        Wrong([_notify(retry_on="requests.Timeout, requests.ConnectionError", server_error=False)],
              hint="把 ServerError 放进 autoretry_for", why="a 5xx not retried"),
    ],
    3: [
        Wrong([_weekday_report(day_of_week="0-4", comment="  # 0 = Monday, as weekday() counts")],
              hint="crontab 的 day_of_week 里 0 是星期日", why="day_of_week 0-4: Sunday to Thursday"),
        Wrong([_weekday_report(minute="*/30")], hint="每天只在 07:30 运行一次", why="minute */30: 07:00 and 07:30"),
        Wrong([_weekday_report(hour="*")], hint="每天只在 07:30 运行一次", why="hour *: every hour at :30"),
        Wrong([_weekday_report(timezone="UTC")], hint="CrontabSchedule 要 timezone=\"Asia/Shanghai\"",
              why="07:30 UTC is 15:30 in Beijing"),
        Wrong([_weekday_report(task="mail_daily_report")], hint="要 'notifications.tasks.mail_daily_report'",
              why="the function's name, not the task's"),
        Wrong([_weekday_report(enabled="False")], hint="数据库里它是停用的", why="disabled"),
    ],
}
