"""Ask for a report, watch it being made, download it."""

from pathlib import Path

from celery.utils import uuid
from django.conf import settings
from django.db import transaction
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET
from kombu.exceptions import OperationalError

from .forms import ReportForm
from .models import Report
from .tasks import generate_report

BROKER_DOWN = ("无法连接消息代理（broker），报表没有创建。请先启动 Redis/Valkey"
               "（make lab 会自动启动一个），然后重试。"
               " The message broker is unreachable: the report was not created.")


def create_report(request):
    form = ReportForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        # The task id is chosen here, because apply_async_on_commit() and
        # delay_on_commit() return None (the message is only sent after the
        # commit), so there is no AsyncResult to read the id from.
        task_id = uuid()
        report = None
        try:
            with transaction.atomic():
                report = form.save(commit=False)
                report.task_id = task_id
                report.save()
                # Sent only once the row is committed: a worker that picks the
                # task up at once must find the row. Sent inside the transaction
                # (plain delay()), the task could run before the commit and
                # fail with Report.DoesNotExist.
                generate_report.apply_async_on_commit((report.pk,), task_id=task_id)
        except OperationalError:
            # on_commit callbacks run *after* the commit, so the row exists
            # when publishing fails (broker down, after the short retry policy
            # in settings). Delete it: no row waits forever for a task that was
            # never sent. (This relies on the view not running inside an outer
            # transaction: ATOMIC_REQUESTS stays off.)
            if report is not None and report.pk is not None:
                Report.objects.filter(pk=report.pk).delete()
            form.add_error(None, BROKER_DOWN)
            return render(request, "reports/form.html", _form_context(form), status=503)
        return redirect(report)
    return render(request, "reports/form.html", _form_context(form))


def _form_context(form) -> dict:
    return {"form": form, "recent": Report.objects.all()[:10]}


def report_detail(request, pk: int):
    report = get_object_or_404(Report, pk=pk)
    return render(request, "reports/detail.html", {"report": report, "status": report.as_status()})


@require_GET
def report_status(request, pk: int):
    """JSON polled by the report page: status, progress (0-100), error, download_url."""
    report = get_object_or_404(Report, pk=pk)
    return JsonResponse(report.as_status())


@require_GET
def download_report(request, pk: int):
    report = get_object_or_404(Report, pk=pk)
    if report.download_url is None:
        raise Http404("报表还没有生成。")
    root = Path(settings.MEDIA_ROOT).resolve()
    path = (root / report.file).resolve()
    if root not in path.parents or not path.is_file():
        raise Http404("报表文件不存在。")
    return FileResponse(path.open("rb"), as_attachment=True, filename=path.name)
