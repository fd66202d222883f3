"""The outbox of report deliveries, and the worker that empties it.

``deliver_signed_report`` adds one job per target in the signing
transaction, so that a report is delivered exactly when its signature
commits, and the jobs survive restarts. A worker claims a due job with a
conditional UPDATE that sets a lease, so that of several workers on one
database only one sends it. A worker that stops while sending leaves its
lease to expire, and the job is sent again. So a receiver may get a report
twice, and a delivery that runs out of attempts stays listed as failed.
"""

from __future__ import annotations

import datetime
import logging

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F, Q
from django.utils import timezone

from telerad.core.workers import OutboxWorker, WorkerSlot
from telerad.audit import events as audit
from telerad.reading.delivery import hl7, transport
from telerad.reading.delivery.dicom_objects import ReportNotStorable, store_report_objects
from telerad.reading.delivery.document import build_document
from telerad.reading.delivery.fhir import build_diagnostic_report
from telerad.reading.delivery.models import DeliveryEndpoint, DeliveryJob, EndpointKind, JobState, JobTarget
from telerad.reading.delivery.pdf import render_pdf
from telerad.reading.models import SignedKind, SignedReport

logger = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 30.0
POLL_SECONDS = 5.0
# Jobs one pass of the worker takes on; it starts the next pass at once when it took any.
BATCH_SIZE = 20
DELIVERED_KINDS = {SignedKind.FINAL, SignedKind.ADDENDUM}


def deliver_signed_report(signed: SignedReport) -> None:
    """Queue the delivery of a final report or addendum: to the archive and to every enabled endpoint.

    Call it inside the signing transaction: the jobs commit with the
    signature, and the worker of this process starts on them after the
    commit. Calling it again for the same report adds no second job.
    """
    if signed.kind not in DELIVERED_KINDS:
        raise ValueError(f"only final reports and addenda are delivered, not a {signed.kind} report (signed report {signed.pk})")
    now = timezone.now()
    jobs = [DeliveryJob(signed_report=signed, target=JobTarget.ARCHIVE, next_attempt_at=now)]
    for endpoint in DeliveryEndpoint.objects.filter(enabled=True):
        jobs.append(DeliveryJob(signed_report=signed, target=endpoint.kind, endpoint=endpoint, next_attempt_at=now))
    with transaction.atomic():
        DeliveryJob.objects.bulk_create(jobs, ignore_conflicts=True)
    logger.info("report delivery queued signed_report=%s accession=%s jobs=%d", signed.pk, signed.exam.accession_number, len(jobs))
    transaction.on_commit(wake)


def retry_delay(attempts: int) -> float:
    """Return the seconds to wait after `attempts` failed attempts: doubling from FIRST_RETRY_SECONDS, capped."""
    maximum = float(settings.TELERAD.delivery_max_retry_seconds)
    return min(maximum, FIRST_RETRY_SECONDS * 2 ** min(attempts - 1, 30))


def lease_seconds() -> float:
    # Longer than any one attempt: the MLLP and HTTP timeouts bound the sending.
    return 4 * settings.TELERAD.delivery_timeout_seconds + 60


def _free_lease(now: datetime.datetime) -> Q:
    return Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)


def claim(job_id: int, owner: str) -> bool:
    """Take the lease of a due job; return False when it is not due or another worker holds it."""
    now = timezone.now()
    taken = (
        DeliveryJob.objects.filter(pk=job_id, state=JobState.PENDING, next_attempt_at__lte=now)
        .filter(_free_lease(now))
        .update(lease_owner=owner, lease_expires_at=now + datetime.timedelta(seconds=lease_seconds()))
    )
    return taken == 1


def due_job_ids(limit: int = BATCH_SIZE) -> list[int]:
    now = timezone.now()
    due = DeliveryJob.objects.filter(state=JobState.PENDING, next_attempt_at__lte=now).filter(_free_lease(now))
    return list(due.order_by("next_attempt_at", "id").values_list("pk", flat=True)[:limit])


def process_due_jobs(owner: str, *, limit: int = BATCH_SIZE) -> int:
    """Claim and attempt the due jobs, up to `limit`; return how many this worker attempted."""
    attempted = 0
    for job_id in due_job_ids(limit):
        if not claim(job_id, owner):
            continue
        attempt(DeliveryJob.objects.select_related("endpoint", "signed_report__exam", "signed_report__signer").get(pk=job_id), owner)
        attempted += 1
    return attempted


def attempt(job: DeliveryJob, owner: str) -> None:
    """Make one attempt at a claimed job and record its outcome."""
    try:
        detail = _send(job)
    except transport.DeliveryError as exc:
        _record_failure(job, owner, str(exc), permanent=exc.permanent)
    except ReportNotStorable as exc:
        _record_failure(job, owner, str(exc), permanent=True)
    except DatabaseError:
        raise
    except Exception as exc:
        # A fault of telerad itself: kept on the job for the administrators and retried like any failure.
        logger.exception("report delivery job %s failed unexpectedly signed_report=%s", job.pk, job.signed_report_id)
        _record_failure(job, owner, f"internal error: {type(exc).__name__}: {exc}", permanent=False)
    else:
        _record_success(job, owner, detail)


def _send(job: DeliveryJob) -> str:
    """Deliver the job's report once; return a description of what was sent."""
    signed = job.signed_report
    timeout = float(settings.TELERAD.delivery_timeout_seconds)
    if job.target == JobTarget.ARCHIVE:
        results = store_report_objects(signed)
        return "stored " + ", ".join(f"{result.sop_instance_uid} ({result.outcome.value})" for result in results)

    endpoint = job.endpoint
    if endpoint is None:
        raise transport.DeliveryError(f"job {job.pk} has no endpoint", permanent=True)
    document = build_document(signed)
    if endpoint.kind == EndpointKind.HL7_MLLP:
        message = hl7.build_oru(document, endpoint)
        acknowledgement = transport.send_mllp(endpoint, message, timeout=timeout)
        return f"ORU^R01 {message.control_id} acknowledged {acknowledgement.code} by {endpoint.address}"
    resource = build_diagnostic_report(document, render_pdf(document))
    status = transport.send_fhir(
        endpoint, resource.model_dump(mode="json", exclude_none=True),
        accession_system=settings.TELERAD.fhir_accession_system, timeout=timeout,
    )
    return f"DiagnosticReport accepted by {endpoint.address} with HTTP {status}"


def _owned(job: DeliveryJob, owner: str):
    return DeliveryJob.objects.filter(pk=job.pk, lease_owner=owner)


def _record_success(job: DeliveryJob, owner: str, detail: str) -> None:
    now = timezone.now()
    with transaction.atomic():
        updated = _owned(job, owner).update(
            state=JobState.SENT, attempts=F("attempts") + 1, sent_at=now, last_error="", lease_owner="", lease_expires_at=None,
        )
        _audit(job, audit.Outcome.SUCCESS, detail)
    if updated != 1:
        logger.warning("report delivery job %s sent after its lease expired; another worker may send it again", job.pk)
    logger.info("report delivered job=%s signed_report=%s target=%s: %s", job.pk, job.signed_report_id, _target_label(job), detail)


def _record_failure(job: DeliveryJob, owner: str, error: str, *, permanent: bool) -> None:
    attempts = job.attempts + 1
    max_attempts = settings.TELERAD.delivery_max_attempts
    gives_up = permanent or attempts >= max_attempts
    now = timezone.now()
    changes = {"attempts": F("attempts") + 1, "last_error": error, "lease_owner": "", "lease_expires_at": None}
    if gives_up:
        changes["state"] = JobState.FAILED
    else:
        changes["next_attempt_at"] = now + datetime.timedelta(seconds=retry_delay(attempts))
    with transaction.atomic():
        _owned(job, owner).update(**changes)
        if gives_up:
            _audit(job, audit.Outcome.SERIOUS_FAILURE, error)
    if gives_up:
        reason = "rejected" if permanent else f"failed {attempts} times"
        logger.error("report delivery %s, job given up job=%s signed_report=%s target=%s: %s", reason, job.pk, job.signed_report_id, _target_label(job), error)
    else:
        logger.warning(
            "report delivery attempt %d of %d failed, next in %gs job=%s signed_report=%s target=%s: %s",
            attempts, max_attempts, retry_delay(attempts), job.pk, job.signed_report_id, _target_label(job), error,
        )


def _target_label(job: DeliveryJob) -> str:
    return f"{job.endpoint.name} ({job.endpoint.address})" if job.endpoint is not None else str(job.target)


def _audit(job: DeliveryJob, outcome: audit.Outcome, detail: str) -> None:
    signed = job.signed_report
    exam = signed.exam
    study = exam.studies.order_by("study_date", "study_time", "pk").first()
    action = audit.Action.INSTANCES_STORED if job.target == JobTarget.ARCHIVE else audit.Action.REPORT_SENT
    audit.record_event(
        action=action,
        outcome=outcome,
        user=signed.signer.get_username() if job.target == JobTarget.ARCHIVE else "",
        address=job.endpoint.address if job.endpoint is not None else "",
        patient_id=exam.patient.patient_id,
        study_instance_uid=study.study_instance_uid if study is not None else "",
        detail=f"report delivery job {job.pk}, signed report {signed.pk}, accession {exam.accession_number}, to {_target_label(job)}: {detail}",
    )


def retry_now(job: DeliveryJob) -> bool:
    """Put a failed or waiting job back in the queue for an attempt at once, with a fresh count of attempts when failed."""
    changes = {"state": JobState.PENDING, "next_attempt_at": timezone.now()}
    if job.state == JobState.FAILED:
        changes["attempts"] = 0
    updated = DeliveryJob.objects.filter(pk=job.pk, state__in=[JobState.PENDING, JobState.FAILED]).update(**changes)
    if updated:
        transaction.on_commit(wake)
    return updated == 1


class DeliveryWorker(OutboxWorker):
    """A background thread that attempts due delivery jobs until stopped."""

    description = "report delivery worker"
    thread_name = "telerad-report-delivery"

    def __init__(self, *, poll_seconds: float = POLL_SECONDS, owner: str | None = None):
        super().__init__(poll_seconds=poll_seconds, owner=owner)

    def process_due(self, owner: str) -> int:
        return process_due_jobs(owner)


_slot = WorkerSlot(DeliveryWorker)
start = _slot.start
stop = _slot.stop
wake = _slot.wake
