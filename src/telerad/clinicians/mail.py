"""The e-mail outbox of notifications, and the worker that sends it through the configured SMTP server.

E-mails are queued in the transaction that creates their notification, so
they survive restarts and none goes out for a change that rolled back. Jobs
are claimed with a lease and retried with growing waits, as report
deliveries are (see :mod:`telerad.reading.delivery.outbox`), so a recipient
may get an e-mail twice when a worker stops while sending. An e-mail names
the accession number and links to telerad; it never carries patient names or
report text.
"""

from __future__ import annotations

import datetime
import logging
import smtplib

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.backends.smtp import EmailBackend
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from telerad.audit import events as audit
from telerad.clinicians.models import EmailJob, EmailState, Notification, NotificationKind
from telerad.core.workers import OutboxWorker, WorkerSlot
from telerad.reading.delivery.outbox import retry_delay
from telerad.reading.models import Exam
from telerad.reading.reports import audit_fields

logger = logging.getLogger(__name__)

POLL_SECONDS = 5.0
# Jobs one pass of the worker takes on; it starts the next pass at once when it took any.
BATCH_SIZE = 20

# Translated when the e-mail is composed.
SUBJECTS = {
    NotificationKind.CRITICAL_RESULT: gettext_noop("Critical result to acknowledge: accession %(accession)s"),
    NotificationKind.CRITICAL_ESCALATED: gettext_noop("Critical result not acknowledged: accession %(accession)s"),
    NotificationKind.CRITICAL_ACKNOWLEDGED: gettext_noop("Critical result acknowledged: accession %(accession)s"),
    NotificationKind.QUESTION_ASKED: gettext_noop("Question for you: accession %(accession)s"),
    NotificationKind.QUESTION_REPLIED: gettext_noop("New message in a question: accession %(accession)s"),
    NotificationKind.QUESTION_ANSWERED: gettext_noop("Question answered: accession %(accession)s"),
    NotificationKind.QUESTION_CLOSED: gettext_noop("Question closed: accession %(accession)s"),
}


def absolute_link(link: str) -> str:
    return settings.TELERAD.base_url + link if link else settings.TELERAD.base_url + "/"


def compose(kind: str, accession: str, text: str, link: str) -> tuple[str, str]:
    """Return the subject and body of a notification's e-mail: its text and link, without patient data."""
    subject = _(SUBJECTS[NotificationKind(kind)]) % {"accession": accession or "-"}
    body = "\n\n".join([
        text,
        _("Open it in telerad: %(url)s") % {"url": absolute_link(link)},
        _("This e-mail carries no patient data. Sign in to telerad to see the exam."),
    ])
    return subject, body + "\n"


def queue_email(*, to_address: str, kind: str, exam: Exam | None, text: str, link: str, notification: Notification | None = None) -> EmailJob | None:
    """Add an e-mail to the outbox; return None when e-mail is off or there is no address.

    Call it inside the transaction that creates the notification.
    """
    config = settings.TELERAD
    if not config.email_enabled:
        return None
    if not to_address:
        logger.warning("no e-mail address for a %s notification accession=%s; shown in telerad only", kind, exam.accession_number if exam else "")
        return None
    accession = exam.accession_number if exam is not None else ""
    subject, body = compose(kind, accession, text, link)
    job = EmailJob.objects.create(
        notification=notification, kind=kind, exam=exam, to_address=to_address, subject=subject, body=body, next_attempt_at=timezone.now(),
    )
    logger.info("e-mail queued job=%s kind=%s accession=%s", job.pk, kind, accession)
    transaction.on_commit(wake)
    return job


def queue_notification_email(notification: Notification) -> EmailJob | None:
    return queue_email(
        to_address=notification.recipient.email, kind=notification.kind, exam=notification.exam, text=notification.text,
        link=notification.link, notification=notification,
    )


# The worker


def lease_seconds() -> float:
    # Longer than any one attempt, which the SMTP timeout bounds.
    return 4 * settings.TELERAD.delivery_timeout_seconds + 60


def _free_lease(now: datetime.datetime) -> Q:
    return Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)


def claim(job_id: int, owner: str) -> bool:
    """Take the lease of a due job; return False when it is not due or another worker holds it."""
    now = timezone.now()
    claimed_rows = (
        EmailJob.objects.filter(pk=job_id, state=EmailState.PENDING, next_attempt_at__lte=now)
        .filter(_free_lease(now))
        .update(lease_owner=owner, lease_expires_at=now + datetime.timedelta(seconds=lease_seconds()))
    )
    return claimed_rows == 1


def due_job_ids(limit: int = BATCH_SIZE) -> list[int]:
    now = timezone.now()
    due = EmailJob.objects.filter(state=EmailState.PENDING, next_attempt_at__lte=now).filter(_free_lease(now))
    return list(due.order_by("next_attempt_at", "id").values_list("pk", flat=True)[:limit])


def send_due_email(owner: str, *, limit: int = BATCH_SIZE) -> int:
    """Claim and send the due e-mails, up to `limit`; return how many this worker attempted."""
    if not settings.TELERAD.email_enabled:
        return 0
    attempted = 0
    for job_id in due_job_ids(limit):
        if not claim(job_id, owner):
            continue
        attempt(EmailJob.objects.select_related("exam__patient", "notification__recipient").get(pk=job_id), owner)
        attempted += 1
    return attempted


def smtp_connection() -> EmailBackend:
    config = settings.TELERAD
    return EmailBackend(
        host=config.smtp_host, port=config.smtp_port_or_default, username=config.smtp_user, password=config.smtp_password,
        use_tls=config.smtp_starttls, use_ssl=config.smtp_tls, timeout=config.delivery_timeout_seconds, fail_silently=False,
    )


def _is_permanent(exc: Exception) -> bool:
    """Return whether the server rejected the message for good (a 5xx reply), so that retrying cannot help.

    A rejected login (535) is retried, because fixing the configuration lets it succeed.
    """
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _message in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return False
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code >= 500
    return False


def attempt(job: EmailJob, owner: str) -> None:
    """Make one attempt at a claimed job and record its outcome."""
    config = settings.TELERAD
    message = EmailMessage(job.subject, job.body, from_email=config.mail_from, to=[job.to_address], connection=smtp_connection())
    try:
        message.send()
    except (smtplib.SMTPException, OSError) as exc:
        _record_failure(job, owner, f"{type(exc).__name__}: {exc}", permanent=_is_permanent(exc))
    else:
        _record_success(job, owner)


def _owned(job: EmailJob, owner: str):
    return EmailJob.objects.filter(pk=job.pk, lease_owner=owner)


def _recipient_label(job: EmailJob) -> str:
    return job.notification.recipient.get_username() if job.notification is not None else "an address-only contact"


def _record_success(job: EmailJob, owner: str) -> None:
    with transaction.atomic():
        updated = _owned(job, owner).update(
            state=EmailState.SENT, attempts=F("attempts") + 1, sent_at=timezone.now(), last_error="", lease_owner="", lease_expires_at=None,
        )
        _audit(job, audit.Outcome.SUCCESS, "accepted by the SMTP server")
    if updated != 1:
        logger.warning("e-mail job %s sent after its lease expired; another worker may send it again", job.pk)
    logger.info("e-mail sent job=%s kind=%s accession=%s recipient=%s", job.pk, job.kind, _accession(job), _recipient_label(job))


def _record_failure(job: EmailJob, owner: str, error: str, *, permanent: bool) -> None:
    attempts = job.attempts + 1
    max_attempts = settings.TELERAD.delivery_max_attempts
    gives_up = permanent or attempts >= max_attempts
    changes = {"attempts": F("attempts") + 1, "last_error": error, "lease_owner": "", "lease_expires_at": None}
    if gives_up:
        changes["state"] = EmailState.FAILED
    else:
        changes["next_attempt_at"] = timezone.now() + datetime.timedelta(seconds=retry_delay(attempts))
    with transaction.atomic():
        _owned(job, owner).update(**changes)
        if gives_up:
            _audit(job, audit.Outcome.SERIOUS_FAILURE, error)
    if gives_up:
        reason = "rejected" if permanent else f"failed {attempts} times"
        logger.error("e-mail %s, job given up job=%s kind=%s accession=%s: %s", reason, job.pk, job.kind, _accession(job), error)
    else:
        logger.warning(
            "e-mail attempt %d of %d failed, next in %gs job=%s kind=%s accession=%s: %s",
            attempts, max_attempts, retry_delay(attempts), job.pk, job.kind, _accession(job), error,
        )


def _accession(job: EmailJob) -> str:
    return job.exam.accession_number if job.exam is not None else ""


def _audit(job: EmailJob, outcome: audit.Outcome, detail: str) -> None:
    identifiers = audit_fields(job.exam) if job.exam is not None else {}
    audit.record_event(
        action=audit.Action.NOTIFICATION_EMAILED,
        outcome=outcome,
        user=job.notification.recipient.get_username() if job.notification is not None else "",
        address=settings.TELERAD.smtp_host,
        detail=f"e-mail job {job.pk}, {job.kind}, accession {_accession(job) or '(none)'}, to {job.to_address}: {detail}",
        **identifiers,
    )


def retry_now(job: EmailJob) -> bool:
    """Put a failed or waiting e-mail back in the outbox for an attempt at once, with a fresh count of attempts when failed."""
    changes = {"state": EmailState.PENDING, "next_attempt_at": timezone.now()}
    if job.state == EmailState.FAILED:
        changes["attempts"] = 0
    updated = EmailJob.objects.filter(pk=job.pk, state__in=[EmailState.PENDING, EmailState.FAILED]).update(**changes)
    if updated:
        transaction.on_commit(wake)
    return updated == 1


class MailWorker(OutboxWorker):
    """A background thread that sends due e-mails until stopped."""

    description = "e-mail worker"
    thread_name = "telerad-mail"

    def __init__(self, *, poll_seconds: float = POLL_SECONDS, owner: str | None = None):
        super().__init__(poll_seconds=poll_seconds, owner=owner)

    def process_due(self, owner: str) -> int:
        return send_due_email(owner)


_slot = WorkerSlot(MailWorker)
start = _slot.start
stop = _slot.stop
wake = _slot.wake
