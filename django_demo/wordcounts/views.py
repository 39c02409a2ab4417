"""Start a word count (a chord) from a form, and follow it on a progress page.

The view builds the chord and chooses its ids before anything is sent
(``freeze()``): the row keeps the header's GroupResult id and the callback's
task id, and the GroupResult itself is saved in the result backend's table,
all in the view's transaction. The chord is sent once that is committed
(``transaction.on_commit``), so no worker ever looks for a row that is not
there yet (chapter 05). The status view restores the group by the id on the
row and asks it how far it is.
"""

from celery import chord
from celery.result import AsyncResult, GroupResult
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET
from django_celery_results.models import ChordCounter
from kombu.exceptions import OperationalError

from .forms import WordCountForm
from .models import WordCount
from .tasks import PieceError, count_piece, merge_counts

BROKER_DOWN = ("无法连接消息代理（broker），没有开始统计。请先启动 Redis/Valkey（make lab 会自动启动一个），"
               "然后重试。 The message broker is unreachable: nothing was started.")


def start_on_commit(counting: WordCount) -> None:
    """Build the chord for ``counting``, keep its ids on the row, send it once committed.

    ``freeze()`` gives every task of the chord its id now, and returns the
    AsyncResult of the callback; its ``parent`` is the header's GroupResult.
    ``save()`` stores that group in the result backend (django-db: a row of
    django_celery_results' GroupResult table, in this same transaction), so any
    process can ``GroupResult.restore(id)`` it later. Ids, not texts, travel in
    the messages: each piece is (row id, piece index)."""
    header = [count_piece.s(str(counting.pk), index) for index in range(counting.pieces)]
    workflow = chord(header, merge_counts.s(str(counting.pk)))
    merged = workflow.freeze()
    counting.group_id, counting.task_id = merged.parent.id, merged.id
    counting.save()
    merged.parent.save()
    transaction.on_commit(workflow.apply_async)


def forget_unsent(counting: WordCount) -> None:
    """The records of a chord that was never sent (the broker was down): the row, the
    saved group, and the counter django-db's apply_chord made before the first send."""
    if counting.group_id:
        group = GroupResult.restore(counting.group_id)
        if group is not None:
            group.delete()
        ChordCounter.objects.filter(group_id=counting.group_id).delete()
    WordCount.objects.filter(pk=counting.pk).delete()


@login_required
def create_wordcount(request):
    form = WordCountForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        counting = None
        try:
            with transaction.atomic():
                counting = form.save(commit=False)
                counting.owner = request.user
                start_on_commit(counting)
        except OperationalError:
            # Committed, then not sent (on_commit callbacks run after the commit).
            if counting is not None:
                forget_unsent(counting)
            form.add_error(None, BROKER_DOWN)
            return render(request, "wordcounts/form.html", _form_context(request, form), status=503)
        return redirect(counting)
    status = 400 if form.is_bound else 200
    return render(request, "wordcounts/form.html", _form_context(request, form), status=status)


def _form_context(request, form) -> dict:
    return {"form": form, "recent": request.user.wordcounts.all()[:10]}


def chord_progress(counting: WordCount) -> dict:
    """Where the chord is, from Celery's own records, as the status endpoint answers it.

    The header: ``GroupResult.restore()`` by the id on the row, then
    ``completed_count()`` (the pieces that succeeded) of ``len()`` pieces, and each
    piece's state. The callback: its AsyncResult by the task id on the row. The
    merge writes its result to the row; a failed chord (a piece raised, so
    django-db's chord counter stored a ChordError as the callback's result and
    never sent it) is recorded on the row here, the first time it is seen."""
    header = GroupResult.restore(counting.group_id) if counting.group_id else None
    states = [result.state for result in header.results] if header is not None else []
    done = header.completed_count() if header is not None else 0
    if counting.status == WordCount.Status.RUNNING:
        merged = AsyncResult(counting.task_id)
        if header is None:
            _record_failure(counting, "找不到这次统计的任务记录（头部的 GroupResult 没有保存，或者已经过期）。")
        elif merged.failed():
            _record_failure(counting, _failure_message(header, merged))
        elif merged.successful():
            counting.refresh_from_db()  # the merge wrote its result just before it stored SUCCESS
    return {
        "status": counting.status,
        "done": done,
        "total": len(header) if header is not None else counting.pieces,
        "states": states,
        "failed": [number for number, state in enumerate(states, 1) if state == "FAILURE"],
        "top": counting.top,
        "words": counting.words,
        "message": counting.message or None,
        "group_id": counting.group_id,
        "task_id": counting.task_id,
    }


def _failure_message(header: GroupResult, merged: AsyncResult) -> str:
    """What the page says: the failed pieces' own messages if they are ours (PieceError,
    written for the page), never another exception's text; then what became of the merge."""
    reasons = []
    for number, result in enumerate(header.results, 1):
        if result.failed():
            error = result.result
            ours = isinstance(error, PieceError)
            reasons.append(str(error) if ours else f"第 {number} 段出错（{type(error).__name__}）。")
    merge = f"合并没有运行：chord 的回调记为失败（{type(merged.result).__name__}）。"
    return "".join(reasons) + merge if reasons else f"合并出错（{type(merged.result).__name__}）。"


def _record_failure(counting: WordCount, message: str) -> None:
    WordCount.objects.filter(pk=counting.pk, status=WordCount.Status.RUNNING).update(
        status=WordCount.Status.FAILED, message=message[:300], finished=timezone.now())
    counting.refresh_from_db()


@login_required
def wordcount_detail(request, pk):
    counting = get_object_or_404(WordCount, pk=pk, owner=request.user)
    return render(request, "wordcounts/detail.html", {"counting": counting, "status": chord_progress(counting)})


@require_GET
def wordcount_status(request, pk):
    """JSON polled by the progress page (see chord_progress); JSON errors too (401, 404)."""
    if not request.user.is_authenticated:
        return JsonResponse({"detail": "请先登录。"}, status=401)
    try:
        counting = get_object_or_404(WordCount, pk=pk, owner=request.user)
    except Http404:
        return JsonResponse({"detail": "没有这次统计。"}, status=404)
    return JsonResponse(chord_progress(counting))
