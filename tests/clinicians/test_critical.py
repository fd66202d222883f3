"""Critical results: opened at signing, notified, acknowledged by the referrer, escalated after the timeout, and listed for leads."""

from __future__ import annotations

import dataclasses
import datetime
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from telerad.audit.models import AuditEvent
from telerad.clinicians import critical
from telerad.clinicians.models import CriticalResult, EmailJob, Notification
from telerad.reading.models import Exam, SignedReport
from tests.clinicians.support import IMPRESSION, sign_addendum, sign_critical, with_email
from tests.reading.reports_fixtures import PATIENT_NAME, client_for, create_exam
from tests.reading.reports_fixtures import radiologist  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def referrer(make_user):
    return with_email(make_user("referrer", "clinician"))


@pytest.fixture
def lead(make_user):
    return with_email(make_user("lead", "lead-radiologist"))


@pytest.fixture
def referred_exam(referrer) -> Exam:
    exam = create_exam(accession="ACC-CRIT-1")
    exam.referring_clinician = referrer
    exam.save(update_fields=["referring_clinician"])
    return exam


@pytest.fixture
def escalation_contact(settings, lead):
    settings.TELERAD = dataclasses.replace(settings.TELERAD, critical_escalation_contact="lead", critical_ack_minutes=30)
    return lead


def age_result(result: CriticalResult, minutes: float) -> None:
    """Move the opening of `result` back by `minutes`, as if that much time had passed."""
    CriticalResult.objects.filter(pk=result.pk).update(opened_at=timezone.now() - datetime.timedelta(minutes=minutes))


def actions() -> list[str]:
    return list(AuditEvent.objects.filter(action__startswith="critical-result").order_by("sequence").values_list("action", flat=True))


def test_signing_critical_opens_result_for_referrer(referred_exam, radiologist, referrer):
    sign_critical(referred_exam, radiologist)

    result = CriticalResult.objects.get(exam=referred_exam)
    assert result.signed_report == SignedReport.objects.get(exam=referred_exam, kind="final")
    assert result.recipient == referrer
    assert result.acknowledged_at is None
    assert result.escalated_at is None
    notification = Notification.objects.get(recipient=referrer)
    assert notification.kind == "critical-result"
    assert notification.link == f"/critical/{result.pk}/"
    assert "ACC-CRIT-1" in notification.text
    assert PATIENT_NAME not in notification.text
    assert actions() == ["critical-result-opened", "critical-result-notified"]


def test_signing_without_critical_opens_nothing(referred_exam, radiologist):
    sign_critical(referred_exam, radiologist, critical=False)

    assert not CriticalResult.objects.exists()
    assert not Notification.objects.exists()


def test_critical_addendum_opens_second_result(referred_exam, radiologist, referrer):
    sign_critical(referred_exam, radiologist, critical=False)

    sign_addendum(referred_exam, radiologist, "New finding: free air under the diaphragm.")

    result = CriticalResult.objects.get(exam=referred_exam)
    assert result.signed_report.kind == "addendum"
    assert critical.critical_text(result.signed_report) == ("Addendum", "New finding: free air under the diaphragm.")
    assert Notification.objects.filter(recipient=referrer, kind="critical-result").count() == 1


def test_referrer_sees_addendum_labelled_addendum(referred_exam, radiologist, referrer):
    sign_critical(referred_exam, radiologist, critical=False)
    sign_addendum(referred_exam, radiologist, "New finding: free air under the diaphragm.")
    result = CriticalResult.objects.get()

    page = client_for(referrer).get(f"/critical/{result.pk}/").content.decode()

    assert '<h2 id="critical-text-heading">Addendum</h2>' in page
    assert ">Impression<" not in page
    assert "New finding: free air under the diaphragm." in page


def test_department_contact_without_referrer(settings, radiologist, make_user):
    contact = with_email(make_user("desk", "clinician"))
    settings.TELERAD = dataclasses.replace(settings.TELERAD, critical_department_contact="desk")
    exam = create_exam(accession="ACC-NOREF")

    sign_critical(exam, radiologist)

    result = CriticalResult.objects.get(exam=exam)
    assert result.recipient == contact
    assert Notification.objects.filter(recipient=contact, kind="critical-result").exists()


def test_no_recipient_escalates_at_once(radiologist, escalation_contact):
    exam = create_exam(accession="ACC-NOBODY")

    sign_critical(exam, radiologist)

    result = CriticalResult.objects.get(exam=exam)
    assert result.recipient is None
    assert result.escalated_at is not None
    assert result.escalated_to == escalation_contact
    assert Notification.objects.get(recipient=escalation_contact).kind == "critical-escalated"
    assert actions() == ["critical-result-opened", "critical-result-escalated", "critical-result-notified"]


def test_referrer_sees_accession_exam_and_impression(referred_exam, radiologist, referrer):
    sign_critical(referred_exam, radiologist)
    result = CriticalResult.objects.get()

    response = client_for(referrer).get(f"/critical/{result.pk}/")

    page = response.content.decode()
    assert response.status_code == 200
    assert "ACC-CRIT-1" in page
    assert "CT head without contrast" in page
    assert '<h2 id="critical-text-heading">Impression</h2>' in page
    assert IMPRESSION in page
    assert "I have read this critical result" in page
    viewed = AuditEvent.objects.get(action="report-viewed", user="referrer")
    assert f"critical result {result.pk}" in viewed.detail
    assert Notification.objects.get(recipient=referrer).read_at is not None


def test_referrer_acknowledges(referred_exam, radiologist, referrer):
    sign_critical(referred_exam, radiologist)
    result = CriticalResult.objects.get()

    response = client_for(referrer).post(f"/critical/{result.pk}/acknowledge/")

    assert response.status_code == 303
    assert response["Location"] == f"/critical/{result.pk}/"
    result.refresh_from_db()
    assert result.acknowledged_by == referrer
    assert result.acknowledged_at is not None
    event = AuditEvent.objects.get(action="critical-result-acknowledged")
    assert event.user == "referrer"
    assert event.patient_id == referred_exam.patient.patient_id
    assert "accession ACC-CRIT-1" in event.detail
    assert PATIENT_NAME not in event.detail
    signer_notice = Notification.objects.get(recipient=radiologist)
    assert signer_notice.kind == "critical-acknowledged"
    assert "referrer" in signer_notice.text


def test_second_acknowledgement_changes_nothing(referred_exam, radiologist, referrer, lead):
    sign_critical(referred_exam, radiologist)
    result = CriticalResult.objects.get()
    client_for(referrer).post(f"/critical/{result.pk}/acknowledge/")

    response = client_for(lead).post(f"/critical/{result.pk}/acknowledge/", follow=True)

    result.refresh_from_db()
    assert result.acknowledged_by == referrer
    assert "referrer acknowledged this critical result already" in response.content.decode()
    assert AuditEvent.objects.filter(action="critical-result-acknowledged").count() == 1


@pytest.mark.parametrize(("username", "role"), [("reader", "radiologist"), ("tech", "technologist")])
def test_staff_of_other_results_get_403(referred_exam, radiologist, make_user, username, role):
    sign_critical(referred_exam, radiologist)
    result = CriticalResult.objects.get()
    other = client_for(make_user(username, role))

    page = other.get(f"/critical/{result.pk}/")
    post = other.post(f"/critical/{result.pk}/acknowledge/")

    assert page.status_code == 403
    assert IMPRESSION not in page.content.decode()
    assert post.status_code == 403
    result.refresh_from_db()
    assert result.acknowledged_at is None


def test_other_clinician_gets_404(referred_exam, radiologist, make_user):
    sign_critical(referred_exam, radiologist)
    result = CriticalResult.objects.get()
    other = client_for(make_user("other-clinician", "clinician"))

    page = other.get(f"/critical/{result.pk}/")
    post = other.post(f"/critical/{result.pk}/acknowledge/")

    assert page.status_code == 404
    assert IMPRESSION not in page.content.decode()
    assert post.status_code == 404
    result.refresh_from_db()
    assert result.acknowledged_at is None


def test_signer_without_lead_role_cannot_acknowledge(referred_exam, radiologist):
    sign_critical(referred_exam, radiologist)
    result = CriticalResult.objects.get()

    response = client_for(radiologist).post(f"/critical/{result.pk}/acknowledge/")

    assert response.status_code == 403


def test_lead_may_acknowledge(referred_exam, radiologist, lead):
    sign_critical(referred_exam, radiologist)
    result = CriticalResult.objects.get()

    response = client_for(lead).post(f"/critical/{result.pk}/acknowledge/")

    assert response.status_code == 303
    result.refresh_from_db()
    assert result.acknowledged_by == lead


def test_unknown_result_is_404(referrer):
    assert client_for(referrer).get("/critical/999999/").status_code == 404


def test_no_escalation_before_timeout(referred_exam, radiologist, escalation_contact):
    sign_critical(referred_exam, radiologist)
    result = CriticalResult.objects.get()
    age_result(result, 29)

    escalated = critical.check_escalations()

    assert escalated == 0
    result.refresh_from_db()
    assert result.escalated_at is None


def test_escalation_after_timeout(referred_exam, radiologist, referrer, escalation_contact):
    sign_critical(referred_exam, radiologist)
    result = CriticalResult.objects.get()
    age_result(result, 31)

    escalated = critical.check_escalations()

    assert escalated == 1
    result.refresh_from_db()
    assert result.escalated_at is not None
    assert result.escalated_to == escalation_contact
    assert result.acknowledged_at is None
    notice = Notification.objects.get(recipient=escalation_contact)
    assert notice.kind == "critical-escalated"
    assert notice.link == f"/critical/{result.pk}/"
    event = AuditEvent.objects.get(action="critical-result-escalated")
    assert event.outcome == 0
    assert "not acknowledged within 30 minutes" in event.detail
    assert "escalated to lead" in event.detail
    assert actions() == [
        "critical-result-opened", "critical-result-notified", "critical-result-escalated", "critical-result-notified",
    ]
    assert critical.check_escalations() == 0


def test_escalation_contact_acknowledges(referred_exam, radiologist, make_user, settings):
    contact = with_email(make_user("on-call", "clinician"))
    settings.TELERAD = dataclasses.replace(settings.TELERAD, critical_escalation_contact="on-call")
    sign_critical(referred_exam, radiologist)
    result = CriticalResult.objects.get()
    age_result(result, 60)
    critical.check_escalations()

    response = client_for(contact).post(f"/critical/{result.pk}/acknowledge/")

    assert response.status_code == 303
    result.refresh_from_db()
    assert result.acknowledged_by == contact
    assert "after escalation" in AuditEvent.objects.get(action="critical-result-acknowledged").detail


def test_escalation_to_address_only_contact(referred_exam, radiologist, settings):
    settings.TELERAD = dataclasses.replace(settings.TELERAD, critical_escalation_contact="oncall-desk@example.org")
    sign_critical(referred_exam, radiologist)
    result = CriticalResult.objects.get()
    age_result(result, 45)

    critical.check_escalations()

    result.refresh_from_db()
    assert result.escalated_to is None
    assert result.escalated_to_address == "oncall-desk@example.org"
    assert "escalated to oncall-desk@example.org" in AuditEvent.objects.get(action="critical-result-escalated").detail


def test_acknowledged_result_does_not_escalate(referred_exam, radiologist, referrer, escalation_contact):
    sign_critical(referred_exam, radiologist)
    result = CriticalResult.objects.get()
    client_for(referrer).post(f"/critical/{result.pk}/acknowledge/")
    age_result(result, 120)

    assert critical.check_escalations() == 0
    result.refresh_from_db()
    assert result.escalated_at is None


def test_escalation_without_contact_is_a_failure(referred_exam, radiologist, caplog):
    sign_critical(referred_exam, radiologist)
    result = CriticalResult.objects.get()
    age_result(result, 31)

    critical.check_escalations()

    result.refresh_from_db()
    assert result.escalated_at is not None
    event = AuditEvent.objects.get(action="critical-result-escalated")
    assert event.outcome == 8
    assert "no escalation contact is configured" in event.detail
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert errors == [
        f"critical result {result.pk} needs escalation because it was not acknowledged within 30 minutes, "
        f"but TELERAD_CRITICAL_ESCALATION_CONTACT names nobody to escalate to (exam {referred_exam.pk}, accession ACC-CRIT-1)"
    ]


def test_critical_check_command_escalates(referred_exam, radiologist, escalation_contact):
    sign_critical(referred_exam, radiologist)
    age_result(CriticalResult.objects.get(), 31)
    output = io.StringIO()

    call_command("critical", "check", stdout=output)

    assert "1 critical results escalated, 1 not acknowledged yet" in output.getvalue()
    assert CriticalResult.objects.get().escalated_at is not None


def test_leads_list_open_results_with_age_and_state(radiologist, referrer, lead, escalation_contact):
    waiting_exam = create_exam(accession="ACC-WAIT")
    waiting_exam.referring_clinician = referrer
    waiting_exam.save(update_fields=["referring_clinician"])
    late_exam = create_exam(accession="ACC-LATE")
    late_exam.referring_clinician = referrer
    late_exam.save(update_fields=["referring_clinician"])
    done_exam = create_exam(accession="ACC-DONE")
    done_exam.referring_clinician = referrer
    done_exam.save(update_fields=["referring_clinician"])
    for exam in (waiting_exam, late_exam, done_exam):
        sign_critical(exam, radiologist)
    age_result(CriticalResult.objects.get(exam=waiting_exam), 5)
    age_result(CriticalResult.objects.get(exam=late_exam), 90)
    critical.check_escalations()
    client_for(referrer).post(f"/critical/{CriticalResult.objects.get(exam=done_exam).pk}/acknowledge/")

    response = client_for(lead).get("/critical/")

    page = response.content.decode()
    assert response.status_code == 200
    assert "ACC-WAIT" in page
    assert "ACC-LATE" in page
    assert "ACC-DONE" not in page
    assert page.index("ACC-LATE") < page.index("ACC-WAIT")
    assert "Escalated to lead" in page
    assert "Waiting for acknowledgement" in page
    assert '<td class="numeric">90</td>' in page
    assert '<td class="numeric">5</td>' in page


def test_exam_page_shows_acknowledgement(referred_exam, radiologist, referrer):
    sign_critical(referred_exam, radiologist)
    exam_page = client_for(radiologist).get(f"/worklist/{referred_exam.pk}/").content.decode()
    assert "Not acknowledged yet." in exam_page

    client_for(referrer).post(f"/critical/{CriticalResult.objects.get().pk}/acknowledge/")

    exam_page = client_for(radiologist).get(f"/worklist/{referred_exam.pk}/").content.decode()
    assert "Acknowledged by referrer" in exam_page


def test_open_result_rolls_back_with_signature(referred_exam, radiologist, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("e-mail outbox unavailable")

    # Fails after the result and its notification are written, inside the signing transaction.
    monkeypatch.setattr("telerad.clinicians.mail.queue_notification_email", fail)
    with pytest.raises(RuntimeError):
        sign_critical(referred_exam, radiologist)

    assert not SignedReport.objects.exists()
    assert not CriticalResult.objects.exists()
    assert not Notification.objects.exists()
    assert not EmailJob.objects.exists()
