"""Settings for the course's demo project (Django 5.2 LTS).

Everything that differs between a laptop and a server comes from the
environment (twelve-factor style), with defaults meant for learning locally:

    DEBUG           "true" (default) or "false"
    SECRET_KEY      required when DEBUG is false
    ALLOWED_HOSTS   comma-separated; default "localhost,127.0.0.1,[::1]"
    REDIS_URL       the broker; default redis://127.0.0.1:6379/0
    DATABASE_URL    default: SQLite file django_demo/db.sqlite3 (git-ignored);
                    postgres://user:password@host:5432/name for PostgreSQL
    MEDIA_ROOT      where report files are written; default django_demo/media

Django's settings reference: https://docs.djangoproject.com/en/5.2/ref/settings/
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# --- Core ---------------------------------------------------------------------

# On by default: this project is for learning on your own machine.
# Anything reachable by others must run with DEBUG=false.
DEBUG = env_bool("DEBUG", True)

# The development key is deliberately marked insecure, so that
# `manage.py check --deploy` complains as long as it is in use.
_DEV_SECRET_KEY = "django-insecure-course-only-never-use-this-key-on-a-server"
SECRET_KEY = os.environ.get("SECRET_KEY") or (_DEV_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set in the environment when DEBUG is false.")

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

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
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

# The demo report task sleeps this long per step, so the progress bar visibly moves.
REPORT_STEP_SECONDS = float(os.environ.get("REPORT_STEP_SECONDS", "0.5"))

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

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

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
