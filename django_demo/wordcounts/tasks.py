"""The word count's tasks: one count_piece per piece (the chord's header), and
merge_counts (its callback). @shared_task, as in reports/tasks.py: they bind to
the project's app, and `celery -A django_demo worker` runs them.

CELERY_TASK_ROUTES in settings.py sends both to the queue "wordcounts". The
counting itself is chapter 08's (demo_tasks/wordcount.py: jieba for Chinese),
without chapter 08's Celery app: that module has no Celery in it.
"""

import time

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from demo_tasks import wordcount

from .models import WordCount


class PieceError(Exception):
    """Raised on purpose by the piece a word count asked to fail (the demo's failure).
    Its message is written for the page, so the page may show it."""


@shared_task
def count_piece(wordcount_id: str, index: int) -> dict[str, int]:
    """Count the words of piece ``index`` (from 0) of the word count's text: {word: count}.

    The message carries the row's id and the piece's index, not the text: the
    task cuts the text as the view did (the same wordcount.split, the same number
    of pieces) and counts its own piece."""
    counting = WordCount.objects.get(pk=wordcount_id)
    time.sleep(settings.WORDCOUNT_PIECE_SECONDS)  # the demo's stand-in for slow work: the page shows each piece
    if counting.fail_piece == index + 1:
        raise PieceError(f"第 {index + 1} 段出错（演示用的故意失败）。")
    return wordcount.count_words(wordcount.split(counting.text, counting.pieces)[index])


@shared_task
def merge_counts(counts_list: list[dict[str, int]], wordcount_id: str, n: int = 10) -> list[list]:
    """The chord's callback: add up the pieces' counts (in the order of the pieces),
    write the top ``n`` words and the number of words to the row, and return the top words."""
    counts = wordcount.merge(counts_list)
    best = [[word, count] for word, count in wordcount.top(counts, n)]
    WordCount.objects.filter(pk=wordcount_id, status=WordCount.Status.RUNNING).update(
        status=WordCount.Status.DONE, top=best, words=sum(counts.values()), finished=timezone.now())
    return best
