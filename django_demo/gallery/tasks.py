"""The thumbnail task (chapter 10): Pillow, in a worker, on the project's default queue
(CELERY_TASK_DEFAULT_QUEUE; chapter 10's notebook sets it to "media").

Safe to run twice (a message delivered again): only the run whose id the photo
names, and only while the photo is pending, takes it on. A file that is not a
usable image fails cleanly: the photo says why, nothing half-written stays
behind (images.make_thumbnails removes what it wrote), and the task is not
retried (the same bytes give the same answer)."""

import uuid
from pathlib import Path

from celery import shared_task
from celery.exceptions import Ignore
from celery.utils.log import get_task_logger
from django.conf import settings
from django.utils import timezone

from demo_tasks import images

from .forms import REFUSED
from .models import Photo

logger = get_task_logger(__name__)

#: What the page says when something we did not expect went wrong (details in the worker's log).
UNEXPECTED = "生成缩略图时出错。"


@shared_task(bind=True)
def make_thumbnails(self, photo_id: str) -> dict | None:
    """Make every size of images.SIZES for the photo; record them on its row."""
    mine = Photo.objects.filter(pk=photo_id, task_id=self.request.id)
    if not mine.filter(status=Photo.Status.PENDING).update(status=Photo.Status.RUNNING):
        logger.info("photo %s is not waiting for this task: nothing to do", photo_id)
        raise Ignore()
    photo = Photo.objects.get(pk=photo_id)
    root = Path(settings.MEDIA_ROOT)
    source = root / photo.original
    try:
        made = images.make_thumbnails(source, source.parent, stem="thumb")
    except Exception as exc:
        error_id = uuid.uuid4().hex[:8]
        logger.exception("photo %s: no thumbnails, error id %s", photo_id, error_id)
        message = REFUSED.get(exc.code, UNEXPECTED) if isinstance(exc, images.BadImage) else UNEXPECTED
        mine.update(status=Photo.Status.FAILED, message=message, error_id=error_id, finished=timezone.now())
        if isinstance(exc, images.BadImage):
            return None  # a recorded, readable failure: the task itself did its job
        raise
    thumbnails = {name: {"file": thumb.path.relative_to(root).as_posix(), "width": thumb.width,
                         "height": thumb.height} for name, thumb in made.items()}
    mine.update(status=Photo.Status.DONE, thumbnails=thumbnails, finished=timezone.now())
    logger.info("photo %s: %s", photo_id, ", ".join(f"{n} {t.width}x{t.height}" for n, t in made.items()))
    return thumbnails
