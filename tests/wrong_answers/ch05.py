"""Plausible wrong answers to chapter 05's exercises, each with a piece of the
hint its check must print (run by tests/exercise_matrix.py). Exercise 3 has four
answer cells (a block in each of four files of the project's copy)."""

from tests.exercise_matrix import Wrong

# --- exercise 3: the reference's four blocks, and wrong versions of one of them ------------------

_TASK = '''%%writeblock reports/tasks.py exercise-3
from django.core.mail import EmailMessage


@shared_task
def email_report(report_id: str) -> str:
    report = Report.objects.select_related("owner").get(pk=report_id)
    message = EmailMessage(subject=f"报表：{report.title}", body="你要的报表在附件里。", to=[report.owner.email])
    message.attach_file(settings.MEDIA_ROOT / report.file)
    message.send()
    return report.owner.email'''

_TASK_WITHOUT_ATTACHMENT = '''%%writeblock reports/tasks.py exercise-3
from django.core.mail import EmailMessage


@shared_task
def email_report(report_id: str) -> str:
    report = Report.objects.select_related("owner").get(pk=report_id)
    message = EmailMessage(subject=f"报表：{report.title}", body=f"报表在这里：{report.file}", to=[report.owner.email])
    message.send()
    return report.owner.email'''

_TASK_WRONG_FIELD = '''%%writeblock reports/tasks.py exercise-3
from django.core.mail import EmailMessage


@shared_task
def email_report(report_id: str) -> str:
    report = Report.objects.select_related("owner").get(pk=report_id)
    message = EmailMessage(subject=f"报表：{report.title}", body="你要的报表在附件里。", to=[report.owner.mail])
    message.attach_file(settings.MEDIA_ROOT / report.file)
    message.send()
    return report.owner.email'''

_VIEW = '''%%writeblock reports/views.py exercise-3
from .tasks import email_report


@login_required
@require_POST
def email_report_view(request, pk):
    report = own_report(request, pk)
    email_report.delay_on_commit(str(report.pk))
    return redirect("reports:detail", pk=report.pk)'''

_VIEW_SENDING_THE_OBJECT = '''%%writeblock reports/views.py exercise-3
from .tasks import email_report


@login_required
@require_POST
def email_report_view(request, pk):
    report = own_report(request, pk)
    email_report.delay_on_commit(report)
    return redirect("reports:detail", pk=report.pk)'''

_URL = '''%%writeblock reports/urls.py exercise-3
urlpatterns.append(path("reports/<uuid:pk>/email/", views.email_report_view, name="email"))'''

_BUTTON = '''%%writeblock reports/templates/reports/actions.html exercise-3
{% if report.status == "done" %}
<form method="post" action="{% url 'reports:email' report.pk %}">
  {% csrf_token %}<button type="submit">发到我的邮箱</button>
</form>
{% endif %}'''

_BUTTON_WITHOUT_CSRF = '''%%writeblock reports/templates/reports/actions.html exercise-3
{% if report.status == "done" %}
<form method="post" action="{% url 'reports:email' report.pk %}">
  <button type="submit">发到我的邮箱</button>
</form>
{% endif %}'''

WRONG = {
    1: [
        Wrong(['''def check_after_commit(report):
    return report_exists.delay(str(report.pk)).id'''],
              hint="report_exists 在事务提交之前就发出了", why="delay() inside the transaction"),
        Wrong(['''def check_after_commit(report):
    return report_exists.delay_on_commit(str(report.pk))'''],
              hint="delay_on_commit() 返回 None", why="returns delay_on_commit()'s None"),
    ],
    2: [
        Wrong(['''def queue_report(owner, title, rows):
    report = Report.objects.create(owner=owner, title=title, rows=rows)
    generate_report.delay_on_commit(str(report.pk))
    return report'''],
              hint="保存的报表没有 task_id", why="no task id on the report"),
        Wrong(['''def queue_report(owner, title, rows):
    report = Report.objects.create(owner=owner, title=title, rows=rows, task_id=uuid())
    generate_report.delay_on_commit(str(report.pk))
    return report'''],
              hint="发送时给 task_id=report.task_id", why="sent under another task id"),
    ],
    3: [
        Wrong([_TASK, _VIEW, _URL, _BUTTON_WITHOUT_CSRF],
              hint="actions.html 的表单里少了 {% csrf_token %}", why="form without csrf_token"),
        Wrong([_TASK_WITHOUT_ATTACHMENT, _VIEW, _URL, _BUTTON],
              hint="reports/tasks.py 的 email_report：邮件没有附件", why="mail without the CSV"),
        Wrong([_TASK_WRONG_FIELD, _VIEW, _URL, _BUTTON],
              hint="reports/tasks.py 的 email_report 在 worker 里出错：AttributeError",
              why="the task fails in the worker; the view is right (the hint blamed the view)"),
        Wrong([_TASK, _VIEW_SENDING_THE_OBJECT, _URL, _BUTTON],
              hint="reports/views.py 里的 email_report_view（服务器的日志：kombu.exceptions.EncodeError",
              why="the view sends the Report object"),
    ],
}
