"""The administration list of notification e-mails: failed and pending ones first, a retry action, and who may open it."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from telerad.clinicians import mail
from telerad.clinicians.models import EmailJob, EmailState, NotificationKind
from tests.clinicians.support import smtp_server  # noqa: F401 (fixture)
from tests.reading.reports_fixtures import create_exam

pytestmark = pytest.mark.django_db

LIST = "/admin/clinicians/emailjob/"
ERROR = "SMTPServerDisconnected: Connection unexpectedly closed"


def queue(accession: str, state: str, **fields) -> EmailJob:
    exam = create_exam(accession=accession)
    job = mail.queue_email(
        to_address=f"{accession.lower()}@example.org", kind=NotificationKind.CRITICAL_RESULT, exam=exam,
        text=f"A critical result of accession {accession} awaits your acknowledgement.", link="/critical/1/",
    )
    EmailJob.objects.filter(pk=job.pk).update(state=state, **fields)
    job.refresh_from_db()
    return job


@pytest.fixture
def jobs(smtp_server):
    return {
        "failed": queue("ACC-FAILED", EmailState.FAILED, attempts=10, last_error=ERROR),
        "pending": queue("ACC-PENDING", EmailState.PENDING, attempts=2, last_error="timed out"),
        "sent": queue("ACC-SENT", EmailState.SENT, attempts=1, sent_at=timezone.now()),
    }


@pytest.fixture
def it_client(make_user):
    client = Client()
    client.force_login(make_user("netadmin", "it"))
    return client


def test_list_shows_failed_and_pending(jobs, it_client):
    response = it_client.get(LIST)

    page = response.content.decode()
    assert response.status_code == 200
    assert "ACC-FAILED" in page
    assert "ACC-PENDING" in page
    assert "ACC-SENT" not in page
    assert ERROR in page


def test_list_shows_all_on_request(jobs, it_client):
    response = it_client.get(LIST, {"state": "all"})

    assert response.status_code == 200
    assert "ACC-SENT" in response.content.decode()


def test_retry_sends_failed_email(jobs, it_client, smtp_server):
    failed = jobs["failed"]

    response = it_client.post(LIST, {"action": "retry", "_selected_action": [failed.pk, jobs["sent"].pk]})

    assert response.status_code == 302
    failed.refresh_from_db()
    assert failed.state == EmailState.PENDING
    assert failed.attempts == 0
    assert failed.next_attempt_at <= timezone.now()
    assert EmailJob.objects.get(pk=jobs["sent"].pk).state == EmailState.SENT

    attempted = mail.send_due_email("test-worker")

    assert attempted == 2
    failed.refresh_from_db()
    assert failed.state == EmailState.SENT
    assert sorted(address for addresses, _message in smtp_server.messages for address in addresses) == [
        "acc-failed@example.org", "acc-pending@example.org",
    ]


@pytest.mark.parametrize(("role", "status"), [("it", 200), ("administrator", 200), ("radiologist", 302), ("auditor", 302)])
def test_list_opens_to_network_administrators(jobs, make_user, role, status):
    client = Client()
    client.force_login(make_user("walker", role))

    response = client.get(LIST)

    assert response.status_code == status


def test_emails_cannot_be_added_or_deleted(jobs, it_client):
    added = it_client.get(LIST + "add/")
    listed = it_client.get(LIST)
    it_client.post(LIST, {"action": "delete_selected", "_selected_action": [jobs["failed"].pk]})

    assert added.status_code == 403
    assert 'value="delete_selected"' not in listed.content.decode()
    assert 'value="retry"' in listed.content.decode()
    assert EmailJob.objects.filter(pk=jobs["failed"].pk).exists()
