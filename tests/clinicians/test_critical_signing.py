"""Critical results at signing: preliminary reports, who the sign form says will receive the result, and signatures that would reach nobody."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from telerad.audit.models import AuditEvent
from telerad.clinicians import critical
from telerad.clinicians.models import CriticalResult, Notification
from telerad.reading.models import Exam, ExamStatus, SignedReport
from tests.clinicians.support import FINDINGS, IMPRESSION, sign_addendum, sign_critical, with_email
from tests.reading.reports_fixtures import PASSWORD, claim, client_for, create_exam, htmx_client_for
from tests.reading.reports_fixtures import radiologist, resident  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

NOBODY_NOTICE = "Nobody will receive this critical result"


@pytest.fixture
def referrer(make_user):
    user = with_email(make_user("referrer", "clinician"))
    user.first_name, user.last_name = "Rita", "Referrer"
    user.save(update_fields=["first_name", "last_name"])
    return user


@pytest.fixture
def referred_exam(referrer) -> Exam:
    exam = create_exam(accession="ACC-PRELIM-1")
    exam.referring_clinician = referrer
    exam.save(update_fields=["referring_clinician"])
    return exam


def contacts(settings, *, department: str = "", escalation: str = "") -> None:
    settings.TELERAD = dataclasses.replace(settings.TELERAD, critical_department_contact=department, critical_escalation_contact=escalation)


def editor_page(exam: Exam, user) -> str:
    claim(exam, user)
    return htmx_client_for(user).get(f"/reports/exams/{exam.pk}/").content.decode()


def sign_post(exam: Exam, user, **fields):
    data = {"revision": "0", "section-findings": FINDINGS, "section-impression": IMPRESSION, "password": PASSWORD, **fields}
    return htmx_client_for(user).post(f"/reports/exams/{exam.pk}/sign/", data)


# Preliminary reports


def test_critical_preliminary_opens_result_for_referrer(referred_exam, resident, referrer):
    sign_critical(referred_exam, resident)

    result = CriticalResult.objects.get(exam=referred_exam)
    assert result.signed_report.kind == "preliminary"
    assert result.recipient == referrer
    notification = Notification.objects.get(recipient=referrer)
    assert notification.kind == "critical-result"
    assert notification.link == f"/critical/{result.pk}/"
    assert "preliminary report of accession ACC-PRELIM-1" in notification.text
    opened = AuditEvent.objects.get(action="critical-result-opened")
    assert opened.user == "resident"
    assert "preliminary report, for referrer" in opened.detail
    assert AuditEvent.objects.filter(action="critical-result-notified").count() == 1


def test_critical_preliminary_escalates_like_final(referred_exam, resident, make_user, settings):
    lead = with_email(make_user("lead", "lead-radiologist"))
    contacts(settings, escalation="lead")
    sign_critical(referred_exam, resident)
    result = CriticalResult.objects.get()

    escalated = critical.check_escalations(now=result.opened_at + datetime.timedelta(minutes=31))

    assert escalated == 1
    result.refresh_from_db()
    assert result.escalated_to == lead
    assert Notification.objects.get(recipient=lead).kind == "critical-escalated"


def test_referrer_sees_preliminary_result(referred_exam, resident, referrer):
    sign_critical(referred_exam, resident)
    result = CriticalResult.objects.get()

    page = client_for(referrer).get(f"/critical/{result.pk}/").content.decode()

    assert "Preliminary report, signed by resident" in page
    assert '<h2 id="critical-text-heading">Impression</h2>' in page
    assert IMPRESSION in page


def test_attending_form_starts_ticked_after_critical_preliminary(referred_exam, resident, radiologist):
    sign_critical(referred_exam, resident)

    page = editor_page(referred_exam, radiologist)

    box = f'id="sign-critical-{referred_exam.pk}" name="critical" value="on" checked'
    assert box in page
    assert "The preliminary report was marked critical by resident" in page
    assert f'aria-describedby="sign-critical-preliminary-{referred_exam.pk} ' in page


def test_attending_form_unticked_after_plain_preliminary(referred_exam, resident, radiologist):
    sign_critical(referred_exam, resident, critical=False)

    page = editor_page(referred_exam, radiologist)

    assert f'id="sign-critical-{referred_exam.pk}" name="critical" value="on"\n' in page
    assert "marked critical by" not in page


def test_critical_final_after_critical_preliminary_notifies_again(referred_exam, resident, radiologist, referrer):
    sign_critical(referred_exam, resident)
    claim(referred_exam, radiologist)

    response = sign_post(referred_exam, radiologist, revision="1", critical="on")

    assert response.status_code == 200
    results = list(CriticalResult.objects.filter(exam=referred_exam).order_by("pk"))
    assert [result.signed_report.kind for result in results] == ["preliminary", "final"]
    assert all(result.recipient == referrer for result in results)
    texts = list(Notification.objects.filter(recipient=referrer, kind="critical-result").order_by("pk").values_list("text", flat=True))
    assert len(texts) == 2
    assert "preliminary report" in texts[0]
    assert "preliminary report" not in texts[1]


def test_final_unticked_after_critical_preliminary_is_audited(referred_exam, resident, radiologist):
    sign_critical(referred_exam, resident)
    preliminary = SignedReport.objects.get(exam=referred_exam)
    claim(referred_exam, radiologist)

    response = sign_post(referred_exam, radiologist, revision="1")

    assert response.status_code == 200
    assert CriticalResult.objects.filter(exam=referred_exam).count() == 1
    event = AuditEvent.objects.get(action="report-final-signed")
    assert f"not critical although preliminary report {preliminary.pk} was" in event.detail


# Who the sign form names


def test_sign_form_names_referring_clinician(referred_exam, radiologist):
    page = editor_page(referred_exam, radiologist)

    assert "A critical result will be sent to the referring clinician, Rita Referrer (referrer)." in page
    assert NOBODY_NOTICE not in page


def test_sign_form_names_department_contact(radiologist, make_user, settings):
    make_user("desk", "clinician")
    contacts(settings, department="desk")
    exam = create_exam(accession="ACC-DESK")

    page = editor_page(exam, radiologist)

    assert "The exam has no referring clinician, so a critical result will be sent to the department contact, desk." in page


def test_sign_form_names_escalation_contact_last(radiologist, make_user, settings):
    make_user("on-call", "lead-radiologist")
    contacts(settings, escalation="on-call")
    exam = create_exam(accession="ACC-ONCALL")

    page = editor_page(exam, radiologist)

    assert "so a critical result will go straight to the escalation contact, on-call." in page


def test_sign_form_warns_when_nobody_would_receive(radiologist):
    exam = create_exam(accession="ACC-NOBODY")

    page = editor_page(exam, radiologist)

    assert NOBODY_NOTICE in page
    assert "set the exam&#x27;s referring clinician in its clinical information" in page
    assert "TELERAD_CRITICAL_DEPARTMENT_CONTACT" in page
    assert f'href="/worklist/{exam.pk}/details"' in page
    assert f'{exam.pk} sign-critical-recipient-{exam.pk}"' in page


def test_standalone_editor_warns_too(radiologist):
    exam = create_exam(accession="ACC-NOBODY")
    claim(exam, radiologist)

    page = client_for(radiologist).get(f"/reports/exams/{exam.pk}/").content.decode()

    assert "<html" in page
    assert NOBODY_NOTICE in page


def test_unknown_contact_counts_as_nobody(radiologist, settings):
    contacts(settings, department="no-such-user")
    exam = create_exam(accession="ACC-UNKNOWN")

    assert not critical.route_critical_result(exam).reaches_someone
    assert NOBODY_NOTICE in editor_page(exam, radiologist)


def test_address_contact_needs_email(radiologist, settings):
    contacts(settings, department="ward-7@example.org")
    exam = create_exam(accession="ACC-WARD")

    without_email = critical.route_critical_result(exam)
    settings.TELERAD = dataclasses.replace(
        settings.TELERAD, smtp_host="127.0.0.1", mail_from="telerad@example.org", base_url="https://telerad.example.org",
    )
    with_smtp = critical.route_critical_result(exam)

    assert without_email.source is None
    assert with_smtp.source is critical.RecipientSource.DEPARTMENT_CONTACT
    assert with_smtp.address == "ward-7@example.org"


def test_inactive_referrer_falls_back_to_department(referred_exam, referrer, make_user, settings):
    desk = make_user("desk", "clinician")
    contacts(settings, department="desk")
    referrer.is_active = False
    referrer.save(update_fields=["is_active"])

    route = critical.route_critical_result(Exam.objects.get(pk=referred_exam.pk))

    assert route.source is critical.RecipientSource.DEPARTMENT_CONTACT
    assert route.user == desk


# Signatures that would reach nobody


def test_critical_signature_without_recipient_is_rejected(radiologist):
    exam = create_exam(accession="ACC-NOBODY", claimed_by=radiologist)

    response = sign_post(exam, radiologist, critical="on")

    page = response.content.decode()
    assert response.status_code == 409
    assert "Nobody would receive this critical result, so the report was not signed." in page
    assert "Set the referring clinician in the exam&#x27;s clinical information" in page
    assert "TELERAD_CRITICAL_DEPARTMENT_CONTACT" in page
    assert FINDINGS in page
    assert IMPRESSION in page
    assert f'id="sign-critical-{exam.pk}" name="critical" value="on" checked' in page
    assert not SignedReport.objects.exists()
    assert not CriticalResult.objects.exists()
    exam.refresh_from_db()
    assert exam.claimed_by == radiologist
    assert exam.status != ExamStatus.FINAL


def test_preliminary_without_recipient_is_rejected(resident):
    exam = create_exam(accession="ACC-NOBODY", claimed_by=resident)

    response = sign_post(exam, resident, critical="on")

    assert response.status_code == 409
    assert not SignedReport.objects.exists()


def test_plain_signature_without_recipient_is_accepted(radiologist):
    exam = create_exam(accession="ACC-NOBODY", claimed_by=radiologist)

    response = sign_post(exam, radiologist)

    assert response.status_code == 200
    assert SignedReport.objects.get(exam=exam).kind == "final"


def test_critical_addendum_without_recipient_is_rejected(radiologist):
    exam = create_exam(accession="ACC-NOBODY", claimed_by=radiologist)
    sign_post(exam, radiologist)

    response = htmx_client_for(radiologist).post(
        f"/reports/exams/{exam.pk}/addendum/", {"text": "Free air under the diaphragm.", "password": PASSWORD, "critical": "on"},
    )

    page = response.content.decode()
    assert response.status_code == 409
    assert "Nobody would receive this critical result" in page
    assert "Free air under the diaphragm." in page
    assert not SignedReport.objects.filter(kind="addendum").exists()


def test_signature_goes_through_once_referrer_is_set(radiologist, referrer):
    exam = create_exam(accession="ACC-LATER", claimed_by=radiologist)
    assert sign_post(exam, radiologist, critical="on").status_code == 409

    exam.referring_clinician = referrer
    exam.save(update_fields=["referring_clinician"])
    response = sign_post(exam, radiologist, critical="on")

    assert response.status_code == 200
    assert CriticalResult.objects.get(exam=exam).recipient == referrer


def test_critical_addendum_reaches_referrer(referred_exam, radiologist, referrer):
    sign_critical(referred_exam, radiologist, critical=False)

    sign_addendum(referred_exam, radiologist, "Free air under the diaphragm.")

    assert CriticalResult.objects.get().recipient == referrer
