"""Notification e-mails sent through a real SMTP server on 127.0.0.1: content, retries, rejection and audit."""

from __future__ import annotations

import dataclasses
import datetime

import pytest
from django.utils import timezone

from telerad.audit.models import AuditEvent
from telerad.clinicians import mail
from telerad.clinicians.models import CriticalResult, EmailJob, EmailState
from tests.clinicians.support import (  # noqa: F401 (fixture)
    BASE_URL, FINDINGS, IMPRESSION, REJECTED_ADDRESS, free_port, sign_critical, smtp_server, with_email,
)
from tests.reading.reports_fixtures import PATIENT_NAME, create_exam
from tests.reading.reports_fixtures import radiologist  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db

OWNER = "test-worker"


@pytest.fixture
def referrer(make_user):
    return with_email(make_user("referrer", "clinician"))


@pytest.fixture
def referred_exam(referrer):
    exam = create_exam(accession="ACC-MAIL-7")
    exam.referring_clinician = referrer
    exam.save(update_fields=["referring_clinician"])
    return exam


def test_critical_result_email_content(smtp_server, referred_exam, radiologist):
    sign_critical(referred_exam, radiologist)
    result = CriticalResult.objects.get()

    attempted = mail.send_due_email(OWNER)

    assert attempted == 1
    assert len(smtp_server.messages) == 1
    recipients, message = smtp_server.messages[0]
    body = message.get_content()
    assert recipients == ["referrer@example.org"]
    assert message["From"] == "telerad@example.org"
    assert message["To"] == "referrer@example.org"
    assert message["Subject"] == "Critical result to acknowledge: accession ACC-MAIL-7"
    assert "ACC-MAIL-7" in body
    assert f"{BASE_URL}/critical/{result.pk}/" in body
    for patient_data in (PATIENT_NAME, "Doe", "Jane", referred_exam.patient.patient_id, IMPRESSION, FINDINGS):
        assert patient_data not in body
        assert patient_data not in message["Subject"]
    job = EmailJob.objects.get()
    assert job.state == EmailState.SENT
    assert job.attempts == 1
    assert job.sent_at is not None


def test_sent_email_is_audited(smtp_server, referred_exam, radiologist):
    sign_critical(referred_exam, radiologist)

    mail.send_due_email(OWNER)

    event = AuditEvent.objects.get(action="notification-emailed")
    assert event.outcome == 0
    assert event.user == "referrer"
    assert event.patient_id == referred_exam.patient.patient_id
    assert "accession ACC-MAIL-7" in event.detail
    assert "to referrer@example.org" in event.detail
    assert PATIENT_NAME not in event.detail


def test_email_to_address_only_contact(smtp_server, radiologist, settings):
    settings.TELERAD = dataclasses.replace(settings.TELERAD, critical_department_contact="ward-7@example.org")
    exam = create_exam(accession="ACC-WARD")

    sign_critical(exam, radiologist)
    mail.send_due_email(OWNER)

    recipients, message = smtp_server.messages[0]
    assert recipients == ["ward-7@example.org"]
    assert "ACC-WARD" in message["Subject"]
    assert CriticalResult.objects.get().recipient_address == "ward-7@example.org"


def test_unreachable_server_is_retried(smtp_server, referred_exam, radiologist, settings):
    sign_critical(referred_exam, radiologist)
    settings.TELERAD = dataclasses.replace(settings.TELERAD, smtp_port=free_port())
    before = timezone.now()

    mail.send_due_email(OWNER)

    job = EmailJob.objects.get()
    assert job.state == EmailState.PENDING
    assert job.attempts == 1
    assert job.next_attempt_at >= before + datetime.timedelta(seconds=30)
    assert job.last_error.startswith("ConnectionRefusedError")
    assert job.lease_owner == ""
    assert mail.send_due_email(OWNER) == 0
    assert not AuditEvent.objects.filter(action="notification-emailed").exists()


def test_retry_succeeds_once_server_answers(smtp_server, referred_exam, radiologist, settings):
    sign_critical(referred_exam, radiologist)
    working = settings.TELERAD
    settings.TELERAD = dataclasses.replace(working, smtp_port=free_port())
    mail.send_due_email(OWNER)
    settings.TELERAD = working
    EmailJob.objects.update(next_attempt_at=timezone.now())

    mail.send_due_email(OWNER)

    job = EmailJob.objects.get()
    assert job.state == EmailState.SENT
    assert job.attempts == 2
    assert len(smtp_server.messages) == 1


def test_last_attempt_fails_for_good(smtp_server, referred_exam, radiologist, settings):
    sign_critical(referred_exam, radiologist)
    settings.TELERAD = dataclasses.replace(settings.TELERAD, smtp_port=free_port(), delivery_max_attempts=2)
    mail.send_due_email(OWNER)
    EmailJob.objects.update(next_attempt_at=timezone.now())

    mail.send_due_email(OWNER)

    job = EmailJob.objects.get()
    assert job.state == EmailState.FAILED
    assert job.attempts == 2
    event = AuditEvent.objects.get(action="notification-emailed")
    assert event.outcome == 8


def test_rejected_recipient_fails_at_once(smtp_server, referred_exam, radiologist, referrer):
    with_email(referrer, REJECTED_ADDRESS)
    sign_critical(referred_exam, radiologist)

    mail.send_due_email(OWNER)

    job = EmailJob.objects.get()
    assert job.state == EmailState.FAILED
    assert job.attempts == 1
    assert "550" in job.last_error
    assert smtp_server.messages == []
    assert AuditEvent.objects.get(action="notification-emailed").outcome == 8


def test_job_leased_by_another_worker_is_skipped(smtp_server, referred_exam, radiologist):
    sign_critical(referred_exam, radiologist)
    job = EmailJob.objects.get()
    assert mail.claim(job.pk, "other-worker")

    assert mail.send_due_email(OWNER) == 0
    assert smtp_server.messages == []


def test_worker_thread_sends_queued_email(smtp_server, referred_exam, radiologist):
    sign_critical(referred_exam, radiologist)
    worker = mail.MailWorker(poll_seconds=0.1, owner=OWNER)

    delay = worker.run_once()

    assert delay == 0.0
    assert len(smtp_server.messages) == 1
    assert worker.run_once() == 0.1
