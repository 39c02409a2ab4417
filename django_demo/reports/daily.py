"""The daily report (chapter 09): the reports asked for on one day, as an Excel
workbook (XLSX, written with openpyxl) built from the database's rows.

    build_daily_workbook(date(2026, 12, 7))            # everyone's reports of that day: bytes
    build_daily_workbook(day, owner=request.user)      # one user's only (the download page)

Two sheets: "汇总" (how many reports ended in each state) and "报表明细" (one row
per report: title, owner, state, rows, created, finished, seconds taken). A
"day" is a day in TIME_ZONE, and the times are shown in TIME_ZONE: Excel has
no time zones, so the cells hold local times, as the page shows them.
"""

from __future__ import annotations

import io
import unicodedata
from datetime import date, datetime, time, timedelta

from django.utils import timezone
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

from .models import Report

CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DETAIL_HEADERS = ["标题", "所有者", "状态", "行数", "创建于", "结束于", "用时（秒）"]
SUMMARY_HEADERS = ["状态", "数量"]
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"


def filename(day: date) -> str:
    return f"daily-report-{day.isoformat()}.xlsx"


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The start of ``day`` and of the next day, in TIME_ZONE (aware datetimes)."""
    tz = timezone.get_default_timezone()
    start = timezone.make_aware(datetime.combine(day, time.min), tz)
    return start, timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min), tz)


def reports_of(day: date, owner=None):
    """The reports created on ``day`` (in TIME_ZONE), oldest first; one owner's, if given."""
    start, end = day_bounds(day)
    found = Report.objects.filter(created__gte=start, created__lt=end).select_related("owner").order_by("created")
    return found.filter(owner=owner) if owner is not None else found


def local(moment: datetime | None) -> datetime | None:
    """An aware datetime as a naive one in TIME_ZONE, to the second (Excel cells have no
    time zone, and keep fractions of a second only approximately)."""
    if moment is None:
        return None
    return timezone.localtime(moment, timezone.get_default_timezone()).replace(tzinfo=None, microsecond=0)


def width(value) -> int:
    """Columns a value takes on screen: a Chinese character is as wide as two Latin ones."""
    if isinstance(value, datetime):
        return 19
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in str(value if value is not None else ""))


def _fit_columns(sheet) -> None:
    for index, column in enumerate(sheet.iter_cols(values_only=True), 1):
        sheet.column_dimensions[get_column_letter(index)].width = min(60, max(width(v) for v in column) + 2)


def _header(sheet, headers: list[str]) -> None:
    sheet.append(headers)
    for cell in sheet[sheet.max_row]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(horizontal="center")


def build_daily_workbook(day: date, owner=None) -> bytes:
    """The XLSX file of ``day``'s reports (everyone's, or ``owner``'s), as bytes."""
    reports = list(reports_of(day, owner))
    book = Workbook()

    summary = book.active
    summary.title = "汇总"
    summary.append([f"{day.isoformat()} 报表日报"])
    summary["A1"].font = Font(bold=True, size=14)
    summary.append(["生成于", local(timezone.now())])
    summary["B2"].number_format = DATETIME_FORMAT
    summary.append([])
    _header(summary, SUMMARY_HEADERS)
    for status, label in Report.Status.choices:
        summary.append([label, sum(1 for r in reports if r.status == status)])
    summary.append(["合计", len(reports)])
    summary.cell(summary.max_row, 1).font = Font(bold=True)
    summary.column_dimensions["A"].width = 12
    summary.column_dimensions["B"].width = 22

    detail = book.create_sheet("报表明细")
    _header(detail, DETAIL_HEADERS)
    for report in reports:
        taken = round((report.finished - report.created).total_seconds(), 1) if report.finished else None
        detail.append([report.title, report.owner.get_username(), report.get_status_display(), report.rows,
                       local(report.created), local(report.finished), taken])
        for column in (5, 6):
            detail.cell(detail.max_row, column).number_format = DATETIME_FORMAT
    detail.freeze_panes = "A2"   # the header stays in view while scrolling
    _fit_columns(detail)

    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def mail_summary(day: date) -> str:
    """The body of the daily mail: the day's counts in one line per state."""
    reports = list(reports_of(day))
    lines = [f"{day.isoformat()} 的报表日报在附件里（{filename(day)}）。", ""]
    lines += [f"{label}：{sum(1 for r in reports if r.status == status)}" for status, label in Report.Status.choices]
    lines.append(f"合计：{len(reports)}")
    return "\n".join(lines) + "\n"
