"""A canvas through a real worker: the word count's chord (chapter 08).

count_piece runs once per piece (the chord's header, in parallel on a real
deployment), merge_counts once with all their results (the callback). The
callback is sent by the worker when the last piece is done -- the result backend
counts the pieces (django-db: a ChordCounter row) -- so a chord cannot be tested
without a worker and a backend that supports chords; eager mode runs it inline
and proves nothing about that counting.

The chord is built and sent by the view's own function (wordcounts.views.
start_on_commit), so the test sends exactly what the page sends.
"""

from __future__ import annotations

import pytest
from celery.result import AsyncResult, GroupResult
from django.db import transaction

from wordcounts.models import WordCount
from wordcounts.views import start_on_commit

pytestmark = pytest.mark.worker

# Three paragraphs: split() cuts between paragraphs, so three pieces of one paragraph each.
TEXT = ("Celery runs tasks. Celery workers run Django tasks.\n\n"
        "Redis brings messages to workers.\n\n"
        "Workers store results; Django reads results.")


def test_the_word_count_chord_merges_its_pieces(celery_worker, django_user_model, settings):
    settings.WORDCOUNT_PIECE_SECONDS = 0     # each piece's demo delay (the worker thread reads it here)
    user = django_user_model.objects.create_user("alice")
    counting = WordCount(owner=user, text=TEXT, pieces=3)
    with transaction.atomic():
        start_on_commit(counting)            # ids chosen, kept on the row, chord sent on commit

    # The callback's result: the ten most frequent words of the whole text (by count, then
    # alphabetically), added up from the pieces -- "workers" is in all three.
    merged = AsyncResult(counting.task_id).get(timeout=20)
    assert merged == [["workers", 3], ["celery", 2], ["django", 2], ["results", 2], ["tasks", 2],
                      ["brings", 1], ["messages", 1], ["reads", 1], ["redis", 1], ["run", 1]]
    # The header: one result per piece, each the count of its own paragraph.
    header = GroupResult.restore(counting.group_id)
    assert [result.get(timeout=5) for result in header.results] == [
        {"celery": 2, "runs": 1, "tasks": 2, "workers": 1, "run": 1, "django": 1},
        {"redis": 1, "brings": 1, "messages": 1, "workers": 1},
        {"workers": 1, "store": 1, "results": 2, "django": 1, "reads": 1},
    ]
    counting.refresh_from_db()
    assert counting.status == WordCount.Status.DONE
    assert (counting.top, counting.words) == (merged, 18)   # what the progress page shows
