"""Send a notification from a form, and see what became of it.

As chapter 05's reports: login required, a user sees their own notifications
only (anyone else's answers 404), the row is committed before its task is sent
(apply_async_on_commit), and a broker that is down is a 503 with a message,
with no row left behind.
"""

from celery.utils import uuid
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from kombu.exceptions import OperationalError

from .forms import NotificationForm
from .models import Notification
from .tasks import task_for

BROKER_DOWN = ("无法连接消息代理（broker），通知没有发出。请先启动 Redis/Valkey"
               "（make lab 会自动启动一个），然后重试。"
               " The message broker is unreachable: nothing was sent.")


def send_on_commit(notification: Notification) -> None:
    """Save ``notification`` with the id of its task, and send the task once committed."""
    notification.task_id = uuid()
    notification.save()
    task, args = task_for(notification)
    task.apply_async_on_commit(args, task_id=notification.task_id)


@login_required
def create_notification(request):
    form = NotificationForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        notification = None
        try:
            with transaction.atomic():
                notification = form.save(commit=False)
                notification.owner = request.user
                send_on_commit(notification)
        except OperationalError:
            # Committed, then not sent (on_commit runs after the commit): no row waits for nothing.
            if notification is not None and notification.pk is not None:
                Notification.objects.filter(pk=notification.pk).delete()
            form.add_error(None, BROKER_DOWN)
            return render(request, "notifications/form.html", _form_context(request, form), status=503)
        return redirect(notification)
    status = 400 if form.is_bound else 200
    return render(request, "notifications/form.html", _form_context(request, form), status=status)


def _form_context(request, form) -> dict:
    return {"form": form, "recent": request.user.notifications.all()[:10]}


@login_required
def notification_detail(request, pk):
    notification = get_object_or_404(Notification, pk=pk, owner=request.user)
    return render(request, "notifications/detail.html", {"notification": notification})
