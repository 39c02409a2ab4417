"""Chapter 10's FFmpeg helpers: probe, transcode with live progress, posters, GIF previews,
cutting a video into segments and joining them again. No Celery in here: the chapter's tasks
call these functions, and tests/test_video.py runs them on real FFmpeg.

FFmpeg comes from the ``imageio-ffmpeg`` wheel (a static build with libx264 and the ``lavfi``
test sources, but no ``ffprobe``): ``probe`` reads what ``ffmpeg -i FILE`` prints instead.

Every function that writes a file publishes it atomically: FFmpeg writes to a temporary name in
the destination's directory (``.NAME.part-<pid>-<random><suffix>``) and the file is renamed to
``dst`` (``os.replace``) only after FFmpeg exited 0. Whatever goes wrong before that -- FFmpeg
fails, ``timeout`` passes, ``on_progress`` raises (Celery's ``SoftTimeLimitExceeded`` or a
revoke arrive that way in a task), ``KeyboardInterrupt``, any exception raised by a signal
handler while we wait -- FFmpeg's process group is killed and waited for, the ``.part`` file is
removed, and the exception propagates unchanged. So ``dst`` never exists half-written, and no
FFmpeg process outlives the call.

What cleanup cannot cover: SIGKILL of the calling process (Celery's hard ``time_limit`` does
that to a pool process). On Linux FFmpeg is started with ``PR_SET_PDEATHSIG`` so the kernel
kills it too; its ``.part`` file stays behind, ``dst`` does not appear. ``remove_partials``
deletes such leftovers: a task calls it on its output directory before it starts.

Errors are ``VideoError``: an English sentence saying what happened and what to do, with the
last lines FFmpeg wrote to stderr in ``stderr_tail``.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import os
import re
import secrets
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg

__all__ = [
    "VideoError", "VideoInfo", "concat", "count_frames", "ffmpeg_exe", "gif_preview", "poster",
    "probe", "remove_partials", "sample_clip", "segments", "transcode",
]

#: How long ``probe`` and ``count_frames`` may take: they read a header and a few packets.
PROBE_TIMEOUT = 30.0
#: How much of FFmpeg's stderr a VideoError keeps.
TAIL_LINES = 15
#: MP4 is what ``transcode``, ``concat`` and ``sample_clip`` write (H.264 in MP4 plays everywhere).
MP4_SUFFIXES = (".mp4", ".m4v")

PathLike = str | os.PathLike


class VideoError(RuntimeError):
    """FFmpeg could not do what was asked. ``str(error)`` says what happened and what to do;
    ``stderr_tail`` holds the last lines of FFmpeg's stderr (empty when FFmpeg never ran)."""

    def __init__(self, message: str, stderr_tail: str = ""):
        super().__init__(message)
        self.stderr_tail = stderr_tail


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe`` read: the container's duration (seconds, FFmpeg prints it to 1/100 s) and
    the first video stream's size, frame rate and codec; ``audio`` is the first audio stream's
    codec, or None when the file has no sound."""

    duration: float
    width: int
    height: int
    fps: float
    codec: str
    audio: str | None = None


def ffmpeg_exe() -> str:
    """The FFmpeg binary of the imageio-ffmpeg wheel (or $IMAGEIO_FFMPEG_EXE, if set)."""
    return imageio_ffmpeg.get_ffmpeg_exe()


# --------------------------------------------------------------------------- running FFmpeg

@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return prctl


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux: a preexec_fn that asks the kernel to SIGKILL FFmpeg when the process that
    started it dies, even by SIGKILL, when no cleanup code can run (a Celery hard time limit).
    Without it FFmpeg would keep encoding, orphaned, until it finished (measured: it does).
    Everything it calls is resolved before the fork: between fork and exec it only calls
    prctl and getppid, no import, no lock."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent, pr_set_pdeathsig, sigkill = os.getpid(), 1, int(signal.SIGKILL)

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sigkill, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: nobody is waiting for us
            os._exit(1)

    return preexec


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL FFmpeg's process group (it is the leader of its own session) and reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _clean(line: str) -> str:
    """An FFmpeg log line without its ``[context @ 0x...]`` and ``[level]`` prefixes."""
    return re.sub(r"^(\[[^\]]*\]\s*)+", "", line).strip()


def _tail(stderr: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(stderr.strip().splitlines()[-lines:])


def _errors(stderr: str) -> list[str]:
    """The lines FFmpeg logged at error level or worse (``-loglevel level+...`` tags them)."""
    return [_clean(line) for line in stderr.splitlines() if "[error]" in line or "[fatal]" in line]


def _reason(stderr: str) -> str:
    """FFmpeg's error messages in a few words: each distinct one once, without the
    "Error opening input file X." lines that only repeat the file's name."""
    seen: list[str] = []
    for error in _errors(stderr):
        if error.startswith("Error opening input file "):
            continue
        error = re.sub(r"^Error opening input( files)?: ", "", error)
        if error not in seen:
            seen.append(error)
    return "; ".join(seen)


def _duration_us(value: str) -> int | None:
    """out_time_us / out_time_ms (both microseconds, for historical reasons) or N/A."""
    try:
        return int(value)
    except ValueError:
        return None


def _run(args: Sequence[str], *, what: str, timeout: float | None,
         on_block: Callable[[dict[str, str]], None] | None = None) -> tuple[int, str]:
    """Run ``ffmpeg ARGS``; return (exit status, stderr). With ``on_block``, ``-progress
    pipe:1`` must be among ARGS: every key=value block FFmpeg writes to stdout is passed to it.

    FFmpeg runs in a session of its own, so a Ctrl-C in a terminal reaches only Python, and we
    kill its whole group. Any exception -- ours (timeout), on_block's, a signal handler's --
    kills and reaps FFmpeg before it propagates."""
    argv = [ffmpeg_exe(), "-hide_banner", "-nostdin", *args]
    deadline = None if timeout is None else time.monotonic() + timeout
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=err,
                                stdout=subprocess.PIPE if on_block else subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_die_with_parent())
        try:
            if on_block is not None:
                _read_blocks(proc, deadline, on_block)
            try:
                proc.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise _TimedOut from None
        except _TimedOut:
            _kill_group(proc)
            err.seek(0)
            tail = _tail(err.read().decode("utf-8", "replace"))
            raise VideoError(f"FFmpeg took longer than {timeout:g} s to {what} and was stopped; give it "
                             f"a longer timeout, a faster preset or a shorter input", tail) from None
        finally:
            _kill_group(proc)  # a no-op when FFmpeg has exited; kills it on any exception
            if proc.stdout is not None:
                proc.stdout.close()
        err.seek(0)
        return proc.returncode, err.read().decode("utf-8", "replace")


class _TimedOut(Exception):
    pass


def _read_blocks(proc: subprocess.Popen, deadline: float | None,
                 on_block: Callable[[dict[str, str]], None]) -> None:
    """Read ``-progress`` blocks (key=value lines ending with ``progress=continue|end``) until
    FFmpeg closes stdout; raise _TimedOut at the deadline."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    block: dict[str, str] = {}
    pending = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise _TimedOut
            if not sel.select(left):
                continue  # the deadline check above raises
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                key, _, value = raw.decode("utf-8", "replace").strip().partition("=")
                block[key] = value
                if key == "progress":
                    on_block(block)
                    block = {}


def _file(path: PathLike) -> str:
    """A path for FFmpeg's command line: ``file:`` first, so that a name like ``concat:x.mp4``
    or ``http:...`` is never taken for one of FFmpeg's protocols."""
    return f"file:{os.fspath(path)}"


def _check(code: int, stderr: str, what: str, advice: str) -> None:
    if code != 0:
        reason = _reason(stderr) or (_clean(stderr.strip().splitlines()[-1]) if stderr.strip() else "")
        raise VideoError(f"FFmpeg could not {what} (exit status {code}: {reason or 'no message'}); {advice}",
                         _tail(stderr))


# --------------------------------------------------------------------------- atomic output

class _Partial:
    """A temporary name beside ``dst`` that becomes ``dst`` only by ``publish()``; leaving the
    ``with`` block without publishing removes it. The name keeps ``dst``'s suffix last and
    carries the writer's pid, which ``remove_partials`` uses to tell live from stale."""

    def __init__(self, dst: PathLike):
        self.dst = Path(dst)
        if not self.dst.parent.is_dir():
            raise VideoError(f"cannot write {self.dst}: its directory does not exist; create it first")
        while True:
            self.path = self.dst.with_name(f".{self.dst.name}.part-{os.getpid()}-{secrets.token_hex(4)}"
                                           f"{self.dst.suffix}")
            try:  # O_EXCL: the name is ours; 0o666 & umask: dst gets the permissions a plain open() gives
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                break
            except FileExistsError:
                continue

    def __enter__(self) -> _Partial:
        return self

    def publish(self) -> Path:
        os.replace(self.path, self.dst)
        return self.dst

    def __exit__(self, *exc) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass  # published


_PART = re.compile(r"^\..+\.part-(\d+)-[0-9a-f]{8}(\.[^.]*)?$")


def remove_partials(directory: PathLike, *, max_age: float = 24 * 3600.0) -> int:
    """Delete the ``.NAME.part-<pid>-<random>`` files left in ``directory`` by writers that died
    without cleaning up (SIGKILL, power loss); return how many were deleted.

    A part file is stale when the process named in it no longer runs, or when nobody has written
    to it for ``max_age`` seconds (its pid may have been reused). A part file whose writer still
    runs -- another task writing into the same directory right now -- is left alone. Nothing
    but part files is ever touched. A task calls this on its output directory before it starts
    (a directory that does not exist yet has none: 0). Pids are per machine (per container):
    a directory that workers on other machines write into at the same time is not for this.
    """
    if not os.path.isdir(directory):
        return 0
    removed, now = 0, time.time()
    for entry in os.scandir(directory):
        match = _PART.match(entry.name)
        if not match or not entry.is_file(follow_symlinks=False):
            continue
        try:
            if _alive(int(match.group(1))) and now - entry.stat().st_mtime < max_age:
                continue
            os.unlink(entry.path)
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


# --------------------------------------------------------------------------- reading videos

_DURATION = re.compile(r"Duration: (N/A|(\d+):(\d+):(\d+(?:\.\d+)?))")
_SIZE = re.compile(r"(?<![\w/])(\d{1,5})x(\d{1,5})(?=[\s,\[])")
_RATE = re.compile(r"(\d+(?:\.\d+)?)(k?) (fps|tbr)")


def _header(stderr: str) -> list[str]:
    """The input part of ``ffmpeg -i`` output (before the output and stream mapping)."""
    lines = []
    for line in stderr.splitlines():
        text = re.sub(r"^\[info\] ", "", line)
        if text.startswith(("Output #", "Stream mapping:")):
            break
        lines.append(text)
    return lines


def _stream(header: list[str], kind: str) -> str | None:
    """What follows "Video: " (or "Audio: ") on the first such stream line of the header."""
    return next((line.split(f" {kind}: ", 1)[1] for line in header
                 if re.match(r"\s*Stream #0:\d+", line) and f" {kind}: " in line), None)


def _codec(stream: str) -> str:
    return stream.split()[0].rstrip(",")


def _require_file(path: Path) -> None:
    if not path.exists():
        raise VideoError(f"no such file: {path}; check the path (was the upload saved, or deleted since?)")
    if not path.is_file():
        raise VideoError(f"{path} is not a regular file; pass the path of a video file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path} is empty (0 bytes); the upload did not arrive, send it again")


def probe(path: PathLike, *, timeout: float = PROBE_TIMEOUT) -> VideoInfo:
    """Duration, size, frame rate and codec of ``path``, from what ``ffmpeg -i`` prints (there
    is no ffprobe in the wheel): the ``Duration:`` line and the first ``Video:`` stream line.
    In the same run FFmpeg copies the video packets of the last 3 seconds to nowhere
    (``-sseof -3 ... -c copy -f null``: no decoding), which finds a truncated file whose header
    is complete -- an MP4 with ``+faststart`` cut short -- without reading the whole file.

    Raises VideoError, within ``timeout`` seconds, for a missing or empty file, a file that is
    not a video FFmpeg can read, a file without a video stream, a damaged or truncated file."""
    path = Path(path)
    _require_file(path)
    code, stderr = _run(["-loglevel", "level+info", "-sseof", "-3", "-i", _file(path), "-map", "0:v:0",
                         "-c", "copy", "-f", "null", "-"], what=f"read {path}", timeout=timeout)
    header = _header(stderr)
    if not any(line.startswith("Input #0") for line in header):
        raise VideoError(f"{path} is not a video FFmpeg can read ({_reason(stderr) or f'exit status {code}'}); "
                         f"check that the file is a complete video (mp4, mov, mkv, webm, ...), not cut short",
                         _tail(stderr))
    video, audio = _stream(header, "Video"), _stream(header, "Audio")
    if video is None:
        found = f"only sound: {_codec(audio)}" if audio else "no picture or sound"
        raise VideoError(f"{path} has no video stream (FFmpeg found {found}); upload a file with a picture in it",
                         _tail(stderr))
    if code != 0 or "partial file" in _reason(stderr):
        detail = next((e for e in _errors(stderr) if "partial file" in e), _reason(stderr)) or f"exit status {code}"
        raise VideoError(f"{path} is damaged or truncated: FFmpeg read its header but not all of its data "
                         f"({detail}); upload the whole file again", _tail(stderr))
    size, rate = _SIZE.search(video), _RATE.search(video)
    if size is None:
        raise VideoError(f"{path}: FFmpeg printed no picture size for its video stream ({video})", _tail(stderr))
    fps = float(rate.group(1)) * (1000 if rate.group(2) else 1) if rate else 0.0
    match = next(filter(None, map(_DURATION.search, header)), None)
    if match and match.group(1) != "N/A":
        duration = int(match.group(2)) * 3600 + int(match.group(3)) * 60 + float(match.group(4))
    else:  # no duration in the header: a raw .h264 stream, some browser-recorded webm files
        duration = _read_duration(path, fps, timeout)
    return VideoInfo(duration=duration, width=int(size.group(1)), height=int(size.group(2)), fps=fps,
                     codec=_codec(video), audio=_codec(audio) if audio else None)


def _read_through(path: Path, timeout: float) -> dict[str, str]:
    """Copy every video packet of ``path`` to nowhere (no decoding); FFmpeg's last progress
    block (``frame``, ``out_time_us``, ...)."""
    blocks: list[dict[str, str]] = []
    code, stderr = _run(["-loglevel", "level+warning", "-i", _file(path), "-map", "0:v:0", "-c", "copy",
                         "-progress", "pipe:1", "-nostats", "-f", "null", "-"],
                        what=f"read {path} through", timeout=timeout, on_block=blocks.append)
    _check(code, stderr, f"read {path} through", "check that it is a complete video file")
    if not blocks:
        raise VideoError(f"FFmpeg reported no progress reading {path}; check that it is a video file", _tail(stderr))
    return blocks[-1]


def _read_duration(path: Path, fps: float, timeout: float) -> float:
    """The duration of a file whose header does not say it: the time FFmpeg reached reading it
    through, or (no timestamps at all, a raw stream) its frame count at its frame rate."""
    last = _read_through(path, timeout)
    us = _duration_us(last.get("out_time_us", "N/A"))
    if us:
        return us / 1e6
    if fps and int(last.get("frame", "0")):
        return int(last["frame"]) / fps
    raise VideoError(f"{path}: FFmpeg found no duration in it, no timestamps and no frame rate; "
                     f"convert it to MP4 first")


def count_frames(path: PathLike, *, timeout: float = PROBE_TIMEOUT) -> int:
    """How many frames the first video stream of ``path`` holds (its packets, read through
    without decoding)."""
    path = Path(path)
    _require_file(path)
    return int(_read_through(path, timeout)["frame"])


# --------------------------------------------------------------------------- writing videos

def _seconds(value: float) -> str:
    """A time for FFmpeg: microseconds, its own resolution, so that what ``segments`` computes
    is exactly what FFmpeg cuts."""
    return f"{value:.6f}"


def _require_mp4(dst: Path) -> None:
    if dst.suffix.lower() not in MP4_SUFFIXES:
        raise ValueError(f"{dst}: this function writes H.264 in MP4; name the file .mp4")


def sample_clip(path: PathLike, *, seconds: float = 2.0, size: tuple[int, int] = (160, 120), rate: int = 25,
                preset: str = "ultrafast", audio: bool = False, timeout: float | None = None) -> Path:
    """Write a short H.264 MP4 made from FFmpeg's own test picture (``testsrc2``: moving
    shapes and a clock; every frame differs), yuv420p, with ``+faststart`` (the index at the
    front, so a browser starts playing before the download ends). ``audio=True`` adds a
    440 Hz tone in AAC. Atomic: ``path`` appears complete or not at all."""
    path = Path(path)
    _require_mp4(path)
    if seconds <= 0 or rate <= 0 or min(size) < 2 or size[0] % 2 or size[1] % 2:
        raise ValueError("sample_clip needs seconds > 0, rate > 0 and an even width and height (yuv420p)")
    width, height = size
    sources = ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={rate}:duration={_seconds(seconds)}"]
    if audio:
        sources += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={_seconds(seconds)}"]
    codecs = ["-c:v", "libx264", "-preset", preset, "-pix_fmt", "yuv420p"]
    codecs += ["-c:a", "aac", "-b:a", "96k"] if audio else []
    with _Partial(path) as part:
        code, stderr = _run(["-y", "-loglevel", "level+warning", *sources, *codecs, "-movflags", "+faststart",
                             "-f", "mp4", _file(part.path)], what=f"write {path}", timeout=timeout)
        _check(code, stderr, f"write the sample clip {path}", "see stderr_tail")
        return part.publish()


def transcode(src: PathLike, dst: PathLike, *, height: int, preset: str = "veryfast", crf: int = 28,
              threads: int | None = None, start: float | None = None, duration: float | None = None,
              on_progress: Callable[[float, float], None] | None = None,
              timeout: float | None = None, progress_every: float = 0.5) -> VideoInfo:
    """Re-encode ``src`` as an H.264 MP4 ``height`` pixels high (``scale=-2:H``: the width keeps
    the aspect ratio, rounded to an even number, as yuv420p needs), yuv420p, ``+faststart``.

    Sound: the first audio stream is re-encoded to AAC when ``src`` has one
    (``-map 0:a:0?``, the ``?`` makes it optional), so an upload keeps its sound and a silent
    one needs no ``-an``; no probing for audio is needed.

    ``start``/``duration`` cut the segment [start, start + duration) (seconds) frame-accurately:
    ``-ss`` before ``-i`` seeks to the key frame before ``start`` (fast, however long the file)
    and, since FFmpeg 2.1, decodes from there and drops the frames before ``start`` when it
    transcodes (tests/test_video.py checks the frame count and every frame's picture).
    Times are passed to FFmpeg in microseconds, its own resolution, so ``segments``' pairs cut
    a video into parts that share no frame and miss none.

    ``on_progress(seconds_done, total_seconds)`` is called for each ``-progress`` block FFmpeg
    writes (every ``progress_every`` seconds, ``-stats_period``, and once at the end):
    ``seconds_done`` never decreases and never exceeds the total, and the last call, at
    ``progress=end``, passes exactly ``total`` (the segment's length, or the source's duration).
    An exception it raises -- a Celery ``SoftTimeLimitExceeded``, a revoke -- stops FFmpeg,
    removes the partial output and propagates unchanged.

    ``threads``: how many threads FFmpeg's decoder, filters and x264 may each use (None: FFmpeg's
    default; x264's is 1.5 per core). It is not a core count: FFmpeg (since 7) runs demuxing,
    decoding, filtering, encoding and muxing in threads of their own, so a 640x360 -> 240p
    transcode used about 1.6 cores of 2 with ``threads=1`` and 1.8 without (measured).

    ``timeout``: seconds the encoding may take (the probes of ``src`` and ``dst`` have their own
    ``PROBE_TIMEOUT``) before FFmpeg is killed and VideoError raised. Returns ``probe(dst)``."""
    src, dst = Path(src), Path(dst)
    _require_mp4(dst)
    if height < 2 or height % 2:
        raise ValueError(f"height must be an even number of pixels >= 2 (yuv420p needs it), not {height}")
    if not 0 <= crf <= 51:
        raise ValueError(f"crf must be between 0 (lossless) and 51 (worst), not {crf}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1 (or None for FFmpeg's default), not {threads}")
    if progress_every <= 0:
        raise ValueError(f"progress_every must be > 0 seconds, not {progress_every}")
    if (start is not None and start < 0) or (duration is not None and duration <= 0):
        raise ValueError("start must be >= 0 and duration > 0 (seconds)")
    info = probe(src)
    begin = start or 0.0
    if begin >= info.duration:
        raise ValueError(f"start={begin:g} s is at or after the end of {src} ({info.duration:g} s)")
    total = min(duration, info.duration - begin) if duration is not None else info.duration - begin

    # -ss before -i: seek to the key frame before `start`, decode from there and drop what is
    # before `start` (exact since FFmpeg 2.1 when transcoding); timestamps then count from `start`.
    # -t before -i stops the reading at the segment's end, but FFmpeg 9 lets through a frame that
    # falls exactly on that end (it is also the next segment's first): trim=end drops it.
    # setpts=PTS-STARTPTS makes the first frame time 0; else it keeps its offset from `start`
    # (up to a frame) and MP4's constant frame rate fills the gap with a copy of it.
    cut, pictures, sound = [], [], []
    if start is not None:
        cut += ["-ss", _seconds(begin)]
    if duration is not None:
        cut += ["-t", _seconds(duration)]
        pictures.append(f"trim=end={_seconds(duration)}")
        sound.append(f"atrim=end={_seconds(duration)}")
    if cut:
        pictures.append("setpts=PTS-STARTPTS")
        sound.append("asetpts=PTS-STARTPTS")
    pictures.append(f"scale=-2:{height}")
    audio_filter = ["-af", ",".join(sound)] if sound else []
    # -threads before -i: the decoder's threads; after it: the encoder's. libx264 takes x264's
    # i_threads from the encoder's thread count, so `-x264-params threads=N` is not needed
    # (x264 writes its settings into the stream: tests/test_video.py finds "threads=1" there).
    decode = ["-threads", str(threads)] if threads else []
    encode = ["-threads", str(threads), "-filter_threads", str(threads)] if threads else []
    done = 0.0

    def block(values: dict[str, str]) -> None:
        nonlocal done
        if values.get("progress") == "end":
            done = total
        else:
            us = _duration_us(values.get("out_time_us", "N/A"))
            if us is None:
                us = _duration_us(values.get("out_time_ms", "N/A"))
            if us is not None:
                done = min(total, max(done, us / 1e6))
        if on_progress is not None:
            on_progress(done, total)

    with _Partial(dst) as part:
        code, stderr = _run(
            ["-y", "-loglevel", "level+warning", *decode, *cut, "-i", _file(src),
             "-map", "0:v:0", "-map", "0:a:0?", "-vf", ",".join(pictures), *audio_filter,
             "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p", *encode,
             "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart",
             "-progress", "pipe:1", "-nostats", "-stats_period", str(progress_every), "-f", "mp4", _file(part.path)],
            what=f"transcode {src}", timeout=timeout, on_block=block)
        _check(code, stderr, f"transcode {src}", "see stderr_tail for FFmpeg's own words")
        part.publish()
    return probe(dst)


def poster(src: PathLike, dst: PathLike, *, at: float = 1.0, height: int | None = None,
           timeout: float | None = None) -> Path:
    """Write the frame at ``at`` seconds as a JPEG (``-ss at -frames:v 1``), ``height`` pixels
    high if given (aspect kept). ``at`` is clamped into the video: a poster at 10 s of a 2 s
    clip is its last frame."""
    src, dst = Path(src), Path(dst)
    if at < 0:
        raise ValueError(f"at must be >= 0 seconds, not {at}")
    if height is not None and height < 2:
        raise ValueError(f"height must be >= 2 pixels, not {height}")
    info = probe(src)
    frame = 1 / info.fps if info.fps else 0.04
    at = min(at, max(0.0, info.duration - 1.5 * frame))  # the last frame starts one frame before the end
    scale = ["-vf", f"scale=-2:{height}"] if height else []
    with _Partial(dst) as part:
        code, stderr = _run(["-y", "-loglevel", "level+warning", "-ss", _seconds(at), "-i", _file(src), *scale,
                             "-frames:v", "1", "-c:v", "mjpeg", "-q:v", "3", "-update", "1", "-f", "image2",
                             _file(part.path)], what=f"take a poster frame from {src}", timeout=timeout)
        _check(code, stderr, f"take a poster frame from {src}", "see stderr_tail")
        if part.path.stat().st_size == 0:
            raise VideoError(f"FFmpeg wrote no frame at {at:g} s of {src}; pick an earlier time", _tail(stderr))
        return part.publish()


def gif_preview(src: PathLike, dst: PathLike, *, width: int = 160, fps: int = 8, seconds: float | None = None,
                timeout: float | None = None) -> Path:
    """Write an animated GIF of the first ``seconds`` (all of it when None), ``width`` pixels
    wide at ``fps`` frames per second, looping. GIF has 256 colours: one filtergraph makes a
    palette from the clip itself (``palettegen``) and maps the frames onto it (``paletteuse``),
    far better than FFmpeg's fixed default palette."""
    src, dst = Path(src), Path(dst)
    if width < 2 or fps <= 0 or (seconds is not None and seconds <= 0):
        raise ValueError("gif_preview needs width >= 2, fps > 0 and seconds > 0 (or None)")
    probe(src)
    limit = ["-t", _seconds(seconds)] if seconds is not None else []
    graph = f"fps={fps},scale={width}:-1:flags=lanczos,split[a][b];[a]palettegen[p];[b][p]paletteuse"
    with _Partial(dst) as part:
        code, stderr = _run(["-y", "-loglevel", "level+warning", *limit, "-i", _file(src), "-filter_complex", graph,
                             "-loop", "0", "-f", "gif", _file(part.path)],
                            what=f"make a GIF of {src}", timeout=timeout)
        _check(code, stderr, f"make a GIF of {src}", "see stderr_tail")
        return part.publish()


def segments(duration: float, count: int) -> list[tuple[float, float]]:
    """Cut [0, duration) into ``count`` (start, length) pairs of (nearly) equal length that
    follow each other exactly: every boundary is a whole number of microseconds (FFmpeg's
    resolution), the first starts at 0 and the last ends at ``duration``."""
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    if not duration > 0:
        raise ValueError(f"duration must be > 0 seconds, not {duration}")
    total = round(duration * 1_000_000)
    bounds = [total * i // count for i in range(count + 1)]
    if any(b == a for a, b in itertools.pairwise(bounds)):
        raise ValueError(f"{duration:g} s is too short for {count} segments")
    return [(a / 1e6, (b - a) / 1e6) for a, b in itertools.pairwise(bounds)]


def concat(parts: list[Path], dst: PathLike, *, timeout: float | None = None) -> VideoInfo:
    """Join MP4 segments made with the same settings (``transcode`` with the same height,
    preset and crf) into ``dst`` without re-encoding: the concat demuxer (``-f concat -safe 0``,
    a list file in a temporary directory) and ``-c copy``. Atomic; returns ``probe(dst)``.

    Every part is probed first, and all must have the same size, frame rate and codecs: FFmpeg
    itself would join them regardless (into a file that plays badly), and it exits 0 even when a
    part cannot be read at all, leaving it out; any error it logs fails the join here.

    Segments of a silent video join to exactly the source's frames. With sound, each AAC part
    carries a few milliseconds of encoder padding, so the joined file can grow by about a frame
    per join."""
    dst = Path(dst)
    _require_mp4(dst)
    if not parts:
        raise VideoError("concat got no parts to join; pass the list of segment files")
    infos = []
    for number, part_file in enumerate(parts, 1):
        if not Path(part_file).is_file():
            raise VideoError(f"part {number} of {len(parts)} is missing: {part_file}; "
                             f"did its transcode fail or its file get deleted?")
        try:
            infos.append(probe(part_file))
        except VideoError as error:
            raise VideoError(f"part {number} of {len(parts)} cannot be joined: {error}", error.stderr_tail) from None
    first = infos[0]
    for number, info in enumerate(infos[1:], 2):
        if (info.width, info.height, info.fps, info.codec, info.audio) != \
                (first.width, first.height, first.fps, first.codec, first.audio):
            raise VideoError(f"part {number} of {len(parts)} differs from part 1 ({info} vs {first}); "
                             f"joining without re-encoding needs parts transcoded with the same settings")
    with tempfile.TemporaryDirectory(prefix="concat-") as tmp:
        listing = Path(tmp) / "parts.txt"
        # The concat list's quoting: a ' inside '...' is written '\''.
        listing.write_text("".join("file '{}'\n".format(_file(Path(p).resolve()).replace("'", "'\\''"))
                                   for p in parts), encoding="utf-8")
        what = f"join {len(parts)} parts into {dst}"
        with _Partial(dst) as part:
            code, stderr = _run(["-y", "-loglevel", "level+warning", "-f", "concat", "-safe", "0",
                                 "-i", _file(listing), "-c", "copy", "-movflags", "+faststart", "-f", "mp4",
                                 _file(part.path)], what=what, timeout=timeout)
            advice = "check that every part is a complete video made with the same settings"
            if code == 0 and _errors(stderr):  # FFmpeg skips a part it cannot open and exits 0
                raise VideoError(f"FFmpeg could not {what} ({_reason(stderr)}); {advice}", _tail(stderr))
            _check(code, stderr, what, advice)
            part.publish()
    return probe(dst)
