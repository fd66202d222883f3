"""The queries of the clinicians' portal: a clinician's exams with their report status, and one exam's signed report.

Clinicians see the state of the report in four steps and the signed final
report with its addenda. Drafts, preliminary reports and whatever a
radiologist is writing stay hidden: an exam being read shows only that.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Exists, F, Max, OuterRef, Q, QuerySet
from django.utils.translation import gettext_lazy as _

from telerad.archive.models import Patient, Study
from telerad.archive.query import WildcardMatch, name_search_condition
from telerad.clinicians import critical
from telerad.clinicians.access import visible_exams
from telerad.clinicians.models import CriticalResult
from telerad.reading.models import Exam, ExamStatus, SignedKind, SignedReport

EXAMS_PER_PAGE = 50
# Maximum lengths (PS3.5 6.2): a PN value of three 64-character groups with
# their two "=" separators, a Long String (LO) and a Short String (SH).
PERSON_NAME_MAX_LENGTH = 3 * 64 + 2
LONG_STRING_MAX_LENGTH = 64
SHORT_STRING_MAX_LENGTH = 16

# The report status shown to clinicians, by exam status.
NOT_REPORTED = "not-reported"
BEING_REPORTED = "being-reported"
FINAL = "final"
ADDENDED = "addended"
REPORT_STATUS_LABELS = {
    NOT_REPORTED: _("Not yet reported"),
    BEING_REPORTED: _("Being reported"),
    FINAL: _("Final"),
    ADDENDED: _("Addended"),
}
REPORT_STATUS_OF_EXAM = {
    ExamStatus.UNREAD: NOT_REPORTED,
    ExamStatus.IN_PROGRESS: BEING_REPORTED,
    ExamStatus.DRAFT: BEING_REPORTED,
    # A preliminary report waits for an attending radiologist's final one.
    ExamStatus.PRELIMINARY: BEING_REPORTED,
    ExamStatus.FINAL: FINAL,
    ExamStatus.ADDENDED: ADDENDED,
}
DELIVERED_KINDS = (SignedKind.FINAL, SignedKind.ADDENDUM)


def report_status(exam: Exam) -> str:
    return REPORT_STATUS_OF_EXAM.get(ExamStatus(exam.status), NOT_REPORTED)


def report_status_label(exam: Exam) -> str:
    return str(REPORT_STATUS_LABELS[report_status(exam)])


def _identifier_condition(field: str, text: str) -> Q:
    # PS3.4 C.2.2.2.4: * and ? are wild cards; any other value must match exactly.
    if "*" in text or "?" in text:
        return Q(WildcardMatch(F(field), text))
    return Q(**{field: text})


class PortalSearchForm(forms.Form):
    """The portal's search, posted and kept in the session (see core.searches), so that names stay out of addresses."""

    patient_name = forms.CharField(
        label=_("Patient name"), required=False, max_length=PERSON_NAME_MAX_LENGTH,
        help_text=_("Matches the start of any part of the name, ignoring case and accents."),
    )
    patient_id = forms.CharField(
        label=_("Patient ID"), required=False, max_length=LONG_STRING_MAX_LENGTH, help_text=_("Exact value; use * or ? as wildcards."),
    )
    accession_number = forms.CharField(
        label=_("Accession number"), required=False, max_length=SHORT_STRING_MAX_LENGTH, help_text=_("Exact value; use * or ? as wildcards."),
    )

    def has_criteria(self) -> bool:
        """Return whether any field is filled in. Call it only on a valid form."""
        return any(self.cleaned_data.values())

    def filter(self, exams: QuerySet[Exam]) -> QuerySet[Exam]:
        """Narrow `exams` to those matching every field filled in. Call it only on a valid form."""
        data = self.cleaned_data
        patients = Patient.objects.all()
        if data["patient_name"]:
            patients = patients.filter(name_search_condition("patient_name_folded", data["patient_name"]))
        if data["patient_id"]:
            patients = patients.filter(_identifier_condition("patient_id", data["patient_id"]))
        if data["patient_name"] or data["patient_id"]:
            exams = exams.filter(patient__in=patients.values("pk"))
        if data["accession_number"]:
            exams = exams.filter(_identifier_condition("accession_number", data["accession_number"]))
        return exams

    def audit_detail(self) -> str:
        """Describe the search for the audit trail: identifiers, but not the name searched for."""
        data = self.cleaned_data
        parts = [f"{name}={data[name]}" for name in ("patient_id", "accession_number") if data[name]]
        if data["patient_name"]:
            parts.append("patient_name=(not recorded)")
        return "; ".join(parts)


def _awaiting_acknowledgement(user: AbstractBaseUser) -> QuerySet[CriticalResult]:
    return CriticalResult.objects.filter(acknowledged_at__isnull=True).filter(Q(recipient=user) | Q(escalated_to=user))


def portal_exams(user: AbstractBaseUser, search: PortalSearchForm | None = None) -> QuerySet[Exam]:
    """Return the exams `user` may see, newest first, with the flags the list shows.

    Each exam carries `study_date` (its newest study's Study Date, None when
    no study has one), `has_critical_result`, `has_open_critical_result`
    (one that nobody acknowledged yet) and `awaiting_acknowledgement` (a
    critical result sent to the user and not acknowledged yet).
    """
    exams = visible_exams(user)
    if search is not None and search.is_bound and search.is_valid():
        exams = search.filter(exams)
    dated_study = ~Q(exam_studies__study__study_date="")
    return (
        exams.select_related("patient")
        .annotate(
            study_date=Max("exam_studies__study__study_date", filter=dated_study),
            has_critical_result=Exists(CriticalResult.objects.filter(exam=OuterRef("pk"))),
            has_open_critical_result=Exists(CriticalResult.objects.filter(exam=OuterRef("pk"), acknowledged_at__isnull=True)),
            awaiting_acknowledgement=Exists(_awaiting_acknowledgement(user).filter(exam=OuterRef("pk"))),
        )
        # Imported images can arrive years after the scan, so the Study Date orders first.
        .order_by(F("study_date").desc(nulls_last=True), "-study_received_at", "-pk")
    )


def exam_studies(exam: Exam) -> list[Study]:
    return list(Study.objects.filter(exam_link__exam=exam).order_by("study_date", "study_time", "pk"))


def delivered_reports(exam: Exam) -> list[SignedReport]:
    """Return the exam's final report and addenda as the reading pages list them: addenda newest first, then the final report."""
    reports = list(SignedReport.objects.filter(exam=exam, kind__in=DELIVERED_KINDS).select_related("signer"))
    reports.sort(key=lambda report: (report.signed_at, report.pk), reverse=True)
    reports.sort(key=lambda report: report.kind != SignedKind.ADDENDUM)
    return reports


def critical_results(exam: Exam, user: AbstractBaseUser) -> list[tuple[CriticalResult, bool]]:
    """Return the exam's critical results, oldest first, each with whether `user` may acknowledge it now."""
    results = CriticalResult.objects.filter(exam=exam).select_related("signed_report", "acknowledged_by", "recipient", "escalated_to")
    return [
        (result, result.acknowledged_at is None and critical.may_acknowledge(user, result))
        for result in results.order_by("opened_at", "pk")
    ]


def audit_identifiers(exam: Exam, studies: list[Study]) -> dict[str, Any]:
    return {"patient_id": exam.patient.patient_id, "study_instance_uid": studies[0].study_instance_uid if studies else ""}
