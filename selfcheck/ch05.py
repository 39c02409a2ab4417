"""Chapter 05's exercise checks. Each one runs the learner's code in the
notebook's Django (the chapter's own database) against the chapter's real
worker, so a check passes only on what really happened:

1. ``check_after_commit(report)``: called inside a transaction, it sends
   ``reports.tasks.report_exists`` for the report only once the row is
   committed (on_commit), and returns the task id; the worker then sees the
   row (True);
2. ``queue_report(owner, title, rows)``: what the view does, from outside a
   view (a shell, a management command): a Report row, a task id chosen
   first, the task sent after the commit; the worker finishes the report;
3. a task and a button, added to a copy of the project (``my_project``):
   the task ``email_report``, its view, its address and a button on the
   report page, each a block the notebook writes into its file
   (``%%writeblock FILE exercise-3``, selfcheck.Workspace: running a cell again
   replaces its block). The check runs the copy with a new worker and server
   of its own (they import the files afresh), presses the button as a
   logged-in user and reads the mail that arrives.

What the checks read does not depend on which worker ran a task: results in the
database (django-db), the Report rows, the mail files, and the messages the
learner's code published (the before_task_publish signal, in this process). The
chapter's own worker log is never read, so a worker a learner joins to the
chapter changes no verdict. Every attempt is judged on its own: new rows, task
ids no earlier attempt used (a result stored under an id the learner's code
chose is forgotten before the task is sent), an emptied outbox and queue.
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager

from celery.exceptions import TimeoutError as ResultTimeout

import selfcheck

exercises = selfcheck.Exercises(5)

#: How long a check waits for the worker (a busy machine is slow, not wrong).
WAIT = 20.0


def _owner():
    """The course's local user (reports belong to someone)."""
    from django.contrib.auth import get_user_model

    from launcher import credentials

    return get_user_model().objects.get(username=credentials.admin_auth()[0])


def _no_worker() -> str:
    return f"{WAIT:g} 秒内没有拿到结果：worker 在运行吗？（重新运行“启动 worker 和 Web 服务器”一节的单元格）"


@contextmanager
def _published():
    """The task messages this process publishes inside the block, in order: each
    {"task", "id", "args", "in_transaction"} (sent while a transaction was still open?)."""
    from celery.signals import before_task_publish
    from django.db import transaction

    sent: list[dict] = []

    def record(sender=None, body=None, headers=None, **_):
        args = body[0] if isinstance(body, (list, tuple)) and body else None
        sent.append({"task": sender, "id": (headers or {}).get("id"), "args": list(args or []),
                     "in_transaction": transaction.get_connection().in_atomic_block})

    before_task_publish.connect(record, weak=False)
    try:
        yield sent
    finally:
        before_task_publish.disconnect(record)


@exercises.register(1)
def after_commit(ns: dict) -> list[str]:
    problems = selfcheck.given(ns, "check_after_commit", "在事务提交之后发送 report_exists(报表 id)，并返回任务 id")
    if problems:
        return problems
    from celery.result import AsyncResult
    from django.db import transaction

    from django_demo import celery_app
    from reports.models import Report

    where = "函数 check_after_commit"
    with _published() as sent:
        with transaction.atomic():
            report = Report.objects.create(owner=_owner(), title="练习 1 的检查", rows=1)
            task_id = ns["check_after_commit"](report)
            if isinstance(task_id, str) and not any(m["id"] == task_id for m in sent):
                # A result an earlier attempt stored under this id is not this attempt's answer.
                AsyncResult(task_id, app=celery_app).forget()
        ours = [m for m in sent if m["task"] == "reports.tasks.report_exists"]
    problems = []
    if any(m["in_transaction"] for m in ours):
        problems.append(f"{where}：report_exists 在事务提交之前就发出了（事务里直接 delay()）。"
                        "用 apply_async_on_commit(..., task_id=...)（或 transaction.on_commit）")
    if task_id is None:
        return [*problems, f"{where} 返回了 None：delay_on_commit() 返回 None，"
                           "要先用 celery.utils.uuid() 选好任务 id，再 apply_async_on_commit(..., task_id=...)"]
    if not isinstance(task_id, str) or len(task_id) < 8:
        return [*problems, f"{where} 返回了 {task_id!r}：要返回任务 id（一个字符串，celery.utils.uuid() 选的那个）"]
    if not ours:
        return [*problems, f"{where} 没有发送 report_exists：提交之后要发送 report_exists(str(report.pk))"]
    if task_id not in [m["id"] for m in ours]:
        return [*problems, f"{where} 返回的 {task_id!r} 不是发出的 report_exists 的任务 id（{ours[-1]['id']}）："
                           "把选好的 id 传给 task_id=，再返回它"]
    message = next(m for m in ours if m["id"] == task_id)
    if [str(a) for a in message["args"]] != [str(report.pk)]:
        return [*problems, f"{where}：发出的 report_exists 的参数是 {message['args']!r}，"
                           "应该是报表的 id：report_exists(str(report.pk))"]
    try:
        seen = AsyncResult(task_id, app=celery_app).get(timeout=WAIT)
    except ResultTimeout:
        return [*problems, _no_worker()]
    if seen is not True:
        problems.append(f"{where}：worker 看到这一行了吗？它的回答是 {seen!r}，应该是 True："
                        "消息是在提交之前发出的，或者发送的不是 report_exists(str(report.pk))")
    return problems


@exercises.register(2)
def queue(ns: dict) -> list[str]:
    problems = selfcheck.given(ns, "queue_report", "像视图那样创建 Report、选好任务 id、提交之后发送 generate_report")
    if problems:
        return problems
    from django.db import transaction

    from reports.models import Report

    where = "函数 queue_report"
    with _published() as sent:
        with transaction.atomic():
            report = ns["queue_report"](_owner(), "练习 2 的检查", 2)
        ours = [m for m in sent if m["task"] == "reports.tasks.generate_report"]
    if not isinstance(report, Report) or not Report.objects.filter(pk=report.pk).exists():
        return [f"{where} 返回了 {type(report).__name__}：要返回保存过的 Report 对象"]
    problems = []
    if any(m["in_transaction"] for m in ours):
        problems.append(f"{where}：generate_report 在事务提交之前就发出了：用 apply_async_on_commit")
    saved = Report.objects.get(pk=report.pk)
    if not saved.task_id:
        return [*problems, f"{where}：保存的报表没有 task_id。generate_report 只接手 task_id 和自己的 id 一样的报表："
                           "先 report.task_id = uuid()、save()，再用 task_id=report.task_id 发送"]
    if not ours:
        return [*problems, f"{where} 没有发送 generate_report：提交之后要发送 generate_report(str(report.pk))"]
    if saved.task_id not in [m["id"] for m in ours]:
        return [*problems, f"{where}：发出的 generate_report 的任务 id 是 {ours[-1]['id']}，报表的 task_id 却是 "
                           f"{saved.task_id}：generate_report 只接手 task_id 和自己的 id 一样的报表，"
                           "发送时给 task_id=report.task_id"]
    message = next(m for m in ours if m["id"] == saved.task_id)
    if [str(a) for a in message["args"][:1]] != [str(report.pk)]:
        return [*problems, f"{where}：发出的 generate_report 的参数是 {message['args']!r}，"
                           "第一个参数应该是报表的 id：str(report.pk)"]
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        saved.refresh_from_db()
        if saved.status in Report.TERMINAL:
            break
        time.sleep(0.2)
    if saved.status != Report.Status.DONE:
        problems.append(f"{where}：{WAIT:g} 秒后报表的状态是 {saved.get_status_display()}（{saved.status}），"
                        "应该是“已完成”：参数是 str(report.pk) 吗？worker 在运行吗？")
    elif not saved.file:
        problems.append(f"{where}：报表完成了，却没有文件")
    return problems


# --- Exercise 3: a task and a button, in a copy of the project ---------------------
# The learner adds to `my_project` (a copy of django_demo in the chapter's
# scratch folder) a task, a view, its address and a button: four blocks the
# notebook writes (%%writeblock FILE exercise-3). The check first asks a fresh
# Python process, inside the copy, whether each piece is there (quick, precise
# hints); then it runs the copy for real: a new worker (on a queue of its own,
# so the chapter's worker never takes its tasks; emptied first, so a message an
# earlier attempt left is not delivered to this one) and a new runserver, a
# logged-in session that opens a finished report's page, presses the button
# and waits for the mail the worker sends (Django's file backend).

EXERCISE3_QUEUE = "ch05-exercise-3"
EMAIL_URL = "/reports/{pk}/email/"
#: The block of exercise 3 in each file it changes, and what goes there.
EXERCISE3_BLOCK = "exercise-3"
EXERCISE3_FILES = {
    "reports/tasks.py": "任务 email_report",
    "reports/views.py": "视图 email_report_view",
    "reports/urls.py": "地址 reports/<uuid:pk>/email/",
    "reports/templates/reports/actions.html": "按钮的表单",
}

#: Run inside the copy: what of the exercise is there, as JSON.
_PROBE = r"""
import json, uuid
import django
django.setup()
from django.template.loader import get_template
from django.urls import reverse

found = {}
import warnings
try:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import reports.tasks
    found["task"] = getattr(getattr(reports.tasks, "email_report", None), "name", None)
    found["duplicates"] = [str(w.message) for w in caught if type(w.message).__name__ == "DuplicateTaskNameWarning"]
except Exception as exc:
    found["tasks_error"] = f"{type(exc).__name__}: {exc}"
try:
    found["url"] = reverse("reports:email", args=[uuid.UUID(int=0)])
except Exception as exc:
    found["url_error"] = f"{type(exc).__name__}: {exc}"
try:
    get_template("reports/actions.html")
except Exception as exc:
    found["template_error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(found))
"""


def _copy_env(project, outbox=None) -> dict:
    """The copy's processes: its own code first on the path, its own queue, mail to files."""
    env = {"DJANGO_SETTINGS_MODULE": "django_demo.settings", "PYTHONPATH": str(project),
           "CELERY_TASK_DEFAULT_QUEUE": EXERCISE3_QUEUE}
    if outbox is not None:
        env.update(EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend", EMAIL_FILE_PATH=str(outbox))
    return env


def _probe(project) -> tuple[list[str], dict]:
    """What is wrong with the pieces of exercise 3 in the copy, and what the probe found."""
    import json
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _PROBE], cwd=project, env=dict(os.environ, **_copy_env(project)),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return [f"项目副本启动不了 Django：{last}"], {}
    found = json.loads(done.stdout.strip().splitlines()[-1])
    problems = []
    if "tasks_error" in found:
        problems.append(f"导入 reports/tasks.py 时出错：{found['tasks_error']}")
    elif found.get("duplicates"):
        problems.append("reports/tasks.py 里有两个同名的任务（DuplicateTaskNameWarning）：Celery 只用先定义的那个。"
                        "email_report 只定义一次")
    elif found.get("task") != "reports.tasks.email_report":
        problems.append("reports/tasks.py 里还没有任务 email_report：写一个 @shared_task 函数 email_report(report_id)")
    if "url_error" in found:
        if found["url_error"].startswith("NoReverseMatch"):
            problems.append('reports/urls.py 里还没有名为 "email" 的地址：urlpatterns.append('
                            'path("reports/<uuid:pk>/email/", views.email_report_view, name="email"))')
        else:
            problems.append(f"导入 reports/urls.py 或 reports/views.py 时出错：{found['url_error']}")
    elif found.get("url") != EMAIL_URL.format(pk="00000000-0000-0000-0000-000000000000"):
        problems.append(f"名为 email 的地址是 {found.get('url')}，应该是 reports/<uuid:pk>/email/")
    if "template_error" in found:
        problems.append(f"模板 reports/templates/reports/actions.html 有错：{found['template_error']}")
    return problems, found


def _finished_report(title: str):
    """A report the chapter's own worker has finished (the page shows the buttons of a finished report)."""
    from celery.utils import uuid

    from reports.models import Report
    from reports.tasks import generate_report

    report = Report.objects.create(owner=_owner(), title=title, rows=2, task_id=uuid())
    generate_report.apply_async((str(report.pk),), task_id=report.task_id).get(timeout=WAIT)
    report.refresh_from_db()
    return report


def _log_in(base_url: str):
    import requests

    from launcher import credentials

    session = requests.Session()
    session.get(base_url + "/accounts/login/", timeout=10)
    user, password = credentials.admin_auth()
    session.post(base_url + "/accounts/login/", timeout=10, allow_redirects=False, data={
        "csrfmiddlewaretoken": session.cookies["csrftoken"], "username": user, "password": password})
    return session


MAIL_END = b"\n" + b"-" * 79 + b"\n"


def _complete_mails(outbox) -> list:
    """The files in outbox that hold a whole message, in name order."""
    return [path for path in sorted(outbox.iterdir()) if path.read_bytes().endswith(MAIL_END)]


def _read_mail(path):
    """One message the file backend wrote (it ends each with a line of 79 dashes)."""
    import email
    import email.policy

    raw = path.read_bytes().split(MAIL_END)[0]
    return email.message_from_bytes(raw, policy=email.policy.default)


def _purge(queue: str) -> None:
    """Drop the messages waiting in ``queue`` (in the chapter's database)."""
    from django_demo import celery_app

    with celery_app.connection_for_write() as connection:
        connection.default_channel.queue_purge(queue)


def _server_error(server) -> str:
    """The last exception line in runserver's log ("" if none): what a 500 was."""
    lines = re.findall(r"^([A-Za-z_][\w.]*(?:Error|Exception)(?::.*)?)$", server.log(), flags=re.M)
    return f"（服务器的日志：{lines[-1].strip()[:200]}）" if lines else ""


_EMAIL_TASK_LINE = re.compile(r"Task reports\.tasks\.email_report\[[\w-]+\] "
                              r"(?P<what>received|succeeded in|raised unexpected: (?P<error>.*))")


def _task_outcome(log: str) -> tuple[bool, str]:
    """Did the exercise's worker receive email_report, and how did it end ("" while it runs,
    "succeeded", or the exception line)?"""
    received, outcome = False, ""
    for match in _EMAIL_TASK_LINE.finditer(log):
        if match["what"] == "received":
            received = True
        else:
            outcome = match["error"] or "succeeded"
    return received, outcome


def _no_mail(log: str) -> str:
    """What to fix when no mail came: the file the worker's log points at (the task ran and
    failed, ran without sending, or never arrived because the view did not send it)."""
    received, outcome = _task_outcome(log)
    if outcome and outcome != "succeeded":
        return (f"reports/tasks.py 的 email_report 在 worker 里出错：{outcome.strip()[:200]}"
                "（视图已经把任务发出来了，错在任务）")
    if outcome == "succeeded":
        return "reports/tasks.py 的 email_report 运行完了，却没有发出邮件：最后要调用 message.send()"
    if received:
        return f"reports/tasks.py 的 email_report {WAIT:g} 秒内没有运行完：它在等什么？"
    return (f"按下按钮 {WAIT:g} 秒后，worker 还没有收到 email_report：reports/views.py 的 email_report_view "
            "要在提交之后发送它（email_report.delay_on_commit(str(report.pk))）。" + _worker_errors_in(log))


def _worker_errors_in(log: str) -> str:
    lines = [line for line in log.splitlines() if "ERROR" in line or "Error" in line or "unregistered" in line]
    return (" worker 的日志：" + lines[-1].strip()[:200]) if lines else " worker 的日志里没有错误。"


@exercises.register(3)
def task_and_button(ns: dict) -> list[str]:
    import shutil
    from pathlib import Path

    import launcher

    project = ns.get("my_project")
    if project is None or not (Path(project) / "manage.py").exists():
        return ["还没有项目副本：先运行练习 3 上面复制项目的单元格"]
    project = Path(project)
    files = selfcheck.Workspace(project, "my_project")
    problems, found = _probe(project)
    nothing = found and found.get("task") is None and found.get("url_error", "").startswith("NoReverseMatch")
    if nothing and all(files.stub(name, EXERCISE3_BLOCK) for name in EXERCISE3_FILES):
        # Neither the task nor the address is there (not even written into the files in an editor).
        return ["还没有答案：在练习 3 的四个单元格（%%writeblock 文件 exercise-3）里写 "
                + "、".join(f"{name} 的{what}" for name, what in EXERCISE3_FILES.items())]
    if problems:
        return problems

    report = _finished_report("练习 3 的检查")
    outbox = Path(ns["chapter"].scratch) / "outbox"
    shutil.rmtree(outbox, ignore_errors=True)
    outbox.mkdir()
    env = _copy_env(project, outbox)
    started = []
    _purge(EXERCISE3_QUEUE)
    try:
        worker = launcher.start_worker("django_demo", broker=ns["broker"], fast=True, name="w3", cwd=str(project),
                                       env=env, queues=[EXERCISE3_QUEUE])
        started.append(worker)
        server = launcher.start_django_server(project, env=env)
        started.append(server)
        session = _log_in(server.url)
        page = session.get(f"{server.url}/reports/{report.pk}/", timeout=10)
        url = EMAIL_URL.format(pk=report.pk)
        # The form as a browser sends it: its own fields (the CSRF token only if the template put one there).
        forms = re.findall(r"(<form\b[^>]*>)(.*?)</form>", page.text, flags=re.S)
        button = [(tag, body) for tag, body in forms if f'action="{url}"' in tag]
        if not button:
            return [f"报表完成以后，页面上没有提交到 {url} 的表单：在 reports/templates/reports/actions.html 里加 "
                    "<form method=\"post\" action=\"{% url 'reports:email' report.pk %}\">"]
        tag, body = button[0]
        if 'method="post"' not in tag.lower():
            return ['reports/templates/reports/actions.html：按钮的表单要用 method="post"：'
                    "发邮件是有副作用的操作，不能用 GET（预取链接、爬虫都会发 GET）"]
        fields = dict(re.findall(r'<input\b[^>]*\bname="([^"]+)"[^>]*\bvalue="([^"]*)"', body))
        reply = session.post(server.url + url, timeout=10, allow_redirects=False, data=fields)
        if reply.status_code == 403:
            return ["按下按钮，服务器回答 HTTP 403："
                    "reports/templates/reports/actions.html 的表单里少了 {% csrf_token %}"]
        if reply.status_code >= 400:
            return [f"按下按钮，服务器回答 HTTP {reply.status_code}：看 reports/views.py 里的 email_report_view"
                    + _server_error(server)]
        # The file backend creates the file first, then writes the message and, last, its
        # line of dashes: a mail is complete once its file ends with that line. The task
        # failing or finishing without a mail ends the wait too.
        deadline = time.monotonic() + WAIT
        while (time.monotonic() < deadline and not _complete_mails(outbox)
               and not _task_outcome(worker.log())[1]):
            time.sleep(0.2)
        mails = _complete_mails(outbox)
        if not mails:
            return [_no_mail(worker.log())]
        mail = _read_mail(mails[0])
    finally:
        for proc in reversed(started):
            proc.cleanup()
        _purge(EXERCISE3_QUEUE)
    if report.title not in str(mail["Subject"]):
        problems.append(f"reports/tasks.py 的 email_report：邮件的标题是 {str(mail['Subject'])!r}，"
                        f"要包含报表的标题 {report.title!r}")
    if report.owner.email not in str(mail["To"]):
        problems.append(f"reports/tasks.py 的 email_report：邮件发给了 {str(mail['To'])!r}，"
                        "应该发给报表的所有者（report.owner.email）")
    attached = [(part.get_filename() or "", part.get_content()) for part in mail.iter_attachments()]
    if not attached:
        problems.append("reports/tasks.py 的 email_report：邮件没有附件："
                        "message.attach_file(settings.MEDIA_ROOT / report.file)")
    else:
        name, content = attached[0]
        content = content.encode() if isinstance(content, str) else content
        from django.conf import settings

        csv = (Path(settings.MEDIA_ROOT) / report.file).read_bytes()
        if not name.endswith(".csv") or content.replace(b"\r\n", b"\n") != csv.replace(b"\r\n", b"\n"):
            problems.append(f"reports/tasks.py 的 email_report：附件 {name!r} 不是报表的 CSV 文件")
    return problems
