from __future__ import annotations

import base64
import datetime
import json

from django.test import Client
from django.utils import timezone
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport

from telerad.accounts.tokens import create_token
from telerad.audit.models import AuditEvent
from telerad.reading.delivery.document import build_document
from telerad.reading.delivery.fhir import build_diagnostic_report

from .delivery_support import final_report, make_exam, radiologist, sign, store_sample_study  # noqa: F401
from .test_delivery_pdf import pdf_text


def test_diagnostic_report_content(final_report, settings):
    resource = json.loads(build_diagnostic_report(build_document(final_report)).model_dump_json())

    DiagnosticReport.model_validate(resource)
    assert resource["id"] == str(final_report.exam_id)
    assert resource["status"] == "final"
    assert resource["code"]["text"] == "CT head without contrast"
    assert resource["identifier"][0]["value"] == "ACC1001"
    assert resource["identifier"][0]["system"] == settings.TELERAD.fhir_accession_system
    assert resource["conclusion"] == "No acute intracranial abnormality."
    assert resource["effectiveDateTime"] == "2004-01-19"
    assert resource["issued"].startswith(final_report.signed_at.astimezone().strftime("%Y-%m-%dT"))
    patient = next(item for item in resource["contained"] if item["resourceType"] == "Patient")
    assert resource["subject"]["reference"] == f"#{patient['id']}"
    assert patient["identifier"][0]["value"] == "1CT1"
    assert patient["name"][0]["family"] == "CompressedSamples"
    interpreter = next(item for item in resource["contained"] if item["resourceType"] == "Practitioner")
    assert resource["resultsInterpreter"] == [{"reference": f"#{interpreter['id']}"}]
    assert interpreter["name"][0]["family"] == "Smith"
    form = resource["presentedForm"][0]
    assert form["contentType"] == "application/pdf"
    assert base64.b64decode(form["data"]).startswith(b"%PDF")


def test_addendum_makes_report_amended(final_report, radiologist):
    addendum = sign(final_report.exam, radiologist, kind="addendum", sections={"addendum": "Small lesion."})

    resource = build_diagnostic_report(build_document(addendum))

    assert resource.status == "amended"
    assert resource.meta.versionId == str(addendum.pk)


def test_amended_conclusion_leads_with_addenda(final_report, radiologist):
    first_at = timezone.make_aware(datetime.datetime(2026, 3, 2, 10, 15))
    first = sign(final_report.exam, radiologist, kind="addendum", sections={"addendum": "Small lesion."}, at=first_at)
    second = sign(
        final_report.exam, radiologist, kind="addendum", sections={"addendum": "The lesion is a haemorrhage."},
        at=first_at + datetime.timedelta(minutes=30),
    )

    resource = build_diagnostic_report(build_document(second))

    assert resource.conclusion == (
        "Addendum signed 2026-03-02 10:45:\nThe lesion is a haemorrhage.\n\n"
        "Addendum signed 2026-03-02 10:15:\nSmall lesion.\n\n"
        "Impression:\nNo acute intracranial abnormality."
    )
    assert build_diagnostic_report(build_document(first)).conclusion == (
        "Addendum signed 2026-03-02 10:15:\nSmall lesion.\n\n"
        "Impression:\nNo acute intracranial abnormality."
    )


def test_amended_presented_form_matches_conclusion(final_report, radiologist):
    addendum = sign(final_report.exam, radiologist, kind="addendum", sections={"addendum": "The lesion is a haemorrhage."})

    resource = json.loads(build_diagnostic_report(build_document(addendum)).model_dump_json())

    text = pdf_text(base64.b64decode(resource["presentedForm"][0]["data"]))
    assert text.index("The lesion is a haemorrhage.") < text.index("No acute intracranial abnormality.")
    assert addendum.content_hash in text
    assert resource["presentedForm"][0]["creation"] == resource["issued"]
    # The resource has no narrative that could still show the original report alone.
    assert "text" not in resource


def test_conclusion_of_final_without_impression(radiologist):
    exam = make_exam(store_sample_study(), accession="NOIMP1")
    final = sign(exam, radiologist, sections={"findings": "Normal study."})
    addendum = sign(exam, radiologist, kind="addendum", sections={"addendum": "Comparison added."}, at=final.signed_at + datetime.timedelta(minutes=1))

    assert "conclusion" not in json.loads(build_diagnostic_report(build_document(final)).model_dump_json())
    assert build_diagnostic_report(build_document(addendum)).conclusion.endswith(":\nComparison added.")


def test_api_refuses_anonymous(final_report):
    response = Client().get(f"/fhir/DiagnosticReport/{final_report.exam_id}")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_api_refuses_wrong_role(final_report, make_user):
    client = Client()
    client.force_login(make_user("booker", "scheduler"))

    assert client.get(f"/fhir/DiagnosticReport/{final_report.exam_id}").status_code == 403
    assert client.get("/fhir/DiagnosticReport", {"identifier": "ACC1001"}).status_code == 403


def test_api_read_with_token(final_report, make_user):
    _token, text = create_token(make_user("ris", "radiologist"))

    response = Client().get(f"/fhir/DiagnosticReport/{final_report.exam_id}", headers={"Authorization": f"Bearer {text}"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/fhir+json")
    resource = DiagnosticReport.model_validate_json(response.content)
    assert resource.identifier[0].value == "ACC1001"
    event = AuditEvent.objects.get(action="report-exported")
    assert event.user == "ris"
    assert event.patient_id == "1CT1"


def test_api_read_unknown(make_user, db):
    client = Client()
    client.force_login(make_user("reader", "radiologist"))

    response = client.get("/fhir/DiagnosticReport/424242")

    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


def test_api_search_by_accession(final_report, make_user, settings):
    client = Client()
    client.force_login(make_user("reader", "radiologist"))

    plain = client.get("/fhir/DiagnosticReport", {"identifier": "ACC1001"})
    with_system = client.get("/fhir/DiagnosticReport", {"identifier": f"{settings.TELERAD.fhir_accession_system}|ACC1001"})
    other_system = client.get("/fhir/DiagnosticReport", {"identifier": "urn:other|ACC1001"})
    unknown = client.get("/fhir/DiagnosticReport", {"identifier": "NOPE"})

    bundle = Bundle.model_validate_json(plain.content)
    assert bundle.type == "searchset"
    assert bundle.total == 1
    assert bundle.entry[0].resource.id == str(final_report.exam_id)
    assert bundle.entry[0].fullUrl == f"http://testserver/fhir/DiagnosticReport/{final_report.exam_id}"
    assert json.loads(with_system.content)["total"] == 1
    assert json.loads(other_system.content)["total"] == 0
    assert json.loads(unknown.content)["total"] == 0
    assert AuditEvent.objects.filter(action="query").count() == 4


def test_api_search_needs_identifier(make_user, db):
    client = Client()
    client.force_login(make_user("reader", "radiologist"))

    response = client.get("/fhir/DiagnosticReport")

    assert response.status_code == 400
    assert response.json()["issue"][0]["code"] == "required"


def test_api_search_skips_unsigned_exam(radiologist, make_user):
    from .delivery_support import make_exam, store_sample_study

    exam = make_exam(store_sample_study(), accession="PRELIM1")
    sign(exam, radiologist, kind="preliminary")
    client = Client()
    client.force_login(make_user("reader", "radiologist"))

    response = client.get("/fhir/DiagnosticReport", {"identifier": "PRELIM1"})

    assert response.json()["total"] == 0
