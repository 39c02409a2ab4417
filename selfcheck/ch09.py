"""Chapter 09's exercise checks, against the chapter's real bot receiver
(``bot``, services/bot_receiver.py), a new worker and the chapter's database.

1. ``classify_bot_answer(status, body)`` (in the notebook): "sent", "retry" or
   "permanent" for an answer of the group robot. The check makes real requests
   -- to the chapter's ``bot`` (signed right, a wrong secret, a 2-hour-old
   timestamp, an unknown access_token, a 503 and a 500 queued as faults, DingTalk's
   rate limit 130101 and "busy" -1 queued as errcode faults, a body the robot
   cannot read: 200 with errcode 40035) and to a small web server of its own that
   answers what is not the robot's JSON (a gateway's 502 page, a proxy's 403 page,
   a 200 web page at a wrong address) -- and hands each real answer to the
   learner's function.
2. ``notify_ops(text, key)`` in ``my_tasks.py`` (``%%writeblock my_tasks.py
   exercise-2``): one POST to our own webhook with ``Idempotency-Key: key`` and
   ``timeout=1``, retried (at most 3 times, 0.2 s apart) on a timeout, a lost
   connection and HTTP 5xx, never on a 4xx. As chapter 07's checks, each run
   starts a new worker for the file, on a queue of its own. The webhook's
   answers are faults queued on ``/hooks/notify``, one case after the other
   (the receiver hands its faults to whichever request comes first): an answer
   held 3 s (the message arrives; the retry with the same key is a duplicate), a
   503, a 400, and 503 four times. The verdict comes from the receiver's own
   record of the requests that carry this run's texts and keys, the tasks'
   states, and the waits Celery logged before each retry.
3. A PeriodicTask named "daily report weekdays" (created with the ORM in the
   notebook): it sends notifications.tasks.mail_daily_report at 07:30 Beijing time,
   Monday to Friday. The check reads the row from the chapter's database and
   lets the row's own schedule compute its next runs from a fixed moment.

Whatever ran before, the same answer gets the same verdict: the checks use
texts, keys and task ids no earlier run used, read only the records of those,
clear the faults they queued (also on an error) and purge the exercise's queue
before and after; the receiver's records are never reset (the chapter's own
would vanish). Check 3 only reads.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import selfcheck

exercises = selfcheck.Exercises(9)

#: The queue the exercise's worker listens on (not the chapter worker's ``celery``).
QUEUE = "ch09-exercises"
#: How long a check waits for the worker (a busy machine is slow, not wrong).
WAIT = 20.0
#: The learner's file, in the chapter's scratch folder (``exercises_dir``).
FILE = "my_tasks.py"
SEND_PATH = "/robot/send"
HOOK_PATH = "/hooks/notify"

#: The beginning of my_tasks.py: the exercise adds its task below it.
STARTER = '''"""Your task for chapter 09's exercise 2. A worker for this file:
celery -A my_tasks worker --loglevel=info --queues=ch09-exercises"""

import os

import requests
from celery import Celery

app = Celery("my_tasks", broker=os.environ["REDIS_URL"], backend=os.environ["REDIS_URL"])
app.conf.task_default_queue = "ch09-exercises"    # not the queue of the chapter's worker

#: Our own webhook (the bot receiver's /hooks/notify): it delivers each Idempotency-Key once.
HOOK_URL = os.environ["NOTIFY_WEBHOOK_URL"]


class ServerError(Exception):
    """The webhook answered HTTP 5xx: it may work a moment later. Raise it, and retry on it."""


# The exercise's answer is a block below, written by the notebook (%%writeblock my_tasks.py exercise-2).
'''

START_FIRST = "先运行“练习”一节开头的单元格（它写好 my_tasks.py 的开头）"
PREPARE_FIRST = "先运行本章“准备”一节的单元格（它启动机器人接收端 bot）"


# --- Exercise 1: reading the robot's answer -------------------------------------------------

ANSWERS = ("sent", "retry", "permanent")


@contextmanager
def _web_page_server():
    """A small web server of the check's own, on a free port of 127.0.0.1, for answers
    that are not the robot's JSON: POST /gateway answers a gateway's 502 error page,
    POST /forbidden a proxy's 403 page, POST /page a 200 web page (a webhook URL that points at
    a web site). Stopped on leaving."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Page(BaseHTTPRequestHandler):
        def log_message(self, format, *args) -> None:  # nothing printed from this thread
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.startswith("/gateway"):
                status, text = 502, "<html><body><h1>502 Bad Gateway</h1></body></html>"
            elif self.path.startswith("/forbidden"):
                status, text = 403, "<html><body><h1>403 Forbidden</h1></body></html>"
            else:
                status, text = 200, "<html><body><h1>Welcome</h1></body></html>"
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _signed(url: str, secret: str, now: float | None = None) -> str:
    """``url`` with DingTalk's timestamp and sign for ``now`` (default: this moment)."""
    from urllib.parse import urlencode

    from services.bot_receiver import dingtalk_sign

    timestamp = round((time.time() if now is None else now) * 1000)
    return f"{url}&{urlencode({'timestamp': timestamp, 'sign': dingtalk_sign(secret, timestamp)})}"


def _text(content: str) -> dict:
    return {"msgtype": "text", "text": {"content": content}}


def _robot_answers(bot) -> list[tuple[str, int, dict | None, str]]:
    """Real requests, one per case: (what was sent, HTTP status, the body as JSON or None,
    what the answer should be classified as). A RuntimeError if an answer is not the one
    the case is about (a fault taken by another request, a receiver started otherwise)."""
    import requests

    def post(url: str, payload: dict) -> tuple[int, dict | None]:
        reply = requests.post(url, json=payload, timeout=10)
        try:
            body = reply.json()
        except ValueError:
            body = None
        return reply.status_code, body if isinstance(body, dict) else None

    label = "（第 09 章练习 1 的检查）"
    other_token = bot.send_url.replace(f"access_token={bot.token}", "access_token=no-such-token")
    too_fast = {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
    busy = {"errcode": -1, "errmsg": "系统繁忙"}

    def signed(content: str) -> tuple[int, dict | None]:
        return post(_signed(bot.send_url, bot.secret), _text(content + label))

    # (what, send, the answer expected: (HTTP status, errcode), the right classification, the fault queued first)
    cases = [
        ("签名正确的文本消息", lambda: signed("签名正确"), (200, 0), "sent", None),
        ("用错了密钥签名的消息", lambda: post(_signed(bot.send_url, bot.secret + "-wrong"), _text("密钥不对" + label)),
         (200, 310000), "permanent", None),
        ("两小时前签名的消息（timestamp 太旧）",
         lambda: post(_signed(bot.send_url, bot.secret, time.time() - 7200), _text("时间太旧" + label)),
         (200, 310000), "permanent", None),
        ("发给不存在的 access_token 的消息",
         lambda: post(_signed(other_token, bot.secret), _text("token 不对" + label)),
         (200, 300001), "permanent", None),
        ("机器人暂时出错（HTTP 503）", lambda: signed("503"), (503, None), "retry", 503),
        ("机器人内部错误（HTTP 500）", lambda: signed("500"), (500, None), "retry", 500),
        ("发得太快（一分钟超过 20 条）", lambda: signed("发得太快"), (200, 130101), "retry", too_fast),
        ("钉钉系统繁忙", lambda: signed("系统繁忙"), (200, -1), "retry", busy),
        ("格式不对的消息（msgtype 写错了）",
         lambda: post(_signed(bot.send_url, bot.secret), {"msgtype": "txt", "txt": {"content": "?"}}),
         (200, 40035), "permanent", None),
    ]
    answers = []
    for what, send, (status, errcode), want, fault in cases:
        if fault is not None:
            bot.faults(SEND_PATH, [fault])       # the next request gets it
        got_status, body = send()
        got_errcode = None if body is None else body.get("errcode")
        if got_status != status or (errcode is not None and got_errcode != errcode):
            raise RuntimeError(f"{what}：机器人接收端回答的是 HTTP {got_status} {body}，本该是 HTTP {status}"
                               f"{f' errcode {errcode}' if errcode is not None else ''}。"
                               "等本章别的任务发完消息，再运行一次检查")
        answers.append((what, got_status, body, want))
    with _web_page_server() as web:
        answers.append(("网关的错误页（HTTP 502，不是 JSON）", *post(web + "/gateway", _text("?")), "retry"))
        answers.append(("网关拒绝了请求（HTTP 403，不是 JSON）", *post(web + "/forbidden", _text("?")), "permanent"))
        answers.append(("地址填错了：一个网页回答了 HTTP 200（不是 JSON）", *post(web + "/page", _text("?")),
                        "permanent"))
    return answers


def _classification_problem(what: str, status: int, body: dict | None, want: str, got: object) -> str | None:
    """The hint for one answer classified ``got`` (None if that is right)."""
    if got == want:
        return None
    if got not in ANSWERS:
        return f"{what}：函数返回了 {got!r}，只能返回 \"sent\"、\"retry\"、\"permanent\" 之一"
    errcode = None if body is None else body.get("errcode")
    if want == "sent":
        return f"{what}（HTTP {status}，errcode 0）是发送成功，应该是 \"sent\"，函数返回了 {got!r}"
    if want == "retry" and status < 300:
        return (f"{what}：errcode {errcode}（{body.get('errmsg')}）是暂时的：130101 是发得太快（每分钟 20 条），"
                f"-1 是系统繁忙：等一会儿再发，应该是 \"retry\"，函数返回了 {got!r}")
    if want == "retry":
        return (f"{what}：HTTP {status} 是接收方暂时出错，过一会儿可能就好了，应该是 \"retry\"，函数返回了 {got!r}"
                "（HTTP 5xx 都是 \"retry\"，不管 body 是什么）")
    # want == "permanent"
    if 200 <= status < 300 and body is None:
        return (f"{what}：HTTP 200 却不是钉钉的 JSON 回答（body 是 None），消息没有送到机器人，再发也一样，"
                f"应该是 \"permanent\"，函数返回了 {got!r}")
    if 200 <= status < 300 and got == "sent":
        return (f"{what}：HTTP 200 不等于发送成功：钉钉把错误也放在 200 的回答里，看 body 的 errcode"
                f"（这里是 {errcode} {body.get('errmsg')}），只有 errcode 0 才是 \"sent\"")
    if 200 <= status < 300:
        return (f"{what}：errcode {errcode}（{body.get('errmsg')}）不是暂时的错误：同样的请求再发一次，回答还是一样，"
                f"应该是 \"permanent\"，不要重试（只有 130101 和 -1 是暂时的）")
    return (f"{what}：HTTP {status} 是请求本身有错（4xx），再发一百次回答也一样，应该是 \"permanent\"，"
            f"函数返回了 {got!r}")


@exercises.register(1)
def classify(ns: dict) -> list[str]:
    problems = selfcheck.given(ns, "classify_bot_answer", "返回 \"sent\"、\"retry\" 或 \"permanent\"")
    if problems:
        return problems
    bot = ns.get("bot")
    if bot is None or not hasattr(bot, "faults"):
        return [PREPARE_FIRST]
    function = ns["classify_bot_answer"]
    try:
        bot.faults(SEND_PATH, [])   # nothing left queued for the robot: every case gets its own answer
        answers = _robot_answers(bot)
    except RuntimeError as exc:
        return [str(exc)]
    finally:
        bot.faults(SEND_PATH, [])   # what this check queued is not left for the chapter's tasks
    problems = []
    for what, status, body, want in answers:
        try:
            got = function(status, body)
        except Exception as exc:
            advice = "：回答不是 JSON 时 body 是 None，先判断它" if body is None else ""
            problems.append(f"{what}：classify_bot_answer({status}, {body!r:.80}) 出错："
                            f"{type(exc).__name__}: {exc}{advice}")
            continue
        problem = _classification_problem(what, status, body, want, got)
        if problem:
            problems.append(problem)
    return problems


# --- Exercise 2: a notification that is not delivered twice ---------------------------------

#: A retry that waits longer than this is not the 0.2 s asked for (Celery's default is 180 s).
LONG_WAIT = 1.0
#: The waits (seconds) Celery may log for "0.2 s apart".
RETRY_WAITS = (0.1, 0.5)


def _files(ns: dict) -> selfcheck.Workspace | None:
    return selfcheck.exercise_files(ns, FILE)


def _purge(app) -> None:
    selfcheck.purge_queue(app, QUEUE)


def _retry_waits(worker, task_id: str) -> list[float]:
    """The waits Celery chose before each retry of the task ("retry: Retry in 0.2s" in the
    worker's log): what was asked for, not a time measured on a machine that may be busy."""
    return [float(d) for d in re.findall(rf"\[{re.escape(task_id)}\] retry: Retry in ([\d.]+)s", worker.log())]


class _Case:
    """One notification the check sends: its text and key are this run's only."""

    def __init__(self, name: str, fault: list, run: str):
        self.name, self.fault = name, fault
        self.text = f"ch09 exercise 2 {name} {run}"
        self.key = f"ops-{run}-{name}"
        self.result = None

    def requests(self, bot) -> list[dict]:
        """The receiver's record of this case's requests (by text, or by key if the body was unreadable)."""
        return [m for m in bot.messages()
                if m["path"] == HOOK_PATH and (m["content"] == self.text or m["key"] == self.key)]


def _send_case(bot, send, case: _Case, worker, *, stop_after: int) -> str:
    """Queue the case's faults, send the task, wait until it ends (or waits long before a
    retry, or has made more than ``stop_after`` requests). "done", "waiting long" or "timeout"."""
    import launcher

    bot.faults(HOOK_PATH, case.fault)
    case.result = send(case.text, case.key)

    def settled() -> bool:
        return (case.result.ready() or any(d > LONG_WAIT for d in _retry_waits(worker, case.result.id))
                or len(case.requests(bot)) > stop_after)

    if not launcher.wait_for(settled, WAIT, interval=0.05):
        return "timeout"
    if case.result.ready():
        return "done"
    return "waiting long" if any(d > LONG_WAIT for d in _retry_waits(worker, case.result.id)) else "too many"


def _state(case: _Case) -> str:
    result = case.result
    return f"{result.state}（{result.result!r:.100}）" if result.state == "FAILURE" else result.state


def _judge_notify(bot, send, worker) -> list[str]:
    run = uuid.uuid4().hex[:10]
    where = f"{FILE} 的 notify_ops"
    held = _Case("held", ["hang"], run)
    unavailable = _Case("unavailable", [503], run)
    refused = _Case("refused", [400], run)
    down = _Case("down", [503, 503, 503, 503], run)
    problems: list[str] = []
    hang = getattr(bot, "hang", None) or 3.0    # how long the receiver holds a "hang" answer (its default: 3 s)

    def common(case: _Case, outcome: str, what: str) -> list[str] | None:
        """The problems every case shares (None: go on judging the case)."""
        asked = case.requests(bot)
        waits = _retry_waits(worker, case.result.id)
        if outcome == "waiting long":
            if any(d >= 60 for d in waits):
                return [f"{where}：{what}，重试前要等 {waits} 秒：没有给重试的等待时间，默认等 default_retry_delay = "
                        "180 秒；这里每次等 0.2 秒（default_retry_delay=0.2）"]
            return [f"{where}：{what}，重试前要等 {waits} 秒：每次等 0.2 秒就够了（default_retry_delay=0.2，"
                    "不用 retry_backoff）"]
        if outcome == "timeout":
            return [f"{where}：{what}，{WAIT:g} 秒里任务没有结束（状态 {case.result.state}，接收方收到 "
                    f"{len(asked)} 个请求）"]
        if not asked:
            return [f"{where}：{what}，接收方一个请求也没有收到：任务要 requests.post(HOOK_URL, json={{\"event\": "
                    f"\"ops\", \"text\": text}}, headers={{\"Idempotency-Key\": key}}, timeout=1)"
                    f"（任务的结果：{_state(case)}）"]
        if asked[0]["fault"] != case.fault[0]:
            return [f"接收方把给这次检查安排的故障（{case.fault[0]}）交给了别的请求：等本章别的任务发完消息，"
                    "再运行一次检查"]
        if any(m["key"] is None for m in asked):
            return [f"{where}：每次尝试都要带同一个 Idempotency-Key（请求头 {{\"Idempotency-Key\": key}}），"
                    "接收方才能认出重试、只投递一次；现在的请求没有这个请求头"]
        keys = list(dict.fromkeys(m["key"] for m in asked))
        if keys != [case.key]:
            return [f"{where}：每次尝试都要带同一个 Idempotency-Key，就是参数 key（{case.key!r}），不要在任务里新生成："
                    f"接收方收到的键是 {keys}，同一条通知投递了 {sum(m['delivered'] for m in asked)} 次"]
        if any(m["event"] != "ops" for m in asked):
            return [f"{where}：正文要是 JSON {{\"event\": \"ops\", \"text\": text}}（requests.post 的 json=），"
                    f"接收方收到的 event 是 {asked[0]['event']!r}"]
        wrong_waits = [d for d in waits if not RETRY_WAITS[0] <= d <= RETRY_WAITS[1]]
        if wrong_waits:
            return [f"{where}：{what}，重试前等了 {waits} 秒：每次等 0.2 秒（default_retry_delay=0.2，"
                    "或者 countdown=0.2；不用 retry_backoff）"]
        return None

    # a) The answer held 3 s: the message arrived, the task's 1 s timeout fires, the retry is a duplicate.
    outcome = _send_case(bot, send, held, worker, stop_after=3)
    found = common(held, outcome, f"接收方收下消息、却过 {hang:g} 秒才回答时")
    if found is not None:
        return found
    asked = held.requests(bot)
    if len(asked) == 1 and held.result.state == "SUCCESS":
        problems.append(f"{where}：接收方过 {hang:g} 秒才回答，任务就干等了 {hang:g} 秒：requests.post 要给 timeout=1，"
                        "1 秒没有回答就放弃这次尝试、带同一个键重试")
    elif len(asked) == 1:
        problems.append(f"{where}：请求超时以后任务失败了（{_state(held)}）：超时（requests.Timeout）要重试——"
                        "消息可能已经送到，只是回答晚了；带同一个键重试，接收方不会再投递一次")
    elif held.result.state != "SUCCESS" or len(asked) != 2 or [m["verdict"] for m in asked] != ["ok", "duplicate"]:
        problems.append(f"{where}：接收方过 {hang:g} 秒才回答时，应该超时一次、重试一次就成功（2 个请求：一次投递、"
                        f"一次重复）；现在结果是 {_state(held)}，接收方的记录是 {[m['verdict'] for m in asked]}")

    # b) A 503: retried, then delivered.
    outcome = _send_case(bot, send, unavailable, worker, stop_after=3)
    found = common(unavailable, outcome, "接收方先回答 503 时")
    if found is not None:
        return [*problems, *found]
    asked = unavailable.requests(bot)
    retries_5xx = len(asked) > 1
    if len(asked) == 1:
        if unavailable.result.state == "SUCCESS":
            problems.append(f"{where}：接收方回答 HTTP 503，任务却成功了，消息没有送到：收到 5xx 时 "
                            "raise ServerError(...)，让任务在 ServerError 上重试")
        else:
            problems.append(f"{where}：接收方回答 HTTP 503，任务没有重试就失败了（{_state(unavailable)}）："
                            "5xx 过一会儿可能就好了，收到时 raise ServerError(...)，把 ServerError 放进 autoretry_for")
    elif unavailable.result.state != "SUCCESS" or sum(m["delivered"] for m in asked) != 1:
        problems.append(f"{where}：先 503、再正常时，应该重试一次就成功、投递一次；现在结果是 {_state(unavailable)}，"
                        f"接收方的记录是 {[m['verdict'] for m in asked]}")

    # c) A 400: the request itself is wrong, the same request gets the same answer: no retry.
    outcome = _send_case(bot, send, refused, worker, stop_after=1)
    asked = refused.requests(bot)
    if outcome == "too many" or len(asked) > 1:
        problems.append(f"{where}：接收方回答 HTTP 400 以后，任务又发了一次：4xx 是请求本身有错，"
                        "再发一次回答还是一样，不要重试（只重试超时、连接失败和 5xx；"
                        "raise_for_status() 抛出的 HTTPError 不要放进 autoretry_for）")
    else:
        found = common(refused, outcome, "接收方回答 400 时")
        if found is not None:
            return [*problems, *found]
        if refused.result.state != "FAILURE":
            problems.append(f"{where}：接收方回答 HTTP 400（消息没有送到），任务却是 {_state(refused)}：收到 4xx "
                            "要让任务失败，例如 reply.raise_for_status()，不重试")

    # d) 503 every time: at most 3 retries (4 requests), then the task fails. (Not asked when
    # a 503 is not retried at all: that hint is given already.)
    if not retries_5xx:
        return list(dict.fromkeys(problems))
    outcome = _send_case(bot, send, down, worker, stop_after=4)
    asked = down.requests(bot)
    if outcome == "too many" or len(asked) > 4 or (outcome == "done" and down.result.state == "SUCCESS"):
        problems.append(f"{where}：接收方一直回答 503 时，任务发了 {len(asked)} 次：最多重试 3 次"
                        "（max_retries=3，一共 4 次请求），然后失败")
    else:
        found = common(down, outcome, "接收方一直回答 503 时")
        if found is not None:
            return [*problems, *found]
        if len(asked) != 4 or down.result.state != "FAILURE":
            problems.append(f"{where}：接收方一直回答 503 时，应该重试 3 次（max_retries=3，一共 4 次请求）然后失败；"
                            f"现在接收方收到 {len(asked)} 个请求，结果是 {_state(down)}")
    return list(dict.fromkeys(problems))


@exercises.register(2)
def notify_ops(ns: dict) -> list[str]:
    from celery import Celery

    files = _files(ns)
    if files is None or "broker" not in ns:
        return [START_FIRST]
    bot = ns.get("bot")
    if bot is None or not hasattr(bot, "faults"):
        return [PREPARE_FIRST]
    if files.stub(FILE, "exercise-2") and "def notify_ops" not in files.path(FILE).read_text(encoding="utf-8"):
        return [f"还没有答案：在 %%writeblock {FILE} exercise-2 的单元格里定义任务 notify_ops(text, key)"]
    broker = ns["broker"]
    app = Celery("my_tasks", broker=broker.url, backend=broker.url, set_as_current=False)
    _purge(app)
    try:
        worker, problem = selfcheck.start_exercise_worker(files, broker, QUEUE, FILE, concurrency=1,
                                                          env={"NOTIFY_WEBHOOK_URL": bot.hook_url})
        if problem:
            return [problem]
        try:
            if "my_tasks.notify_ops" not in worker.banner_section():
                return [f"{FILE} 的 exercise-2 这一段里没有任务 notify_ops：用 @app.task 定义它，函数名就是 notify_ops"]

            def send(text: str, key: str):
                return app.send_task("my_tasks.notify_ops", (text, key), task_id=str(uuid.uuid4()), queue=QUEUE)

            return _judge_notify(bot, send, worker)
        finally:
            worker.cleanup()
    finally:
        bot.faults(HOOK_PATH, [])   # nothing this check queued is left for the chapter's tasks
        _purge(app)
        app.close()


# --- Exercise 3: the daily report on weekday mornings ---------------------------------------

NAME = "daily report weekdays"
TASK = "notifications.tasks.mail_daily_report"
SHANGHAI = ZoneInfo("Asia/Shanghai")
#: The moment the next runs are computed from: a Friday, 08:00 in Beijing, after that day's report.
START = datetime(2025, 1, 3, 8, 0, tzinfo=SHANGHAI)
#: A week to see on which days it runs, Sunday to Saturday.
WEEK = [date(2025, 1, 5) + timedelta(days=i) for i in range(7)]
WEEKDAY_NAMES = {1: "星期一", 2: "星期二", 3: "星期三", 4: "星期四", 5: "星期五", 6: "星期六", 7: "星期日"}


def _next_run(schedule, after: datetime) -> datetime:
    """The first run of ``schedule`` (a celery crontab) after ``after``, as its own
    remaining_delta computes it, in Beijing time."""
    last, delta, _ = schedule.remaining_delta(after)
    return (last + delta).astimezone(SHANGHAI)


def next_runs(schedule, count: int = 10, start: datetime = START) -> list[datetime]:
    """The next ``count`` runs of ``schedule`` after ``start``, in Beijing time."""
    runs, moment = [], start
    for _ in range(count):
        moment = _next_run(schedule, moment)
        runs.append(moment)
    return runs


def run_days(schedule) -> set[int]:
    """The days of the week (isoweekday: 1 = Monday, 7 = Sunday, in Beijing) on which ``schedule`` runs."""
    days = set()
    for day in WEEK:
        before = datetime(day.year, day.month, day.day, tzinfo=SHANGHAI) - timedelta(minutes=1)
        if _next_run(schedule, before).date() == day:
            days.add(day.isoweekday())
    return days


def _days(days) -> str:
    return "、".join(WEEKDAY_NAMES[d] for d in sorted(days)) or "没有一天"


@exercises.register(3)
def weekday_report(ns: dict) -> list[str]:
    problems = selfcheck.given(ns, "weekday_report", f"用 update_or_create 建好（或更新）的定时任务 “{NAME}”")
    if problems:
        return problems
    from django_celery_beat.models import PeriodicTask

    answer = ns["weekday_report"]
    if not isinstance(answer, PeriodicTask):
        return [f"`weekday_report` 是 {type(answer).__name__}：要一个 PeriodicTask（update_or_create 返回 "
                "(对象, 是否新建)，取第一个）"]
    if answer.name != NAME:
        return [f"`weekday_report` 的名字是 {answer.name!r}：要叫 {NAME!r}"
                "（检查按名字找它，update_or_create 也按名字）"]
    task = PeriodicTask.objects.filter(name=NAME).select_related("crontab").first()
    if task is None:
        return [f"还没有名为 {NAME} 的定时任务：数据库里没有这一行，用 PeriodicTask.objects.update_or_create("
                f"name={NAME!r}, defaults={{...}}) 建它"]
    problems = []
    if task.task != TASK:
        problems.append(f"它发送的任务是 {task.task!r}：要 {TASK!r}（任务的完整名字，和 worker 的 [tasks] 里的一样）")
    if not task.enabled:
        problems.append("数据库里它是停用的（enabled=False）：要 enabled=True"
                        "（改了对象的属性，还要 save() 才写进数据库）")
    if task.one_off:
        problems.append("one_off=True 的定时任务只运行一次：日报每个工作日都要发，one_off 保持 False")
    if task.interval_id or task.clocked_id or task.solar_id:
        problems.append("它的时间表不是 crontab（interval、clocked 或 solar）：用一个 CrontabSchedule，"
                        "defaults 里其他几种设为 None")
    if task.crontab_id is None:
        problems.append("它没有 crontab：defaults 里给 crontab=一个 CrontabSchedule")
        return problems
    cron = task.crontab
    try:
        schedule = cron.schedule
        runs = next_runs(schedule)
        days = run_days(schedule)
    except (ValueError, RuntimeError) as exc:
        return [*problems, f"它的 crontab 算不出运行时间（{exc}）：minute、hour、day_of_week 写对了吗？"]
    fields = (f"minute={cron.minute!r}, hour={cron.hour!r}, day_of_week={cron.day_of_week!r}, "
              f"timezone={str(cron.timezone)!r}")
    beijing = {(r.hour, r.minute) for r in runs}
    if beijing != {(7, 30)}:
        local = {(r.astimezone(cron.timezone).hour, r.astimezone(cron.timezone).minute) for r in runs}
        if local == {(7, 30)}:
            shown = sorted(beijing)[0]
            problems.append(f"07:30 是北京时间：CrontabSchedule 要 timezone=\"Asia/Shanghai\"。它的时区是 "
                            f"{cron.timezone!s}，07:30 在北京是 {shown[0]:02d}:{shown[1]:02d}（{fields}）")
        else:
            shown = "、".join(f"{r:%m-%d %H:%M}" for r in runs[:4])
            problems.append(f"按它的 crontab，从 {START:%m-%d %H:%M} 起的运行（北京时间）是 {shown}……：每天只在 07:30 "
                            f"运行一次，要 minute=\"30\", hour=\"7\"（现在 {fields}）")
    if days != {1, 2, 3, 4, 5}:
        if 7 in days and 5 not in days:
            problems.append(f"它在{_days(days)}运行：crontab 的 day_of_week 里 0 是星期日（1 是星期一），"
                            f"周一到周五要写 \"1-5\" 或 \"mon-fri\"（现在 day_of_week={cron.day_of_week!r}）")
        else:
            problems.append(f"它在{_days(days)}运行：要周一到周五，day_of_week=\"mon-fri\"（或 \"1-5\"），"
                            f"日期和月份不限（现在 {fields}, day_of_month={cron.day_of_month!r}, "
                            f"month_of_year={cron.month_of_year!r}）")
    if not problems:
        # What beat will do, once more as a whole: the next 10 runs, each 07:30 in Beijing on a working day.
        wrong = [r for r in runs if (r.hour, r.minute) != (7, 30) or r.isoweekday() > 5]
        if wrong:
            problems.append(f"按它的 crontab，接下来的运行里 {', '.join(f'{r:%m-%d %H:%M}' for r in wrong[:3])}"
                            "（北京时间）不是工作日的 07:30")
    return problems
