"""Chapter 10's image helpers (demo_tasks/images.py): Pillow only, no Celery, no Django.

Every input is a real file Pillow writes (or, for the decompression bomb, a real PNG
written byte by byte) in pytest's tmp_path; every output is read back with Pillow.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
from PIL import Image, ImageCms, ImageOps

from demo_tasks import images
from demo_tasks.images import BadImage, ImageInfo

REPO_ROOT = Path(__file__).resolve().parent.parent


def close_to(colour, expected, tolerance: int = 40) -> bool:
    """JPEG is lossy: a colour is right when every channel is near."""
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected, strict=True))


def colour_at(path: Path, fx: float, fy: float) -> tuple[int, int, int]:
    """The colour at a point given as fractions of the width and height."""
    with Image.open(path) as im:
        return im.convert("RGB").getpixel((int(fx * (im.width - 1)), int(fy * (im.height - 1))))


def refused(data) -> BadImage:
    with pytest.raises(BadImage) as caught:
        images.identify(data)
    return caught.value


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """The chapter's decompression bomb: 20,000 x 20,000 pixels."""
    return images.image_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png")


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A phone photo: stored 1200 x 800, EXIF orientation 6 (portrait), a GPS position."""
    return images.sample_photo(tmp_path_factory.mktemp("photo") / "IMG_0001.jpg", gps=(31.2304, 121.4737))


# --- identify(): what is accepted ----------------------------------------------------------------


def saved(path: Path, fmt: str, im: Image.Image | None = None, **params) -> Path:
    (im or Image.new("RGB", (64, 48), (200, 80, 20))).save(path, fmt, **params)
    return path


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_identify_accepts_each_format_by_its_content_not_its_name(tmp_path, fmt):
    # Each is named as if it were another format: the name must not matter.
    path = saved(tmp_path / "upload.gif" if fmt != "GIF" else tmp_path / "upload.jpg", fmt)
    expected = ImageInfo(format=fmt, width=64, height=48, extension=images.FORMATS[fmt], orientation=1)
    assert images.identify(path) == expected  # a path
    assert images.identify(str(path)) == expected
    assert images.identify(path.read_bytes()) == expected  # bytes
    with open(path, "rb") as fp:  # a file object (Django's UploadedFile is one): left where it was
        fp.seek(5)
        assert images.identify(fp) == expected
        assert fp.tell() == 5


def test_identify_reads_an_upload_that_cannot_seek_and_refuses_it_past_the_limit(tmp_path, photo):
    def through_a_pipe(data: bytes) -> ImageInfo:
        read_end, write_end = os.pipe()

        def write():
            with open(write_end, "wb") as out:
                try:
                    out.write(data)
                except BrokenPipeError:  # the reader stopped after the limit: that is the point
                    pass

        writer = threading.Thread(target=write)
        writer.start()
        try:
            with open(read_end, "rb") as pipe:
                return images.identify(pipe)
        finally:
            writer.join(timeout=30)
            assert not writer.is_alive()

    assert through_a_pipe(photo.read_bytes()).format == "JPEG"
    error = refused_by(through_a_pipe, b"\xff\xd8\xff" + bytes(images.MAX_UPLOAD_BYTES))
    assert error.code == "too_large" and error.params == {"size": None, "limit": images.MAX_UPLOAD_BYTES}
    assert "more than 10.0 MB" in str(error)


def test_identify_reads_a_django_upload_and_leaves_it_where_it_was(photo):
    from django.core.files.uploadedfile import SimpleUploadedFile  # what a form's cleaned_data holds

    upload = SimpleUploadedFile("photo.png", photo.read_bytes(), content_type="image/png")
    upload.seek(3)
    assert images.identify(upload) == ImageInfo("JPEG", 1200, 800, ".jpg", 6)  # the name and type lie
    assert upload.tell() == 3


def refused_by(call, *args) -> BadImage:
    with pytest.raises(BadImage) as caught:
        call(*args)
    return caught.value


def test_a_jpeg_with_extra_pictures_mpo_is_a_jpeg(tmp_path):
    # Many phone cameras write "multi-picture" JPEGs; Pillow calls them MPO.
    first, second = Image.new("RGB", (80, 60), "red"), Image.new("RGB", (80, 60), "blue")
    first.save(tmp_path / "3d.jpg", "MPO", save_all=True, append_images=[second])
    with Image.open(tmp_path / "3d.jpg") as im:
        assert im.format == "MPO"
    assert images.identify(tmp_path / "3d.jpg") == ImageInfo("JPEG", 80, 60, ".jpg", 1)
    thumbs = images.make_thumbnails(tmp_path / "3d.jpg", tmp_path / "out", stem="3d", sizes={"small": 40})
    assert (thumbs["small"].width, thumbs["small"].height) == (40, 30)
    assert close_to(colour_at(thumbs["small"].path, 0.5, 0.5), (255, 0, 0))  # the first picture


@pytest.mark.parametrize("orientation", range(1, 9))
def test_identify_reports_the_exif_orientation_and_the_size_as_stored(tmp_path, orientation):
    path = images.sample_photo(tmp_path / "p.jpg", size=(300, 200), orientation=orientation)
    info = images.identify(path)
    assert (info.width, info.height, info.orientation) == (300, 200, orientation)
    assert info.display_size == ((200, 300) if orientation >= 5 else (300, 200))


def test_orientation_is_1_without_exif_or_with_a_value_out_of_range(tmp_path):
    assert images.identify(saved(tmp_path / "plain.jpg", "JPEG")).orientation == 1
    exif = Image.Exif()
    exif[0x0112] = 9  # not an orientation
    assert images.identify(saved(tmp_path / "odd.jpg", "JPEG", exif=exif)).orientation == 1


# --- identify(): what is refused, and what it says -------------------------------------------------


def truncated_png(tmp_path) -> Path:
    source = saved(tmp_path / "whole.png", "PNG", Image.effect_noise((200, 200), 60))
    return images.truncated(source, tmp_path / "cut.png", keep=0.7)


def png_with_a_bad_checksum(tmp_path) -> Path:
    data = bytearray(saved(tmp_path / "whole.png", "PNG", Image.effect_noise((50, 50), 60)).read_bytes())
    data[data.index(b"IDAT") + 20] ^= 0xFF  # one byte of the compressed pixels changed in transit
    (tmp_path / "bad.png").write_bytes(bytes(data))
    return tmp_path / "bad.png"


BAD_INPUTS = {
    # name: (how to make it, code, words the message must contain)
    "empty bytes": (lambda t: b"", "empty", ["empty", "0 bytes"]),
    "empty file": (lambda t: (t / "photo.jpg").write_bytes(b"") or t / "photo.jpg", "empty", ["empty"]),
    "one byte too many": (lambda t: b"\xff\xd8\xff" + bytes(images.MAX_UPLOAD_BYTES - 2), "too_large",
                          ["10.0 MB (10,485,761 bytes)", "limit is 10.0 MB", "smaller"]),
    "a text file named photo.jpg": (lambda t: images.not_an_image(t / "photo.jpg"), "not_an_image",
                                    ["not an image", "whatever its name says", "JPEG, PNG, WEBP or GIF"]),
    "HTML": (lambda t: b"<!DOCTYPE html><html><body>hello</body></html>", "not_an_image", ["not an image"]),
    "a BMP": (lambda t: saved(t / "photo.png", "BMP"), "unsupported_format", ["BMP image", "Convert it"]),
    "a TIFF": (lambda t: saved(t / "photo.jpg", "TIFF"), "unsupported_format", ["TIFF image", "Convert it"]),
    "a huge BMP": (lambda t: b"BM" + struct.pack("<IHHIIiiHHIIiiII", 54, 0, 0, 54, 40, 20_000, 20_000, 1, 24,
                                                *[0] * 6) + bytes(100),
                   "unsupported_format", ["an image in another format", "Convert it"]),
    "an iPhone HEIC": (lambda t: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(100),
                       "unsupported_format", ["HEIC/HEIF image", "JPEG, PNG, WEBP or GIF"]),
    "8000 x 8000": (lambda t: images.image_bomb(t / "big.png", side=8000), "too_many_pixels",
                    ["8000 x 8000 = 64,000,000 pixels", "limit is 40,000,000 pixels", "Scale it down"]),
    "a truncated JPEG": (lambda t: images.truncated(images.sample_photo(t / "p.jpg"), t / "cut.jpg"), "corrupt",
                         ["JPEG image is damaged or incomplete", "truncated", "again"]),
    "a JPEG cut in its header": (lambda t: images.truncated(images.sample_photo(t / "p.jpg"), t / "h.jpg",
                                                            keep=0.002), "corrupt", ["begins like a JPEG"]),
    "a truncated PNG": (truncated_png, "corrupt", ["PNG image is damaged or incomplete"]),
    "a PNG with a bad checksum": (png_with_a_bad_checksum, "corrupt", ["PNG image is damaged", "checksum"]),
    "a truncated GIF": (lambda t: images.truncated(saved(t / "g.gif", "GIF", Image.effect_noise((100, 100), 60)),
                                                   t / "cut.gif", keep=0.6), "corrupt", ["GIF image is damaged"]),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_identify_refuses_bad_uploads_with_a_code_and_a_message_that_says_what_to_do(tmp_path, name):
    make, code, words = BAD_INPUTS[name]
    started = time.perf_counter()
    error = refused(make(tmp_path))
    assert time.perf_counter() - started < 5
    assert error.code == code, str(error)
    assert isinstance(error, ValueError)
    message = str(error)
    for word in words:
        assert word in message, message
    # A sentence a person can read, ending in what to do; no Python repr, no traceback text.
    assert message[0].isupper() and message.endswith(".") and "Traceback" not in message
    assert any(verb in message for verb in ("Upload", "upload", "Choose", "Convert", "Scale")), message
    # Celery stores a failed task's exception as (type, args) in JSON, then calls BadImage(*args).
    for again in (BadImage(*json.loads(json.dumps(error.args))), pickle.loads(pickle.dumps(error))):
        assert (again.code, str(again), again.params) == (error.code, message, error.params)


def test_bad_image_knows_only_its_codes():
    assert images.CODES == ("empty", "too_large", "not_an_image", "unsupported_format", "too_many_pixels",
                            "corrupt")
    with pytest.raises(ValueError, match="unknown BadImage code 'ugly'"):
        BadImage("ugly", "An ugly picture.")


def test_identify_needs_binary_input(tmp_path):
    path = images.not_an_image(tmp_path / "photo.jpg")
    with open(path, encoding="utf-8") as text, pytest.raises(TypeError, match="binary mode"):
        images.identify(text)
    with pytest.raises(FileNotFoundError):  # a missing file is the caller's bug, not a bad image
        images.identify(tmp_path / "missing.jpg")


# --- the decompression bomb ---------------------------------------------------------------------------


def test_image_bomb_is_a_valid_png_that_is_tiny_on_disk(tmp_path, bomb):
    small = images.image_bomb(tmp_path / "small.png", side=77)
    with Image.open(small) as im:  # written by hand: Pillow decodes it, all black
        im.load()
        assert (im.format, im.mode, im.size, im.getextrema()) == ("PNG", "1", (77, 77), (0, 0))
    started = time.perf_counter()
    images.image_bomb(tmp_path / "again.png")
    assert time.perf_counter() - started < 3  # about 0.3 s here
    assert (tmp_path / "again.png").read_bytes() == bomb.read_bytes()  # deterministic
    assert bomb.stat().st_size < 100_000  # 400 Mpx in about 49 KB
    with open(bomb, "rb") as fp:  # its header says 20,000 x 20,000
        head = fp.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    assert (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")) == (20_000, 20_000)


def test_identify_refuses_the_bomb_from_its_header_in_well_under_a_second(bomb):
    limit = Image.MAX_IMAGE_PIXELS
    started = time.perf_counter()
    error = refused(bomb)
    elapsed = time.perf_counter() - started
    assert error.code == "too_many_pixels"
    assert error.params == {"width": None, "height": None, "pixels": 400_000_000, "limit": 40_000_000}
    assert "400,000,000 pixels" in str(error)
    assert elapsed < 1.0, elapsed  # about 0.03 s: nothing is decoded
    assert limit == Image.MAX_IMAGE_PIXELS  # Pillow's process-wide setting is left alone


def test_between_our_limit_and_pillows_our_limit_refuses(tmp_path):
    # 8000 x 8000 (64 Mpx): under Pillow's 89 Mpx, over ours; Pillow says nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert refused(images.image_bomb(tmp_path / "8k.png", side=8000)).params["pixels"] == 64_000_000
    # 10,000 x 10,000 (100 Mpx): Pillow warns (over its MAX_IMAGE_PIXELS, under twice it); we refuse.
    with pytest.warns(Image.DecompressionBombWarning):
        error = refused(images.image_bomb(tmp_path / "10k.png", side=10_000))
    assert (error.code, error.params["width"], error.params["height"]) == ("too_many_pixels", 10_000, 10_000)


MEASURE = """
import json, resource, sys
from PIL import Image
from demo_tasks import images

# This process's largest resident size so far, in bytes. On Linux from /proc (VmHWM): getrusage's
# ru_maxrss carries over the high-water mark of the (big) pytest process this one was forked from.
def peak():
    try:
        with open("/proc/self/status") as status:
            return int(status.read().split("VmHWM:")[1].split()[0]) * 1024
    except FileNotFoundError:  # macOS: bytes
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

bomb, big, fine = sys.argv[1:]
images.identify(fine)  # import the plugins, warm up
before = peak()
codes = []
for path in (bomb, big):
    try:
        images.identify(path)
    except images.BadImage as error:
        codes.append(error.code)
after_identify = peak()
with Image.open(big) as im:  # the control: decoding the 64 Mpx one (1 byte per pixel in mode "1")
    im.load()
print(json.dumps({"codes": codes, "identify": after_identify - before, "decode": peak() - before}))
"""


def test_refusing_the_bomb_allocates_no_memory_for_its_pixels(tmp_path, bomb, photo):
    """Measured in a fresh process, whose peak memory nothing before has raised."""
    big = images.image_bomb(tmp_path / "big.png", side=8000)
    done = subprocess.run([sys.executable, "-c", MEASURE, str(bomb), str(big), str(photo)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, check=True)
    measured = json.loads(done.stdout)
    assert measured["codes"] == ["too_many_pixels", "too_many_pixels"]
    assert measured["identify"] < 20 * 2**20, measured  # the peak barely moves
    assert measured["decode"] > 50 * 2**20, measured  # while decoding even the smaller one takes 64 MB


# --- make_thumbnails() ------------------------------------------------------------------------------


def test_thumbnails_have_the_asked_longest_side_keep_the_aspect_and_are_upright(tmp_path, photo):
    thumbs = images.make_thumbnails(photo, tmp_path / "thumbs", stem="42")
    assert list(thumbs) == ["small", "medium", "large"]
    assert files_in(tmp_path / "thumbs") == ["42-large.jpg", "42-medium.jpg", "42-small.jpg"]
    for name, side in images.SIZES.items():
        thumb = thumbs[name]
        assert thumb.name == name and thumb.path == tmp_path / "thumbs" / f"42-{name}.jpg"
        with Image.open(thumb.path) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (thumb.width, thumb.height))
            assert im.info.get("progressive") == 1
        assert thumb.bytes == thumb.path.stat().st_size
        # Stored 1200 x 800 with orientation 6: shown, and so thumbnailed, as a 800 x 1200 portrait.
        assert thumb.height == side and thumb.width < thumb.height
        assert abs(thumb.width / thumb.height - 800 / 1200) < 1 / thumb.height
    large = thumbs["large"].path
    assert close_to(colour_at(large, 0.75, 0.05), images.SKY)  # the top is the sky...
    assert close_to(colour_at(large, 0.5, 0.95), images.GRASS)  # ...and the bottom the grass
    assert close_to(colour_at(large, 2 * (800 // 12) / 800, 2 * (800 // 12) / 1200), images.SUN)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_comes_out_upright_and_not_mirrored(tmp_path, orientation):
    source = images.sample_photo(tmp_path / "p.jpg", size=(360, 240), orientation=orientation)
    thumb = images.make_thumbnails(source, tmp_path, stem="p", sizes={"large": 1024})["large"]
    shown = (240, 360) if orientation >= 5 else (360, 240)
    assert (thumb.width, thumb.height) == shown  # never enlarged
    r = min(shown) // 12  # the sun's radius; its centre is at (2r, 2r)
    assert close_to(colour_at(thumb.path, 2 * r / shown[0], 2 * r / shown[1]), images.SUN)  # top left
    assert close_to(colour_at(thumb.path, 1 - 2 * r / shown[0], 2 * r / shown[1]), images.SKY)  # top right
    assert close_to(colour_at(thumb.path, 0.5, 0.95), images.GRASS)


def test_no_exif_no_gps_no_comment_survives_into_thumbnails(tmp_path, photo):
    with Image.open(photo) as im:  # the source does carry a position (so the check below can fail)
        assert im.getexif().get_ifd(0x8825)[2] == (31.0, 13.0, 49.44)
        exif = im.getexif()
    source = tmp_path / "tagged.jpg"  # EXIF (with GPS), a comment and XMP, as photo editors write them
    saved(source, "JPEG", Image.new("RGB", (300, 200), "white"), exif=exif, comment=b"Home, 3rd floor",
          xmp=b"<x:xmpmeta><exif:GPSLatitude>31,13.8N</exif:GPSLatitude></x:xmpmeta>")
    with Image.open(source) as im:
        assert {"exif", "comment", "xmp"} <= set(im.info)
    for path in (photo, source):
        for thumb in images.make_thumbnails(path, tmp_path / "out", stem=path.stem).values():
            with Image.open(thumb.path) as im:
                assert not {"exif", "comment", "xmp"} & set(im.info), im.info.keys()
                assert dict(im.getexif()) == {}
                assert b"GPS" not in thumb.path.read_bytes()


def test_an_image_is_never_enlarged(tmp_path):
    source = saved(tmp_path / "tiny.png", "PNG", Image.new("RGB", (300, 200), "navy"))
    thumbs = images.make_thumbnails(source, tmp_path / "out", stem="t", sizes={"tiny": 30, "same": 300, "huge": 5000})
    assert {name: (t.width, t.height) for name, t in thumbs.items()} == {
        "tiny": (30, 20), "same": (300, 200), "huge": (300, 200)}


def test_transparency_is_flattened_onto_white(tmp_path):
    # An RGBA PNG: the left half opaque blue, the right half transparent (its hidden colour: red).
    rgba = Image.new("RGBA", (300, 200), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 150, 200))
    half = Image.new("RGBA", (300, 200), (0, 0, 0, 128))  # half-transparent black: grey on white
    # A GIF: palette, transparent index 0, two frames (the first is used).
    first = Image.new("P", (100, 50), 1)
    first.putpalette([255, 0, 0, 0, 160, 0, 0, 0, 0])
    first.paste(0, (50, 0, 100, 50))
    second = first.copy()
    second.paste(2, (0, 0, 100, 50))
    cases = {
        "rgba.png": (saved(tmp_path / "rgba.png", "PNG", rgba), [(0.25, (0, 0, 255)), (0.75, (255, 255, 255))]),
        "half.png": (saved(tmp_path / "half.png", "PNG", half), [(0.5, (127, 127, 127))]),
        "anim.gif": (saved(tmp_path / "anim.gif", "GIF", first, save_all=True, append_images=[second],
                           transparency=0), [(0.25, (0, 160, 0)), (0.75, (255, 255, 255))]),
        "rgba.webp": (saved(tmp_path / "rgba.webp", "WEBP", rgba, lossless=True),
                      [(0.25, (0, 0, 255)), (0.75, (255, 255, 255))]),
    }
    for name, (source, expected) in cases.items():
        thumb = images.make_thumbnails(source, tmp_path / "out", stem=source.stem, sizes={"small": 160})["small"]
        for fx, colour in expected:
            assert close_to(colour_at(thumb.path, fx, 0.5), colour, 12), (name, fx)


def test_16_bit_greys_are_scaled_not_clipped_and_rgb_colour_profiles_are_kept(tmp_path):
    grey16 = saved(tmp_path / "scan.png", "PNG", Image.new("I;16", (40, 40), 40_000))
    thumb = images.make_thumbnails(grey16, tmp_path, stem="scan", sizes={"small": 40})["small"]
    assert close_to(colour_at(thumb.path, 0.5, 0.5), (156, 156, 156), 3)  # 40000 / 256, not 255
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    profiled = saved(tmp_path / "p.jpg", "JPEG", icc_profile=srgb)
    # A CMYK file's profile (here: the same bytes, but its header says CMYK) no longer fits RGB pixels.
    cmyk_profile = srgb[:16] + b"CMYK" + srgb[20:]
    cmyk = saved(tmp_path / "cmyk.jpg", "JPEG", Image.new("CMYK", (40, 40), (0, 255, 255, 0)),
                 icc_profile=cmyk_profile)
    with Image.open(cmyk) as im:
        assert im.info["icc_profile"] == cmyk_profile
    for source, kept in ((profiled, True), (cmyk, False)):
        thumb = images.make_thumbnails(source, tmp_path, stem=source.stem, sizes={"small": 40})["small"]
        with Image.open(thumb.path) as im:
            assert im.info.get("icc_profile") == (srgb if kept else None)
    assert close_to(colour_at(thumb.path, 0.5, 0.5), (255, 0, 0))  # the CMYK red is red


# --- make_thumbnails(): all or nothing ----------------------------------------------------------------


def test_a_bad_image_writes_nothing(tmp_path, photo, bomb):
    dest = tmp_path / "thumbs"
    dest.mkdir()
    for source, code in ((images.truncated(photo, tmp_path / "cut.jpg"), "corrupt"),
                         (images.not_an_image(tmp_path / "photo.jpg"), "not_an_image"),
                         (bomb, "too_many_pixels")):
        with pytest.raises(BadImage) as caught:
            images.make_thumbnails(source, dest, stem="x")
        assert caught.value.code == code
        assert files_in(dest) == []


class DiskFull:
    """images._write_jpeg, failing on its ``fail_on``-th call after writing half a file."""

    def __init__(self, fail_on: int):
        self.real, self.calls, self.fail_on = images._write_jpeg, 0, fail_on

    def __call__(self, image, fp, icc_profile):
        self.calls += 1
        if self.calls == self.fail_on:
            fp.write(b"\xff\xd8\xff" + bytes(1000))
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.real(image, fp, icc_profile)


def test_a_failing_write_on_the_second_size_leaves_nothing_and_keeps_older_thumbnails(tmp_path, photo, monkeypatch):
    dest = tmp_path / "thumbs"
    dest.mkdir()
    disk_full = DiskFull(fail_on=2)
    monkeypatch.setattr(images, "_write_jpeg", disk_full)
    with pytest.raises(OSError) as caught:  # the disk's problem, not the image's: not BadImage
        images.make_thumbnails(photo, dest, stem="42")
    assert caught.value.errno == errno.ENOSPC and not isinstance(caught.value, BadImage)
    assert disk_full.calls == 2
    assert files_in(dest) == []
    # Thumbnails of an earlier upload under the same stem are not touched by a failed call.
    monkeypatch.setattr(images, "_write_jpeg", disk_full.real)
    before = {t.path: t.path.read_bytes() for t in images.make_thumbnails(photo, dest, stem="42").values()}
    monkeypatch.setattr(images, "_write_jpeg", DiskFull(fail_on=3))
    with pytest.raises(OSError):
        images.make_thumbnails(images.sample_photo(tmp_path / "other.jpg", orientation=1), dest, stem="42")
    assert {p: p.read_bytes() for p in dest.iterdir()} == before


def test_a_failing_rename_removes_the_files_already_renamed(tmp_path, photo, monkeypatch):
    dest = tmp_path / "thumbs"
    real_replace, renamed = os.replace, []

    def replace(src, dst):
        if renamed:
            raise PermissionError(errno.EACCES, "Permission denied", str(dst))
        real_replace(src, dst)
        renamed.append(dst)

    monkeypatch.setattr(images.os, "replace", replace)
    with pytest.raises(PermissionError):
        images.make_thumbnails(photo, dest, stem="42")
    assert renamed == [dest / "42-small.jpg"]
    assert files_in(dest) == []


def test_names_that_would_leave_the_folder_are_refused(tmp_path, photo):
    for stem in ("../escape", "a/b", ".hidden", "", "..", "a\\b"):
        with pytest.raises(ValueError, match="plain file name part"):
            images.make_thumbnails(photo, tmp_path / "out", stem=stem)
    with pytest.raises(ValueError, match="plain file name part"):
        images.make_thumbnails(photo, tmp_path / "out", stem="ok", sizes={"../x": 10})
    with pytest.raises(ValueError, match="positive number of pixels"):
        images.make_thumbnails(photo, tmp_path / "out", stem="ok", sizes={"zero": 0})
    assert not (tmp_path / "out").exists()
    assert files_in(tmp_path) == []


# --- the samples -----------------------------------------------------------------------------------


def test_samples_are_deterministic_and_what_they_say(tmp_path, photo):
    again = images.sample_photo(tmp_path / "again.jpg", gps=(31.2304, 121.4737))
    assert again.read_bytes() == photo.read_bytes()
    with Image.open(photo) as im:
        assert (im.format, im.size, im.getexif()[0x0112]) == ("JPEG", (1200, 800), 6)
    with Image.open(images.sample_photo(tmp_path / "plain.jpg")) as im:
        assert 0x8825 not in im.getexif()  # a GPS position only when asked for
    text = images.not_an_image(tmp_path / "photo.jpg")
    assert text.name == "photo.jpg" and text.read_text(encoding="utf-8").startswith("This is a text file")
    cut = images.truncated(photo, tmp_path / "cut.jpg", keep=0.25)
    assert cut.read_bytes() == photo.read_bytes()[: int(photo.stat().st_size * 0.25)]
    with pytest.raises(ValueError, match="orientation must be 1-8"):
        images.sample_photo(tmp_path / "x.jpg", orientation=0)
    # The picture itself, as a viewer shows it (orientation applied): the top is the sky.
    with Image.open(io.BytesIO(photo.read_bytes())) as im:
        upright = ImageOps.exif_transpose(im)
        assert upright.size == (800, 1200)
        assert close_to(upright.getpixel((600, 30)), images.SKY)
        assert close_to(upright.getpixel((400, 1150)), images.GRASS)
