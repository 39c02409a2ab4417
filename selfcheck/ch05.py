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
   report page. The check runs the copy with its own worker and server,
   presses the button as a logged-in user and reads the mail that arrives.
"""

from __future__ import annotations

import time

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


@exercises.register(1)
def after_commit(ns: dict) -> list[str]:
    problems = selfcheck.given(ns, "check_after_commit", "在事务提交之后发送 report_exists(报表 id)，并返回任务 id")
    if problems:
        return problems
    from celery.result import AsyncResult
    from django.db import transaction

    from django_demo import celery_app
    from reports.models import Report

    with transaction.atomic():
        report = Report.objects.create(owner=_owner(), title="练习 1 的检查", rows=1)
        task_id = ns["check_after_commit"](report)
        # What waits for the commit: the callbacks Django keeps for this transaction.
        waiting = len(transaction.get_connection().run_on_commit)
    problems = []
    if waiting == 0:
        problems.append("调用时没有登记任何“提交之后”的回调：消息立刻就发出了。"
                        "用 delay_on_commit / apply_async_on_commit（或 transaction.on_commit）")
    if not isinstance(task_id, str) or len(task_id) < 8:
        return [*problems, f"函数返回了 {task_id!r}：delay_on_commit() 返回 None，"
                           "要先用 celery.utils.uuid() 选好任务 id，再 apply_async_on_commit(..., task_id=...)"]
    try:
        seen = AsyncResult(task_id, app=celery_app).get(timeout=WAIT)
    except ResultTimeout:
        return [*problems, _no_worker() + "；或者返回的 id 不是发出的那个任务的 id"]
    if seen is not True:
        problems.append(f"worker 看到这一行了吗？它的回答是 {seen!r}，应该是 True："
                        "消息是在提交之前发出的，或者发送的不是 report_exists(str(report.pk))")
    return problems


@exercises.register(2)
def queue(ns: dict) -> list[str]:
    problems = selfcheck.given(ns, "queue_report", "像视图那样创建 Report、选好任务 id、提交之后发送 generate_report")
    if problems:
        return problems
    from django.db import transaction

    from reports.models import Report

    with transaction.atomic():
        report = ns["queue_report"](_owner(), "练习 2 的检查", 2)
        waiting = len(transaction.get_connection().run_on_commit)
    if not isinstance(report, Report) or not Report.objects.filter(pk=report.pk).exists():
        return [f"`queue_report` 返回了 {type(report).__name__}：要返回保存过的 Report 对象"]
    problems = []
    if waiting == 0:
        problems.append("在事务里调用时，消息没有等到提交：用 apply_async_on_commit")
    saved = Report.objects.get(pk=report.pk)
    if not saved.task_id:
        return [*problems, "保存的报表没有 task_id：generate_report 只接手 task_id 和自己的 id 一样的报表，"
                           "先 report.task_id = uuid()、save()，再用 task_id=report.task_id 发送"]
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        saved.refresh_from_db()
        if saved.status in Report.TERMINAL:
            break
        time.sleep(0.2)
    if saved.status != Report.Status.DONE:
        problems.append(f"{WAIT:g} 秒后报表的状态是 {saved.get_status_display()}（{saved.status}），"
                        "应该是“已完成”：发送的任务 id 和 report.task_id 一样吗？参数是 str(report.pk) 吗？"
                        "worker 在运行吗？")
    elif not saved.file:
        problems.append("报表完成了，却没有文件")
    return problems


# --- Exercise 3: a task and a button, in a copy of the project ---------------------
# The learner adds to `my_project` (a copy of django_demo in the chapter's
# scratch folder) a task, a view, its address and a button. The check first
# asks a fresh Python process, inside the copy, whether each piece is there
# (quick, precise hints); then it runs the copy for real: its own worker (on a
# queue of its own, so the chapter's worker never takes its tasks) and its own
# runserver, a logged-in session that opens a finished report's page, presses
# the button and waits for the mail the worker sends (Django's file backend).

EXERCISE3_QUEUE = "ch05-exercise-3"
EMAIL_URL = "/reports/{pk}/email/"

#: Run inside the copy: what of the exercise is there, as JSON.
_PROBE = r"""
import json, uuid
import django
django.setup()
from django.template.loader import get_template
from django.urls import reverse

found = {}
try:
    import reports.tasks
    found["task"] = getattr(getattr(reports.tasks, "email_report", None), "name", None)
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


def _probe(project) -> list[str]:
    import json
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _PROBE], cwd=project, env=dict(os.environ, **_copy_env(project)),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return [f"项目副本启动不了 Django：{last}"]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    problems = []
    if "tasks_error" in found:
        problems.append(f"导入 reports/tasks.py 时出错：{found['tasks_error']}")
    elif found.get("task") != "reports.tasks.email_report":
        problems.append("reports/tasks.py 里还没有任务 email_report：在文件末尾加一个 @shared_task 函数")
    if "url_error" in found:
        if found["url_error"].startswith("NoReverseMatch"):
            problems.append('reports/urls.py 里还没有名为 "email" 的地址：urlpatterns.append('
                            'path("reports/<uuid:pk>/email/", views.email_report_view, name="email"))')
        else:
            problems.append(f"导入 reports/urls.py 或 reports/views.py 时出错：{found['url_error']}")
    elif found.get("url") != EMAIL_URL.format(pk="00000000-0000-0000-0000-000000000000"):
        problems.append(f"名为 email 的地址是 {found.get('url')}，应该是 reports/<uuid:pk>/email/")
    if "template_error" in found:
        problems.append(f"模板 actions.html 有错：{found['template_error']}")
    return problems


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


def _worker_errors(worker) -> str:
    lines = [line for line in worker.log().splitlines()
             if "ERROR" in line or "Error" in line or "unregistered" in line]
    return (" worker 的日志：" + lines[-1].strip()[:200]) if lines else " worker 的日志里没有错误。"


@exercises.register(3)
def task_and_button(ns: dict) -> list[str]:
    import re
    import shutil
    from pathlib import Path

    import launcher

    project = ns.get("my_project")
    if project is None or not (Path(project) / "manage.py").exists():
        return ["还没有项目副本：先运行练习 3 上面复制项目的单元格"]
    project = Path(project)
    problems = _probe(project)
    if problems:
        return problems

    report = _finished_report("练习 3 的检查")
    outbox = Path(ns["chapter"].scratch) / "outbox"
    shutil.rmtree(outbox, ignore_errors=True)
    outbox.mkdir()
    env = _copy_env(project, outbox)
    started = []
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
            return [f"报表完成以后，页面上没有提交到 {url} 的表单：在 actions.html 里加 "
                    "<form method=\"post\" action=\"{% url 'reports:email' report.pk %}\">"]
        tag, body = button[0]
        if 'method="post"' not in tag.lower():
            return ['按钮的表单要用 method="post"：发邮件是有副作用的操作，不能用 GET（预取链接、爬虫都会发 GET）']
        fields = dict(re.findall(r'<input\b[^>]*\bname="([^"]+)"[^>]*\bvalue="([^"]*)"', body))
        reply = session.post(server.url + url, timeout=10, allow_redirects=False, data=fields)
        if reply.status_code == 403:
            return ["按下按钮，服务器回答 HTTP 403：表单里少了 {% csrf_token %}"]
        if reply.status_code >= 400:
            return [f"按下按钮，服务器回答 HTTP {reply.status_code}：看 views.py 里的 email_report_view"]
        # The file backend creates the file first, then writes the message and, last, its
        # line of dashes: a mail is complete once its file ends with that line.
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and not _complete_mails(outbox):
            time.sleep(0.2)
        mails = _complete_mails(outbox)
        if not mails:
            return [f"按下按钮 {WAIT:g} 秒后还没有邮件。视图发送 email_report 了吗（提交之后）？"
                    + _worker_errors(worker)]
        mail = _read_mail(mails[0])
    finally:
        for proc in reversed(started):
            proc.cleanup()
    if report.title not in str(mail["Subject"]):
        problems.append(f"邮件的标题是 {str(mail['Subject'])!r}，要包含报表的标题 {report.title!r}")
    if report.owner.email not in str(mail["To"]):
        problems.append(f"邮件发给了 {str(mail['To'])!r}，应该发给报表的所有者（report.owner.email）")
    attached = [(part.get_filename() or "", part.get_content()) for part in mail.iter_attachments()]
    if not attached:
        problems.append("邮件没有附件：message.attach_file(settings.MEDIA_ROOT / report.file)")
    else:
        name, content = attached[0]
        content = content.encode() if isinstance(content, str) else content
        from django.conf import settings

        csv = (Path(settings.MEDIA_ROOT) / report.file).read_bytes()
        if not name.endswith(".csv") or content.replace(b"\r\n", b"\n") != csv.replace(b"\r\n", b"\n"):
            problems.append(f"附件 {name!r} 不是报表的 CSV 文件")
    return problems
