"""The FHIR R4 DiagnosticReport of an exam's report, checked with fhir.resources.

One resource stands for the report of one exam: its id is the exam's, its
content is the latest final report or addendum, and its status turns from
final to amended with the first addendum. fhir.resources ships R4B, whose
DiagnosticReport, Patient and Practitioner have the same elements as R4.
"""

from __future__ import annotations

import base64
import datetime
import json

from django.conf import settings
from django.utils import timezone
from fhir.resources.R4B.diagnosticreport import DiagnosticReport

from telerad.reading.delivery.document import ReportDocument
from telerad.reading.delivery.pdf import render_pdf
from telerad.reading.models import SignedKind, SignedReport

FHIR_JSON = "application/fhir+json"
LOINC = "http://loinc.org"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
PATIENT_REFERENCE = "patient"

# DICOM sex to FHIR AdministrativeGender.
GENDERS = {"M": "male", "F": "female", "O": "other"}


def latest_delivered(exam_id: int) -> SignedReport | None:
    """Return the exam's latest final report or addendum, the content of its DiagnosticReport."""
    return (
        SignedReport.objects.filter(exam_id=exam_id, kind__in=[SignedKind.FINAL, SignedKind.ADDENDUM])
        .select_related("signer")
        .order_by("-signed_at", "-id")
        .first()
    )


def _fhir_date(dicom_date: str) -> str | None:
    try:
        return datetime.datetime.strptime(dicom_date, "%Y%m%d").date().isoformat()
    except ValueError:
        return None


def _human_name(dicom_name: str) -> dict:
    family, _, rest = dicom_name.split("=")[0].partition("^")
    given = [name for name in rest.split("^")[:2] if name]
    name: dict = {"text": " ".join([*given, family]).strip()}
    if family:
        name["family"] = family
    if given:
        name["given"] = given
    return name


def _patient(document: ReportDocument) -> dict:
    patient = document.patient
    identifier: dict = {"type": {"coding": [{"system": V2_0203, "code": "MR"}]}, "value": patient.patient_id}
    if patient.issuer_of_patient_id:
        identifier["assigner"] = {"display": patient.issuer_of_patient_id}
    resource: dict = {"resourceType": "Patient", "id": PATIENT_REFERENCE, "identifier": [identifier]}
    if patient.patient_name:
        resource["name"] = [_human_name(patient.patient_name)]
    if patient.patient_sex:
        resource["gender"] = GENDERS.get(patient.patient_sex, "unknown")
    birth_date = _fhir_date(patient.patient_birth_date)
    if birth_date:
        resource["birthDate"] = birth_date
    return resource


def _practitioner(signer, reference: str) -> dict:
    name: dict = {"text": (signer.get_full_name() or signer.get_username()).strip()}
    if signer.last_name:
        name["family"] = signer.last_name
    if signer.first_name:
        name["given"] = [signer.first_name]
    return {"resourceType": "Practitioner", "id": reference, "identifier": [{"value": signer.get_username()}], "name": [name]}


def _instant(moment: datetime.datetime) -> str:
    return timezone.localtime(moment).isoformat(timespec="seconds")


def build_diagnostic_report(document: ReportDocument, pdf: bytes | None = None) -> DiagnosticReport:
    """Build and validate the DiagnosticReport of `document`; pydantic's ValidationError means telerad built it wrong."""
    config = settings.TELERAD
    exam = document.exam
    signers = []
    for part in document.parts:
        if part.signed.signer not in signers:
            signers.append(part.signed.signer)
    practitioners = [_practitioner(signer, f"interpreter-{index}") for index, signer in enumerate(signers, start=1)]
    pdf = render_pdf(document) if pdf is None else pdf

    resource: dict = {
        "resourceType": "DiagnosticReport",
        "id": str(exam.pk),
        "meta": {"versionId": str(document.signed.pk), "lastUpdated": _instant(document.signed.signed_at)},
        "contained": [_patient(document), *practitioners],
        "status": "amended" if document.is_amended else "final",
        "category": [{"coding": [{"system": V2_0074, "code": "RAD", "display": "Radiology"}]}],
        "code": {
            "coding": [{"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}],
            "text": document.exam_description or "Diagnostic imaging study",
        },
        "subject": {"reference": f"#{PATIENT_REFERENCE}"},
        "issued": _instant(document.signed.signed_at),
        "performer": [{"display": config.department_name}],
        "resultsInterpreter": [{"reference": f"#{practitioner['id']}"} for practitioner in practitioners],
        "presentedForm": [{
            "contentType": "application/pdf",
            "data": base64.b64encode(pdf).decode("ascii"),
            "title": f"Radiology report {exam.accession_number}".strip(),
            "creation": _instant(document.signed.signed_at),
        }],
    }
    if exam.accession_number:
        resource["identifier"] = [{
            "type": {"coding": [{"system": V2_0203, "code": "ACSN"}]},
            "system": config.fhir_accession_system,
            "value": exam.accession_number,
        }]
    effective = _fhir_date(document.study.study_date) if document.study is not None else None
    if effective:
        resource["effectiveDateTime"] = effective
    if document.conclusion:
        resource["conclusion"] = document.conclusion
    return DiagnosticReport.model_validate(resource)


def to_json(resource) -> str:
    return resource.model_dump_json()


def search_bundle(resources: list[DiagnosticReport], *, self_url: str, base_url: str) -> str:
    """Return a searchset Bundle of `resources` as JSON."""
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "link": [{"relation": "self", "url": self_url}],
        "entry": [
            {"fullUrl": f"{base_url}DiagnosticReport/{resource.id}", "resource": json.loads(to_json(resource)), "search": {"mode": "match"}}
            for resource in resources
        ],
    }
    return json.dumps(bundle, ensure_ascii=False)
