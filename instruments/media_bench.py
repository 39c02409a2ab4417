"""Chapter 10's media measurements: a transcode as one task against the same work split
into segments (a chord), with x264's threads left to FFmpeg or set to one; and
thumbnails per second.

    rows = segmented_runs(source, folder, counts=(1, 2, 4), threads=(None, 1))
    display(table(rows))

Runs through the real tasks of the Django project (videos.tasks) on whatever worker
serves its default queue: each run is sent, waited for, and timed from the caller's
side (send to result), as a user would feel it. The parts and outputs are written
under ``folder``, which the worker must see (same machine, or shared storage).

From a terminal, on a broker, database and worker of its own (nothing else is touched):

    python -m instruments.media_bench --repeat 3 --concurrency 2
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from instruments.tables import Measured, Table

#: How often a run's result is asked for, in seconds.
POLL = 0.02


@dataclass(frozen=True)
class Run:
    segments: int
    threads: int | None
    seconds: float
    #: CPU seconds of every FFmpeg the run started (in the worker's processes).
    cpu: float
    duration: float
    frames: int

    @property
    def cores(self) -> float:
        """How many cores the run kept busy on average: CPU seconds over wall seconds."""
        return self.cpu / self.seconds


def segmented_runs(source: Path, folder: Path, *, height: int = 240, counts=(1, 2, 4), threads=(None, 1),
                   repeat: int = 1, timeout: float = 120) -> list[Run]:
    """Transcode ``source`` once per (count, threads), ``repeat`` times each, keeping the
    median; check every output has the source's frames. count 1 is one task, no chord."""
    from demo_tasks import video
    from videos.tasks import segmented, transcode_segment

    folder.mkdir(parents=True, exist_ok=True)
    expected = video.count_frames(source)
    length = video.probe(source).duration
    runs = []
    for count in counts:
        for thread in threads:
            measured, output = [], folder / f"out-{count}-{thread or 'auto'}.mp4"
            for _ in range(repeat):
                output.unlink(missing_ok=True)
                started = time.perf_counter()
                # interval: how often get() asks the result backend (the project's is a database,
                # which get() polls, every 0.5 s by default: that would round every time up to it).
                if count == 1:
                    got = transcode_segment.delay(str(source), str(output), 0.0, length, height, thread).get(
                        timeout=timeout, interval=POLL)
                else:
                    got = segmented(source, output, count=count, height=height, threads=thread,
                                    duration=length).apply_async().get(timeout=timeout, interval=POLL)
                measured.append((time.perf_counter() - started, got["cpu"]))
            frames = video.count_frames(output)
            if frames != expected:
                raise AssertionError(f"{count} segments, threads {thread}: {frames} frames, expected {expected}")
            seconds, cpu = sorted(measured)[len(measured) // 2]        # the run of median wall time
            runs.append(Run(count, thread, seconds, cpu, video.probe(output).duration, frames))
    return runs


def speedup(runs: list[Run], run: Run) -> float:
    """How many times faster than one task with FFmpeg's own thread count."""
    base = next(r for r in runs if r.segments == 1 and r.threads is None)
    return base.seconds / run.seconds


def table(runs: list[Run]) -> Table:
    return Table(["做法", "FFmpeg 的线程", "用时", "相对一个任务", "平均用了几个核", "帧数"], [
        ["一个任务" if r.segments == 1 else f"chord：{r.segments} 段",
         "FFmpeg 自己定" if r.threads is None else r.threads, Measured(f"{r.seconds:.2f} 秒"),
         Measured(f"{speedup(runs, r):.2f}×"), Measured(f"{r.cores:.1f}"), r.frames] for r in runs])


def thumbnails_per_second(source: Path, folder: Path, *, calls: int = 10) -> float:
    """images.make_thumbnails() ``calls`` times in this process (every size each time): thumbnails a second."""
    from demo_tasks import images

    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for n in range(calls):
        images.make_thumbnails(source, folder, stem=f"bench-{n}")
    return calls * len(images.SIZES) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    import launcher
    from launcher.django_procs import django_env
    from launcher.paths import DJANGO_DIR

    parser = argparse.ArgumentParser(prog="python -m instruments.media_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20, help="the test clip's length (20)")
    parser.add_argument("--size", default="1280x720", help="the test clip's size (1280x720)")
    parser.add_argument("--height", type=int, default=360, help="the transcode's height (360)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case; the median is kept (3)")
    parser.add_argument("--concurrency", type=int, default=2, help="the worker's pool processes (2)")
    args = parser.parse_args(argv)
    width, height = (int(n) for n in args.size.split("x"))
    folder = Path(tempfile.mkdtemp(prefix="celery-course-media-bench-"))
    broker = launcher.start_embedded()
    try:
        env = django_env(folder, broker)
        launcher.manage("migrate", "--noinput", env=env)
        launcher.start_worker("django_demo", broker=broker, fast=True, concurrency=args.concurrency,
                              cwd=str(DJANGO_DIR), env=env)
        os.environ.update(env)
        import django

        django.setup()
        from demo_tasks import images, video

        source = video.sample_clip(folder / "source.mp4", seconds=args.seconds, size=(width, height))
        runs = segmented_runs(source, folder / "bench", height=args.height, repeat=args.repeat)
        per_second = thumbnails_per_second(images.sample_photo(folder / "photo.jpg"), folder / "thumbs")
    finally:
        launcher.stop_all()
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}; "
          f"worker --concurrency={args.concurrency}; {args.seconds:g} s {args.size} -> {args.height} high, "
          f"median of {args.repeat}")
    print(table(runs))
    print(f"thumbnails (1200x800 JPEG, every size): {per_second:.0f} a second in one process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
