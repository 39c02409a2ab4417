"""Settings for the course's demo project (Django 5.2 LTS).

Everything that differs between a laptop and a server comes from the
environment (twelve-factor style). The defaults are the safe ones: a bare
environment means production, and refuses to start without a SECRET_KEY.

    DEBUG           "false" (default) or "true". `make lab`, the course's
                    chapters, the tests and compose's development profile
                    turn it on explicitly.
    SECRET_KEY      required when DEBUG is false (or SECRET_KEY_FILE: a file
                    holding it, e.g. a compose secret /run/secrets/...)
    ALLOWED_HOSTS   comma-separated; default "localhost,127.0.0.1,[::1]"
    REDIS_URL       the broker; default redis://127.0.0.1:6379/0
                    (REDIS_PASSWORD_FILE: a file with the password to add to it)
    DATABASE_URL    default: SQLite file django_demo/db.sqlite3 (git-ignored);
                    postgres://user@host:5432/name for PostgreSQL
                    (DATABASE_PASSWORD_FILE: a file with the password)
    MEDIA_ROOT      where report files, photos and videos are written; default django_demo/media
    EMAIL_*         mail (chapter 09): EMAIL_BACKEND (default: the console), EMAIL_HOST,
                    EMAIL_PORT, EMAIL_TIMEOUT, EMAIL_USE_TLS, EMAIL_HOST_USER,
                    EMAIL_HOST_PASSWORD (or EMAIL_HOST_PASSWORD_FILE)
    DINGTALK_*      the group robot (chapter 09): DINGTALK_WEBHOOK_URL, DINGTALK_SECRET
                    (or DINGTALK_SECRET_FILE)
    NOTIFY_*        the internal webhook NOTIFY_WEBHOOK_URL, and the notification tasks'
                    NOTIFY_TIMEOUT, NOTIFY_MAX_RETRIES, NOTIFY_RETRY_DELAY, NOTIFY_RETRY_MAX_DELAY,
                    NOTIFY_RETRY_JITTER
    REPORT_MAIL_TO  who gets the daily report by mail (comma-separated)
    VIDEO_*         the video pages (chapter 10): VIDEO_MAX_UPLOAD_BYTES, VIDEO_SOFT_TIME_LIMIT,
                    VIDEO_STREAM_SECONDS, VIDEO_STREAM_INTERVAL

Django's settings reference: https://docs.djangoproject.com/en/5.2/ref/settings/
"""

import os
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_number(name: str, default, kind=float):
    """A number from the environment (``kind``: float or int), or ``default`` if unset.
    Anything else stops the process at once, saying which variable and what it holds."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = kind(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}={value!r} is not {'a whole number' if kind is int else 'a number'}; "
            f"unset it for the default ({default}).") from None
    if number < 0:
        raise ImproperlyConfigured(f"{name}={value!r} is negative; unset it for the default ({default}).")
    return number


def env_secret(name: str) -> str:
    """A secret from NAME, or from the file that NAME_FILE names (compose and
    Kubernetes hand secrets over as files, which `ps` and `docker inspect` do
    not show). Empty if neither is set."""
    path = os.environ.get(f"{name}_FILE", "").strip()
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path}: cannot read it ({exc.strerror}).") from None
    return os.environ.get(name, "").strip()


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` put in its user-info (URL-encoded), if given."""
    if not password:
        return url
    parts = urlsplit(url)
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


# --- Core ---------------------------------------------------------------------

# Off unless the environment turns it on: a forgotten variable must not put
# tracebacks and settings on a public page. `make lab`, the chapters, the
# tests and compose's development profile set DEBUG=true explicitly.
DEBUG = env_bool("DEBUG", False)

# No fixed fallback: a key printed in a repository signs nobody's sessions.
# With DEBUG on and no key given, each process makes up its own (logins then
# last until the server restarts; `make lab` hands every process a stable one).
SECRET_KEY = env_secret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set, and DEBUG is off (the default). On your own machine, "
            "run with DEBUG=true (make lab does); on a server, set SECRET_KEY or SECRET_KEY_FILE "
            "to a long random string, e.g. the output of: python -c \"import secrets; "
            "print(secrets.token_urlsafe(50))\"")
    SECRET_KEY = get_random_secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Task results as rows (admin: "Task results"), read through the ORM.
    "django_celery_results",
    # Periodic tasks as rows (admin: "Periodic tasks"), read by beat (chapter 06).
    "django_celery_beat",
    "reports",
    # Chapter 08: a word count started from a view as a chord, followed on a progress page.
    "wordcounts",
    # Chapter 09: notifications by mail, a DingTalk group robot and an internal webhook.
    "notifications",
    # Chapter 10: uploaded photos made into thumbnails (Pillow), videos transcoded (FFmpeg).
    "gallery",
    "videos",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "django_demo.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "django_demo.wsgi.application"

# --- Database -------------------------------------------------------------------

# https://github.com/jazzband/dj-database-url
DATABASES = {
    "default": dj_database_url.config(
        env="DATABASE_URL",
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
    )
}
if _database_password := env_secret("DATABASE_PASSWORD"):
    DATABASES["default"]["PASSWORD"] = _database_password

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite creates the file but not its folder: a missing folder would fail only at the
    # first query ("unable to open database file"), in every task of a worker. Say so now.
    _sqlite_file = str(DATABASES["default"]["NAME"])
    if _sqlite_file != ":memory:" and not Path(_sqlite_file).resolve().parent.is_dir():
        raise ImproperlyConfigured(
            f"DATABASE_URL names the SQLite file {_sqlite_file}, whose folder does not exist. A chapter's "
            "folder (.scratch/chapterNN-...) is removed when its kernel stops: run the chapter's preparation "
            "cell again and use the command it prints.")
    # The web process and the worker write to the same file at the same time.
    # Django's defaults (rollback journal, DEFERRED transactions) then end in
    # "database is locked". The fix (Django 5.1+, see
    # https://docs.djangoproject.com/en/5.2/ref/databases/#sqlite-notes):
    # - WAL: readers never block the writer and the writer never blocks readers;
    # - IMMEDIATE transactions take the write lock when they begin, so a second
    #   writer waits (up to "timeout" seconds) instead of failing half-way;
    # - synchronous=NORMAL is safe with WAL and much faster.
    DATABASES["default"].setdefault("OPTIONS", {}).update({
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;",
    })

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Language, time, files ------------------------------------------------------

LANGUAGE_CODE = "zh-hans"
TIME_ZONE = os.environ.get("TIME_ZONE", "Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))

# Generated reports go to MEDIA_ROOT/reports/ and are served by a view.
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "media"))

# Chapter 10: the video pages and tasks.
# The largest video upload accepted (the form refuses a larger one; a proxy in front of
# Django should refuse it before it is uploaded: nginx's client_max_body_size, chapter 14).
VIDEO_MAX_UPLOAD_BYTES = int(os.environ.get("VIDEO_MAX_UPLOAD_BYTES", str(50 * 1024 * 1024)))
# transcode_video's soft time limit: a runaway transcode is stopped (FFmpeg killed, nothing
# half-written kept) and the video says so. Seconds.
VIDEO_SOFT_TIME_LIMIT = float(os.environ.get("VIDEO_SOFT_TIME_LIMIT", "300"))
# The progress event stream: how long one response lasts before the browser reconnects
# (a stream holds a server thread for its whole life), and how often it reads the status.
VIDEO_STREAM_SECONDS = float(os.environ.get("VIDEO_STREAM_SECONDS", "60"))
VIDEO_STREAM_INTERVAL = float(os.environ.get("VIDEO_STREAM_INTERVAL", "0.25"))

# The demo report task sleeps this long per step, so the progress bar visibly moves.
REPORT_STEP_SECONDS = float(os.environ.get("REPORT_STEP_SECONDS", "0.5"))
# A running report with no progress for this long has lost its task (its worker
# was killed): the page shows it failed, with a retry button (reports/watchdog.py).
REPORT_LOST_AFTER_SECONDS = float(os.environ.get("REPORT_LOST_AFTER_SECONDS",
                                                 max(10.0, 4 * REPORT_STEP_SECONDS)))
# A report no worker has started for this long is given up on the same way.
REPORT_QUEUE_TIMEOUT_SECONDS = float(os.environ.get("REPORT_QUEUE_TIMEOUT_SECONDS", "600"))
# Each piece of a word count (wordcounts/tasks.py) waits this long before it counts, so
# the progress page visibly moves (counting a piece of text itself takes a few milliseconds).
WORDCOUNT_PIECE_SECONDS = float(os.environ.get("WORDCOUNT_PIECE_SECONDS", "0.5"))

# --- Mail and notifications (chapter 09) ---------------------------------------------
# Mail is printed on the console (runserver's or the worker's) unless the
# environment names a backend, e.g. django.core.mail.backends.filebased.EmailBackend
# with EMAIL_FILE_PATH (chapter 05's exercise 3), or the SMTP backend with EMAIL_HOST
# (chapter 09; compose's Mailpit).
# https://docs.djangoproject.com/en/5.2/topics/email/#email-backends
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
if os.environ.get("EMAIL_FILE_PATH"):
    # https://docs.djangoproject.com/en/5.2/ref/settings/#email-file-path
    EMAIL_FILE_PATH = os.environ["EMAIL_FILE_PATH"]
# https://docs.djangoproject.com/en/5.2/ref/settings/#email-host
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
# https://docs.djangoproject.com/en/5.2/ref/settings/#email-port
EMAIL_PORT = env_number("EMAIL_PORT", 25, int)
# Seconds the SMTP backend waits for the server (connecting, and each answer). Django's
# default, None, waits forever: a server that never answers would hold a worker's
# process for good. A timeout ends the attempt; the task retries it (chapter 09).
# https://docs.djangoproject.com/en/5.2/ref/settings/#email-timeout
EMAIL_TIMEOUT = env_number("EMAIL_TIMEOUT", 10.0)
# STARTTLS on the plain port (587); Mailpit and the course's local server speak plain SMTP.
# https://docs.djangoproject.com/en/5.2/ref/settings/#email-use-tls
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
# https://docs.djangoproject.com/en/5.2/ref/settings/#email-host-user
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
# Or EMAIL_HOST_PASSWORD_FILE: a file holding it (compose secrets).
# https://docs.djangoproject.com/en/5.2/ref/settings/#email-host-password
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
# The sender of every mail; its domain also names the stable Message-IDs
# (<notification-UUID@DOMAIN>, <daily-report-DAY@DOMAIN>: notifications/mail.py).
# https://docs.djangoproject.com/en/5.2/ref/settings/#default-from-email
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "reports@example.com")

# The group robot's webhook, as DingTalk's admin page gives it
# (https://oapi.dingtalk.com/robot/send?access_token=...). Empty (the default): the
# robot's task fails at once, saying so, and is not retried.
# https://open.dingtalk.com/document/orgapp/custom-bot-send-message-type
DINGTALK_WEBHOOK_URL = os.environ.get("DINGTALK_WEBHOOK_URL", "").strip()
# The robot's signing secret (加签, "SEC..."), or DINGTALK_SECRET_FILE: a file holding it.
# Empty: requests go unsigned (a robot secured by keywords or IP addresses instead).
# https://open.dingtalk.com/document/orgapp/customize-robot-security-settings
DINGTALK_SECRET = env_secret("DINGTALK_SECRET")
# The project's own internal webhook: POST {"event", "text"} with an Idempotency-Key
# header, the same on every attempt, so that the receiver drops a retry's copy.
# Empty (the default): its task fails at once, saying so.
# https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/
NOTIFY_WEBHOOK_URL = os.environ.get("NOTIFY_WEBHOOK_URL", "").strip()
# Seconds an HTTP call of a notification task waits (connecting, and for the answer).
# https://requests.readthedocs.io/en/latest/user/advanced/#timeouts
NOTIFY_TIMEOUT = env_number("NOTIFY_TIMEOUT", 5.0)
# Retries of a notification (mail, robot, webhook) that failed for a reason that may
# pass (a server down, a timeout, 4xx SMTP, HTTP 5xx): at most this many ...
# https://docs.celeryq.dev/en/stable/userguide/tasks.html#Task.max_retries
NOTIFY_MAX_RETRIES = env_number("NOTIFY_MAX_RETRIES", 5, int)
# ... the first after this many seconds, then twice as long each time (chapter 07's
# exponential backoff, computed by Celery's own get_exponential_backoff_interval) ...
# https://docs.celeryq.dev/en/stable/userguide/tasks.html#Task.retry_backoff
NOTIFY_RETRY_DELAY = env_number("NOTIFY_RETRY_DELAY", 1.0)
# ... but never longer than this.
# https://docs.celeryq.dev/en/stable/userguide/tasks.html#Task.retry_backoff_max
NOTIFY_RETRY_MAX_DELAY = env_number("NOTIFY_RETRY_MAX_DELAY", 600.0)
# Each wait a random one between 0 and the above ("full jitter", chapter 07's
# retry_jitter): two hundred notifications that failed together during an outage do
# not all come back at the same moment. Chapter 09 sets NOTIFY_RETRY_JITTER=false so
# that its log shows the schedule as configured; keep the default in production.
# https://docs.celeryq.dev/en/stable/userguide/tasks.html#Task.retry_jitter
NOTIFY_RETRY_JITTER = env_bool("NOTIFY_RETRY_JITTER", True)
# Who gets the daily report (notifications.tasks.mail_daily_report): comma-separated
# addresses, the message's "to". Empty (the default): the task fails at once, saying so.
# https://docs.djangoproject.com/en/5.2/topics/email/#emailmessage-objects
REPORT_MAIL_TO = env_list("REPORT_MAIL_TO", "")

# The report pages need a login (Django's own login page, reports' template).
# https://docs.djangoproject.com/en/5.2/ref/settings/#login-url
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "reports:create"
LOGOUT_REDIRECT_URL = "login"

# Warnings of the project's own code (a lost task, with its error id) on the
# console, which is the log of runserver and of the worker.
# https://docs.djangoproject.com/en/5.2/topics/logging/
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {name: {"handlers": ["console"], "level": "INFO", "propagate": False}
                for name in ("reports", "notifications")},
}

# --- Security when DEBUG is false (`manage.py check --deploy`) -----------------

# https://docs.djangoproject.com/en/5.2/howto/deployment/checklist/
# A TLS-terminating proxy may redirect instead (SECURE_SSL_REDIRECT=false);
# then `check --deploy` reports W008, as it should.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = 0 if DEBUG else int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
if env_bool("BEHIND_TLS_PROXY", False):
    # Only behind a proxy that sets this header itself (never trust it otherwise).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Celery -----------------------------------------------------------------------
# Read by django_demo/celery.py through config_from_object(namespace="CELERY"):
# CELERY_BROKER_URL here is Celery's broker_url, and so on.

# The embedded Valkey of `make lab` listens on 127.0.0.1 without a password;
# a broker with one: redis://user:password@redis.example:6379/0, or the password in
# the file REDIS_PASSWORD_FILE names (compose's Redis, with its ACL user).
REDIS_URL = with_password(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                          env_secret("REDIS_PASSWORD"))

# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-url
CELERY_BROKER_URL = REDIS_URL
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-connection-retry-on-startup
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-connection-timeout
CELERY_BROKER_CONNECTION_TIMEOUT = 2
# A web request must not hang when the broker is down: two quick retries,
# then kombu's OperationalError, which the view turns into HTTP 503.
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-publish-retry-policy
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
# The queue tasks go to when nothing routes them elsewhere; a copy of the
# project beside this one (chapter 05's exercise 3) gets a queue of its own,
# so neither project's worker takes the other's tasks.
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-default-queue
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_TASK_DEFAULT_QUEUE", "celery")
# Results as rows of django_celery_results' TaskResult table.
# https://docs.celeryq.dev/en/stable/django/first-steps-with-django.html#django-celery-results
CELERY_RESULT_BACKEND = "django-db"
# Also store the task's name, arguments, worker: the admin can show them.
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#result-extended
CELERY_RESULT_EXTENDED = True
# Record STARTED, so a page can tell "queued" from "running".
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-track-started
CELERY_TASK_TRACK_STARTED = True
# JSON only: a pickle message from anyone who can write to the broker would run code.
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#accept-content
CELERY_ACCEPT_CONTENT = ["json"]
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-serializer
CELERY_TASK_SERIALIZER = "json"
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#result-serializer
CELERY_RESULT_SERIALIZER = "json"
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#timezone
CELERY_TIMEZONE = TIME_ZONE
# Flower (chapter 04) shows tasks from events: workers send them...
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#worker-send-task-events
CELERY_WORKER_SEND_TASK_EVENTS = True
# ...and so does the web process, when it sends a task ("task-sent").
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-send-sent-event
CELERY_TASK_SEND_SENT_EVENT = True
# Periodic tasks live in the database (django_celery_beat), editable in the admin.
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#beat-scheduler
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Chapter 08: the word counts' chord (its pieces and its merge) goes to a queue of
# its own, so a long count never holds up the reports in the default queue. The
# route is applied when a task is sent: by the web process for the pieces, by the
# worker for the merge (django-db sends the callback when the last piece is done).
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-routes
CELERY_TASK_ROUTES = {"wordcounts.tasks.*": {"queue": "wordcounts"}}
# What a worker started without -Q consumes: both queues, so the project's one worker
# command (make lab, the chapters, compose) takes them all; each under its own routing
# key. A worker just for the word counts: celery -A django_demo worker -Q wordcounts
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-queues
CELERY_TASK_QUEUES = [Queue(name, routing_key=name) for name in (CELERY_TASK_DEFAULT_QUEUE, "wordcounts")]
