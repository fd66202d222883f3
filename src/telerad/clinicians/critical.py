"""Critical results: opened when a critical report is signed, acknowledged by the referrer, escalated when nobody does in time.

The signing transaction calls :func:`open_critical_result`, for preliminary
and final reports and for addenda. :func:`route_critical_result` decides who
gets the result first: the referring clinician of the exam, else the
department's contact, else (escalated at once) the escalation contact. The
signing is rejected when it finds nobody. The recipient gets a notification
in telerad and an e-mail. When nobody acknowledges within
``critical_ack_minutes``, :func:`check_escalations` (run by the servers'
background thread and ``telerad critical check``) notifies the escalation
contact. Every step writes an audit event.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from telerad.accounts.roles import Permission, has_permission
from telerad.audit import events as audit
from telerad.clinicians import mail, notifications
from telerad.clinicians.models import CriticalResult, NotificationKind
from telerad.reading.models import Exam, SignedKind, SignedReport
from telerad.reading.reports import audit_fields, exam_label

logger = logging.getLogger(__name__)

# Escalations one check makes; a longer backlog is taken by the next check, a few seconds later.
MAX_ESCALATIONS_PER_CHECK = 100


def resolve_contact(value: str, *, log_unknown: bool = True) -> tuple[AbstractBaseUser | None, str]:
    """Return the active user and the e-mail address that a configured contact names.

    A contact is a user name or an e-mail address. An address that belongs to
    exactly one active user resolves to that user; any other address is
    e-mailed only. An unknown user name resolves to nobody, and is logged
    unless `log_unknown` is False (pages that only show the contact).
    """
    value = value.strip()
    if not value:
        return None, ""
    users = get_user_model().objects.filter(is_active=True)
    if "@" in value:
        matches = list(users.filter(email__iexact=value)[:2])
        return (matches[0], matches[0].email) if len(matches) == 1 else (None, value)
    user = users.filter(username=value).first()
    if user is None:
        if log_unknown:
            logger.error("the critical result contact %r is not an active user", value)
        return None, ""
    return user, user.email


class RecipientSource(enum.Enum):
    """The role in which the first recipient of a critical result gets it."""

    REFERRING_CLINICIAN = "referring-clinician"
    DEPARTMENT_CONTACT = "department-contact"
    ESCALATION_CONTACT = "escalation-contact"


@dataclasses.dataclass(frozen=True)
class CriticalRoute:
    """The first recipient of a critical result of an exam: a user, an e-mail address only, or nobody (`source` None)."""

    source: RecipientSource | None
    user: AbstractBaseUser | None = None
    address: str = ""

    @property
    def reaches_someone(self) -> bool:
        return self.source is not None

    @property
    def display_name(self) -> str:
        if self.user is not None:
            return person_label(self.user)
        return self.address


def person_label(user: AbstractBaseUser) -> str:
    """Return the full name of `user` with the user name in brackets, or the user name alone."""
    full_name = user.get_full_name().strip() if hasattr(user, "get_full_name") else ""
    username = user.get_username()
    return f"{full_name} ({username})" if full_name else username


def _reachable_contact(value: str, *, log_unknown: bool) -> tuple[AbstractBaseUser | None, str]:
    """Resolve a configured contact; an address without a user counts only while e-mail is on, because nothing else reaches it."""
    user, address = resolve_contact(value, log_unknown=log_unknown)
    if user is None and not settings.TELERAD.email_enabled:
        return None, ""
    return user, address


def route_critical_result(exam: Exam, *, log_unknown: bool = True) -> CriticalRoute:
    """Return who would get a critical result of `exam` now.

    The active referring clinician comes first, then the department contact
    (TELERAD_CRITICAL_DEPARTMENT_CONTACT), then the escalation contact
    (TELERAD_CRITICAL_ESCALATION_CONTACT), to whom the result escalates at
    once. A contact given as an e-mail address of no user counts only while
    e-mail is on.
    """
    clinician = exam.referring_clinician
    if clinician is not None and clinician.is_active:
        return CriticalRoute(RecipientSource.REFERRING_CLINICIAN, clinician, clinician.email)
    config = settings.TELERAD
    user, address = _reachable_contact(config.critical_department_contact, log_unknown=log_unknown)
    if user is not None or address:
        return CriticalRoute(RecipientSource.DEPARTMENT_CONTACT, user, address)
    user, address = _reachable_contact(config.critical_escalation_contact, log_unknown=log_unknown)
    if user is not None or address:
        return CriticalRoute(RecipientSource.ESCALATION_CONTACT, user, address)
    return CriticalRoute(None)


def critical_link(result: CriticalResult) -> str:
    return reverse("critical:detail", args=[result.pk])


def _accession(exam: Exam) -> str:
    return exam.accession_number or _("(none)")


def open_critical_result(signed: SignedReport) -> CriticalResult | None:
    """Open the critical result of a report signed critical, and notify its first recipient.

    Preliminary and final reports and addenda each open their own result, so
    a final report signed critical after a critical preliminary one notifies
    the recipient again, about the final text. Call it inside the signing
    transaction, so that the result, its notification and its e-mail commit
    with the signature. A report not signed critical opens nothing and
    returns None.
    """
    if not signed.critical:
        return None
    exam = signed.exam
    route = route_critical_result(exam)
    first_recipient = route.source in (RecipientSource.REFERRING_CLINICIAN, RecipientSource.DEPARTMENT_CONTACT)
    recipient = route.user if first_recipient else None
    address = route.address if first_recipient else ""

    with transaction.atomic():
        result = CriticalResult.objects.create(
            exam=exam, signed_report=signed, opened_at=timezone.now(), recipient=recipient, recipient_address="" if recipient else address,
        )
        signer = signed.signer.get_username()
        target = result.recipient_label or "nobody (no referring clinician and no department contact)"
        _audit(result, audit.Action.CRITICAL_RESULT_OPENED, user=signer, detail=f"{signed.kind} report, for {target}")
        logger.info("critical result %s of a %s report opened for %s by user %s (%s)", result.pk, signed.kind, target, signer, exam_label(exam))
        if first_recipient:
            _notify_contact(result, recipient, address, NotificationKind.CRITICAL_RESULT, _opened_text(signed), actor=signer)
        else:
            _escalate(result, timezone.now(), reason="the exam has no referring clinician and no department contact can be reached")
    return result


def _opened_text(signed: SignedReport) -> str:
    accession = _accession(signed.exam)
    if signed.kind == SignedKind.PRELIMINARY:
        return _("A preliminary report of accession %(accession)s contains a critical result that awaits your acknowledgement.") % {
            "accession": accession,
        }
    return _("A critical result of accession %(accession)s awaits your acknowledgement.") % {"accession": accession}


def _notify_contact(
    result: CriticalResult, user: AbstractBaseUser | None, address: str, kind: NotificationKind, text: str, *, actor: str,
) -> None:
    """Notify a user in telerad (and by e-mail), or e-mail an address-only contact, and audit it."""
    link = critical_link(result)
    if user is not None:
        notification = notifications.notify(user, kind, exam=result.exam, text=text, link=link)
        channels = f"user {user.get_username()} by notification {notification.pk}"
        if notification.email_jobs.exists():
            channels += f" and e-mail to {user.email}"
    else:
        mail.queue_email(to_address=address, kind=kind, exam=result.exam, text=text, link=link)
        channels = f"{address} by e-mail only"
    _audit(result, audit.Action.CRITICAL_RESULT_NOTIFIED, user=actor, detail=f"{kind}: notified {channels}")


def may_acknowledge(user: AbstractBaseUser, result: CriticalResult) -> bool:
    """Return whether `user` may see and acknowledge `result`: its recipient, the escalation contact, or a lead radiologist."""
    if not user.is_authenticated:
        return False
    if user.pk in (result.recipient_id, result.escalated_to_id):
        return True
    if has_permission(user, Permission.MANAGE_READING):
        return True
    contact, _address = resolve_contact(settings.TELERAD.critical_escalation_contact)
    return contact is not None and contact.pk == user.pk


def acknowledge(result_id: int, user: AbstractBaseUser, *, address: str) -> tuple[CriticalResult, bool]:
    """Record that `user` acknowledged the result; return it and whether this call acknowledged it.

    Raise PermissionDenied when `user` may not acknowledge it. A second
    acknowledgement changes nothing and returns False. The signer of the
    report is notified of the first.
    """
    with transaction.atomic():
        result = CriticalResult.objects.select_for_update(of=("self",)).select_related(
            "exam__patient", "signed_report__signer", "acknowledged_by",
        ).get(pk=result_id)
        if not may_acknowledge(user, result):
            raise PermissionDenied(f"user {user.get_username()} may not acknowledge critical result {result.pk}")
        if result.acknowledged_at is not None:
            return result, False
        result.acknowledged_by = user
        result.acknowledged_at = timezone.now()
        result.save(update_fields=["acknowledged_by", "acknowledged_at"])
        waited = int((result.acknowledged_at - result.opened_at).total_seconds() // 60)
        _audit(
            result, audit.Action.CRITICAL_RESULT_ACKNOWLEDGED, user=user.get_username(), address=address,
            detail=f"after {waited} minutes{', after escalation' if result.escalated_at else ''}",
        )
        logger.info("critical result %s acknowledged by user %s after %d minutes (%s)", result.pk, user.get_username(), waited, exam_label(result.exam))
        signer = result.signed_report.signer
        if signer.is_active and signer.pk != user.pk:
            text = _("The critical result of accession %(accession)s was acknowledged by %(user)s.") % {
                "accession": _accession(result.exam), "user": user.get_username(),
            }
            notifications.notify(
                signer, NotificationKind.CRITICAL_ACKNOWLEDGED, exam=result.exam, text=text, link=reverse("reading:exam", args=[result.exam_id]),
            )
    return result, True


def check_escalations(now: datetime.datetime | None = None) -> int:
    """Escalate the results that nobody acknowledged within critical_ack_minutes; return how many were escalated."""
    now = now or timezone.now()
    deadline = now - datetime.timedelta(minutes=settings.TELERAD.critical_ack_minutes)
    due = CriticalResult.objects.filter(acknowledged_at__isnull=True, escalated_at__isnull=True, opened_at__lte=deadline)
    escalated = 0
    for result_id in list(due.order_by("opened_at", "id").values_list("pk", flat=True)[:MAX_ESCALATIONS_PER_CHECK]):
        with transaction.atomic():
            # Checked again under the lock: an acknowledgement or another node's check may have come first.
            result = (
                CriticalResult.objects.select_for_update(of=("self",)).select_related("exam__patient")
                .filter(pk=result_id, acknowledged_at__isnull=True, escalated_at__isnull=True).first()
            )
            if result is None:
                continue
            _escalate(result, now, reason=f"it was not acknowledged within {settings.TELERAD.critical_ack_minutes} minutes")
            escalated += 1
    return escalated


def _escalate(result: CriticalResult, now: datetime.datetime, *, reason: str) -> None:
    contact, address = resolve_contact(settings.TELERAD.critical_escalation_contact)
    result.escalated_at = now
    result.escalated_to = contact
    result.escalated_to_address = "" if contact else address
    result.save(update_fields=["escalated_at", "escalated_to", "escalated_to_address"])
    if contact is None and not address:
        _audit(result, audit.Action.CRITICAL_RESULT_ESCALATED, outcome=audit.Outcome.SERIOUS_FAILURE, detail=f"{reason}; no escalation contact is configured")
        logger.error(
            "critical result %s needs escalation because %s, but TELERAD_CRITICAL_ESCALATION_CONTACT names nobody to escalate to (%s)",
            result.pk, reason, exam_label(result.exam),
        )
        return
    _audit(result, audit.Action.CRITICAL_RESULT_ESCALATED, detail=f"{reason}; escalated to {result.escalated_to_label}")
    logger.warning("critical result %s escalated to %s: %s (%s)", result.pk, result.escalated_to_label, reason, exam_label(result.exam))
    text = _("A critical result of accession %(accession)s was not acknowledged in time and is escalated to you.") % {
        "accession": _accession(result.exam),
    }
    _notify_contact(result, contact, address, NotificationKind.CRITICAL_ESCALATED, text, actor="")


def _audit(
    result: CriticalResult, action: audit.Action, *, detail: str, user: str = "", address: str = "", outcome: audit.Outcome = audit.Outcome.SUCCESS,
) -> None:
    audit.record_event(
        action=action, outcome=outcome, user=user, address=address,
        detail=f"critical result {result.pk}, {exam_label(result.exam)}, signed report {result.signed_report_id}: {detail}",
        **audit_fields(result.exam),
    )


def open_results():
    """Return the results not acknowledged yet, oldest first."""
    return (
        CriticalResult.objects.filter(acknowledged_at__isnull=True)
        .select_related("exam", "recipient", "escalated_to", "signed_report__signer").order_by("opened_at", "id")
    )


def critical_text(signed: SignedReport) -> tuple[str, str]:
    """Return the heading and text that a critical result page shows of `signed`.

    An addendum is shown whole under "Addendum". A report shows its
    impression, or its whole text under "Report" when it has no impression.
    """
    if signed.kind == SignedKind.ADDENDUM:
        return _("Addendum"), signed.text
    impression = (signed.sections or {}).get("impression", "").strip()
    if impression:
        return _("Impression"), impression
    return _("Report"), signed.text
