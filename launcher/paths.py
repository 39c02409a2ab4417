"""Where things are in the repository: one definition, used by the launcher,
the tests and the picture scripts."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The Django project of chapters 05-06 (the folder with manage.py).
DJANGO_DIR = REPO_ROOT / "django_demo"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
