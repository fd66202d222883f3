from __future__ import annotations

import dataclasses
import datetime
import threading
import time

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from hl7apy.parser import parse_message

from telerad.archive.models import Instance
from telerad.audit.models import AuditEvent
from telerad.reading.delivery import deliver_signed_report, outbox
from telerad.reading.delivery.dicom_objects import report_uid
from telerad.reading.delivery.models import DeliveryEndpoint, DeliveryJob, EndpointKind, JobState, JobTarget

from .delivery_support import (  # noqa: F401
    FhirServer, MllpListener, final_report, fhir_server, free_port, make_exam, mllp_listener, radiologist, sign, store_sample_study,
)

pytestmark = pytest.mark.django_db(transaction=True)


def mllp_endpoint(port: int, name: str = "RIS") -> DeliveryEndpoint:
    return DeliveryEndpoint.objects.create(name=name, kind=EndpointKind.HL7_MLLP, host="127.0.0.1", port=port)


def fhir_endpoint(url: str) -> DeliveryEndpoint:
    return DeliveryEndpoint.objects.create(name="EHR", kind=EndpointKind.FHIR, url=url)


def job_for(endpoint: DeliveryEndpoint | None) -> DeliveryJob:
    if endpoint is None:
        return DeliveryJob.objects.get(target=JobTarget.ARCHIVE)
    return DeliveryJob.objects.get(endpoint=endpoint)


def make_due(job: DeliveryJob) -> None:
    DeliveryJob.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())


@pytest.fixture
def short_timeouts(settings):
    settings.TELERAD = dataclasses.replace(settings.TELERAD, delivery_timeout_seconds=3, delivery_max_attempts=3)


def test_queue_one_job_per_target(final_report, mllp_listener):
    mllp = mllp_endpoint(mllp_listener.port)
    DeliveryEndpoint.objects.create(name="off", kind=EndpointKind.FHIR, url="http://127.0.0.1:9/fhir", enabled=False)

    deliver_signed_report(final_report)
    deliver_signed_report(final_report)

    jobs = DeliveryJob.objects.order_by("id")
    assert [(job.target, job.endpoint_id, job.state) for job in jobs] == [
        (JobTarget.ARCHIVE, None, JobState.PENDING),
        (JobTarget.HL7_MLLP, mllp.pk, JobState.PENDING),
    ]


def test_preliminary_is_not_delivered(radiologist):
    preliminary = sign(make_exam(store_sample_study(), accession="P1"), radiologist, kind="preliminary")

    with pytest.raises(ValueError, match="preliminary"):
        deliver_signed_report(preliminary)
    assert not DeliveryJob.objects.exists()


def test_rolled_back_signing_leaves_no_job(final_report):
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            deliver_signed_report(final_report)
            raise RuntimeError("signing failed")

    assert not DeliveryJob.objects.exists()


def test_deliver_to_archive_mllp_and_fhir(final_report, mllp_listener, fhir_server):
    mllp = mllp_endpoint(mllp_listener.port)
    fhir = fhir_endpoint(fhir_server.url)
    deliver_signed_report(final_report)

    attempted = outbox.process_due_jobs("test-worker")

    assert attempted == 3
    assert set(DeliveryJob.objects.values_list("state", flat=True)) == {JobState.SENT}
    assert Instance.objects.filter(sop_instance_uid__in=[report_uid(final_report, "pdf"), report_uid(final_report, "sr")]).count() == 2
    assert len(mllp_listener.messages) == 1
    message = parse_message(mllp_listener.messages[0], find_groups=False)
    assert message.obr.obr_3.to_er7() == "ACC1001"
    assert message.obr.obr_25.to_er7() == "F"
    assert len(fhir_server.requests) == 1
    method, path, request = fhir_server.requests[0]
    assert method == "PUT"
    assert path == "/fhir/DiagnosticReport?identifier=urn%3Atelerad%3Aaccession-number%7CACC1001"
    assert request["content-type"].startswith("application/fhir+json")
    assert DiagnosticReport.model_validate(request["body"]).status == "final"
    assert "id" not in request["body"]
    sent = AuditEvent.objects.filter(action="report-sent", outcome=0)
    assert sent.count() == 2
    assert {event.address for event in sent} == {mllp.address, fhir.url}
    assert AuditEvent.objects.filter(action="instances-stored", user="drsmith").count() == 1


def test_retry_while_peer_is_down(final_report, short_timeouts):
    port = free_port()
    endpoint = mllp_endpoint(port)
    deliver_signed_report(final_report)
    DeliveryJob.objects.filter(target=JobTarget.ARCHIVE).delete()

    before = timezone.now()
    outbox.process_due_jobs("test-worker")
    job = job_for(endpoint)

    assert job.state == JobState.PENDING
    assert job.attempts == 1
    assert "connection to 127.0.0.1" in job.last_error
    assert job.next_attempt_at >= before + datetime.timedelta(seconds=outbox.FIRST_RETRY_SECONDS)
    assert outbox.process_due_jobs("test-worker") == 0, "a job waits for its next attempt"

    listener = MllpListener()
    try:
        endpoint.port = listener.port
        endpoint.save()
        make_due(job)
        outbox.process_due_jobs("test-worker")
    finally:
        listener.stop()

    job.refresh_from_db()
    assert job.state == JobState.SENT
    assert job.attempts == 2
    assert job.last_error == ""
    assert len(listener.messages) == 1


def test_gives_up_after_max_attempts(final_report, short_timeouts):
    endpoint = mllp_endpoint(free_port())
    deliver_signed_report(final_report)
    job = job_for(endpoint)

    for _ in range(3):
        make_due(job)
        outbox.process_due_jobs("test-worker")

    job.refresh_from_db()
    assert job.state == JobState.FAILED
    assert job.attempts == 3
    assert AuditEvent.objects.filter(action="report-sent", outcome=8).count() == 1


def test_backoff_doubles_up_to_cap(settings):
    settings.TELERAD = dataclasses.replace(settings.TELERAD, delivery_max_retry_seconds=200)

    assert [outbox.retry_delay(attempts) for attempts in range(1, 6)] == [30, 60, 120, 200, 200]


def test_application_error_ack_is_retried(final_report, mllp_listener):
    mllp_listener.reply_code, mllp_listener.reply_text = "AE", "Patient not found"
    endpoint = mllp_endpoint(mllp_listener.port)
    deliver_signed_report(final_report)

    outbox.process_due_jobs("test-worker")

    job = job_for(endpoint)
    assert job.state == JobState.PENDING
    assert job.last_error == f"{endpoint.address} acknowledged with AE: Patient not found"


def test_application_reject_ack_fails(final_report, mllp_listener):
    mllp_listener.reply_code, mllp_listener.reply_text = "AR", "Message type not supported"
    endpoint = mllp_endpoint(mllp_listener.port)
    deliver_signed_report(final_report)

    outbox.process_due_jobs("test-worker")

    job = job_for(endpoint)
    assert job.state == JobState.FAILED
    assert job.attempts == 1
    assert "AR: Message type not supported" in job.last_error


def test_fhir_client_error_fails_and_server_error_retries(final_report, fhir_server):
    endpoint = fhir_endpoint(fhir_server.url)
    deliver_signed_report(final_report)
    job = job_for(endpoint)

    fhir_server.status = 503
    outbox.process_due_jobs("test-worker")
    job.refresh_from_db()
    assert job.state == JobState.PENDING
    assert "HTTP 503" in job.last_error

    fhir_server.status = 422
    make_due(job)
    outbox.process_due_jobs("test-worker")
    job.refresh_from_db()
    assert job.state == JobState.FAILED
    assert "HTTP 422" in job.last_error
    assert "bad report" in job.last_error


def test_addendum_is_sent_as_correction(final_report, radiologist, mllp_listener, fhir_server):
    mllp_endpoint(mllp_listener.port)
    fhir_endpoint(fhir_server.url)
    deliver_signed_report(final_report)
    outbox.process_due_jobs("test-worker")
    addendum = sign(final_report.exam, radiologist, kind="addendum", sections={"addendum": "Small lesion."})

    deliver_signed_report(addendum)
    outbox.process_due_jobs("test-worker")

    assert DeliveryJob.objects.filter(signed_report=addendum, state=JobState.SENT).count() == 3
    assert parse_message(mllp_listener.messages[1], find_groups=False).obr.obr_25.to_er7() == "C"
    assert fhir_server.requests[1][2]["body"]["status"] == "amended"
    assert Instance.objects.filter(sop_instance_uid=report_uid(addendum, "sr")).exists()


def test_two_workers_send_each_job_once(radiologist, mllp_listener):
    mllp_endpoint(mllp_listener.port)
    signed = [sign(make_exam(None, accession=f"TW{number}"), radiologist) for number in range(6)]
    for item in signed:
        deliver_signed_report(item)
    DeliveryJob.objects.filter(target=JobTarget.ARCHIVE).delete()
    barrier = threading.Barrier(2, timeout=10)
    counts = {}

    def work(owner: str) -> None:
        try:
            barrier.wait()
            counts[owner] = outbox.process_due_jobs(owner)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(f"worker-{number}",)) for number in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sum(counts.values()) == 6
    accessions = sorted(parse_message(message, find_groups=False).obr.obr_3.to_er7() for message in mllp_listener.messages)
    assert accessions == [f"TW{number}" for number in range(6)]
    assert set(DeliveryJob.objects.values_list("state", flat=True)) == {JobState.SENT}


def test_claim_is_exclusive(final_report, mllp_listener):
    endpoint = mllp_endpoint(mllp_listener.port)
    deliver_signed_report(final_report)
    job = job_for(endpoint)

    assert outbox.claim(job.pk, "first") is True
    assert outbox.claim(job.pk, "second") is False
    DeliveryJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - datetime.timedelta(seconds=1))
    assert outbox.claim(job.pk, "second") is True


def test_worker_thread_delivers_after_commit(final_report, mllp_listener):
    mllp_endpoint(mllp_listener.port)
    worker = outbox.start()
    try:
        with transaction.atomic():
            deliver_signed_report(final_report)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and DeliveryJob.objects.exclude(state=JobState.SENT).exists():
            time.sleep(0.1)
    finally:
        outbox.stop()

    assert not worker._thread.is_alive()
    assert set(DeliveryJob.objects.values_list("state", flat=True)) == {JobState.SENT}
    assert len(mllp_listener.messages) == 1


def test_worker_command_once(final_report, mllp_listener, capsys):
    mllp_endpoint(mllp_listener.port)
    deliver_signed_report(final_report)

    call_command("worker", "--once")

    assert "2 report deliveries attempted" in capsys.readouterr().out
    assert len(mllp_listener.messages) == 1


def test_admin_lists_and_retries_failed_jobs(final_report, make_user, short_timeouts):
    endpoint = mllp_endpoint(free_port())
    deliver_signed_report(final_report)
    DeliveryJob.objects.filter(target=JobTarget.ARCHIVE).delete()
    job = job_for(endpoint)
    DeliveryJob.objects.filter(pk=job.pk).update(state=JobState.FAILED, attempts=3, last_error="no ACK from 127.0.0.1 within 3 s")
    client = Client()
    client.force_login(make_user("netadmin", "it"))

    page = client.get("/admin/reading/deliveryjob/")
    retried = client.post("/admin/reading/deliveryjob/", {"action": "retry", "_selected_action": [job.pk]})

    assert page.status_code == 200
    assert "no ACK from 127.0.0.1 within 3 s" in page.content.decode()
    assert retried.status_code == 302
    job.refresh_from_db()
    assert job.state == JobState.PENDING
    assert job.attempts == 0
    assert job.next_attempt_at <= timezone.now()


def test_admin_endpoint_pages_need_network_permission(make_user, db):
    client = Client()
    client.force_login(make_user("office", "administrator"))
    allowed = client.get("/admin/reading/deliveryendpoint/add/")
    client.force_login(make_user("reader", "radiologist"))
    refused = client.get("/admin/reading/deliveryendpoint/")

    assert allowed.status_code == 200
    assert refused.status_code == 302


def test_admin_endpoint_form_checks_kind(make_user, db):
    client = Client()
    client.force_login(make_user("netadmin", "it"))

    response = client.post("/admin/reading/deliveryendpoint/add/", {"name": "RIS", "kind": "hl7-mllp", "enabled": "on"})
    created = client.post("/admin/reading/deliveryendpoint/add/", {"name": "RIS", "kind": "hl7-mllp", "host": "127.0.0.1", "port": "2575", "enabled": "on"})

    assert response.status_code == 200
    assert "needs a host" in response.content.decode()
    assert created.status_code == 302
    assert DeliveryEndpoint.objects.get(name="RIS").port == 2575
    assert AuditEvent.objects.filter(action="remote-ae-changed", detail__contains="report delivery endpoint RIS").exists()
