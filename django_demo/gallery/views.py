"""Upload a photo, watch its thumbnails being made, see them.

Every page needs a login and shows a user their own photos only: another
user's photo answers 404, exactly as one that does not exist (as the reports
do, chapter 05). Files are served by a view that checks the owner, never from
a public media folder.
"""

import os
import shutil
import tempfile
from pathlib import Path

from celery.utils import uuid
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET
from kombu.exceptions import OperationalError

from demo_tasks import images

from .forms import PhotoForm
from .models import Photo
from .tasks import make_thumbnails

BROKER_DOWN = ("无法连接消息代理（broker），图片没有保存。请先启动 Redis/Valkey（make lab 会自动启动一个），"
               "然后重新上传。 The message broker is unreachable: the photo was not saved.")


def photo_dir(photo_id) -> Path:
    return Path(settings.MEDIA_ROOT) / "gallery" / str(photo_id)


def save_upload(upload, path: Path) -> Path:
    """Write ``upload`` (a Django UploadedFile) to ``path``, whole or not at all: into a
    temporary file in the same folder, renamed over ``path`` when complete (a rename within
    a folder is atomic), so a half-written upload never carries the final name. The videos
    app stores its uploads with it too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in upload.chunks():
                f.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@login_required
def upload_photo(request):
    form = PhotoForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["image"]
        info: images.ImageInfo = upload.info
        photo = Photo(owner=request.user, original_name=Path(upload.name).name[:200], format=info.format,
                      width=info.width, height=info.height, size=upload.size, task_id=uuid())
        try:
            # A name the server chooses, with the extension the content says.
            path = save_upload(upload, photo_dir(photo.pk) / f"original{info.extension}")
            photo.original = path.relative_to(settings.MEDIA_ROOT).as_posix()
            with transaction.atomic():
                photo.save()
                # Sent once the row is committed: a worker never looks for a row that is not there yet.
                make_thumbnails.apply_async_on_commit((str(photo.pk),), task_id=photo.task_id)
        except OperationalError:
            # Committed, not sent (the broker is down): nothing is kept, and the page says why.
            _forget(photo)
            form.add_error(None, BROKER_DOWN)
            return render(request, "gallery/upload.html", _context(request, form), status=503)
        except BaseException:
            _forget(photo)     # a full disk, a database error: no row without its file, no file without its row
            raise
        return redirect(photo)
    status = 400 if form.is_bound else 200
    return render(request, "gallery/upload.html", _context(request, form), status=status)


def _forget(photo: Photo) -> None:
    Photo.objects.filter(pk=photo.pk).delete()
    shutil.rmtree(photo_dir(photo.pk), ignore_errors=True)


def _context(request, form) -> dict:
    return {"form": form, "photos": request.user.photos.all()[:12], "sizes": images.SIZES}


def own_photo(request, pk) -> Photo:
    return get_object_or_404(Photo, pk=pk, owner=request.user)


@login_required
@require_GET
def photo_detail(request, pk):
    photo = own_photo(request, pk)
    return render(request, "gallery/detail.html", {"photo": photo, "status": photo.as_status()})


@require_GET
def photo_status(request, pk):
    """JSON polled by the photo page; JSON errors too (401, 404), which its script reads."""
    if not request.user.is_authenticated:
        return JsonResponse({"detail": "请先登录。"}, status=401)
    try:
        photo = own_photo(request, pk)
    except Http404:
        return JsonResponse({"detail": "没有这张图片。"}, status=404)
    return JsonResponse(photo.as_status())


@login_required
@require_GET
def thumbnail(request, pk, name):
    photo = own_photo(request, pk)
    thumb = photo.thumbnails.get(name) if photo.status == Photo.Status.DONE else None
    if thumb is None:
        raise Http404("没有这个缩略图。")
    root = Path(settings.MEDIA_ROOT).resolve()
    path = (root / thumb["file"]).resolve()
    if root not in path.parents or not path.is_file():
        raise Http404("缩略图文件不存在。")
    return FileResponse(path.open("rb"), content_type="image/jpeg")
