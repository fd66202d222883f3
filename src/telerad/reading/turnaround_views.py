"""The turnaround page and its CSV export.

Users who manage reading see every radiologist's figures. Other readers see
only the exams they read (see turnaround.exams_read_by).
"""

from __future__ import annotations

import csv
import datetime
from typing import Iterable, Iterator

from django import forms
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET

from telerad.accounts.roles import Permission, has_permission, requires
from telerad.audit import events as audit
from telerad.reading import turnaround

DEFAULT_DAYS = 30
# Maximum length, in days, of the range of one page or export.
MAX_RANGE_DAYS = 3660
# Rows of the CSV export sent in one piece of the streamed response.
CSV_ROWS_PER_CHUNK = 500


class RangeForm(forms.Form):
    date_from = forms.DateField(label=gettext_lazy("Images received from"), widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label=gettext_lazy("to (included)"), widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end:
            if start > end:
                raise forms.ValidationError(_("The start date %(start)s is after the end date %(end)s.") % {"start": start, "end": end})
            if (end - start).days > MAX_RANGE_DAYS:
                raise forms.ValidationError(_("Choose a range of at most %(days)s days.") % {"days": MAX_RANGE_DAYS})
        return cleaned


def _range_form(request: HttpRequest) -> RangeForm:
    today = timezone.localdate()
    data = {
        "date_from": request.GET.get("date_from") or (today - datetime.timedelta(days=DEFAULT_DAYS - 1)).isoformat(),
        "date_to": request.GET.get("date_to") or today.isoformat(),
    }
    return RangeForm(data)


def _exams_for(request: HttpRequest, form: RangeForm):
    exams = turnaround.exams_in_range(form.cleaned_data["date_from"], form.cleaned_data["date_to"])
    if not has_permission(request.user, Permission.MANAGE_READING):
        exams = turnaround.exams_read_by(exams, request.user)
    return exams


@requires(Permission.READ_EXAMS)
@require_GET
def turnaround_page(request: HttpRequest) -> HttpResponse:
    form = _range_form(request)
    context = {
        "form": form,
        "metrics": turnaround.METRICS,
        "all_readers": has_permission(request.user, Permission.MANAGE_READING),
        "tables": [],
    }
    if not form.is_valid():
        return render(request, "reading/turnaround.html", context, status=400)
    figures = turnaround.figures_by_dimension(_exams_for(request, form))
    for dimension in turnaround.DIMENSIONS:
        groups = figures[dimension.key]
        signed = [(group.label, group.metrics["signed"].median) for group in groups]
        chart = turnaround.bar_chart(_("Median minutes from images received to signed report, %(dimension)s") % {"dimension": str(dimension.label).lower()}, signed)
        context["tables"].append({"dimension": dimension, "groups": groups, "chart": chart})
    return render(request, "reading/turnaround.html", context)


class _Echo:
    """A file-like object whose write returns the text, so that csv.writer output can be streamed."""

    def write(self, value: str) -> str:
        return value


def _csv_chunks(rows: Iterable[tuple[str, ...]]) -> Iterator[str]:
    """Yield the CSV text of `rows` in pieces of CSV_ROWS_PER_CHUNK rows, rather than one small piece per row."""
    writer = csv.writer(_Echo())
    chunk = []
    for row in rows:
        chunk.append(writer.writerow(row))
        if len(chunk) == CSV_ROWS_PER_CHUNK:
            yield "".join(chunk)
            chunk = []
    if chunk:
        yield "".join(chunk)


@requires(Permission.READ_EXAMS)
@require_GET
def turnaround_csv(request: HttpRequest) -> HttpResponse:
    """Stream one CSV row per exam of the range, with its timestamps and durations in minutes."""
    form = _range_form(request)
    if not form.is_valid():
        problems = " ".join(error for errors in form.errors.values() for error in errors)
        return HttpResponse(problems + "\n", status=400, content_type="text/plain; charset=utf-8")
    start, end = form.cleaned_data["date_from"], form.cleaned_data["date_to"]
    scope = "all" if has_permission(request.user, Permission.MANAGE_READING) else "own"
    audit.record_event(
        action=audit.Action.TURNAROUND_EXPORTED, user=request.user.get_username(), address=request.META.get("REMOTE_ADDR", ""),
        detail=f"from={start}; to={end}; readers={scope}",
    )
    response = StreamingHttpResponse(_csv_chunks(turnaround.csv_rows(_exams_for(request, form))), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="turnaround-{start}-{end}.csv"'
    return response
