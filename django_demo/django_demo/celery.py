"""The project's Celery app, in the shape of Celery's own examples/django.

`celery -A django_demo worker` imports this package (its __init__.py imports
this module), so the worker and the web process share one configuration.
"""

import os

from celery import Celery

# The worker is not started by manage.py, so nobody has told Django which
# settings to use yet: set the default here, before the app reads them.
# (setdefault: an explicit DJANGO_SETTINGS_MODULE in the environment wins.)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_demo.settings")

app = Celery("django_demo")

# Read the configuration from Django's settings. The namespace means every
# Celery setting is spelled with a CELERY_ prefix in settings.py
# (broker_url -> CELERY_BROKER_URL), so they cannot clash with Django's own.
# The string form means the worker does not have to pickle the object.
app.config_from_object("django.conf:settings", namespace="CELERY")

# Import tasks.py from every app in INSTALLED_APPS, so that @shared_task
# functions are registered without listing the modules by hand. A tasks.py
# outside an installed app is never found (chapter 05 shows that mistake).
app.autodiscover_tasks()


@app.task(bind=True, ignore_result=True)
def debug_task(self):
    """The example's sanity check: prints the request it received."""
    print(f"Request: {self.request!r}")
