"""The report PDF for browsers and the FHIR DiagnosticReport API for programs.

Both serve clinicians too, limited to the exams they may see (see
telerad.clinicians.access). For them, a report of another exam, and a
preliminary report, is not found, as an unknown one is.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _

from telerad.accounts.roles import Permission, requires
from telerad.audit import events as audit
from telerad.clinicians.access import AnyUser, can_view_exam, sees_all_studies, visible_exams
from telerad.dicomweb.http import client_address, endpoint
from telerad.reading.delivery.document import build_document
from telerad.reading.delivery.fhir import FHIR_JSON, build_diagnostic_report, latest_delivered, search_bundle, to_json
from telerad.reading.delivery.pdf import render_pdf
from telerad.reading.models import Exam, SignedKind, SignedReport

# Most DiagnosticReports one search returns.
MAX_SEARCH_RESULTS = 100


def _record(request: HttpRequest, action: audit.Action, document, detail: str) -> None:
    audit.record_event(
        action=action,
        user=request.user.get_username(),
        address=client_address(request),
        patient_id=document.patient.patient_id,
        study_instance_uid=document.study.study_instance_uid if document.study is not None else "",
        detail=detail,
    )


@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def report_pdf(request: HttpRequest, signed_id: int) -> HttpResponse:
    signed = get_object_or_404(SignedReport.objects.select_related("signer"), pk=signed_id)
    if not _may_download(request.user, signed):
        raise Http404("signed report not found among the user's exams")
    document = build_document(signed)
    pdf = render_pdf(document)
    _record(request, audit.Action.REPORT_EXPORTED, document, f"PDF of signed report {signed.pk}, accession {document.exam.accession_number}")
    response = HttpResponse(pdf, content_type="application/pdf")
    name = f"report-{document.exam.accession_number or document.exam.pk}-{signed.pk}.pdf"
    response["Content-Disposition"] = f'inline; filename="{_safe_filename(name)}"'
    response["Cache-Control"] = "no-store"
    return response


def _may_download(user: AnyUser, signed: SignedReport) -> bool:
    """Return whether `user` may download the PDF: any signed report for VIEW_STUDIES, a delivered one of their exams for clinicians."""
    if sees_all_studies(user):
        return True
    return signed.kind != SignedKind.PRELIMINARY and can_view_exam(user, signed.exam_id)


def _safe_filename(name: str) -> str:
    return "".join(character if character.isalnum() or character in "-._" else "_" for character in name)


def _fhir_response(body: str, *, status: int = 200) -> HttpResponse:
    response = HttpResponse(body, status=status, content_type=f"{FHIR_JSON}; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


def operation_outcome(status: int, code: str, message: str) -> HttpResponse:
    """Return a FHIR OperationOutcome with one error issue; `code` is from the FHIR IssueType value set."""
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": message}]}
    return _fhir_response(json.dumps(outcome), status=status)


@endpoint
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def read_diagnostic_report(request: HttpRequest, report_id: int) -> HttpResponse:
    signed = latest_delivered(report_id) if can_view_exam(request.user, report_id) else None
    if signed is None:
        return operation_outcome(404, "not-found", _("DiagnosticReport/%(id)s does not exist.") % {"id": report_id})
    document = build_document(signed)
    resource = build_diagnostic_report(document)
    _record(request, audit.Action.REPORT_EXPORTED, document, f"FHIR DiagnosticReport/{report_id} (signed report {signed.pk}), accession {document.exam.accession_number}")
    return _fhir_response(to_json(resource))


@endpoint
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def search_diagnostic_reports(request: HttpRequest) -> HttpResponse:
    identifier = request.GET.get("identifier", "").strip()
    if not identifier:
        return operation_outcome(400, "required", _("Search by accession number with ?identifier=ACCESSION or ?identifier=SYSTEM|ACCESSION."))
    system, separator, value = identifier.rpartition("|")
    if separator and system and system != settings.TELERAD.fhir_accession_system:
        exams = Exam.objects.none()
    else:
        exams = visible_exams(request.user).filter(accession_number=value).order_by("pk")
    resources = []
    found = []
    for exam in exams[:MAX_SEARCH_RESULTS]:
        signed = latest_delivered(exam.pk)
        if signed is None:
            continue
        document = build_document(signed)
        resources.append(build_diagnostic_report(document))
        found.append(document)
    audit.record_event(
        action=audit.Action.QUERY,
        user=request.user.get_username(),
        address=client_address(request),
        patient_id=found[0].patient.patient_id if len(found) == 1 else "",
        study_instance_uid=found[0].study.study_instance_uid if len(found) == 1 and found[0].study is not None else "",
        detail=f"FHIR DiagnosticReport search identifier={identifier}: {len(resources)} found",
    )
    base = request.build_absolute_uri(request.path).removesuffix("DiagnosticReport")
    return _fhir_response(search_bundle(resources, self_url=request.build_absolute_uri(), base_url=base))
