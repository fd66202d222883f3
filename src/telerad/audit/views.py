"""The auditor's pages: search the trail, read one event, export a search as CSV.

Reading the trail is itself audited: every search, event page and export
appends an event before it responds.
"""

from __future__ import annotations

import csv
import datetime
from typing import Any, Iterator
from urllib.parse import urlencode

from django import forms
from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from telerad.accounts.roles import Permission, requires
from telerad.audit import atna
from telerad.audit.events import Action, event_hash, record_event
from telerad.audit.labels import ACTION_LABELS, OUTCOME_LABELS, action_label, outcome_label
from telerad.audit.models import AuditEvent, AuditEventPatient
from telerad.core import searches

EVENTS_PER_PAGE = 50
# Searches are posted and kept in the session, so that the patient IDs an
# auditor looks for stay out of URLs (see core.searches).
SEARCH_KIND = "audit"
EXPORT_CHUNK_SIZE = 2000
CSV_COLUMNS = [
    "sequence", "time", "user", "address", "action", "outcome", "patient_id", "study_instance_uid", "detail", "other_patient_ids", "hash",
]
DATETIME_WIDGET = forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}, format="%Y-%m-%dT%H:%M:%S")


class AuditSearchForm(forms.Form):
    user = forms.CharField(label=_("User or AE title"), required=False, max_length=150, help_text=_("Exact value."))
    patient_id = forms.CharField(label=_("Patient ID"), required=False, max_length=64, help_text=_("Exact value."))
    study_instance_uid = forms.CharField(label=_("Study instance UID"), required=False, max_length=64, help_text=_("Exact value."))
    action = forms.ChoiceField(
        label=_("Action"),
        required=False,
        choices=[("", _("Any action")), *((action.value, label) for action, label in ACTION_LABELS.items())],
    )
    outcome = forms.TypedChoiceField(
        label=_("Outcome"),
        required=False,
        coerce=int,
        empty_value=None,
        choices=[("", _("Any outcome")), *((int(outcome), label) for outcome, label in OUTCOME_LABELS.items())],
    )
    occurred_from = forms.DateTimeField(label=_("From (UTC)"), required=False, widget=DATETIME_WIDGET)
    occurred_to = forms.DateTimeField(label=_("To (UTC)"), required=False, widget=DATETIME_WIDGET, help_text=_("Inclusive."))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        start, end = cleaned.get("occurred_from"), cleaned.get("occurred_to")
        if start and end and start > end:
            self.add_error("occurred_from", _("The start is after the end. Swap the two times."))
        return cleaned

    def filter(self, events: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        """Narrow `events` to those that match every field filled in. Call it only on a valid form."""
        data = self.cleaned_data
        for field in ("user", "study_instance_uid", "action"):
            if data[field]:
                events = events.filter(**{field: data[field]})
        if data["patient_id"]:
            # The event's own patient, or one of the others it names, such as a search's results.
            named = AuditEventPatient.objects.filter(event=OuterRef("pk"), patient_id=data["patient_id"])
            events = events.filter(Q(patient_id=data["patient_id"]) | Exists(named))
        if data["outcome"] is not None:
            events = events.filter(outcome=data["outcome"])
        if data["occurred_from"]:
            events = events.filter(occurred_at__gte=data["occurred_from"])
        if data["occurred_to"]:
            events = events.filter(occurred_at__lte=data["occurred_to"])
        return events

    def audit_detail(self) -> str:
        """Describe the search for the audit trail: each field filled in, by name."""
        parts = []
        for name, value in self.cleaned_data.items():
            if value is None or value == "":
                continue
            if isinstance(value, datetime.datetime):
                value = atna.format_datetime(value)
            parts.append(f"{name}={value}")
        return "; ".join(parts)


def _record(request: HttpRequest, action: Action, detail: str, **identifiers: str) -> AuditEvent:
    return record_event(
        action=action,
        user=request.user.get_username(),
        address=request.META.get("REMOTE_ADDR", ""),
        detail=detail,
        **identifiers,
    )


def _searched_identifiers(form: AuditSearchForm) -> dict[str, str]:
    """Return the patient ID and study UID searched for, so that the search appears in their own trail."""
    return {field: form.cleaned_data[field] for field in ("patient_id", "study_instance_uid") if form.cleaned_data[field]}


def _search_form(request: HttpRequest) -> AuditSearchForm | None:
    """Return the form of the search named by the `search` parameter (unbound without one), or None for an unknown key."""
    key = request.GET.get("search", "")
    if not key:
        return AuditSearchForm()
    fields = searches.recall(request, SEARCH_KIND, key)
    return AuditSearchForm(fields) if fields is not None else None


@requires(Permission.VIEW_AUDIT)
def event_list(request: HttpRequest) -> HttpResponse:
    list_url = reverse("audit:event-list")
    if request.method == "POST":
        posted = AuditSearchForm(request.POST)
        if not posted.is_valid():
            return render(request, "audit/event_list.html", {"form": posted, "page": None})
        return HttpResponseRedirect(f"{list_url}?{urlencode({'search': searches.remember(request, SEARCH_KIND, posted)})}", status=303)

    form = _search_form(request)
    if form is None:
        messages.info(request, _("That search is no longer available, for example after signing in again. Search again."))
        return HttpResponseRedirect(list_url)
    if form.is_bound and not form.is_valid():
        return render(request, "audit/event_list.html", {"form": form, "page": None})

    events = AuditEvent.objects.order_by("-sequence")
    identifiers: dict[str, str] = {}
    detail = ""
    if form.is_bound:
        events = form.filter(events)
        identifiers = _searched_identifiers(form)
        detail = form.audit_detail()
    page = Paginator(events, EVENTS_PER_PAGE).get_page(request.GET.get("page"))
    # Read the page before recording the search, so that the search does not list itself.
    rows = [(event, action_label(event.action), outcome_label(event.outcome)) for event in page.object_list]
    _record(request, Action.AUDIT_SEARCHED, "; ".join(filter(None, [detail, f"page={page.number}"])), **identifiers)

    context = {
        "form": form,
        "search_key": request.GET.get("search", ""),
        "page": page,
        "page_range": page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1),
        "rows": rows,
    }
    return render(request, "audit/event_list.html", context)


@requires(Permission.VIEW_AUDIT)
def event_detail(request: HttpRequest, sequence: int) -> HttpResponse:
    event = get_object_or_404(AuditEvent, sequence=sequence)
    _record(
        request,
        Action.AUDIT_EVENT_VIEWED,
        f"event {event.sequence}",
        patient_id=event.patient_id,
        study_instance_uid=event.study_instance_uid,
    )
    context = {
        "event": event,
        "action": action_label(event.action),
        "outcome": outcome_label(event.outcome),
        # Only the content is checked here; `telerad audit verify` also checks the links between events.
        "hash_matches": event_hash(event) == event.hash,
    }
    return render(request, "audit/event_detail.html", context)


class _LineBuffer:
    """A file-like object whose write returns the line, so that csv.writer can feed a generator."""

    def write(self, line: str) -> str:
        return line


def _csv_lines(events: QuerySet[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_LineBuffer())
    yield writer.writerow(CSV_COLUMNS)
    for event in events.iterator(chunk_size=EXPORT_CHUNK_SIZE):
        yield writer.writerow([
            event.sequence,
            atna.format_datetime(event.occurred_at),
            event.user,
            event.address,
            event.action,
            event.outcome,
            event.patient_id,
            event.study_instance_uid,
            event.detail,
            # One line per patient in the trail; a space-separated list reads better in a spreadsheet cell.
            " ".join(event.other_patient_ids.split("\n")) if event.other_patient_ids else "",
            event.hash,
        ])


@requires(Permission.VIEW_AUDIT)
def event_export(request: HttpRequest) -> HttpResponse:
    """Stream the events that match the search as CSV, in sequence order, one database chunk at a time."""
    form = _search_form(request)
    if form is None:
        return HttpResponseBadRequest("That search is no longer available; search again, then export.\n", content_type="text/plain; charset=utf-8")
    if form.is_bound and not form.is_valid():
        errors = "; ".join(f"{name}: {' '.join(texts)}" for name, texts in form.errors.items())
        return HttpResponseBadRequest(f"Invalid search: {errors}\n", content_type="text/plain; charset=utf-8")

    detail = form.audit_detail() if form.is_bound else ""
    identifiers = _searched_identifiers(form) if form.is_bound else {}
    export_event = _record(request, Action.AUDIT_EXPORTED, f"CSV export; {detail}" if detail else "CSV export", **identifiers)
    # The export contains the trail as it was before this request.
    events = AuditEvent.objects.filter(sequence__lt=export_event.sequence).order_by("sequence")
    if form.is_bound:
        events = form.filter(events)

    filename = timezone.now().strftime("telerad-audit-%Y%m%dT%H%M%SZ.csv")
    response = StreamingHttpResponse(_csv_lines(events), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
