"""Ask for a transcode, and watch its progress two ways side by side: pushed by the
server (Server-Sent Events) and polled by the page (chapter 05's way).

Owner-only, as the reports: another user's video answers 404.
"""

import json
import shutil
import time
from pathlib import Path

from celery.utils import uuid
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import FileResponse, Http404, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET
from kombu.exceptions import OperationalError

from gallery.views import save_upload  # the project's one way to store an upload

from .forms import VideoForm
from .models import Video
from .tasks import transcode_video

BROKER_DOWN = ("无法连接消息代理（broker），没有开始转码。请先启动 Redis/Valkey（make lab 会自动启动一个），"
               "然后重试。 The message broker is unreachable: nothing was started.")
CONTENT_TYPES = {".mp4": "video/mp4", ".jpg": "image/jpeg", ".gif": "image/gif"}


def video_dir(video_id) -> Path:
    return Path(settings.MEDIA_ROOT) / "videos" / str(video_id)


@login_required
def create_video(request):
    form = VideoForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["upload"]
        item = Video(owner=request.user, height=form.cleaned_data["height"], task_id=uuid())
        try:
            if upload is not None:
                item.source_name = Path(upload.name).name[:200]
                # Its name and type are the sender's claims: the task lets FFmpeg judge the content.
                path = save_upload(upload, video_dir(item.pk) / "source.bin")
                item.files = {"source": path.relative_to(settings.MEDIA_ROOT).as_posix()}
            else:
                item.sample_seconds = form.cleaned_data["sample_seconds"]
            with transaction.atomic():
                item.save()
                transcode_video.apply_async_on_commit((str(item.pk),), task_id=item.task_id)
        except OperationalError:
            Video.objects.filter(pk=item.pk).delete()
            shutil.rmtree(video_dir(item.pk), ignore_errors=True)
            form.add_error(None, BROKER_DOWN)
            return render(request, "videos/form.html", _context(request, form), status=503)
        except BaseException:
            Video.objects.filter(pk=item.pk).delete()
            shutil.rmtree(video_dir(item.pk), ignore_errors=True)
            raise
        return redirect(item)
    status = 400 if form.is_bound else 200
    return render(request, "videos/form.html", _context(request, form), status=status)


def _context(request, form) -> dict:
    return {"form": form, "videos": request.user.videos.all()[:10]}


def own_video(request, pk) -> Video:
    return get_object_or_404(Video, pk=pk, owner=request.user)


@login_required
@require_GET
def video_detail(request, pk):
    item = own_video(request, pk)
    return render(request, "videos/detail.html", {
        "video": item, "status": item.as_status(), "stream_seconds": settings.VIDEO_STREAM_SECONDS})


def _json_or_error(request, pk):
    if not request.user.is_authenticated:
        return None, JsonResponse({"detail": "请先登录。"}, status=401)
    try:
        return own_video(request, pk), None
    except Http404:
        return None, JsonResponse({"detail": "没有这个视频。"}, status=404)


@require_GET
def video_status(request, pk):
    """Polled: one request, one answer (chapter 05's way)."""
    item, error = _json_or_error(request, pk)
    return error or JsonResponse(item.as_status())


def event(name: str, data: dict, event_id: int | None = None) -> str:
    """One Server-Sent Event: optional id, the event's name, one line of JSON, a blank line."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def progress_events(video_id, *, seconds: float, interval: float):
    """The stream: a "progress" event whenever the status changes, "done" at the end.

    It reads the status every ``interval`` s (here it is the server that polls the result
    backend, once for all of the page's updates), sends a comment line every 15 s so
    proxies keep an idle stream open, and ends after ``seconds`` (a stream holds one
    server thread or worker for its whole life): the browser's EventSource then
    reconnects by itself after the ``retry`` delay and gets the current status at once."""
    yield "retry: 1000\n\n"
    started = last_sent = time.monotonic()
    previous, count = None, 0
    while True:
        item = Video.objects.filter(pk=video_id).first()
        if item is None:
            yield event("gone", {"detail": "没有这个视频了。"})
            return
        status = item.as_status()
        if status != previous:
            count += 1
            yield event("progress", status, count)
            previous, last_sent = status, time.monotonic()
        if status["status"] in Video.TERMINAL:       # "failed" too when the task's process died
            yield event("done", status)
            return
        if time.monotonic() - started > seconds:
            return
        if time.monotonic() - last_sent > 15:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        time.sleep(interval)


@require_GET
def video_events(request, pk):
    """Pushed: one long response, text/event-stream, that sends each change as it happens."""
    item, error = _json_or_error(request, pk)
    if error:
        return error
    response = StreamingHttpResponse(
        progress_events(item.pk, seconds=settings.VIDEO_STREAM_SECONDS, interval=settings.VIDEO_STREAM_INTERVAL),
        content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    # nginx buffers a proxied response unless told not to; a buffered stream arrives all at the end.
    response["X-Accel-Buffering"] = "no"
    return response


@login_required
@require_GET
def video_file(request, pk, name):
    item = own_video(request, pk)
    relative = item.files.get(name) if name in Video.FILES else None
    if relative is None or (name != "source" and item.status != Video.Status.DONE):
        raise Http404("没有这个文件。")
    root = Path(settings.MEDIA_ROOT).resolve()
    path = (root / relative).resolve()
    if root not in path.parents or not path.is_file():
        raise Http404("文件不存在。")
    return FileResponse(path.open("rb"), content_type=CONTENT_TYPES.get(path.suffix, "application/octet-stream"))
