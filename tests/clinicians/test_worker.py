"""`telerad worker`: the background work of the servers alone, with e-mails going to a real SMTP server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import datetime
import threading
import time

import pytest
from django.core.management import call_command
from django.utils import timezone

from telerad.clinicians.models import CriticalResult, EmailJob, EmailState
from telerad.core import background
from tests.clinicians.support import sign_critical, smtp_server, with_email  # noqa: F401 (fixture)
from tests.reading.reports_fixtures import create_exam
from tests.reading.reports_fixtures import radiologist  # noqa: F401 (fixture)

# The threads of the worker use their own database connections, so the test data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

ACK_MINUTES = 30
WAIT_SECONDS = 30.0
# The threads of exam sync with critical escalation, the e-mail outbox and the report delivery outbox.
THREAD_NAMES = {"telerad-worklist", "telerad-mail", "telerad-report-delivery"}


@pytest.fixture
def referrer(make_user):
    return with_email(make_user("referrer", "clinician"))


@pytest.fixture
def lead(make_user, settings):
    lead = with_email(make_user("lead", "lead-radiologist"))
    settings.TELERAD = dataclasses.replace(settings.TELERAD, critical_escalation_contact="lead", critical_ack_minutes=ACK_MINUTES)
    return lead


@pytest.fixture
def overdue_result(smtp_server, referrer, lead, radiologist) -> CriticalResult:
    """A critical result not acknowledged within the timeout, whose first e-mail is still pending."""
    exam = create_exam(accession="ACC-WORKER-1")
    exam.referring_clinician = referrer
    exam.save(update_fields=["referring_clinician"])
    sign_critical(exam, radiologist)
    result = CriticalResult.objects.get(exam=exam)
    CriticalResult.objects.filter(pk=result.pk).update(opened_at=timezone.now() - datetime.timedelta(minutes=ACK_MINUTES + 1))
    return result


def recipients(smtp_server) -> list[str]:
    return sorted(address for addresses, _message in smtp_server.messages for address in addresses)


def test_worker_once_sends_email_and_escalates(overdue_result, smtp_server, capsys):
    assert EmailJob.objects.get().state == EmailState.PENDING

    call_command("worker", "--once")

    output = capsys.readouterr().out
    overdue_result.refresh_from_db()
    assert "1 critical results escalated" in output
    assert "2 e-mails attempted" in output
    assert overdue_result.escalated_at is not None
    assert overdue_result.escalated_to.username == "lead"
    assert recipients(smtp_server) == ["lead@example.org", "referrer@example.org"]
    assert set(EmailJob.objects.values_list("state", flat=True)) == {EmailState.SENT}


def test_worker_threads_send_email_and_escalate(overdue_result, smtp_server):
    background.start()
    try:
        started = {thread.name for thread in threading.enumerate()}
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline and len(smtp_server.messages) < 2:
            time.sleep(0.1)
    finally:
        background.stop()

    stopped = {thread.name for thread in threading.enumerate()}
    assert THREAD_NAMES <= started
    assert THREAD_NAMES & stopped == set()
    overdue_result.refresh_from_db()
    assert overdue_result.escalated_at is not None
    assert overdue_result.escalated_to.username == "lead"
    assert recipients(smtp_server) == ["lead@example.org", "referrer@example.org"]
    subjects = sorted(message["Subject"] for _addresses, message in smtp_server.messages)
    assert subjects == [
        "Critical result not acknowledged: accession ACC-WORKER-1",
        "Critical result to acknowledge: accession ACC-WORKER-1",
    ]
    assert set(EmailJob.objects.values_list("state", flat=True)) == {EmailState.SENT}


def test_worker_once_without_email_configured(radiologist, capsys):
    call_command("worker", "--once")

    output = capsys.readouterr().out
    assert "0 critical results escalated" in output
    assert "0 e-mails attempted" in output
    assert "0 report deliveries attempted" in output
