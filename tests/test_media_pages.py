"""Chapter 10's pages: photos made into thumbnails (gallery) and videos transcoded with
live progress (videos).

First without a worker (forms, owner-only views, the event stream's format, the broker
down), then on a real stack: `manage.py runserver`, a real `celery -A django_demo worker`,
an embedded broker and FFmpeg from the imageio-ffmpeg wheel; then in a real browser.
Nothing runs in eager mode.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import psutil
import pytest
import requests
from django.urls import reverse
from PIL import Image
from playwright.sync_api import expect

import launcher
from demo_tasks import images, video
from launcher.browser import chromium
from tests.django_stack import django_stack, logged_in, restart_worker
from tests.test_django_reports import celery_broker

TIMEOUT = 60


@pytest.fixture(autouse=True)
def current_celery_app():
    """django_demo's app current while a test runs (see test_django_reports)."""
    from celery import _state

    from django_demo import celery_app

    previous = _state.get_current_app()
    celery_app.set_current()
    yield celery_app
    previous.set_current()


# --- Without a worker ------------------------------------------------------------------

@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("owner", password="a-long-test-password-1")


@pytest.fixture
def stranger(django_user_model):
    return django_user_model.objects.create_user("stranger", password="a-long-test-password-2")


def upload(path: Path, name: str | None = None):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name or path.name, path.read_bytes(), content_type="image/jpeg")


@pytest.mark.django_db
@pytest.mark.parametrize(("make", "code"), [
    (lambda p: images.not_an_image(p / "photo.jpg"), "not_an_image"),
    (lambda p: images.image_bomb(p / "bomb.png"), "too_many_pixels"),
    (lambda p: images.truncated(images.sample_photo(p / "whole.jpg"), p / "cut.jpg"), "corrupt"),
])
def test_an_upload_that_is_not_a_usable_image_is_refused_and_nothing_is_kept(
        client, owner, media_root, tmp_path, make, code):
    from gallery.forms import REFUSED
    from gallery.models import Photo

    client.force_login(owner)
    response = client.post(reverse("gallery:upload"), {"image": upload(make(tmp_path))})
    assert response.status_code == 400
    assert REFUSED[code] in response.content.decode()
    assert Photo.objects.count() == 0
    assert not (Path(media_root) / "gallery").exists()


@pytest.mark.django_db
def test_photos_and_videos_are_their_owners_only(client, owner, stranger, media_root):
    from gallery.models import Photo
    from videos.models import Video

    photo = Photo.objects.create(owner=owner, original="gallery/x/original.jpg", format="JPEG", width=4, height=3,
                                 size=10, status="done", thumbnails={"small": {"file": "gallery/x/thumb-small.jpg",
                                                                               "width": 4, "height": 3}})
    clip = Video.objects.create(owner=owner, sample_seconds=2, status="done", files={"output": "videos/x/output.mp4"})
    pages = [reverse("gallery:detail", args=[photo.pk]), reverse("gallery:status", args=[photo.pk]),
             reverse("gallery:thumbnail", args=[photo.pk, "small"]), reverse("videos:detail", args=[clip.pk]),
             reverse("videos:status", args=[clip.pk]), reverse("videos:events", args=[clip.pk]),
             reverse("videos:file", args=[clip.pk, "output"])]
    for url in pages:
        assert client.get(url).status_code in (302, 401), url    # logged out: the login page, or JSON 401
    client.force_login(stranger)
    for url in pages:
        assert client.get(url).status_code == 404, url           # someone else's: as if it did not exist


@pytest.mark.django_db(transaction=True)
def test_broker_down_answers_503_and_keeps_neither_row_nor_file(client, owner, media_root, tmp_path):
    from gallery.models import Photo
    from videos.models import Video

    client.force_login(owner)
    url = f"redis://127.0.0.1:{launcher.free_port()}/0"    # nobody listens there
    with celery_broker(url):
        photo = client.post(reverse("gallery:upload"), {"image": upload(images.sample_photo(tmp_path / "p.jpg"))})
        clip = client.post(reverse("videos:create"), {"sample_seconds": "2", "height": "160"})
    for response in (photo, clip):
        assert response.status_code == 503
        assert "无法连接消息代理" in response.content.decode()
    assert Photo.objects.count() == Video.objects.count() == 0
    assert not any(Path(media_root).rglob("*.*"))


@pytest.mark.django_db
def test_the_video_form_wants_a_file_or_a_length(client, owner, media_root):
    client.force_login(owner)
    response = client.post(reverse("videos:create"), {"sample_seconds": "", "height": "240"})
    assert response.status_code == 400
    assert "请选一个视频文件，或者填上测试片的长度。" in response.content.decode()


@pytest.mark.django_db
def test_the_event_stream_sends_the_status_then_done_and_ends(client, owner, settings):
    from videos.models import Video
    from videos.views import progress_events

    clip = Video.objects.create(owner=owner, sample_seconds=2, status="done", output_info={"height": 160})
    client.force_login(owner)
    response = client.get(reverse("videos:events", args=[clip.pk]))
    assert response["Content-Type"].startswith("text/event-stream")
    assert response["Cache-Control"] == "no-cache" and response["X-Accel-Buffering"] == "no"
    body = b"".join(response.streaming_content).decode()
    blocks = [b for b in body.split("\n\n") if b]
    assert blocks[0] == "retry: 1000"
    assert blocks[1].startswith("id: 1\nevent: progress\ndata: ")
    assert blocks[2].startswith("event: done\ndata: ")
    assert json.loads(blocks[2].split("data: ", 1)[1])["status"] == "done"
    # A stream whose video never finishes ends after its cap (the browser reconnects).
    clip.status = "pending"
    clip.save()
    started = time.monotonic()
    events = list(progress_events(clip.pk, seconds=0.3, interval=0.05))
    assert 0.3 <= time.monotonic() - started < 5
    assert [e.split("\n")[0] for e in events] == ["retry: 1000", "id: 1"]


# --- On a real stack: server, worker, broker, FFmpeg -------------------------------------

@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    broker = launcher.start_embedded()
    try:
        with django_stack(tmp_path_factory.mktemp("media-stack"), broker, step_seconds="0.1",
                          VIDEO_STREAM_INTERVAL="0.1") as running:
            yield running
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def web(stack):
    return logged_in(stack)


def wait_status(web, url: str, final=("done", "failed"), timeout: float = TIMEOUT) -> dict:
    seen = {}

    def finished():
        seen.update(web.get(url, timeout=10).json())
        return seen.get("status") in final
    assert launcher.wait_for(finished, timeout, interval=0.1), f"not finished after {timeout} s: {seen}"
    return seen


def post_form(web, stack, path: str, data: dict, files: dict | None = None) -> requests.Response:
    page = web.get(stack["server"].url + path, timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    return web.post(stack["server"].url + path, data={"csrfmiddlewaretoken": token, **data}, files=files,
                    timeout=30, allow_redirects=False)


def test_an_uploaded_photo_becomes_upright_thumbnails_its_owner_can_see(stack, web, tmp_path):
    photo = images.sample_photo(tmp_path / "IMG_0001.jpg", orientation=6)    # stored landscape, shown portrait
    reply = post_form(web, stack, "/gallery/", {}, files={"image": ("IMG_0001.jpg", photo.read_bytes(), "image/jpeg")})
    assert reply.status_code == 302, reply.text[-500:]
    detail = stack["server"].url + reply.headers["Location"]
    status = wait_status(web, detail + "status/")
    assert status["status"] == "done", status
    thumbs = status["thumbnails"]
    assert set(thumbs) == set(images.SIZES)
    for name, side in images.SIZES.items():
        got = web.get(stack["server"].url + thumbs[name]["url"], timeout=10)
        assert got.headers["Content-Type"] == "image/jpeg"
        (tmp_path / f"{name}.jpg").write_bytes(got.content)
        picture = Image.open(tmp_path / f"{name}.jpg")
        assert picture.size == (thumbs[name]["width"], thumbs[name]["height"])
        assert max(picture.size) == side and picture.height > picture.width, (name, picture.size)
        top = picture.getpixel((picture.width // 2, picture.height // 20))
        assert max(abs(a - b) for a, b in zip(top, images.SKY, strict=True)) < 40, \
            f"the top is {top}, not the sky {images.SKY}: EXIF orientation not applied"
    stored = list((stack["media"] / "gallery").rglob("*"))
    assert not [p for p in stored if ".part" in p.name or p.name.startswith(".")], stored
    assert requests.get(stack["server"].url + thumbs["small"]["url"], timeout=10,
                        allow_redirects=False).status_code == 302, "logged out: to the login page"


def read_events(web, url: str, timeout: float = TIMEOUT) -> list[tuple[str, dict]]:
    """The events of one stream, read as they arrive, until the server ends it."""
    events, name = [], None
    with web.get(url, stream=True, timeout=timeout) as reply:
        assert reply.headers["Content-Type"].startswith("text/event-stream")
        for line in reply.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: "):])))
    return events


def test_a_sample_video_is_transcoded_with_progress_pushed_in_order(stack, web, tmp_path):
    # 20 s at 640x360 made 360 px high: 2-3 s of transcoding on 2 cores, a -progress block every 0.25 s.
    reply = post_form(web, stack, "/videos/", {"sample_seconds": "20", "height": "360"})
    assert reply.status_code == 302, reply.text[-500:]
    detail = stack["server"].url + reply.headers["Location"]
    events = read_events(web, detail + "events/")
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"progress"}, names
    assert events[-1][1]["status"] == "done"
    percents = [e["progress"].get("percent", 0) for name, e in events if e["status"] == "running"
                and e["progress"].get("phase") == "transcode"]
    assert len(percents) >= 3 and percents == sorted(percents), f"progress pushed while transcoding: {percents}"
    status = events[-1][1]
    assert status["output"]["height"] == 360 and abs(status["output"]["duration"] - 20) < 0.1, status["output"]
    for name in ("output", "poster", "preview"):
        got = web.get(stack["server"].url + status["files"][name], timeout=10)
        assert got.status_code == 200, name
        (tmp_path / name).write_bytes(got.content)
    assert video.probe(tmp_path / "output").height == 360
    assert Image.open(tmp_path / "poster").height == 360
    assert Image.open(tmp_path / "preview").n_frames > 1
    folder = next((stack["media"] / "videos").glob("*/output.mp4")).parent
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], list(folder.iterdir())


def test_a_file_ffmpeg_cannot_read_fails_readably_and_leaves_no_output(stack, web, tmp_path):
    reply = post_form(web, stack, "/videos/", {"sample_seconds": "", "height": "160"},
                      files={"upload": ("holiday.mp4", b"this is not a video\n" * 100, "video/mp4")})
    assert reply.status_code == 302, reply.text[-500:]
    detail = stack["server"].url + reply.headers["Location"]
    status = wait_status(web, detail + "status/")
    assert status["status"] == "failed"
    assert "FFmpeg 处理不了这个文件" in status["message"] and re.fullmatch(r"[0-9a-f]{8}", status["error_id"])
    assert set(status["files"]) == {"source"}
    folder = stack["media"] / "videos" / reply.headers["Location"].strip("/").split("/")[-1]
    assert sorted(p.name for p in folder.iterdir()) == ["source.bin"]


def ffmpegs_under(folder: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "ffmpeg" in cmdline and str(folder) in cmdline:
            found.append(proc)
    return found


def test_a_transcode_killed_midway_publishes_nothing_and_leaves_no_ffmpeg(stack, web):
    reply = post_form(web, stack, "/videos/", {"sample_seconds": "40", "height": "360"})
    assert reply.status_code == 302
    detail = stack["server"].url + reply.headers["Location"]
    folder = stack["media"] / "videos" / reply.headers["Location"].strip("/").split("/")[-1]
    seen = {}

    def transcoding():
        seen.update(web.get(detail + "status/", timeout=10).json())
        return seen["progress"].get("phase") == "transcode" and seen["progress"].get("percent", 0) > 0
    assert launcher.wait_for(transcoding, TIMEOUT, interval=0.05), seen
    running = ffmpegs_under(folder)
    assert running, "FFmpeg should be transcoding now"
    child = running[0].parent()                      # the worker's pool process running the task
    os.kill(child.pid, signal.SIGKILL)               # as the OOM killer or a hard time limit would
    assert launcher.wait_for(lambda: not ffmpegs_under(folder), 10, interval=0.1), \
        "FFmpeg outlived the process that started it"
    assert not (folder / "output.mp4").exists(), "a half-made output was published"
    # Celery records the lost task (WorkerLostError): the page says so instead of waiting forever.
    from videos.models import LOST
    status = wait_status(web, detail + "status/", timeout=20)
    assert status["status"] == "failed" and status["message"] == LOST, status
    restart_worker(stack)


#: In the stack's Django (its database holds the chord's results): a 2 s clip transcoded as a chord
#: of three segments, joined by the callback; prints the joined clip's info and the parts left.
SEGMENTED = """
import json
from pathlib import Path
from django.conf import settings
from demo_tasks import video
from videos.tasks import segmented
folder = Path(settings.MEDIA_ROOT) / "segmented"
folder.mkdir(parents=True, exist_ok=True)
source = video.sample_clip(folder / "source.mp4", seconds=2, size=(160, 120))
info = segmented(source, folder / "joined.mp4", count=3, height=60, threads=1).apply_async().get(timeout=60)
print(json.dumps({"info": info, "frames": video.count_frames(folder / "joined.mp4"),
                  "left": sorted(p.name for p in folder.rglob("*") if p.name.startswith("."))}))
"""


def test_segments_transcoded_by_a_group_and_joined_by_a_chord_make_the_whole_clip(stack):
    done = launcher.manage("shell", "-c", SEGMENTED, env=stack["env"])
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["info"]["height"] == 60 and abs(got["info"]["duration"] - 2.0) < 0.05, got
    assert got["frames"] == 50 and got["left"] == [], got    # every frame once; parts removed
    assert stack["worker"].log().count("transcode_segment[") >= 3


#: Sends a transcode the way the view does, from a process whose settings give the task a 1.5 s soft
#: limit. Time limits travel in the message (the sender's task options), so the worker applies them.
SEND_WITH_A_SHORT_LIMIT = """
from celery.utils import uuid
from django.contrib.auth import get_user_model
from videos.models import Video
from videos.tasks import transcode_video
item = Video.objects.create(owner=get_user_model().objects.get(username={user!r}), sample_seconds=60,
                            height=360, task_id=uuid())
transcode_video.apply_async((str(item.pk),), task_id=item.task_id)
print(item.pk)
"""


def test_a_runaway_transcode_is_stopped_by_the_time_limit_and_says_so(stack, web):
    sent = launcher.manage("shell", "-c", SEND_WITH_A_SHORT_LIMIT.format(user=stack["auth"][0]),
                           env={**stack["env"], "VIDEO_SOFT_TIME_LIMIT": "1.5"})
    video_id = sent.stdout.strip().splitlines()[-1]
    folder = stack["media"] / "videos" / video_id
    started = time.monotonic()
    status = wait_status(web, f"{stack['server'].url}/videos/{video_id}/status/", timeout=30)
    assert status["status"] == "failed" and "超过了时间限制（1.5 秒）" in status["message"], status
    assert time.monotonic() - started < 15, "stopped within seconds of the limit"
    assert launcher.wait_for(lambda: not ffmpegs_under(folder), 10, interval=0.1), "FFmpeg left running"
    assert not [p.name for p in folder.iterdir() if p.name != "source.mp4"], list(folder.iterdir())
    stack["worker"].wait_for_log("stopped by the soft time limit", timeout=10, since=0)


# --- In a real browser ------------------------------------------------------------------

@pytest.fixture(scope="module")
def page(stack):
    with chromium() as browser:
        context = browser.new_context(base_url=stack["server"].url, locale="zh-CN",
                                      viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT * 1000)
        page = context.new_page()
        page.goto("/accounts/login/")
        page.get_by_label("用户名").fill(stack["auth"][0])
        page.get_by_label("密码").fill(stack["auth"][1])
        page.get_by_role("button", name="登录").click()
        expect(page.locator("#username")).to_have_text(stack["auth"][0])
        yield page


def test_the_upload_page_in_a_browser_shows_the_thumbnails(page, tmp_path):
    photo = images.sample_photo(tmp_path / "portrait.jpg", orientation=6)
    page.goto("/gallery/")
    page.get_by_label("图片").set_input_files(str(photo))
    page.get_by_role("button", name="上传").click()
    expect(page.locator("#status")).to_have_text("已完成")
    expect(page.locator("#thumbnails figure")).to_have_count(len(images.SIZES))
    small = page.locator("figure[data-name=small] img")
    expect(small).to_have_js_property("complete", True)
    assert small.evaluate("img => img.naturalHeight") == images.SIZES["small"]
    # A text file named .jpg: the form says what is wrong, nothing is queued.
    page.goto("/gallery/")
    page.get_by_label("图片").set_input_files(str(images.not_an_image(tmp_path / "cat.jpg")))
    page.get_by_role("button", name="上传").click()
    expect(page.locator(".errorlist")).to_contain_text("这不是图片")


def test_the_progress_page_in_a_browser_pushes_and_polls_to_the_end(page):
    page.goto("/videos/")
    page.get_by_label("测试片的长度（秒）").fill("6")
    page.get_by_label("转码后的高度").select_option("160")
    page.get_by_role("button", name="开始转码").click()
    expect(page.locator("#status")).to_have_text("已完成")
    expect(page.locator("#pushed")).to_have_attribute("data-state", "stopped")
    expect(page.locator("#polled")).to_have_attribute("data-state", "stopped")
    for pane in ("#pushed", "#polled"):
        expect(page.locator(f"{pane} .percent")).to_have_text("100")
    # One connection brought every change; polling asked once a second, changed or not.
    assert int(page.locator("#pushed .events").text_content()) >= 2
    assert int(page.locator("#polled .requests").text_content()) >= 1
    expect(page.locator("#output-info")).to_contain_text("×160")
    expect(page.locator("#poster")).to_have_js_property("complete", True)
    assert page.locator("#poster").evaluate("img => img.naturalHeight") == 160
