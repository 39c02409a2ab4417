"""Ask for a report, watch it being made, download it; try again if it failed.

Every page needs a login, and shows a user their own reports only: another
user's report answers 404, exactly as a report that does not exist.
"""

from datetime import date
from pathlib import Path

from celery.utils import uuid
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import FileResponse, Http404, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from kombu.exceptions import OperationalError

from . import daily
from .forms import ReportForm
from .models import Report
from .tasks import generate_report
from .watchdog import notice_lost

BROKER_DOWN = ("无法连接消息代理（broker），报表没有创建。请先启动 Redis/Valkey"
               "（make lab 会自动启动一个），然后重试。"
               " The message broker is unreachable: the report was not created.")
RETRY_BROKER_DOWN = "无法连接消息代理（broker），没能重试。请先启动 Redis/Valkey，然后再试一次。"


def own_report(request, pk) -> Report:
    """The user's report ``pk``, with a lost task noticed; 404 for anyone else's."""
    return notice_lost(get_object_or_404(Report, pk=pk, owner=request.user))


def send_on_commit(report: Report) -> None:
    """Give ``report`` a new task id and send its task once the row is committed.

    The task id is chosen here, because apply_async_on_commit() and
    delay_on_commit() return None (the message is only sent after the
    commit), so there is no AsyncResult to read the id from. Sent inside the
    transaction (plain delay()), the task could run before the commit and
    not find the row. Ids, not objects, travel in the message."""
    report.task_id = uuid()
    report.heartbeat = timezone.now()  # sent: the queue timeout counts from here
    report.save()
    generate_report.apply_async_on_commit((str(report.pk),), task_id=report.task_id)


@login_required
def create_report(request):
    # Bound on every POST, even an empty one: its errors must show.
    form = ReportForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        report = None
        try:
            with transaction.atomic():
                report = form.save(commit=False)
                report.owner = request.user
                send_on_commit(report)
        except OperationalError:
            # on_commit callbacks run *after* the commit, so the row exists
            # when publishing fails (broker down, after the short retry policy
            # in settings). Delete it: no row waits for a task that was never
            # sent. (This relies on the view not running inside an outer
            # transaction: ATOMIC_REQUESTS stays off.)
            if report is not None and report.pk is not None:
                Report.objects.filter(pk=report.pk).delete()
            form.add_error(None, BROKER_DOWN)
            return render(request, "reports/form.html", _form_context(request, form), status=503)
        return redirect(report)
    status = 400 if form.is_bound else 200
    return render(request, "reports/form.html", _form_context(request, form), status=status)


def _form_context(request, form) -> dict:
    return {"form": form, "recent": [notice_lost(r) for r in request.user.reports.all()[:10]]}


@login_required
def report_detail(request, pk):
    report = own_report(request, pk)
    return render(request, "reports/detail.html", {"report": report, "status": report.as_status()})


@require_GET
def report_status(request, pk):
    """JSON polled by the report page: status, progress (0-100), message,
    error_id, download_url, retry_url. JSON errors too (401, 404): the page's
    script reads them, and stops."""
    if not request.user.is_authenticated:
        return JsonResponse({"detail": "请先登录。"}, status=401)
    try:
        report = own_report(request, pk)
    except Http404:
        return JsonResponse({"detail": "没有这个报表。"}, status=404)
    return JsonResponse(report.as_status())


@login_required
@require_POST
def retry_report(request, pk):
    """A failed report, sent again under a new task id (the old one, if it
    ever turns up, finds the report no longer waiting for it)."""
    report = own_report(request, pk)
    if report.status != Report.Status.FAILED:
        return redirect(report)
    previous = {f: getattr(report, f) for f in ("status", "message", "error_id", "task_id", "finished")}
    try:
        with transaction.atomic():
            report.status, report.progress, report.file = Report.Status.PENDING, 0, ""
            report.message = report.error_id = ""
            report.finished = None
            send_on_commit(report)
    except OperationalError:
        # Committed, but not sent: back to failed, as it was, saying why.
        previous["message"] = RETRY_BROKER_DOWN
        Report.objects.filter(pk=report.pk).update(**previous)
    return redirect(report)


@login_required
@require_GET
def download_report(request, pk):
    report = own_report(request, pk)
    if report.download_url is None:
        raise Http404("报表还没有生成。")
    root = Path(settings.MEDIA_ROOT).resolve()
    path = (root / report.file).resolve()
    if root not in path.parents or not path.is_file():
        raise Http404("报表文件不存在。")
    return FileResponse(path.open("rb"), as_attachment=True, filename=path.name)


@login_required
@require_GET
def download_daily(request):
    """GET /reports/daily.xlsx?day=YYYY-MM-DD (default: today, in TIME_ZONE): that day's
    reports as an XLSX workbook (reports/daily.py), built from the database now.
    A user gets their own reports; staff (who see every report in the admin anyway)
    get everyone's, as the daily mail does."""
    text = request.GET.get("day", "").strip()
    if text:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return HttpResponseBadRequest(
                f"日期 {text!r} 看不懂：请写成 YYYY-MM-DD，例如 ?day={timezone.localdate().isoformat()}。"
                f" Bad day {text!r}: use YYYY-MM-DD.", content_type="text/plain; charset=utf-8")
    else:
        day = timezone.localdate()
    owner = None if request.user.is_staff else request.user
    response = HttpResponse(daily.build_daily_workbook(day, owner=owner), content_type=daily.CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{daily.filename(day)}"'
    return response
