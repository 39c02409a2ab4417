"""Chapter 05's exercise checks. Each one runs the learner's code in the
notebook's Django (the chapter's own database) against the chapter's real
worker, so a check passes only on what really happened:

1. ``check_after_commit(report)``: called inside a transaction, it sends
   ``reports.tasks.report_exists`` for the report only once the row is
   committed (on_commit), and returns the task id; the worker then sees the
   row (True);
2. ``queue_report(owner, title, rows)``: what the view does, from outside a
   view (a shell, a management command): a Report row, a task id chosen
   first, the task sent after the commit; the worker finishes the report.
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
