"""Loaded before every other plugin (``-p tests.clean_env`` in pyproject.toml): a
developer's settings are cleared before pytest-django reads DJANGO_SETTINGS_MODULE
(it does so before the root conftest.py is imported, which clears them again for
``python -m pytest`` runs that skip this file's addopts). The list, and why each
variable is on it: tests/notebook_env.py."""

from tests.notebook_env import clear_developer_settings

clear_developer_settings()
