# Import the Celery app whenever Django starts (runserver, manage.py, the
# WSGI server), so that @shared_task in every app binds to *this* app and
# the CELERY_* settings apply to the tasks the web process sends.
# Forget this import and tasks are sent with a default app instead (broker
# amqp://guest@localhost//) — chapter 05 shows that mistake and its error.
from .celery import app as celery_app

__all__ = ("celery_app",)
