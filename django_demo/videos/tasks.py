"""The video tasks (chapter 10): FFmpeg in a worker, on the project's default queue
(CELERY_TASK_DEFAULT_QUEUE; chapter 10's notebook sets it to "media"). In production,
give them a queue and workers of their own (chapter 08): a transcode holds a pool
process for seconds or minutes, and short tasks must not wait behind it.

transcode_video: one video, start to finish, reporting progress with
update_state() as FFmpeg's -progress output arrives; then a poster frame and
an animated GIF preview. A soft time limit stops a runaway transcode: FFmpeg
is killed, the half-written file removed (demo_tasks.video writes to a
temporary name and renames it only when FFmpeg succeeded), and the video
says so.

transcode_segment and join_segments: the same work split into segments,
transcoded by a group and joined by a chord's callback (segmented()).
They pass file paths, so the caller and every worker must see the same
MEDIA_ROOT (one machine here; shared storage in production).
"""

import contextlib
import time
import uuid
from pathlib import Path

from celery import chord, shared_task
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from celery.utils.log import get_task_logger
from django.conf import settings
from django.utils import timezone

from demo_tasks import video

from .models import Video

logger = get_task_logger(__name__)

UNEXPECTED = "转码时出错。"
UNREADABLE = "FFmpeg 处理不了这个文件（它不是 FFmpeg 能读的视频，或者已经损坏）。"
#: The sample clip's size: big enough for the transcode to take a few visible seconds.
SAMPLE_SIZE = (640, 360)
#: update_state() at most this often (each is a write to the result backend).
PROGRESS_EVERY = 0.25


class ProgressReporter:
    """on_progress for video.transcode: update_state(PROGRESS) at most every PROGRESS_EVERY s,
    and always at the end. Its meta is what the page shows: phase, percent, seconds, total."""

    def __init__(self, task, phase: str):
        self.task, self.phase, self.last = task, phase, 0.0

    def __call__(self, seconds: float, total: float) -> None:
        now = time.monotonic()
        if seconds < total and now - self.last < PROGRESS_EVERY:
            return
        self.last = now
        percent = round(100 * seconds / total, 1) if total else 0.0
        self.task.update_state(state="PROGRESS", meta={
            "phase": self.phase, "percent": percent, "seconds": round(seconds, 2), "total": round(total, 2)})


def _fail(video_id, task_id: str, message: str, error_id: str = "") -> None:
    Video.objects.filter(pk=video_id, task_id=task_id).update(
        status=Video.Status.FAILED, message=message, error_id=error_id, finished=timezone.now())


@shared_task(bind=True, soft_time_limit=settings.VIDEO_SOFT_TIME_LIMIT,
             time_limit=settings.VIDEO_SOFT_TIME_LIMIT + 30)
def transcode_video(self, video_id: str) -> dict | None:
    mine = Video.objects.filter(pk=video_id, task_id=self.request.id)
    if not mine.filter(status=Video.Status.PENDING).update(status=Video.Status.RUNNING, started=timezone.now()):
        logger.info("video %s is not waiting for this task: nothing to do", video_id)
        raise Ignore()
    item = Video.objects.get(pk=video_id)
    root = Path(settings.MEDIA_ROOT)
    folder = root / "videos" / video_id
    folder.mkdir(parents=True, exist_ok=True)
    # A worker killed mid-transcode (SIGKILL: no cleanup ran) may have left a temporary file.
    video.remove_partials(folder)
    files = dict(item.files)
    try:
        if "source" not in files:
            self.update_state(state="PROGRESS", meta={"phase": "sample", "percent": 0.0})
            source = video.sample_clip(folder / "source.mp4", seconds=item.sample_seconds, size=SAMPLE_SIZE)
            files["source"] = source.relative_to(root).as_posix()
        source = root / files["source"]
        info = video.probe(source)
        mine.update(source_info=_info(info), files=files)
        output = video.transcode(source, folder / "output.mp4", height=item.height,
                                 on_progress=ProgressReporter(self, "transcode"), progress_every=PROGRESS_EVERY)
        self.update_state(state="PROGRESS", meta={"phase": "poster", "percent": 100.0})
        poster = video.poster(folder / "output.mp4", folder / "poster.jpg", at=min(1.0, output.duration / 2))
        preview = video.gif_preview(folder / "output.mp4", folder / "preview.gif", seconds=min(3.0, output.duration))
    except SoftTimeLimitExceeded:
        # The limit the worker applied came in the message (the sender's task options), not from here.
        limit = (self.request.timelimit or (None, None))[1] or self.soft_time_limit
        logger.warning("video %s: stopped by the soft time limit (%s s)", video_id, limit)
        _fail(video_id, self.request.id, f"转码超过了时间限制（{limit:g} 秒），已经停下；没有留下半成品。")
        raise
    except video.VideoError as exc:
        error_id = uuid.uuid4().hex[:8]
        logger.warning("video %s: FFmpeg failed, error id %s: %s\n%s", video_id, error_id, exc, exc.stderr_tail)
        _fail(video_id, self.request.id, UNREADABLE, error_id)
        return None  # recorded on the row: the same bytes would fail the same way, so no retry
    except Exception:
        error_id = uuid.uuid4().hex[:8]
        logger.exception("video %s failed, error id %s", video_id, error_id)
        _fail(video_id, self.request.id, UNEXPECTED, error_id)
        raise
    files.update(output=(folder / "output.mp4").relative_to(root).as_posix(),
                 poster=poster.relative_to(root).as_posix(), preview=preview.relative_to(root).as_posix())
    mine.update(status=Video.Status.DONE, files=files, output_info=_info(output), finished=timezone.now())
    return _info(output)


def _info(info: video.VideoInfo) -> dict:
    return {"duration": round(info.duration, 3), "width": info.width, "height": info.height,
            "fps": info.fps, "codec": info.codec}


# --- The same work in segments: a group of transcodes, joined by a chord's callback ---

def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children: the FFmpegs it ran."""
    import resource  # Unix only: imported here, so that the module (and the project) imports on Windows

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@shared_task
def transcode_segment(source: str, part: str, start: float, length: float, height: int,
                      threads: int | None = None) -> dict:
    """Transcode [start, start + length) of ``source`` to ``part``. Returns {"part", "cpu"}: the
    CPU seconds FFmpeg used (how many cores it kept busy, over the wall time, is a measure)."""
    before = _children_cpu()
    video.transcode(Path(source), Path(part), height=height, start=start, duration=length, threads=threads)
    return {"part": part, "cpu": round(_children_cpu() - before, 3)}


@shared_task
def join_segments(segments: list[dict], output: str) -> dict:
    """The chord's callback: the parts, in order (a chord keeps the header's order), joined.
    Returns the joined clip's info, with "cpu": every segment's FFmpeg CPU seconds and its own."""
    before = _children_cpu()
    parts = [Path(s["part"]) for s in segments]
    info = video.concat(parts, Path(output))
    for part in parts:
        part.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # the parts' folder, once empty
        parts[0].parent.rmdir()
    cpu = sum(s["cpu"] for s in segments) + _children_cpu() - before
    return {**_info(info), "cpu": round(cpu, 3)}


def segmented(source: Path, output: Path, *, count: int, height: int, threads: int | None = None,
              duration: float | None = None):
    """The chord that transcodes ``source`` in ``count`` segments and joins them into ``output``.
    ``duration``: the source's length if known (else probed here)."""
    duration = video.probe(source).duration if duration is None else duration
    parts = output.parent / f".{output.stem}-parts"
    parts.mkdir(parents=True, exist_ok=True)
    header = [transcode_segment.s(str(source), str(parts / f"part-{i:03d}.mp4"), start, length, height, threads)
              for i, (start, length) in enumerate(video.segments(duration, count))]
    return chord(header, join_segments.s(str(output)))
