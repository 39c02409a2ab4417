"""Chapter 10's FFmpeg helpers (demo_tasks/video.py), run on the real FFmpeg of the imageio-ffmpeg
wheel: clips FFmpeg makes from its own test picture (``testsrc2``: every frame differs), read back
by ``probe``, by FFmpeg's packet count and, for cuts, by comparing the decoded pictures with the
source's frames one by one. Interruptions are real: an exception from ``on_progress``, a signal
handler raising while we wait (how Celery's soft time limit arrives), a timeout, and a SIGKILL of
the calling process; after each, the directory and the process table are checked.
"""

from __future__ import annotations

import itertools
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from PIL import Image, ImageChops, ImageStat

from demo_tasks import video
from launcher import wait_for

FPS, SIZE = 25, (160, 120)
FRAME = 1 / FPS
#: A transcode that takes seconds, not tenths: the 8 s clip blown up to 1080p with x264's slowest preset.
SLOW = {"height": 1080, "preset": "veryslow"}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """2 s, 160x120, 25 fps: 50 frames. Tests only read it."""
    return video.sample_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=2.0, size=SIZE, rate=FPS)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """8 s at 160x120: the source of the transcodes that get interrupted."""
    return video.sample_clip(tmp_path_factory.mktemp("long") / "long.mp4", seconds=8.0, size=SIZE, rate=FPS)


def gray_frames(path: Path, size: tuple[int, int] = SIZE) -> list[Image.Image]:
    """Every frame of ``path``, decoded by FFmpeg, as grey Pillow images."""
    raw = subprocess.run([video.ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "gray",
                          "-"], capture_output=True, check=True, timeout=60).stdout
    n = size[0] * size[1]
    assert raw and len(raw) % n == 0, f"{path}: {len(raw)} bytes is not a whole number of {size} frames"
    return [Image.frombytes("L", size, raw[i:i + n]) for i in range(0, len(raw), n)]


def nearest(frame: Image.Image, source: list[Image.Image]) -> int:
    """The index of the source frame that looks most like ``frame``."""
    return min(range(len(source)), key=lambda i: ImageStat.Stat(ImageChops.difference(frame, source[i])).mean[0])


def ffmpeg_processes(marker: Path) -> list[psutil.Process]:
    """Live FFmpeg processes with ``marker`` (a test's tmp_path) in their command line."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = proc.info["cmdline"] or []
        if cmdline and "ffmpeg" in Path(cmdline[0]).name and str(marker) in " ".join(cmdline):
            found.append(proc)
    return found


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def assert_clean(directory: Path, expected: list[str] | None = None) -> None:
    """Nothing but ``expected`` in ``directory`` (no output, no .part file), and no FFmpeg left."""
    assert leftovers(directory) == sorted(expected or [])
    assert not ffmpeg_processes(directory), "an FFmpeg process outlived the call"


class SoftLimit(Exception):
    """Stands for Celery's SoftTimeLimitExceeded (or a revoke) arriving in a task."""


# --------------------------------------------------------------------------- reading back

@pytest.mark.parametrize(("seconds", "size", "rate", "audio"),
                         [(2.0, (160, 120), 25, False), (1.0, (96, 64), 10, True)])
def test_probe_reads_back_what_sample_clip_made(tmp_path, seconds, size, rate, audio):
    path = video.sample_clip(tmp_path / "c.mp4", seconds=seconds, size=size, rate=rate, audio=audio)
    info = video.probe(path)
    assert abs(info.duration - seconds) <= 1 / rate, info
    assert (info.width, info.height, info.fps, info.codec) == (*size, rate, "h264")
    assert info.audio == ("aac" if audio else None)
    assert video.count_frames(path) == round(seconds * rate)
    assert leftovers(tmp_path) == ["c.mp4"]
    head = path.read_bytes()[:4096]
    assert head.index(b"moov") < head.index(b"mdat"), "+faststart puts the index before the data"


@pytest.mark.parametrize(("height", "width"), [(60, 80), (90, 120), (240, 320)])
def test_transcode_scales_keeping_the_aspect_ratio(tmp_path, clip, height, width):
    info = video.transcode(clip, tmp_path / "out.mp4", height=height, preset="ultrafast")
    assert (info.width, info.height, info.codec, info.fps, info.audio) == (width, height, "h264", FPS, None)
    assert abs(info.duration - 2.0) <= FRAME
    assert video.count_frames(tmp_path / "out.mp4") == 50
    assert info == video.probe(tmp_path / "out.mp4")
    assert leftovers(tmp_path) == ["out.mp4"]
    reference = tmp_path / "reference"
    reference.write_bytes(b"")
    # The output has the permissions any new file gets (umask), not a temporary file's 0600.
    assert stat.S_IMODE((tmp_path / "out.mp4").stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)


def test_transcode_keeps_the_sound_as_aac(tmp_path):
    src = video.sample_clip(tmp_path / "with_sound.mp4", seconds=1.0, audio=True)
    info = video.transcode(src, tmp_path / "out.mp4", height=60, preset="ultrafast")
    assert (info.audio, info.height) == ("aac", 60)


def test_threads_reach_x264(tmp_path, clip):
    """x264 writes its settings into the stream it makes ("... threads=N lookahead_threads=..."):
    ``-threads N`` after ``-i`` is enough, no ``-x264-params threads=N``."""
    for threads in (1, 2):
        dst = tmp_path / f"t{threads}.mp4"
        video.transcode(clip, dst, height=120, preset="ultrafast", threads=threads)
        assert f" threads={threads} ".encode() in dst.read_bytes()


def test_progress_is_ordered_and_ends_at_the_total(tmp_path, clip):
    calls: list[tuple[float, float]] = []
    video.transcode(clip, tmp_path / "out.mp4", height=240, preset="medium", progress_every=0.02,
                    on_progress=lambda done, total: calls.append((done, total)))
    assert len(calls) >= 2, f"one progress block only: {calls}"
    assert {total for _, total in calls} == {video.probe(clip).duration}
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[0] >= 0
    assert done[-1] == 2.0 and all(d <= 2.0 for d in done)

    calls.clear()
    video.transcode(clip, tmp_path / "part.mp4", height=120, preset="ultrafast", start=0.5, duration=1.0,
                    progress_every=0.02, on_progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (1.0, 1.0), "a segment's total is its own length"
    assert all(total == 1.0 and 0 <= done <= 1.0 for done, total in calls)


# --------------------------------------------------------------------------- cutting and joining

@pytest.mark.parametrize(("start", "length"), [
    (0.5, 0.5),    # both ends between frames (frames at 0.48, 0.52, ..., 0.96, 1.0)
    (1.0, 0.5),    # starts exactly on frame 25
    (0.4, 0.8),    # starts and ends exactly on a frame (10 and 30): frame 30 belongs to the next cut
    (1.5, 0.5),    # the last half second
])
def test_a_cut_is_frame_accurate(tmp_path, clip, start, length):
    dst = tmp_path / "cut.mp4"
    info = video.transcode(clip, dst, height=120, preset="ultrafast", crf=18, start=start, duration=length)
    begin, end = round(start * 1e6), round((start + length) * 1e6)
    expected = [k for k in range(50) if begin <= k * 40_000 < end]  # frame k is shown at k * 40 ms
    assert video.count_frames(dst) == len(expected)
    assert abs(info.duration - len(expected) * FRAME) < 0.011  # FFmpeg prints it to 1/100 s
    source = gray_frames(clip)
    assert [nearest(frame, source) for frame in gray_frames(dst)] == expected


@pytest.mark.parametrize(("duration", "count"), [(2.0, 1), (2.0, 3), (2.0, 7), (10.0, 6), (0.1, 3), (3599.97, 16)])
def test_segments_cover_the_duration_exactly(duration, count):
    parts = video.segments(duration, count)
    assert len(parts) == count and parts[0][0] == 0
    us = [(round(start * 1e6), round(length * 1e6)) for start, length in parts]
    assert all(abs(start * 1e6 - s) < 1e-3 and abs(length * 1e6 - n) < 1e-3
               for (start, length), (s, n) in zip(parts, us, strict=True)), "boundaries are whole microseconds"
    assert all(s + n == next_s for (s, n), (next_s, _) in itertools.pairwise(us))
    assert us[-1][0] + us[-1][1] == round(duration * 1e6)
    assert max(n for _, n in us) - min(n for _, n in us) <= 1
    frames = [k * 40_000 for k in range(round(duration * 25))]
    assert all(sum(s <= t < s + n for s, n in us) == 1 for t in frames), "every frame in exactly one segment"


@pytest.mark.parametrize(("duration", "count", "message"), [
    (2.0, 0, "count must be at least 1"), (2.0, -1, "count must be at least 1"),
    (0.0, 3, "duration must be > 0"), (-1.0, 3, "duration must be > 0"), (float("nan"), 3, "duration must be > 0"),
    (0.000002, 3, "too short for 3 segments"),
])
def test_segments_rejects_what_cannot_be_cut(duration, count, message):
    with pytest.raises(ValueError, match=message):
        video.segments(duration, count)


@pytest.mark.parametrize("count", [3, 4])
def test_split_transcode_and_concat_give_the_whole_clip(tmp_path, clip, count):
    parts = []
    for number, (start, length) in enumerate(video.segments(video.probe(clip).duration, count)):
        parts.append(tmp_path / f"part{number}.mp4")
        video.transcode(clip, parts[-1], height=120, preset="ultrafast", start=start, duration=length)
    info = video.concat(parts, tmp_path / "joined.mp4")
    assert abs(info.duration - 2.0) <= 2 * FRAME
    assert (info.width, info.height, info.fps) == (160, 120, FPS)
    assert video.count_frames(tmp_path / "joined.mp4") == 50, "no frame lost or doubled at the joins"
    assert leftovers(tmp_path) == sorted([*(p.name for p in parts), "joined.mp4"])


def test_concat_refuses_an_empty_list_a_missing_part_a_non_video_and_a_mismatch(tmp_path, clip):
    with pytest.raises(video.VideoError, match="no parts to join"):
        video.concat([], tmp_path / "joined.mp4")
    with pytest.raises(video.VideoError, match=r"part 2 of 2 is missing: .*gone\.mp4"):
        video.concat([clip, tmp_path / "gone.mp4"], tmp_path / "joined.mp4")
    # FFmpeg's concat demuxer would leave this part out and exit 0.
    (tmp_path / "notes.mp4").write_text("not a video\n")
    with pytest.raises(video.VideoError, match=r"part 2 of 2 cannot be joined: .*notes\.mp4 is not a video") as failed:
        video.concat([clip, tmp_path / "notes.mp4"], tmp_path / "joined.mp4")
    assert failed.value.stderr_tail
    small = video.transcode(clip, tmp_path / "small.mp4", height=60, preset="ultrafast")
    assert small.height == 60
    with pytest.raises(video.VideoError, match="part 2 of 2 differs from part 1"):
        video.concat([clip, tmp_path / "small.mp4"], tmp_path / "joined.mp4")
    assert_clean(tmp_path, ["notes.mp4", "small.mp4"])


def test_odd_file_names_are_files_not_protocols_or_quotes(tmp_path, clip, monkeypatch):
    """Relative names that look like FFmpeg protocols (``concat:``, ``subfile:``) and a quote in a
    concat list entry."""
    monkeypatch.chdir(tmp_path)
    Path("concat:clip.mp4").write_bytes(clip.read_bytes())
    assert video.probe("concat:clip.mp4").duration == 2.0
    assert video.transcode("concat:clip.mp4", "subfile:out.mp4", height=60, preset="ultrafast").height == 60
    Path("it's a part.mp4").write_bytes(clip.read_bytes())
    info = video.concat([Path("it's a part.mp4"), Path("subfile:out.mp4").resolve().with_name("concat:clip.mp4")],
                        "http:joined.mp4")
    assert abs(info.duration - 4.0) <= FRAME and video.count_frames("http:joined.mp4") == 100
    assert leftovers(tmp_path) == ["concat:clip.mp4", "http:joined.mp4", "it's a part.mp4", "subfile:out.mp4"]


# --------------------------------------------------------------------------- pictures

def test_poster_is_a_jpeg_of_the_asked_height(tmp_path, clip):
    with Image.open(video.poster(clip, tmp_path / "poster.jpg", at=1.0, height=60)) as image:
        assert (image.format, image.size) == ("JPEG", (80, 60))
    with Image.open(video.poster(clip, tmp_path / "end.jpg", at=99.0)) as image:  # clamped: the last frame
        assert (image.format, image.size) == ("JPEG", (160, 120))
        last = gray_frames(clip)
        assert nearest(image.convert("L"), last) == len(last) - 1
    assert leftovers(tmp_path) == ["end.jpg", "poster.jpg"]


def test_gif_preview_is_animated_with_its_own_palette(tmp_path, clip):
    with Image.open(video.gif_preview(clip, tmp_path / "preview.gif", width=80, fps=8)) as gif:
        assert (gif.format, gif.size, gif.n_frames, gif.info["loop"]) == ("GIF", (80, 60), 16, 0)
    with Image.open(video.gif_preview(clip, tmp_path / "short.gif", fps=5, seconds=1.0)) as gif:
        assert (gif.size, gif.n_frames) == ((160, 120), 5)
    assert leftovers(tmp_path) == ["preview.gif", "short.gif"]


# --------------------------------------------------------------------------- bad inputs

BAD_INPUTS = {
    "text": ("a text file named .mp4 is not a video FFmpeg can read", "is not a video FFmpeg can read"),
    "missing": ("no such file", "no such file: "),
    "truncated": ("the first half of a real MP4 (index in front, data cut)", "is damaged or truncated.*partial file"),
    "empty": ("0 bytes", r"is empty \(0 bytes\)"),
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_inputs_raise_a_readable_error_and_leave_nothing(tmp_path, clip, kind):
    src = tmp_path / "upload.mp4"
    if kind == "text":
        src.write_text("hello, this is not a video\n" * 20)
    elif kind == "truncated":
        data = clip.read_bytes()
        src.write_bytes(data[:len(data) // 2])
    elif kind == "empty":
        src.write_bytes(b"")
    out = tmp_path / "out"
    out.mkdir()
    pattern = BAD_INPUTS[kind][1]
    calls = [
        lambda: video.probe(src),
        lambda: video.transcode(src, out / "video.mp4", height=60),
        lambda: video.poster(src, out / "poster.jpg"),
        lambda: video.gif_preview(src, out / "preview.gif"),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(video.VideoError, match=pattern) as failed:
            call()
        assert time.monotonic() - started < 10
        assert "Traceback" not in str(failed.value) and str(src) in str(failed.value)
        if kind in ("missing", "empty"):
            assert failed.value.stderr_tail == "", "refused before FFmpeg ran"
        else:
            assert "[error]" in failed.value.stderr_tail, "FFmpeg's own words come with the error"
    assert_clean(out)


def test_no_video_stream_and_no_directory(tmp_path):
    sound = tmp_path / "sound.mp4"
    subprocess.run([video.ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=duration=0.5", "-c:a", "aac",
                    str(sound)], check=True, timeout=60)
    with pytest.raises(video.VideoError, match=r"has no video stream \(FFmpeg found only sound: aac\)"):
        video.probe(sound)
    with pytest.raises(video.VideoError, match="is not a regular file"):
        video.probe(tmp_path)
    with pytest.raises(video.VideoError, match="its directory does not exist"):
        video.sample_clip(tmp_path / "nowhere" / "c.mp4")


def test_arguments_are_checked_before_ffmpeg_runs(tmp_path, clip):
    for kwargs, message in [({"height": 61}, "even number"), ({"height": 60, "crf": 60}, "crf must be"),
                            ({"height": 60, "threads": 0}, "threads must be"),
                            ({"height": 60, "duration": 0}, "duration > 0"),
                            ({"height": 60, "start": 2.0}, "at or after the end")]:
        with pytest.raises(ValueError, match=message):
            video.transcode(clip, tmp_path / "out.mp4", **kwargs)
    with pytest.raises(ValueError, match=r"name the file \.mp4"):
        video.transcode(clip, tmp_path / "out.webm", height=60)
    assert_clean(tmp_path)


# --------------------------------------------------------------------------- interruptions

@pytest.mark.parametrize("exception", [SoftLimit, KeyboardInterrupt])
def test_an_exception_from_on_progress_stops_ffmpeg_and_propagates(tmp_path, long_clip, exception):
    raised = exception("stop here")

    def on_progress(done, total):
        assert ffmpeg_processes(tmp_path), "on_progress runs while FFmpeg is still encoding"
        raise raised

    started = time.monotonic()
    with pytest.raises(exception) as caught:
        video.transcode(long_clip, tmp_path / "out.mp4", progress_every=0.05, on_progress=on_progress, **SLOW)
    assert caught.value is raised, "the very exception on_progress raised"
    assert time.monotonic() - started < 10
    assert_clean(tmp_path)


def test_an_exception_from_a_signal_handler_cleans_up(tmp_path, long_clip):
    """Celery's soft time limit is SIGUSR1 in the pool process, and its handler raises
    SoftTimeLimitExceeded wherever the task happens to be: here, waiting for FFmpeg to encode."""
    def soft_limit(signum, frame):
        raise SoftLimit("soft time limit")

    def send_when_encoding():
        if wait_for(lambda: list(tmp_path.glob(".out.mp4.part-*")) and ffmpeg_processes(tmp_path), 30):
            os.kill(os.getpid(), signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, soft_limit)
    sender = threading.Thread(target=send_when_encoding)
    try:
        sender.start()
        with pytest.raises(SoftLimit, match="soft time limit"):
            video.transcode(long_clip, tmp_path / "out.mp4", **SLOW)
    finally:
        sender.join()
        signal.signal(signal.SIGUSR1, previous)
    assert_clean(tmp_path)


def test_timeout_kills_ffmpeg_and_says_so(tmp_path, long_clip):
    started = time.monotonic()
    with pytest.raises(video.VideoError, match=r"took longer than 0.5 s to transcode .*long\.mp4") as failed:
        video.transcode(long_clip, tmp_path / "out.mp4", timeout=0.5, **SLOW)
    assert time.monotonic() - started < 5
    assert "was stopped" in str(failed.value)
    assert_clean(tmp_path)


CALLER = """
import sys
from demo_tasks import video
video.transcode(sys.argv[1], sys.argv[2], height=1080, preset="veryslow")
"""


def test_sigkill_of_the_caller_leaves_a_part_file_only(tmp_path, long_clip):
    """No cleanup runs in a SIGKILLed process (Celery's hard time limit): FFmpeg dies with it
    (PR_SET_PDEATHSIG), dst never appears, and remove_partials deletes the .part file."""
    caller = subprocess.Popen([sys.executable, "-c", CALLER, str(long_clip), str(tmp_path / "out.mp4")])
    try:
        assert wait_for(lambda: ffmpeg_processes(tmp_path) and list(tmp_path.glob(".out.mp4.part-*")), 30), \
            "the caller never started FFmpeg"
        ffmpeg = ffmpeg_processes(tmp_path)
        caller.kill()
        caller.wait(10)
        assert wait_for(lambda: not ffmpeg_processes(tmp_path), 10), "FFmpeg outlived its SIGKILLed caller"
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait(10)
        for proc in ffmpeg_processes(tmp_path):
            proc.kill()
    assert [p.pid for p in ffmpeg] and not (tmp_path / "out.mp4").exists()
    [part] = leftovers(tmp_path)
    assert part.startswith(f".out.mp4.part-{caller.pid}-") and part.endswith(".mp4")
    assert video.remove_partials(tmp_path) == 1
    assert_clean(tmp_path)


def test_remove_partials_removes_stale_part_files_and_nothing_else(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    dead = int(finished.stdout)
    assert not psutil.pid_exists(dead)
    me = os.getpid()
    stale = [f".a.mp4.part-{dead}-0123abcd.mp4", f".poster.jpg.part-{dead}-89abcdef.jpg",
             f".old.mp4.part-{me}-00000000.mp4"]  # a live pid, but untouched for two days
    kept = [f".b.mp4.part-{me}-0123abcd.mp4",     # being written by a live process
            "a.mp4", ".hidden", ".a.mp4.part-notes.txt", f"a.mp4.part-{dead}-0123abcd.mp4",
            f".c.mp4.part-{dead}-XYZ12345.mp4"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(tmp_path / f".old.mp4.part-{me}-00000000.mp4", (two_days_ago, two_days_ago))
    (tmp_path / f".dir.mp4.part-{dead}-0123abcd.mp4").mkdir()  # not a file: left alone
    assert video.remove_partials(tmp_path) == len(stale)
    assert leftovers(tmp_path) == sorted([*kept, f".dir.mp4.part-{dead}-0123abcd.mp4"])
    assert video.remove_partials(tmp_path) == 0
