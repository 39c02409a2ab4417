"""Chapter 10 (part 2): image helpers for uploads, with Pillow. No Celery, no Django here.

A Django upload form validates the file with ``identify()`` while the user waits,
and a Celery task makes the thumbnails with ``make_thumbnails()`` afterwards::

    info = identify(uploaded_file)        # ImageInfo(format='JPEG', width=1200, height=800, extension='.jpg', ...)
    thumbs = make_thumbnails(path, media / "thumbs", stem="42")
    thumbs["small"].path                  # media/thumbs/42-small.jpg, longest side 160 px

What is checked, in this order, and the ``BadImage.code`` each check gives:

1. the size in bytes (``"empty"``, ``"too_large"``), before anything reads the content;
2. what the content is, never the file name (``"not_an_image"``, ``"unsupported_format"``):
   ``Image.open(..., formats=FORMATS)`` reads only the header;
3. the number of pixels the header announces (``"too_many_pixels"``), before any pixel is decoded;
4. whether the data is whole (``"corrupt"``): ``verify()``, then one decode (JPEG at 1/8 scale).

A bad upload is the user's problem and gets ``BadImage`` (a ``ValueError``) with a
message that says what happened and what to do; a full disk or a missing folder is
the server's problem and keeps its own exception (``OSError``).
"""

from __future__ import annotations

import io
import os
import re
import struct
import tempfile
import zlib
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

#: The thumbnails made for each upload: name -> the longest side, in pixels.
SIZES = {"small": 160, "medium": 480, "large": 1024}

#: The largest upload accepted, in bytes.
MAX_UPLOAD_BYTES = 10 * 1024 * 1024

#: The largest image accepted, in pixels (width x height, as the file's header says).
#: A limit on bytes alone does not protect the server: image formats are compressed,
#: and a PNG of 20,000 x 20,000 pixels of one colour is a few dozen KB on disk but
#: 400 million pixels once decoded -- 400 MB in mode "1", 1.2 GB as RGB, more while
#: resizing. That is a "decompression bomb": a small upload that makes the worker run
#: out of memory. So the header's pixel count is checked before anything is decoded.
#: Pillow has a limit of its own (``Image.MAX_IMAGE_PIXELS``, about 89 Mpx: a warning
#: above it, ``DecompressionBombError`` above twice it), global for the whole process;
#: ours is stricter and checked per call, so nothing global is changed.
MAX_PIXELS = 40_000_000

#: The formats accepted (Pillow's format name -> the extension we store them with),
#: decided by the file's content.
FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif"}

#: Every ``BadImage.code``.
CODES = ("empty", "too_large", "not_an_image", "unsupported_format", "too_many_pixels", "corrupt")

#: JPEG quality of the thumbnails (Pillow's scale, 1-95).
JPEG_QUALITY = 85

# Pillow names a JPEG that carries extra "multi-picture" frames (many phone cameras
# write them) "MPO"; it is a JPEG, and its first picture is the photo.
_ALIASES = {"MPO": "JPEG"}

# How each accepted format begins. A file that starts like one of them but that Pillow
# cannot open is a damaged image ("corrupt"), not "not an image".
_SIGNATURES = {
    "JPEG": lambda head: head.startswith(b"\xff\xd8\xff"),
    "PNG": lambda head: head.startswith(b"\x89PNG\r\n\x1a\n"),
    "GIF": lambda head: head[:6] in (b"GIF87a", b"GIF89a"),
    "WEBP": lambda head: head[:4] == b"RIFF" and head[8:12] == b"WEBP",
}

# Other image formats, to name in the "unsupported_format" message. Only formats whose
# files begin with a distinctive signature, so that a text file is never taken for one.
_OTHER_FORMATS = ("BMP", "TIFF", "ICO", "PSD", "JPEG2000", "AVIF", "QOI")
# HEIC/HEIF (iPhone photos): Pillow cannot read them without a plugin; their
# ISO base media "ftyp" box names the brand.
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")

# What Pillow raises, one plugin or another, for data it cannot decode. (Not MemoryError:
# that is the server's problem, not the image's.)
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, struct.error, zlib.error)

_ORIENTATION = 0x0112  # EXIF tag
_GPS_IFD = 0x8825  # EXIF tag of the GPS sub-IFD


class BadImage(ValueError):
    """An upload that is not an image this site accepts.

    ``code`` is one of ``CODES`` (a form maps it to its own text), ``str(error)`` an
    English message that says what happened and what to do, ``params`` the numbers in
    it (e.g. ``{"size": ..., "limit": ...}``), for a translated message.
    The arguments are JSON-friendly, so ``BadImage(*error.args)`` rebuilds the error
    -- which is what Celery does with a task's exception under the JSON serializer.
    """

    def __init__(self, code: str, message: str, params: Mapping[str, object] | None = None):
        if code not in CODES:
            raise ValueError(f"unknown BadImage code {code!r}; use one of {', '.join(CODES)}")
        params = dict(params or {})
        super().__init__(code, message, params)
        self.code = code
        self.message = message
        self.params = params

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ImageInfo:
    """What ``identify()`` found. ``width`` and ``height`` are as stored in the file,
    before the EXIF orientation is applied; ``display_size`` is what a viewer shows."""

    format: str  # a key of FORMATS
    width: int
    height: int
    extension: str  # FORMATS[format]
    orientation: int  # EXIF orientation 1-8; 1 (as stored) when absent or invalid

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) once the orientation is applied: 5-8 turn the picture 90 degrees."""
        return (self.height, self.width) if self.orientation >= 5 else (self.width, self.height)


@dataclass(frozen=True)
class Thumbnail:
    """One file written by ``make_thumbnails()``."""

    name: str  # the key in ``sizes``, e.g. "small"
    path: Path
    width: int
    height: int
    bytes: int  # the file's size


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB ({size:,} bytes)"


def _accepted() -> str:
    names = list(FORMATS)
    return ", ".join(names[:-1]) + " or " + names[-1]


# ---------------------------------------------------------------------------
# identify()


def _as_seekable(data: bytes | os.PathLike | str | BinaryIO, stack: ExitStack) -> tuple[BinaryIO, int | None]:
    """A seekable binary file for ``data`` and its size (None: more than the limit, size unknown)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return io.BytesIO(data), len(data)
    if isinstance(data, (str, os.PathLike)):
        fp = stack.enter_context(open(data, "rb"))  # noqa: SIM115 (closed by the stack)
        return fp, os.fstat(fp.fileno()).st_size
    if isinstance(data, io.TextIOBase):
        raise TypeError("identify() needs bytes, a path or a file opened in binary mode ('rb'), not a text file")
    try:
        start = data.tell()
        data.seek(0, io.SEEK_END)
        size = data.tell()
    except (AttributeError, OSError, ValueError):
        # Not seekable (a pipe, a socket): read at most one byte more than the limit.
        head = data.read(MAX_UPLOAD_BYTES + 1)
        return io.BytesIO(head), (len(head) if len(head) <= MAX_UPLOAD_BYTES else None)
    # Seekable: the caller's file. Pillow reads it from the start; put it back where it was.
    stack.callback(data.seek, start)
    return data, size


def _refuse_unreadable(fp: BinaryIO, error: Exception) -> BadImage:
    """Image.open() could not identify the content: say what it is, as well as we can."""
    fp.seek(0)
    head = fp.read(16)
    for name, matches in _SIGNATURES.items():
        if matches(head):
            return BadImage(
                "corrupt",
                f"The file begins like a {name} image but its header is damaged ({error}). "
                "Upload the original file again, or save it again from an image editor.",
                {"format": name},
            )
    other, known = None, False
    try:
        Image.init()  # every plugin registered, so that only formats this Pillow knows are asked for
        with Image.open(fp, formats=[name for name in _OTHER_FORMATS if name in Image.OPEN]) as im:
            other, known = im.format, True
    except Image.DecompressionBombError:  # one of them, and huge: its name is lost with the error
        known = True
    except Exception:  # whatever Pillow raises for "none of these": the content is none of them
        if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
            other, known = "HEIC/HEIF", True
    if known:
        return BadImage(
            "unsupported_format",
            f"The file is {f'a {other} image' if other else 'an image in another format'}; "
            f"this site accepts {_accepted()} images. "
            "Convert it to JPEG or PNG (any image editor can) and upload it again.",
            {"format": other},
        )
    return BadImage(
        "not_an_image",
        "The file's content is not an image, whatever its name says. "
        f"Choose a photo or picture saved as {_accepted()}.",
    )


def _too_many_pixels(width: int | None, height: int | None, pixels: int | None) -> BadImage:
    if width is not None and height is not None:
        size = f"{width} x {height} = {width * height:,} pixels"
    elif pixels is not None:
        size = f"{pixels:,} pixels"
    else:
        size = "more pixels than Pillow's own limit"
    return BadImage(
        "too_many_pixels",
        f"The image is too large to process: its header says {size}; the limit is {MAX_PIXELS:,} pixels. "
        "Scale it down (e.g. to 6000 x 6000 or less) and upload it again.",
        {"width": width, "height": height, "pixels": pixels, "limit": MAX_PIXELS},
    )


def identify(data: bytes | os.PathLike | str | BinaryIO) -> ImageInfo:
    """Check an upload by its content and say what it is; raise ``BadImage`` if it is refused.

    ``data`` is the upload's bytes, a path, or a binary file object (Django's
    ``UploadedFile`` is one); a file object is read from its start and left at the
    position it had. The file's name is never looked at.
    """
    with ExitStack() as stack:
        fp, size = _as_seekable(data, stack)
        # 1. Bytes first: cheap, and it bounds everything that follows.
        if size == 0:
            raise BadImage("empty", "The file is empty (0 bytes). Choose the image file again and upload it.")
        if size is None or size > MAX_UPLOAD_BYTES:
            told = "more than " + _mb(MAX_UPLOAD_BYTES) if size is None else _mb(size)
            raise BadImage(
                "too_large",
                f"The file is {told}; the limit is {_mb(MAX_UPLOAD_BYTES)}. "
                "Upload a smaller image (export it at a lower resolution or quality).",
                {"size": size, "limit": MAX_UPLOAD_BYTES},
            )

        # 2. What the content is. Image.open() reads the header only (it is lazy).
        try:
            im = Image.open(fp, formats=list(FORMATS))
        except Image.DecompressionBombError as error:
            # Pillow's own, process-wide limit (twice MAX_IMAGE_PIXELS), checked inside open().
            found = re.search(r"\((\d+) pixels\)", str(error))
            raise _too_many_pixels(None, None, int(found.group(1)) if found else None) from None
        except (UnidentifiedImageError, *_DECODE_ERRORS) as error:
            raise _refuse_unreadable(fp, error) from None
        with im:
            fmt = _ALIASES.get(im.format or "", im.format or "")
            width, height = im.size
            # 3. Pixels, from the header, before anything is decoded. (Between Pillow's
            # MAX_IMAGE_PIXELS and twice that, open() has also issued a DecompressionBombWarning.)
            if width * height > MAX_PIXELS:
                raise _too_many_pixels(width, height, width * height)
            # 4. Whole? verify() checks what it can without decoding (a PNG's chunk checksums);
            # it must come right after open(), and it leaves the image unusable: open again.
            try:
                im.verify()
            except _DECODE_ERRORS as error:
                raise _corrupt(fmt, error) from None
        try:
            with Image.open(fp, formats=list(FORMATS)) as im:
                orientation = _orientation(im)
                if fmt == "JPEG":
                    # verify() does nothing for JPEG: decode, at 1/8 scale (cheap), to find truncation.
                    im.draft(im.mode, (max(1, width // 8), max(1, height // 8)))
                if fmt != "PNG":  # verify() has read every PNG chunk already
                    im.load()
        except Image.DecompressionBombError:  # a GIF frame larger than its header said
            raise _too_many_pixels(None, None, None) from None
        except _DECODE_ERRORS as error:
            raise _corrupt(fmt, error) from None
    return ImageInfo(format=fmt, width=width, height=height, extension=FORMATS[fmt], orientation=orientation)


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation, 1-8; 1 when absent, invalid or unreadable."""
    try:
        orientation = int(im.getexif().get(_ORIENTATION, 1))
    except Exception:  # a broken EXIF block says nothing about the pixels
        return 1
    return orientation if orientation in range(1, 9) else 1


def _corrupt(fmt: str, error: BaseException) -> BadImage:
    return BadImage(
        "corrupt",
        f"The {fmt} image is damaged or incomplete ({error}). "
        "Upload the original file again; if it was cut off during the upload, a second try usually works.",
        {"format": fmt},
    )


# ---------------------------------------------------------------------------
# make_thumbnails()


def _check_name(kind: str, value: str) -> None:
    if not value or value in (".", "..") or value.startswith(".") or "/" in value or "\\" in value or "\0" in value:
        raise ValueError(f"{kind} {value!r} must be a plain file name part (no '/', '\\' or leading '.')")


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB for JPEG: transparency flattened onto white (JPEG has no alpha; black is
    what a plain convert("RGB") would show where a PNG is transparent)."""
    if im.mode == "RGB" and "transparency" not in im.info:
        return im
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if im.mode.startswith("I;16") or im.mode == "I":
        # 16-bit greys (a 16-bit PNG): convert("L") would clip every value above 255 to white.
        im = im.convert("I").point(lambda v: v / 256).convert("L")
    return im.convert("RGB")


def _write_jpeg(image: Image.Image, fp: BinaryIO, icc_profile: bytes | None) -> None:
    """The one place a thumbnail is encoded and written.

    Nothing of the source's metadata is passed on: no EXIF (a phone photo's EXIF
    carries the GPS position where it was taken, the camera's serial number and the
    time; a public thumbnail must not publish where the user lives), no XMP, no comment.
    Only an RGB colour profile is kept, so that colours stay right.
    """
    image.save(fp, "JPEG", quality=JPEG_QUALITY, progressive=True, optimize=True, icc_profile=icc_profile)


def make_thumbnails(
    source: os.PathLike | str,
    dest_dir: os.PathLike | str,
    *,
    stem: str,
    sizes: Mapping[str, int] = SIZES,
) -> dict[str, Thumbnail]:
    """Write one JPEG per size, ``dest_dir / f"{stem}-{name}.jpg"``, and describe them.

    Each fits in a square of ``sizes[name]`` pixels, aspect ratio kept, upright (the
    EXIF orientation is applied, then dropped). An image is never enlarged: a size
    larger than the source gives the source's own size.

    All or nothing: every file is first written under a temporary name in ``dest_dir``,
    and only when all of them are written are they renamed (``os.replace``, atomic) to
    their final names, replacing older ones. If anything fails, every file this call
    wrote, temporary or final, is removed, and ``dest_dir`` holds what it held before
    (except the older versions of thumbnails already replaced, if a rename itself fails).
    A bad image raises ``BadImage``; any other failure (a full disk, no permission to
    write) is raised as it is, usually an ``OSError``: that is the server's problem.
    ``dest_dir`` is created if missing.
    """
    _check_name("stem", stem)
    for name, side in sizes.items():
        _check_name("size name", name)
        if not isinstance(side, int) or side < 1:
            raise ValueError(f"size {name!r} must be a positive number of pixels, not {side!r}")
    dest = Path(dest_dir)

    with open(source, "rb") as fp:  # a missing source is FileNotFoundError, not a bad image
        info = identify(fp)
        try:
            im = Image.open(fp, formats=list(FORMATS))
            icc = im.info.get("icc_profile")
            if im.format in ("JPEG", "MPO") and sizes:
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the largest thumbnail
                # is that much smaller: less time and memory. A square box, so that a
                # 90-degree orientation changes nothing.
                largest = max(sizes.values())
                im.draft("RGB", (largest, largest))
            ImageOps.exif_transpose(im, in_place=True)  # decodes the pixels (GIF, WebP: the first frame)
            # The pixels are in memory now; the file (ours, not Pillow's) is closed below.
            upright = _to_rgb(im)
        except Image.DecompressionBombError:
            raise _too_many_pixels(None, None, None) from None
        except _DECODE_ERRORS as error:
            raise _corrupt(info.format, error) from None

    if not (isinstance(icc, bytes) and icc[16:20] == b"RGB "):  # the ICC header's colour space
        icc = None
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []  # every file this call created, temporary or final
    pending: list[tuple[Path, Thumbnail]] = []
    try:
        for name, side in sizes.items():
            thumb = upright.copy()
            thumb.thumbnail((side, side), Image.Resampling.LANCZOS)  # never enlarges
            thumb.info = {}  # nothing of the source's metadata (see _write_jpeg)
            fd, temp_name = tempfile.mkstemp(prefix=f".{stem}-{name}.", suffix=".tmp", dir=dest)
            temp = Path(temp_name)
            written.append(temp)
            with os.fdopen(fd, "wb") as out:
                _write_jpeg(thumb, out, icc)
                out.flush()
                os.fsync(out.fileno())
            final = dest / f"{stem}-{name}.jpg"
            pending.append((temp, Thumbnail(name, final, thumb.width, thumb.height, temp.stat().st_size)))
        for temp, thumbnail in pending:
            os.replace(temp, thumbnail.path)
            written.remove(temp)
            written.append(thumbnail.path)
    except BaseException:
        for path in written:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        raise
    return {thumbnail.name: thumbnail for _, thumbnail in pending}


# ---------------------------------------------------------------------------
# Sample files for the chapter, its tests and demos: deterministic, no network.

SKY = (135, 206, 235)  # the top of sample_photo(), as a viewer shows it
GRASS = (34, 139, 34)  # the bottom
SUN = (255, 0, 0)  # a red disc near the top-left corner (it shows mirroring)

# What makes a picture that looks right once a viewer applies orientation N
# (the inverse of ImageOps.exif_transpose's transposition; 6 and 8 swap).
_STORE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _gps_ifd(latitude: float, longitude: float) -> dict[int, object]:
    def dms(value: float) -> tuple[float, float, float]:
        value = abs(value)
        degrees = int(value)
        minutes = int((value - degrees) * 60)
        return (float(degrees), float(minutes), round((value - degrees - minutes / 60) * 3600, 2))

    return {
        1: "N" if latitude >= 0 else "S",  # GPSLatitudeRef
        2: dms(latitude),  # GPSLatitude
        3: "E" if longitude >= 0 else "W",  # GPSLongitudeRef
        4: dms(longitude),  # GPSLongitude
    }


def sample_photo(
    path: os.PathLike | str,
    *,
    size: tuple[int, int] = (1200, 800),
    orientation: int = 6,
    gps: tuple[float, float] | None = None,
) -> Path:
    """A JPEG that shows which way is up, stored as a camera would store it.

    As a viewer shows it: sky-blue top half, green bottom half, a red sun near the
    top-left corner, a white arrow with "UP". ``size`` is the stored (width, height);
    the picture is stored turned so that EXIF ``orientation`` (1-8) makes it upright:
    with the default 6, 1200 x 800 stored is a portrait 800 x 1200 photo, as a phone
    held upright writes it. ``gps`` (latitude, longitude) adds a GPS position to the
    EXIF, as phones do.
    """
    if orientation not in range(1, 9):
        raise ValueError(f"orientation must be 1-8 (EXIF), not {orientation!r}")
    width, height = size
    shown = (height, width) if orientation >= 5 else (width, height)
    w, h = shown
    im = Image.new("RGB", shown, GRASS)
    draw = ImageDraw.Draw(im)
    draw.rectangle((0, 0, w - 1, h // 2 - 1), fill=SKY)
    r = max(2, min(w, h) // 12)
    draw.ellipse((r, r, 3 * r, 3 * r), fill=SUN)
    # An arrow pointing up, in the middle, and "UP" under its head.
    cx, unit = w // 2, max(2, min(w, h) // 10)
    draw.polygon([(cx, unit), (cx - unit, 2 * unit), (cx + unit, 2 * unit)], fill="white")
    draw.rectangle((cx - unit // 3, 2 * unit, cx + unit // 3, 4 * unit), fill="white")
    font = ImageFont.load_default(size=unit)
    draw.text((cx, int(4.2 * unit)), "UP", fill="white", font=font, anchor="mt")
    if orientation in _STORE:
        im = im.transpose(_STORE[orientation])
    exif = Image.Exif()
    exif[_ORIENTATION] = orientation
    if gps is not None:
        exif[_GPS_IFD] = _gps_ifd(*gps)
    path = Path(path)
    im.save(path, "JPEG", quality=90, exif=exif)
    return path


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def image_bomb(path: os.PathLike | str, *, side: int = 20_000) -> Path:
    """A valid PNG of side x side black pixels that is tiny on disk (a decompression bomb).

    Written by hand, row by row through zlib, so making it needs no memory: 1 bit per
    pixel (black and white), every row the same. 20,000 x 20,000 (400 Mpx) is about
    50 KB on disk and 50 MB of raw rows; Pillow would hold it as 400 MB (one byte per
    pixel in mode "1"), 1.2 GB as RGB.
    """
    if not 1 <= side <= 2**31 - 1:
        raise ValueError(f"side must be 1 to 2**31 - 1 pixels (PNG's limit), not {side!r}")
    row = b"\x00" + bytes((side + 7) // 8)  # filter type 0 (none), then the row's bits: all 0 (black)
    rows_per_block = max(1, (1 << 20) // len(row))  # feed zlib about 1 MB at a time
    block = row * rows_per_block
    # Run-length matching: as small as the default strategy on runs of zeros, twice as fast.
    deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    path = Path(path)
    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n")
        # width, height, bit depth 1, colour type 0 (greyscale), compression, filter, interlace
        out.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)))
        left = side
        while left:
            n = min(left, rows_per_block)
            data = deflate.compress(block if n == rows_per_block else row * n)
            if data:
                out.write(_png_chunk(b"IDAT", data))
            left -= n
        out.write(_png_chunk(b"IDAT", deflate.flush()))
        out.write(_png_chunk(b"IEND", b""))
    return path


def not_an_image(path: os.PathLike | str) -> Path:
    """A text file, usually given an image's name (e.g. ``photo.jpg``): its name lies."""
    path = Path(path)
    path.write_text(
        "This is a text file, not a picture.\nIts name ends in an image extension; its content decides.\n",
        encoding="utf-8",
    )
    return path


def truncated(source: os.PathLike | str, path: os.PathLike | str, *, keep: float = 0.5) -> Path:
    """A copy of ``source`` cut off after ``keep`` of its bytes, like an interrupted upload."""
    if not 0 < keep < 1:
        raise ValueError(f"keep must be a fraction between 0 and 1, not {keep!r}")
    data = Path(source).read_bytes()
    path = Path(path)
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    return path
