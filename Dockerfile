# One image for the whole Docker stack of docker-compose.yml: the Django web
# server, the Celery worker, beat and Flower. Each service only changes the
# command; code, pins and settings are the same everywhere, as they must be
# (a worker running other code than the web process that sends its tasks is a
# classic source of "unregistered task" errors).
#
#   docker compose build        # builds it (compose tags it django-celery-course:local)
#
# A pinned tag, not python:3.11-slim: the image changes only when this line does.
FROM python:3.11.14-slim-bookworm

# No .pyc files in the image or the volumes, logs unbuffered (they reach
# `docker compose logs` at once), and a quiet, cache-less pip.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# Dependencies first, in their own layer: editing the code does not reinstall them.
# requirements.txt holds what the course needs to run (the same pins `make lab`
# installs); what only the tests, the pictures and the linter need is in
# requirements-test.txt, which the image never installs (playwright alone
# ships a Node.js runtime).
COPY requirements.txt ./
RUN pip install -r requirements.txt

# The code, then installed exactly as `make install` does: the course's
# packages as an editable install (--no-deps: the dependencies are all
# installed above, from the pins), and a .pth file that puts /app/django_demo
# on sys.path, so `django_demo` (the settings package) and `reports` import
# from anywhere and the templates and migrations stay where they are.
COPY pyproject.toml ./
# Every package pyproject.toml lists (setuptools refuses an editable install that misses one).
COPY demo_tasks ./demo_tasks
COPY instruments ./instruments
COPY launcher ./launcher
COPY selfcheck ./selfcheck
COPY services ./services
COPY django_demo ./django_demo
RUN pip install --no-deps -e . \
    && python -c "import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()['purelib'], 'django_demo.pth').write_text('/app/django_demo\n')" \
    && python -c "import django_demo.celery, reports"

# No collectstatic: the web service is Django's development server
# (`runserver`), which serves static files itself while DEBUG is on (compose's
# development profile). The production profile (DEBUG off) shows a
# deployment's settings, not its web server: there the admin has no CSS until
# a real server (gunicorn + whitenoise, chapter 14) serves the static files.

# Never run as root. The user owns only what it writes: MEDIA_ROOT (the
# generated reports, a named volume shared by web and worker; a fresh volume
# copies this directory's owner) and its home.
RUN useradd --create-home --uid 10001 --user-group course \
    && mkdir -p /data/media \
    && chown course:course /data/media
ENV MEDIA_ROOT=/data/media
USER course

# manage.py lives here, and `celery -A django_demo` finds the package here too.
WORKDIR /app/django_demo

EXPOSE 8000 5555

# No HEALTHCHECK here: the same image is four different services, so
# docker-compose.yml gives each its own (HTTP for web and Flower,
# `celery inspect ping` for the worker); python is all they need.
# The default command is the web server; the Celery services override it.
CMD ["python", "manage.py", "runserver", "0.0.0.0:8000", "--noreload"]
