from __future__ import annotations

import dataclasses
import datetime
import io

import pytest
from django.test import Client
from pypdf import PdfReader

from telerad.audit.models import AuditEvent
from telerad.reading.delivery.document import build_document
from telerad.reading.delivery.pdf import render_pdf

from .delivery_support import final_report, make_exam, radiologist, sign, store_sample_study  # noqa: F401


def pdf_text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_pdf_shows_report_fields(final_report, settings):
    settings.TELERAD = dataclasses.replace(settings.TELERAD, department_name="Northside Imaging")

    text = pdf_text(render_pdf(build_document(final_report)))

    for expected in [
        "Northside Imaging", "CompressedSamples CT1", "1CT1", "ACC1001", "CT head without contrast", "Referrer Rita",
        "Clinical history", "Headache for 3 days.", "Technique", "Findings", "No intracranial haemorrhage.",
        "Ventricles of normal size & shape.", "Impression", "No acute intracranial abnormality.", "Jane Smith",
        final_report.content_hash,
    ]:
        assert expected in text, expected
    assert "2004" in text  # the study date of CT_small.dcm, 20040119


def test_pdf_puts_addendum_first(final_report, radiologist):
    addendum = sign(final_report.exam, radiologist, kind="addendum", sections={"addendum": "Small <b>left</b> frontal lesion."})

    text = pdf_text(render_pdf(build_document(addendum)))

    assert "Small <b>left</b> frontal lesion." in text
    assert text.index("Addendum") < text.index("Findings")
    assert text.index("frontal lesion") < text.index("No intracranial haemorrhage.")
    assert addendum.content_hash in text


def test_pdf_is_reproducible(final_report):
    document = build_document(final_report)

    assert render_pdf(document) == render_pdf(document)


def test_pdf_shows_logo(final_report, settings, tmp_path):
    from PIL import Image

    logo = tmp_path / "logo.png"
    Image.new("RGB", (300, 100), (20, 60, 140)).save(logo)
    settings.TELERAD = dataclasses.replace(settings.TELERAD, department_logo=logo)

    reader = PdfReader(io.BytesIO(render_pdf(build_document(final_report))))

    assert len(reader.pages[0].images) == 1


def test_pdf_view_exports_and_audits(final_report, make_user):
    client = Client()
    client.force_login(make_user("reader", "radiologist"))

    response = client.get(f"/reports/pdf/{final_report.pk}/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert "ACC1001" in pdf_text(response.content)
    event = AuditEvent.objects.get(action="report-exported")
    assert event.user == "reader"
    assert event.patient_id == "1CT1"
    assert event.study_instance_uid == final_report.exam.studies.get().study_instance_uid


def test_pdf_view_hides_report_from_other_clinician(final_report, make_user):
    client = Client()
    client.force_login(make_user("referrer", "clinician"))

    response = client.get(f"/reports/pdf/{final_report.pk}/")

    assert response.status_code == 404
    assert not AuditEvent.objects.filter(action="report-exported").exists()


def test_pdf_view_refuses_role_without_studies(final_report, make_user):
    client = Client()
    client.force_login(make_user("booker", "scheduler"))

    response = client.get(f"/reports/pdf/{final_report.pk}/")

    assert response.status_code == 403
    assert not AuditEvent.objects.filter(action="report-exported").exists()


def test_pdf_view_unknown_report(make_user, db):
    client = Client()
    client.force_login(make_user("reader", "radiologist"))

    assert client.get("/reports/pdf/999999/").status_code == 404


def test_pdf_of_report_without_study(radiologist):
    exam = make_exam(None, accession="NS1")
    signed = sign(exam, radiologist, at=datetime.datetime(2026, 3, 1, 9, 30, tzinfo=datetime.UTC))

    text = pdf_text(render_pdf(build_document(signed)))

    assert "Nostudy Nora" in text
    assert "NS1" in text


def test_pdf_names_referring_clinician(final_report, make_user):
    clinician = make_user("drjones", "clinician")
    clinician.first_name, clinician.last_name = "Oliver", "Jones"
    clinician.save(update_fields=["first_name", "last_name"])
    exam = final_report.exam
    exam.referring_clinician = clinician
    exam.referring_physician_name = ""
    exam.save(update_fields=["referring_clinician", "referring_physician_name"])

    text = pdf_text(render_pdf(build_document(final_report)))

    assert "Referring physician\nOliver Jones\n" in text


def test_pdf_prefers_clinician_name_over_dicom_name(final_report, make_user):
    clinician = make_user("drjones", "clinician")
    clinician.first_name, clinician.last_name = "Oliver", "Jones"
    clinician.save(update_fields=["first_name", "last_name"])
    exam = final_report.exam
    exam.referring_clinician = clinician
    exam.save(update_fields=["referring_clinician"])

    text = pdf_text(render_pdf(build_document(final_report)))

    assert "Oliver Jones" in text
    assert "Referrer Rita" not in text


def test_pdf_falls_back_to_dicom_name(final_report, make_user):
    exam = final_report.exam
    exam.referring_clinician = make_user("drnoname", "clinician")
    exam.save(update_fields=["referring_clinician"])

    text = pdf_text(render_pdf(build_document(final_report)))

    assert "Referring physician\nReferrer Rita\n" in text
    assert "drnoname" not in text


def test_pdf_falls_back_to_clinician_user_name(final_report, make_user):
    exam = final_report.exam
    exam.referring_clinician = make_user("drnoname", "clinician")
    exam.referring_physician_name = ""
    exam.save(update_fields=["referring_clinician", "referring_physician_name"])

    text = pdf_text(render_pdf(build_document(final_report)))

    assert "Referring physician\ndrnoname\n" in text


def test_pdf_marks_critical_result(radiologist):
    exam = make_exam(store_sample_study(), accession="CRIT1")
    critical = sign(exam, radiologist, critical=True)

    text = pdf_text(render_pdf(build_document(critical)))

    assert text.count("Critical result") == 1
    assert text.index("Critical result") < text.index("Patient")


def test_pdf_of_plain_report_has_no_marker(final_report):
    text = pdf_text(render_pdf(build_document(final_report)))

    assert "Critical result" not in text


def test_pdf_marks_critical_addendum(final_report, radiologist):
    addendum = sign(final_report.exam, radiologist, kind="addendum", sections={"addendum": "Free air under the diaphragm."}, critical=True)

    text = pdf_text(render_pdf(build_document(addendum)))

    # The banner at the top, and the mark under the addendum's title.
    assert text.count("Critical result") == 2
    assert text.index("Critical result") < text.index("Patient")
    marker = text.index("Critical result", text.index("Patient"))
    assert text.index("Addendum") < marker < text.index("Free air under the diaphragm.")


def test_pdf_addendum_heading_once(final_report, radiologist):
    addendum = sign(final_report.exam, radiologist, kind="addendum", sections={"addendum": "Small left frontal lesion."})

    text = pdf_text(render_pdf(build_document(addendum)))

    assert text.count("Addendum") == 1
    assert text.index("Addendum") < text.index("Small left frontal lesion.")


def test_pdf_two_addenda_each_headed_once(final_report, radiologist):
    first = sign(final_report.exam, radiologist, kind="addendum", sections={"addendum": "First correction."})
    second = sign(
        final_report.exam, radiologist, kind="addendum", sections={"addendum": "Second correction."},
        at=first.signed_at + datetime.timedelta(minutes=5),
    )

    text = pdf_text(render_pdf(build_document(second)))

    assert text.count("Addendum") == 2
    assert text.index("Second correction.") < text.index("First correction.") < text.index("Findings")
