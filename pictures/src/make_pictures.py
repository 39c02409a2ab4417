"""`make pictures`: regenerate every picture in pictures/ from real runs.

    .venv/bin/python pictures/src/make_pictures.py

1. celery_architecture.png  drawn by architecture.py (matplotlib);
2. celery_worker.png        the start-up banner of a real demo_tasks worker,
                            from its log, sanitized, as a terminal window;
3. flower_web.png           screenshots of that live Flower, taken by headless
   flower_tasks.png         Chromium (Playwright) after real tasks ran: the
   flower_task_detail.png   workers page, the tasks page, one task's page;
   flower_broker.png        then the Broker page while the worker takes nothing
                            from the queue `celery` and five tasks wait in it
                            (chapter 04's queue-length experiment). Alone:
                            `make_pictures.py flower_broker.png`.
4. django_report_progress.png   django_demo on a temporary SQLite file, with a
   django_report_done.png       real `celery -A django_demo worker` and
   django_admin_results.png     `manage.py runserver`, each chapter's state
   django_admin_periodic.png    replayed: chapter 05's report page with the
                                bar part-way and finished (cropped to the
                                content) and the admin's TaskResult list; then
                                chapter 06's periodic task, sent by a real beat
                                and switched off, in the PeriodicTask list
                                (logged in as a course admin whose password
                                is random and lives only as long as the run).
5. on_commit_race.png       drawn by on_commit.py (matplotlib): the race of a task sent
                            inside a transaction, and the order delay_on_commit gives.
6. beat_timeline.png        drawn by beat_timeline.py from a real beat and
                            worker run (its own broker): when beat sent each
                            periodic task and when the worker ran it.
7. retry_timeline.png       drawn by retry_timeline.py from chapter 07's batch on a
                            real worker and the flaky service (its own broker): each
                            attempt of a few retried tasks, and the waits between.
8. workflow_chain.png       drawn by workflow_timeline.py from chapter 08's app on a
   workflow_chord.png       real worker (its own broker) from its task events: who ran
                            each link of a chain, and each piece and the callback of
                            the word-count chord, on which pool process and when.
9. notifications_architecture.png  drawn by notifications_architecture.py (matplotlib,
                            chapter 01's helpers): chapter 09's senders, Broker, worker
                            with its four tasks, the three receivers and the database.
10. gallery_thumbnails.png  chapter 10's pages, in item 4's stack after chapter 06's
    video_progress.png      state: a sample photo stored sideways (EXIF orientation 6)
    video_done.png          uploaded through the form, its page once the worker made
                            the three thumbnails; a 60 s test clip transcoded to 360 px
                            high, its progress page part-way (the pushed pane ahead of
                            the polled one) and done (the video, poster and GIF preview).
                            Alone: `make_pictures.py video_done.png` (any of the three)
                            makes the three, in a stack of their own.
11. reliability_summary.png  drawn by reliability_summary.py from chapter 12's fault
                            scenarios run for real (each on its own Valkey and workers):
                            per scenario, how many tasks finished once, twice or were lost.

One picture alone: `make_pictures.py NAME.png` for celery_architecture.png,
flower_broker.png, a picture of items 5-9 or 11 (a script that draws two makes
both) or of item 10.

Everything runs on an embedded broker on a free port and is stopped at the
end, whatever happens. Needs Chromium (see launcher/browser.py) and a CJK font
(the architecture diagram and the Chinese pages).

Screenshots: fixed viewport, UTC, en-US, light theme; every wait is on a
condition. Before each shot the page's text has the machine's own strings
replaced the way launcher.sanitize does (host name -> HOST, repository and
virtualenv paths -> . and VENV); task ids and times stay real.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import launcher
from launcher.paths import DJANGO_DIR
from launcher.paths import REPO_ROOT as ROOT

HERE = Path(__file__).resolve().parent
PICTURES = ROOT / "pictures"
sys.path.insert(0, str(HERE))  # terminal.py, beside this file

import terminal  # noqa: E402

from launcher import sanitize  # noqa: E402
from launcher.browser import chromium  # noqa: E402
from launcher.django_procs import django_env, start_beat, start_django_server  # noqa: E402
from launcher.flower import start_flower  # noqa: E402

APP = "demo_tasks.tasks"
VIEWPORT = {"width": 1280, "height": 800}
TIMEOUT = 30.0
TIMEOUT_MS = int(TIMEOUT * 1000)

#: The batch shown in the pictures: four successes, one failure, one slow task.
BATCH = [("add", (1, 1), {}), ("add", (2, 2), {}), ("add", (3, 3), {}), ("add", (4, 4), {}),
         ("divide", (1, 0), {}), ("slow_add", (4, 4), {"seconds": 1.0})]


def log(message: str) -> None:
    print(f"make pictures: {message}", flush=True)


def until(condition, what: str, timeout: float = TIMEOUT) -> None:
    if not launcher.wait_for(condition, timeout, interval=0.1):
        raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")


def architecture() -> None:
    subprocess.run([sys.executable, str(HERE / "architecture.py")], check=True, cwd=ROOT)
    log("celery_architecture.png")


def worker_banner(worker) -> None:
    """From the banner's first line (" -------------- w1@HOST v5...") to "ready.".
    Warnings before it (e.g. about running as root in a container) are the
    machine's, not the worker's start-up, and are left out."""
    lines = sanitize(worker.tail(400)).splitlines()  # a picture: the same every time it is drawn
    start = next(i for i, line in enumerate(lines) if re.match(r"^ -{10,} \S+@\S+ v\d", line))
    end = next(i for i, line in enumerate(lines) if line.endswith(" ready."))
    terminal.render("\n".join(lines[start:end + 1]), PICTURES / "celery_worker.png",
                    command=sanitize(worker.display), title="celery worker")
    log("celery_worker.png")


def flower_api(flower, path: str):
    import requests

    reply = requests.get(flower.url + path, auth=flower.auth, timeout=5)
    reply.raise_for_status()
    return reply.json()


def send_batch(broker_url: str) -> dict[str, str]:
    """Send BATCH through a client app of our own; wait for every result.
    Returns {task name: task id} of the last task of each name."""
    from celery import Celery

    client = Celery("pictures", broker=broker_url, backend=broker_url, set_as_current=False)
    ids = {}
    try:
        for name, args, kwargs in BATCH:
            result = client.send_task(f"{APP}.{name}", args=args, kwargs=kwargs)
            result.get(timeout=TIMEOUT, propagate=False)
            ids[name] = result.id
    finally:
        client.close()
    return ids


# Replace text in every text node of the page (machine-specific strings only).
SANITIZE_JS = """(pairs) => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    let text = node.nodeValue;
    for (const [from, to] of pairs) text = text.split(from).join(to);
    if (text !== node.nodeValue) node.nodeValue = text;
  }
}"""


def machine_strings() -> list[tuple[str, str]]:
    pairs = [(sys.prefix, "VENV"), (str(ROOT), "."), (os.path.realpath("/tmp"), "TMPDIR")]
    return [*pairs, ("@" + socket.gethostname(), "@HOST")]


def shoot(page, name: str, *, full_page: bool = False) -> None:
    page.evaluate(SANITIZE_JS, machine_strings())
    page.screenshot(path=str(PICTURES / name), full_page=full_page, animations="disabled",
                    caret="hide")
    log(name)


def screenshots(flower, ids: dict[str, str]) -> None:
    user, password = flower.auth
    succeeded = sum(1 for name, *_ in BATCH if name != "divide")
    with chromium() as browser:
        context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1, locale="en-US",
                                      timezone_id="UTC", color_scheme="light",
                                      http_credentials={"username": user, "password": password})
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()

        page.goto(flower.url + "/workers")
        page.get_by_role("cell", name="Online").wait_for()
        page.wait_for_function(
            "([ok, failed]) => document.querySelector('#workers-succeeded').textContent.trim() === ok"
            " && document.querySelector('#workers-failed').textContent.trim() === failed",
            arg=[str(succeeded), "1"])
        shoot(page, "flower_web.png")

        page.goto(flower.url + "/tasks")
        page.wait_for_function(
            "(n) => document.querySelectorAll('#tasks-table tbody tr td a').length >= n",
            arg=len(BATCH))
        page.wait_for_load_state("networkidle")
        shoot(page, "flower_tasks.png")

        # The failed task: the page a developer opens first.
        page.goto(flower.url + "/task/" + ids["divide"])
        page.get_by_text("ZeroDivisionError: division by zero").first.wait_for()
        page.wait_for_load_state("networkidle")
        shoot(page, "flower_task_detail.png", full_page=True)
        context.close()


#: Chapter 04's queue-length experiment: the tasks that wait while the worker takes nothing from `celery`.
WAITING = 5


def broker_page(flower, broker_url: str) -> None:
    """The Broker page while the worker w1 takes nothing from the queue `celery` and
    WAITING tasks wait in it (remote control cancel_consumer); then it takes them again."""
    import redis
    from celery import Celery

    node = f"w1@{socket.gethostname()}"
    client = Celery("pictures", broker=broker_url, backend=broker_url, set_as_current=False)
    lists = redis.Redis.from_url(broker_url)
    try:
        client.control.cancel_consumer("celery", destination=[node], reply=True, timeout=5)
        waiting = [client.send_task(f"{APP}.add", args=(i, 100)) for i in range(WAITING)]
        until(lambda: lists.llen("celery") == WAITING, f"{WAITING} messages in the list celery")
        user, password = flower.auth
        with chromium() as browser:
            context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1, locale="en-US",
                                          timezone_id="UTC", color_scheme="light",
                                          http_credentials={"username": user, "password": password})
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()

            def shows_the_queue() -> bool:  # the page is rendered by Flower when asked: reload until then
                page.goto(flower.url + "/broker")
                return page.locator("#queue-table tbody tr", has_text="celery").count() == 1

            until(shows_the_queue, "the Broker page to list the queue celery")
            shoot(page, "flower_broker.png")
            context.close()
        client.control.add_consumer("celery", destination=[node], reply=True, timeout=5)
        for result in waiting:
            result.get(timeout=TIMEOUT)
    finally:
        lists.close()
        client.close()


def broker_picture_only() -> int:
    """`make_pictures.py flower_broker.png`: only the Broker page, with a broker, worker and Flower of its own."""
    try:
        broker = launcher.start_embedded()
        launcher.start_worker(APP, broker=broker, extra_args=["-E"], cwd=str(ROOT))
        flower = start_flower(APP, broker=broker, cwd=str(ROOT))
        until(lambda: flower_api(flower, "/api/workers") != {}, "Flower to list the worker")
        broker_page(flower, broker.url)
    finally:
        launcher.stop_all()
    return 0


# --- django_demo: the report page and the admin ----------------------------------
# Each chapter's pictures show that chapter's own state at the point where the
# picture appears: chapter 05's report and results page after its one report
# (the HTTP walk-through: 季度销售报表, 4 rows); chapter 06's periodic task list
# after its heartbeat ran and was switched off (notebooks/06: the django-celery-beat section).

#: Per step of the report task: slow enough to catch the bar part-way (the
#: page polls every 0.3 s).
REPORT_STEP_SECONDS = "1.5"
#: Chapter 05's report, as its notebook asks for it (title, rows).
CH05_REPORT = ("季度销售报表", 4)
#: Chapter 06's periodic task, as its notebook creates it.
CH06_PERIODIC_TASK = "heartbeat every second"
#: How many times beat sends it before it is switched off (chapter 06 waits for 3 runs).
HEARTBEATS = 3

#: Chapter 06, cell by cell: an IntervalSchedule of one second and a
#: PeriodicTask using it. Run by `manage.py shell -c`.
CREATE_PERIODIC_TASK = f"""
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask
every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
PeriodicTask.objects.create(name={CH06_PERIODIC_TASK!r}, task="reports.tasks.heartbeat",
                            interval=every_second, start_time=timezone.now())
"""
#: Chapter 06 switches it off with save(), whose pre_save signal tells beat.
DISABLE_PERIODIC_TASK = f"""
from django_celery_beat.models import PeriodicTask
task = PeriodicTask.objects.get(name={CH06_PERIODIC_TASK!r})
task.enabled = False
task.save()
"""

#: The report pages' content: the body's box and a margin, not the empty page around it;
#: wider or taller if something sticks out of the body (chapter 10's largest thumbnail).
#: In page coordinates (the page is not scrolled when it is shot).
CONTENT_BOX = """() => {
  const box = document.body.getBoundingClientRect();
  let right = box.right, bottom = box.bottom;
  for (const element of document.body.querySelectorAll("*")) {
    const rect = element.getBoundingClientRect();
    if (rect.width && rect.height) {
      right = Math.max(right, rect.right);
      bottom = Math.max(bottom, rect.bottom);
    }
  }
  const left = Math.max(0, box.left - 24);
  return {x: left, y: 0, width: right + 24 - left, height: bottom + 24};
}"""


def manage(env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=DJANGO_DIR, env=dict(os.environ, **env),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def shoot_content(page, name: str) -> None:
    """A report page cropped to its content (the whole page when the content is taller or
    wider than the viewport: a clip is then taken from the full page, not the viewport)."""
    page.evaluate(SANITIZE_JS, machine_strings())
    box = page.evaluate(CONTENT_BOX)
    beyond = box["x"] + box["width"] > VIEWPORT["width"] or box["y"] + box["height"] > VIEWPORT["height"]
    page.screenshot(path=str(PICTURES / name), clip=box, full_page=beyond, animations="disabled", caret="hide")
    log(name)


def admin_changelist(page, path: str, rows: int, name: str, *, each_with: str = "") -> None:
    """An admin list once it shows `rows` rows, each containing `each_with`
    (the list does not refresh itself: reload until then)."""
    def shown() -> bool:
        page.goto(path)
        return page.locator("#result_list tbody tr", has_text=each_with).count() >= rows

    until(shown, f"{path} to list {rows} rows")
    shoot(page, name)


def browser_context(browser, server):
    context = browser.new_context(base_url=server.url, viewport=VIEWPORT, device_scale_factor=1,
                                  locale="zh-CN", timezone_id="Asia/Shanghai", color_scheme="light")
    context.set_default_timeout(TIMEOUT_MS)
    # The admin's navigation sidebar closed (as if its « had been clicked):
    # at 1280 px the changelists then show every column.
    context.add_init_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
    return context


def log_in(page, server, admin: tuple[str, str]) -> None:
    """The report pages need a login: the local user, through the login page."""
    user, password = admin
    page.goto("/accounts/login/")
    page.get_by_label("用户名").fill(user)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(server.url + "/")


def chapter05_screenshots(page) -> None:
    """Chapter 05: its one report, asked for through the form, part-way and done;
    then the results page, which then has that report's row and nothing else."""
    title, rows = CH05_REPORT
    page.goto("/")
    page.get_by_label("标题").fill(title)
    page.get_by_label("行数").fill(str(rows))
    page.get_by_role("button", name="生成报表").click()
    page.wait_for_url("**/reports/*/")
    page.wait_for_function("() => document.getElementById('progress').value === 50")
    shoot_content(page, "django_report_progress.png")
    page.locator("#download").wait_for(state="visible")
    shoot_content(page, "django_report_done.png")
    # The same session: the local user is staff, so the admin opens at once.
    admin_changelist(page, "/admin/django_celery_results/taskresult/", 1, "django_admin_results.png",
                     each_with="SUCCESS")


def chapter06_state(env: dict, broker) -> None:
    """Chapter 06's periodic task: created, sent by beat with the database
    scheduler and run by the worker, then switched off while beat runs."""
    manage(env, "shell", "-c", CREATE_PERIODIC_TASK)
    beat = start_beat("django_demo", broker=broker, cwd=str(DJANGO_DIR), env=env,
                      scheduler="django_celery_beat.schedulers:DatabaseScheduler")
    try:
        until(lambda: beat.log().count(f"Sending due task {CH06_PERIODIC_TASK}") >= HEARTBEATS,
              f"beat to send the periodic task {HEARTBEATS} times")
        manage(env, "shell", "-c", DISABLE_PERIODIC_TASK)
        beat.wait_for_log("Schedule changed", timeout=TIMEOUT, since=0)
    finally:
        beat.cleanup()  # on exit, beat writes last_run_at and total_run_count to the database


#: Chapter 10's photo: as a phone held upright stores it (sideways, EXIF orientation 6), with a camera's name.
CH10_PHOTO = "IMG_0001.jpg"
#: Chapter 10's video: a test clip long enough to be caught part-way, at this height. The page is
#: pushed the status every 0.25 s; a 40 s clip took about 1 s to transcode on 2 cores (steps of
#: about 25 %): 60 s keeps the steps well under CH10_PART_WAY's width on a faster machine.
CH10_CLIP_SECONDS, CH10_HEIGHT = 60, 360
#: Part-way: the pushed pane's percent in this range while FFmpeg transcodes.
CH10_PART_WAY = (20, 80)

#: Every thumbnail on the photo's page drawn (the page adds the <img>s when the status is done).
THUMBNAILS_SHOWN = """(count) => {
  const images = [...document.querySelectorAll("#thumbnails img")];
  return document.getElementById("status").textContent === "已完成" && images.length === count
    && images.every((image) => image.complete && image.naturalWidth > 0);
}"""
#: The pushed pane part-way through the transcode, ahead of the polled one (which, asking once a
#: second, has just caught up now and then).
PUSHED_PART_WAY = """([low, high]) => {
  const pane = document.getElementById("pushed");
  const percent = Number(pane.querySelector(".percent").textContent);
  const polled = Number(document.querySelector("#polled .percent").textContent);
  return pane.querySelector(".phase").textContent === "转码" && percent >= low && percent <= high
    && percent > polled;
}"""
#: Both panes stopped, the result shown: its poster and GIF preview drawn; the video player done
#: loading (HAVE_FUTURE_DATA and NETWORK_IDLE: its first frame drawn), or the video refused (then
#: the picture would show an empty player, see chapter10_screenshots).
VIDEO_DONE_SHOWN = """() => {
  const stopped = ["pushed", "polled"].every((pane) => document.getElementById(pane).dataset.state === "stopped");
  const drawn = ["poster", "preview"].every((id) => {
    const image = document.getElementById(id);
    return image.complete && image.naturalWidth > 0;
  });
  const video = document.getElementById("output");
  return stopped && !document.getElementById("result").hidden && drawn
    && ((video.readyState >= 3 && video.networkState === 1) || video.error !== null);
}"""


#: The pseudo-element name of a <video> player's loading spinner (Chromium's media controls).
LOADING_PANEL = "-internal-media-controls-loading-panel"


def loading_spinner_shown(cdp) -> bool:
    """Whether a <video> player on the page shows its loading spinner. It stays for up to
    about 1.5 s after the video loaded (it ends its turn first), and lives in the browser's
    own shadow DOM, which page scripts cannot see and DevTools (CDP, pierce) can: hidden,
    it has the inline style display: none. Not found (another Chromium): False."""
    nodes = [cdp.send("DOM.getDocument", {"depth": -1, "pierce": True})["root"]]
    while nodes:
        node = nodes.pop()
        pairs = node.get("attributes", [])
        attributes = dict(zip(pairs[::2], pairs[1::2], strict=True))
        if attributes.get("pseudo") == LOADING_PANEL:
            return "display: none" not in attributes.get("style", "")
        nodes += node.get("children", []) + node.get("shadowRoots", [])
    return False


def chapter10_screenshots(page, tmp: Path) -> None:
    """Chapter 10: a photo uploaded through the form and its thumbnails; a test clip
    transcoded, its progress page part-way and done."""
    from demo_tasks import images

    photo = images.sample_photo(tmp / CH10_PHOTO, orientation=6)
    page.goto("/gallery/")
    page.get_by_label("图片").set_input_files(str(photo))
    page.get_by_role("button", name="上传").click()
    page.wait_for_url("**/gallery/*/")
    page.wait_for_function(THUMBNAILS_SHOWN, arg=len(images.SIZES))
    shoot_content(page, "gallery_thumbnails.png")

    page.goto("/videos/")
    page.get_by_label("测试片的长度（秒）").fill(str(CH10_CLIP_SECONDS))
    page.get_by_label("转码后的高度").select_option(str(CH10_HEIGHT))
    page.get_by_role("button", name="开始转码").click()
    page.wait_for_url("**/videos/*/")
    page.wait_for_function(PUSHED_PART_WAY, arg=list(CH10_PART_WAY), timeout=2 * TIMEOUT_MS)
    shoot_content(page, "video_progress.png")   # at once: the polled pane lags, as the chapter says
    page.wait_for_function(VIDEO_DONE_SHOWN, timeout=2 * TIMEOUT_MS)
    if page.evaluate("() => document.getElementById('output').error !== null"):
        raise RuntimeError("this Chromium cannot play the H.264 video: video_done.png would show an empty "
                           "player. Use one that can (Debian's chromium package, Google Chrome): see "
                           "launcher/browser.py")
    cdp = page.context.new_cdp_session(page)
    try:
        until(lambda: not loading_spinner_shown(cdp), "the video player to hide its loading spinner")
    finally:
        cdp.detach()
    shoot_content(page, "video_done.png")


def django_pictures(*, chapter10_only: bool = False) -> None:
    """Its own broker (the demo_tasks worker must not take the report tasks),
    and its own database file and media folder in a temporary directory.
    ``chapter10_only``: only chapter 10's pictures (their pages show nothing of
    the earlier chapters' state)."""
    tmp = Path(tempfile.mkdtemp(prefix="celery-course-pictures-"))
    try:
        broker = launcher.start_embedded()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    admin = ("admin", secrets.token_urlsafe(16))
    env = django_env(tmp, broker, REPORT_STEP_SECONDS=REPORT_STEP_SECONDS)
    started = []
    try:
        manage(env, "migrate", "--noinput")
        manage(dict(env, COURSE_ADMIN_USER=admin[0], COURSE_ADMIN_PASSWORD=admin[1]), "create_course_admin")
        started.append(launcher.start_worker("django_demo", broker=broker, name="w1", cwd=str(DJANGO_DIR),
                                             env=env))
        server = start_django_server(DJANGO_DIR, env=env)
        started.append(server)
        with chromium() as browser:
            context = browser_context(browser, server)
            page = context.new_page()
            log_in(page, server, admin)
            if not chapter10_only:
                chapter05_screenshots(page)
                chapter06_state(env, broker)
                admin_changelist(page, "/admin/django_celery_beat/periodictask/", 2,
                                 "django_admin_periodic.png")
            chapter10_screenshots(page, tmp)
            context.close()
    finally:
        for proc in reversed(started):
            proc.cleanup()
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def script_picture(script: str, *pictures: str) -> None:
    """A picture whose own script makes it (and starts and stops what it needs)."""
    subprocess.run([sys.executable, str(HERE / script)], check=True, cwd=ROOT)
    for name in pictures:
        log(name)


#: The pictures a script of their own makes (items 5-9 and 11 of the docstring), in the order they are made.
SCRIPT_PICTURES = [
    ("on_commit.py", ("on_commit_race.png",)),
    ("beat_timeline.py", ("beat_timeline.png",)),
    ("retry_timeline.py", ("retry_timeline.png",)),
    ("workflow_timeline.py", ("workflow_chain.png", "workflow_chord.png")),
    ("notifications_architecture.py", ("notifications_architecture.png",)),
    ("reliability_summary.py", ("reliability_summary.png",)),
]


#: Item 10 of the docstring: made together.
CH10_PICTURES = ("gallery_thumbnails.png", "video_progress.png", "video_done.png")


def chapter10_pictures_only() -> None:
    try:
        django_pictures(chapter10_only=True)
    finally:
        launcher.stop_all()


def one_picture(names: list[str]) -> int:
    """`make_pictures.py NAME.png`: make that picture only (and what the same script draws with it)."""
    alone = {"celery_architecture.png": architecture, "flower_broker.png": broker_picture_only}
    for name in CH10_PICTURES:
        alone[name] = chapter10_pictures_only
    for script, pictures in SCRIPT_PICTURES:
        for name in pictures:
            alone[name] = lambda script=script, pictures=pictures: script_picture(script, *pictures)
    if len(names) != 1 or names[0] not in alone:
        sys.exit(f"error: cannot make {' '.join(names)!r} alone. Give one of: {', '.join(sorted(alone))}; "
                 "or no argument, to make every picture.")
    PICTURES.mkdir(exist_ok=True)
    return alone[names[0]]() or 0


def main() -> int:
    started = time.monotonic()
    PICTURES.mkdir(exist_ok=True)
    architecture()
    for script, pictures in SCRIPT_PICTURES:
        script_picture(script, *pictures)
    try:
        broker = launcher.start_embedded()
        # -E: the worker sends task events, which is what Flower shows.
        worker = launcher.start_worker(APP, broker=broker, extra_args=["-E"], cwd=str(ROOT))
        worker_banner(worker)

        flower = start_flower(APP, broker=broker, cwd=str(ROOT))
        until(lambda: "Connected to " in flower.log(), "Flower to connect to the broker")
        until(lambda: flower_api(flower, "/api/workers") != {}, "Flower to list the worker")

        ids = send_batch(broker.url)
        until(lambda: sorted(t["state"] for t in flower_api(flower, "/api/tasks").values())
              == sorted("FAILURE" if name == "divide" else "SUCCESS" for name, *_ in BATCH),
              "Flower to record every task of the batch")
        screenshots(flower, ids)
        broker_page(flower, broker.url)

        django_pictures()
    finally:
        launcher.stop_all()
    log(f"done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(one_picture(sys.argv[1:]) if sys.argv[1:] else main())
