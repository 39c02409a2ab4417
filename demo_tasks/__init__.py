"""The standalone Celery app of chapters 01-04 (the article's demo)."""
