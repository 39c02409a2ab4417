"""Chapter 10's media measurements: a transcode as one task against the same work split
into segments (a chord), with x264's threads left to FFmpeg or set to one; and
thumbnails per second.

    rows = segmented_runs(source, folder, counts=(1, 2, 4), threads=(None, 1))
    display(table(rows))

Runs through the real tasks of the Django project (videos.tasks) on whatever worker
serves its default queue: each run is sent, waited for, and timed from the caller's
side (send to result), as a user would feel it. The parts and outputs are written
under ``folder``, which the worker must see (same machine, or shared storage).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from instruments.tables import Measured, Table


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

    expected = video.count_frames(source)
    length = video.probe(source).duration
    runs = []
    for count in counts:
        for thread in threads:
            measured, output = [], folder / f"out-{count}-{thread or 'auto'}.mp4"
            for _ in range(repeat):
                output.unlink(missing_ok=True)
                started = time.perf_counter()
                if count == 1:
                    got = transcode_segment.delay(str(source), str(output), 0.0, length, height, thread).get(
                        timeout=timeout)
                else:
                    got = segmented(source, output, count=count, height=height, threads=thread,
                                    duration=length).apply_async().get(timeout=timeout)
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
