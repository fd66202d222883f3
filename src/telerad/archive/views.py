"""Pages for browsing the archive: the study list with its search, and one study with its series and instances.

Every page that shows patient data writes an audit event before it renders.
"""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.core.paginator import Paginator
from django.db.models import F, Prefetch, Q, QuerySet
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from telerad.accounts.roles import Permission, requires
from telerad.archive.models import Instance, Patient, Series, Study
from telerad.archive.query import WildcardMatch, name_search_condition
from telerad.audit import events as audit
from telerad.core import searches

STUDIES_PER_PAGE = 50
# The list's order, served by the index study_newest_first.
NEWEST_FIRST = ("-study_date", "-study_time", "-id")
# Maximum lengths (PS3.5 6.2): a PN value of three 64-character groups with
# their two "=" separators, a Long String (LO) and a Short String (SH).
PERSON_NAME_MAX_LENGTH = 3 * 64 + 2
LONG_STRING_MAX_LENGTH = 64
SHORT_STRING_MAX_LENGTH = 16
# Searches are posted and kept in the session (see core.searches).
SEARCH_KIND = "studies"


def _has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


def _text_condition(field: str, text: str) -> Q:
    """Match `text` exactly (single value matching, PS3.4 C.2.2.2.1), or as a pattern when it has a wildcard."""
    if _has_wildcard(text):
        return Q(WildcardMatch(F(field), text))
    return Q(**{field: text})


def _name_condition(text: str) -> Q:
    return name_search_condition("patient_name_folded", text)


def _dicom_date(value: datetime.date) -> str:
    return value.strftime("%Y%m%d")


class StudySearchForm(forms.Form):
    patient_name = forms.CharField(
        label=_("Patient name"),
        required=False,
        max_length=PERSON_NAME_MAX_LENGTH,
        help_text=_("Matches the start of any part of the name, ignoring case and accents. Use * as a wildcard."),
    )
    patient_id = forms.CharField(
        label=_("Patient ID"),
        required=False,
        max_length=LONG_STRING_MAX_LENGTH,
        help_text=_("Exact value; use * or ? as wildcards."),
    )
    accession_number = forms.CharField(
        label=_("Accession number"),
        required=False,
        max_length=SHORT_STRING_MAX_LENGTH,
        help_text=_("Exact value; use * or ? as wildcards."),
    )
    study_date_from = forms.DateField(
        label=_("Study date from"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    study_date_to = forms.DateField(
        label=_("Study date to"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        start, end = cleaned.get("study_date_from"), cleaned.get("study_date_to")
        if start and end and start > end:
            # Attached to the start date, so that the message appears beside the
            # date fields and the input is marked invalid for screen readers.
            self.add_error("study_date_from", _("The start date is after the end date. Swap the two dates."))
        return cleaned

    def has_criteria(self) -> bool:
        """Return whether any search field is filled in. Call it only on a valid form."""
        return any(value not in (None, "") for value in self.cleaned_data.values())

    def filter(self, studies: QuerySet[Study]) -> QuerySet[Study]:
        """Narrow `studies` to those that match every field filled in. Call it only on a valid form."""
        data = self.cleaned_data
        # Patient criteria select patients first, then their studies through the
        # index on Study.patient. Without the subquery, SQLite walks the whole
        # study_newest_first index when few patients match.
        patients = Patient.objects.all()
        if data["patient_name"]:
            patients = patients.filter(_name_condition(data["patient_name"]))
        if data["patient_id"]:
            patients = patients.filter(_text_condition("patient_id", data["patient_id"]))
        if data["patient_name"] or data["patient_id"]:
            studies = studies.filter(patient__in=patients.values("pk"))
        if data["accession_number"]:
            studies = studies.filter(_text_condition("accession_number", data["accession_number"]))

        # PS3.4 C.2.2.2.5: range matching. DA values are YYYYMMDD text, so
        # text order is date order. A study without a date is in no range.
        if data["study_date_from"] or data["study_date_to"]:
            studies = studies.exclude(study_date="")
        if data["study_date_from"]:
            studies = studies.filter(study_date__gte=_dicom_date(data["study_date_from"]))
        if data["study_date_to"]:
            studies = studies.filter(study_date__lte=_dicom_date(data["study_date_to"]))
        return studies

    def audit_detail(self, page_number: int) -> str:
        """Describe the search for the audit trail: identifiers and dates, but not the name searched for."""
        data = self.cleaned_data
        parts = [f"{name}={data[name]}" for name in ("patient_id", "accession_number") if data[name]]
        if data["patient_name"]:
            parts.append("patient_name=(not recorded)")
        start, end = data["study_date_from"], data["study_date_to"]
        if start or end:
            parts.append(f"study_date={_dicom_date(start) if start else ''}-{_dicom_date(end) if end else ''}")
        parts.append(f"page={page_number}")
        return "; ".join(parts)


def _record_view(request: HttpRequest, action: audit.Action, *, patient_ids: list[str] | None = None, **identifiers: str) -> None:
    audit.record_event(
        action=action,
        user=request.user.get_username(),
        address=request.META.get("REMOTE_ADDR", ""),
        patient_ids=patient_ids or (),
        **identifiers,
    )


@requires(Permission.VIEW_STUDIES)
def study_list(request: HttpRequest) -> HttpResponse:
    list_url = reverse("archive:study-list")
    if request.method == "POST":
        form = StudySearchForm(request.POST)
        if not form.is_valid():
            return render(request, "archive/study_list.html", {"form": form, "page": None})
        if not form.has_criteria():
            return HttpResponseRedirect(list_url, status=303)
        return HttpResponseRedirect(f"{list_url}?{urlencode({'search': searches.remember(request, SEARCH_KIND, form)})}", status=303)

    form = StudySearchForm()
    key = request.GET.get("search", "")
    if key:
        fields = searches.recall(request, SEARCH_KIND, key)
        if fields is None:
            messages.info(request, _("That search is no longer available, for example after signing in again. Search again."))
            return HttpResponseRedirect(list_url)
        form = StudySearchForm(fields)
        if not form.is_valid():
            return render(request, "archive/study_list.html", {"form": form, "page": None})

    studies = Study.objects.select_related("patient").order_by(*NEWEST_FIRST)
    if form.is_bound:
        studies = form.filter(studies)
    page = Paginator(studies, STUDIES_PER_PAGE).get_page(request.GET.get("page"))

    detail = form.audit_detail(page.number) if form.is_bound else f"page={page.number}"
    # The patients on the page, so that an auditor finds this view by any of them.
    shown = [study.patient.patient_id for study in page.object_list]
    _record_view(request, audit.Action.STUDY_LIST_VIEWED, detail=detail, patient_ids=shown)
    page_range = page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1)
    context = {
        "form": form,
        "page": page,
        "page_range": page_range,
        # An empty list reads "no studies are stored" unless a search narrowed it.
        "searching": form.is_bound and form.has_criteria(),
    }
    return render(request, "archive/study_list.html", context)


@requires(Permission.VIEW_STUDIES)
def study_detail(request: HttpRequest, study_pk: int) -> HttpResponse:
    study = get_object_or_404(Study.objects.select_related("patient"), pk=study_pk)
    instances = Instance.objects.order_by(F("instance_number").asc(nulls_last=True), "id").only(
        "series_id", "sop_instance_uid", "sop_class_uid", "instance_number", "transfer_syntax_uid",
        "rows", "columns", "number_of_frames", "file_size", "received_at",
    )
    series = (
        Series.objects.filter(study=study)
        .order_by(F("series_number").asc(nulls_last=True), "id")
        .prefetch_related(Prefetch("instances", queryset=instances))
    )

    _record_view(
        request,
        audit.Action.STUDY_VIEWED,
        patient_id=study.patient.patient_id,
        study_instance_uid=study.study_instance_uid,
    )
    # Technologists complete an exam's details from its study page. A study that no exam includes has no link.
    exam_link = getattr(study, "exam_link", None)
    context = {"study": study, "patient": study.patient, "series_list": series, "exam_id": exam_link.exam_id if exam_link else None}
    return render(request, "archive/study_detail.html", context)
