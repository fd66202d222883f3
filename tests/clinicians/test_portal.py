"""The clinicians' portal: the list of exams, an exam's page with its signed report, the PDF, and acknowledging critical results."""

from __future__ import annotations

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from telerad.audit.models import AuditEvent
from telerad.clinicians import grants
from telerad.clinicians.models import CriticalResult
from telerad.reading.models import Exam, SignedReport
from tests.clinicians.portal_support import (
    DRAFT_TEXT,
    FINDINGS,
    IMPRESSION,
    PRELIMINARY_TEXT,
    client_of,
    save_draft,
    sign_final,
    sign_preliminary,
)
from tests.clinicians.portal_support import archive, casey, kildare, welby  # noqa: F401 (fixtures)
from tests.clinicians.support import sign_addendum
from tests.reading.reports_fixtures import radiologist, resident  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

PATIENT_NAME_SHOWN = "CompressedSamples^CT1"


def portal_rows(response) -> list[Exam]:
    return [exam for exam, _status, _label in response.context["rows"]]


def test_home_sends_clinician_to_portal(welby):
    response = client_of(welby).get("/")

    assert response.status_code == 302
    assert response["Location"] == reverse("portal:exam-list")


def test_list_shows_referred_exam_only(archive, welby):
    response = client_of(welby).get(reverse("portal:exam-list"))

    assert response.status_code == 200
    assert portal_rows(response) == [archive["ct"].exam]
    page = response.content.decode()
    assert "PORTAL-CT" in page
    assert "PORTAL-MR" not in page
    assert "PORTAL-CT-OLD" not in page
    assert "Not yet reported" in page


def test_list_is_audited_with_patients_shown(archive, welby):
    client_of(welby).get(reverse("portal:exam-list"))

    event = AuditEvent.objects.get(action="portal-list-viewed")
    assert event.user == "welby"
    assert list(event.patient_index.values_list("patient_id", flat=True)) == ["1CT1"]


def test_list_newest_first_and_paginated(archive, welby, monkeypatch):
    from telerad.clinicians import portal

    monkeypatch.setattr(portal, "EXAMS_PER_PAGE", 1)
    grants.grant_access(welby, actor="tests", patient=archive["ct"].exam.patient)
    client = client_of(welby)

    first = client.get(reverse("portal:exam-list"))
    second = client.get(reverse("portal:exam-list"), {"page": "2"})

    assert portal_rows(first) == [archive["ct"].exam]
    assert portal_rows(second) == [archive["ct_prior"].exam]
    assert first.context["page"].paginator.count == 2


def test_search_is_posted_and_kept_out_of_address(archive, welby):
    client = client_of(welby)
    grants.grant_access(welby, actor="tests", patient=archive["mr"].exam.patient)

    posted = client.post(reverse("portal:exam-list"), {"patient_name": "mr1", "patient_id": "", "accession_number": ""})
    results = client.get(posted["Location"])

    assert posted.status_code == 303
    assert "mr1" not in posted["Location"].lower()
    assert portal_rows(results) == [archive["mr"].exam]
    event = AuditEvent.objects.filter(action="portal-list-viewed").latest("sequence")
    assert "patient_name=(not recorded)" in event.detail
    assert "mr1" not in event.detail.lower()


def test_search_by_accession_number(archive, welby):
    client = client_of(welby)
    grants.grant_access(welby, actor="tests", patient=archive["ct"].exam.patient)

    posted = client.post(reverse("portal:exam-list"), {"accession_number": "PORTAL-CT-OLD"})
    results = client.get(posted["Location"])

    assert portal_rows(results) == [archive["ct_prior"].exam]


def test_search_cannot_reach_other_clinicians_exam(archive, welby):
    client = client_of(welby)

    posted = client.post(reverse("portal:exam-list"), {"accession_number": "PORTAL-MR"})
    results = client.get(posted["Location"])

    assert portal_rows(results) == []
    assert "None of your exams match this search." in results.content.decode()


def test_exam_page_shows_final_report_and_links(archive, welby, radiologist):
    exam = archive["ct"].exam
    sign_final(exam, radiologist)
    signed = SignedReport.objects.get(exam=exam)

    response = client_of(welby).get(reverse("portal:exam", args=[exam.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert FINDINGS in page
    assert IMPRESSION in page
    assert "Final" in page
    assert f"/viewer/viewer?StudyInstanceUIDs={archive['ct'].study_instance_uid}" in page
    assert reverse("report-pdf:pdf", args=[signed.pk]) in page
    assert PATIENT_NAME_SHOWN.split("^")[0] in page


def test_exam_page_is_audited(archive, welby, radiologist):
    exam = archive["ct"].exam
    sign_final(exam, radiologist)

    client_of(welby).get(reverse("portal:exam", args=[exam.pk]))

    event = AuditEvent.objects.filter(action="report-viewed", user="welby").get()
    assert event.patient_id == "1CT1"
    assert event.study_instance_uid == archive["ct"].study_instance_uid
    assert f"exam={exam.pk}" in event.detail
    assert FINDINGS not in event.detail


def test_exam_page_lists_addenda_first(archive, welby, radiologist):
    exam = archive["ct"].exam
    sign_final(exam, radiologist)
    sign_addendum(exam, radiologist, "First addendum text.", critical=False)
    sign_addendum(exam, radiologist, "Second addendum text.", critical=False)

    page = client_of(welby).get(reverse("portal:exam", args=[exam.pk])).content.decode()

    assert page.index("Second addendum text.") < page.index("First addendum text.") < page.index(FINDINGS)
    assert "Addended" in page


def test_draft_never_shows(archive, welby, radiologist):
    exam = archive["ct"].exam
    save_draft(exam, radiologist)
    client = client_of(welby)

    listing = client.get(reverse("portal:exam-list")).content.decode()
    page = client.get(reverse("portal:exam", args=[exam.pk])).content.decode()

    assert DRAFT_TEXT not in listing
    assert DRAFT_TEXT not in page
    assert "Being reported" in listing
    assert "A radiologist is reporting this exam." in page


def test_preliminary_report_never_shows(archive, welby, resident):
    exam = archive["ct"].exam
    sign_preliminary(exam, resident)
    preliminary = SignedReport.objects.get(exam=exam)
    client = client_of(welby)

    page = client.get(reverse("portal:exam", args=[exam.pk])).content.decode()
    pdf = client.get(reverse("report-pdf:pdf", args=[preliminary.pk]))

    assert preliminary.kind == "preliminary"
    assert PRELIMINARY_TEXT not in page
    assert "Being reported" in page
    assert reverse("report-pdf:pdf", args=[preliminary.pk]) not in page
    assert pdf.status_code == 404


def test_pdf_download_of_referred_exam(archive, welby, radiologist):
    exam = archive["ct"].exam
    sign_final(exam, radiologist)
    signed = SignedReport.objects.get(exam=exam)

    response = client_of(welby).get(reverse("report-pdf:pdf", args=[signed.pk]))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF")
    assert AuditEvent.objects.filter(action="report-exported", user="welby", patient_id="1CT1").exists()


@pytest.mark.parametrize("grant", ["patient", "department"])
def test_granted_clinician_reaches_exam(archive, casey, radiologist, grant):
    exam = archive["ct"].exam
    if grant == "patient":
        grants.grant_access(casey, actor="tests", patient=exam.patient)
    else:
        grants.grant_access(casey, actor="tests", department="  EMERGENCY ")
    sign_final(exam, radiologist)
    signed = SignedReport.objects.get(exam=exam)
    client = client_of(casey)

    listing = client.get(reverse("portal:exam-list"))
    page = client.get(reverse("portal:exam", args=[exam.pk]))
    pdf = client.get(reverse("report-pdf:pdf", args=[signed.pk]))

    assert exam in portal_rows(listing)
    assert archive["mr"].exam not in portal_rows(listing)
    assert page.status_code == 200
    assert FINDINGS in page.content.decode()
    assert pdf.status_code == 200


def test_patient_grant_includes_unreferred_prior(archive, casey):
    grants.grant_access(casey, actor="tests", patient=archive["ct"].exam.patient)

    response = client_of(casey).get(reverse("portal:exam-list"))

    assert portal_rows(response) == [archive["ct"].exam, archive["ct_prior"].exam]


def test_department_grant_matches_current_patient_location(archive, casey):
    grants.grant_access(casey, actor="tests", department="ward 7")

    response = client_of(casey).get(reverse("portal:exam-list"))

    assert archive["mr"].exam.department == "Ward 7"
    assert portal_rows(response) == [archive["mr"].exam]


def test_expired_grant_opens_nothing(archive, casey):
    grant, _created = grants.grant_access(casey, actor="tests", patient=archive["ct"].exam.patient)
    grant.expires_at = timezone.now() - datetime.timedelta(minutes=1)
    grant.save(update_fields=["expires_at"])
    client = client_of(casey)

    listing = client.get(reverse("portal:exam-list"))
    page = client.get(reverse("portal:exam", args=[archive["ct"].exam.pk]))

    assert portal_rows(listing) == []
    assert page.status_code == 404


def test_critical_result_flag_and_acknowledgement(archive, welby, radiologist):
    exam = archive["ct"].exam
    sign_final(exam, radiologist, critical=True)
    result = CriticalResult.objects.get(exam=exam)
    client = client_of(welby)

    listing = client.get(reverse("portal:exam-list")).content.decode()
    page = client.get(reverse("portal:exam", args=[exam.pk])).content.decode()
    response = client.post(reverse("portal:acknowledge", args=[exam.pk, result.pk]))

    result.refresh_from_db()
    assert "Awaits your acknowledgement" in listing
    assert reverse("portal:acknowledge", args=[exam.pk, result.pk]) in page
    assert response.status_code == 303
    assert response["Location"] == reverse("portal:exam", args=[exam.pk])
    assert result.acknowledged_by == welby
    assert result.acknowledged_at is not None
    event = AuditEvent.objects.get(action="critical-result-acknowledged")
    assert event.user == "welby"
    assert event.patient_id == "1CT1"
    assert "Acknowledged" in client.get(reverse("portal:exam-list")).content.decode()


def test_acknowledgement_shows_to_radiologist(archive, welby, radiologist):
    exam = archive["ct"].exam
    sign_final(exam, radiologist, critical=True)
    result = CriticalResult.objects.get(exam=exam)
    client_of(welby).post(reverse("portal:acknowledge", args=[exam.pk, result.pk]))

    page = client_of(radiologist).get(reverse("reading:exam", args=[exam.pk])).content.decode()
    portal_page = client_of(welby).get(reverse("portal:exam", args=[exam.pk])).content.decode()

    assert "Acknowledged by welby" in page
    assert "Acknowledged by welby" in portal_page
    assert reverse("portal:acknowledge", args=[exam.pk, result.pk]) not in portal_page


def test_granted_clinician_cannot_acknowledge_others_result(archive, welby, casey, radiologist):
    exam = archive["ct"].exam
    grants.grant_access(casey, actor="tests", patient=exam.patient)
    sign_final(exam, radiologist, critical=True)
    result = CriticalResult.objects.get(exam=exam)
    client = client_of(casey)

    page = client.get(reverse("portal:exam", args=[exam.pk])).content.decode()
    response = client.post(reverse("portal:acknowledge", args=[exam.pk, result.pk]))

    result.refresh_from_db()
    assert reverse("portal:acknowledge", args=[exam.pk, result.pk]) not in page
    assert "Not acknowledged yet." in page
    assert response.status_code == 403
    assert result.acknowledged_at is None


def test_critical_result_page_links_to_portal(archive, welby, radiologist):
    exam = archive["ct"].exam
    sign_final(exam, radiologist, critical=True)
    result = CriticalResult.objects.get(exam=exam)

    page = client_of(welby).get(reverse("critical:detail", args=[result.pk])).content.decode()

    assert reverse("portal:exam", args=[exam.pk]) in page


def test_portal_closed_to_radiologist(archive, radiologist):
    response = client_of(radiologist).get(reverse("portal:exam-list"))

    assert response.status_code == 403


def test_exam_page_offers_question_on_own_exam(archive, welby):
    exam = archive["ct"].exam

    page = client_of(welby).get(reverse("portal:exam", args=[exam.pk])).content.decode()

    assert f"{reverse('questions:new')}?exam={exam.pk}" in page


def test_granted_clinician_asks_about_granted_exam(archive, casey):
    exam = archive["ct"].exam
    grants.grant_access(casey, actor="tests", patient=exam.patient)

    response = client_of(casey).post(f"{reverse('questions:new')}?exam={exam.pk}", {"subject": "Follow-up", "body": "Is a follow-up CT needed?"})

    assert response.status_code == 303
    assert exam.questions.filter(opened_by=casey).count() == 1


def test_clinician_cannot_ask_about_unseen_exam(archive, casey):
    exam = archive["ct"].exam

    response = client_of(casey).post(f"{reverse('questions:new')}?exam={exam.pk}", {"subject": "Follow-up", "body": "Is a follow-up CT needed?"})

    assert response.status_code == 404
    assert not exam.questions.exists()
