"""Claims: the reader who is reading an exam, so that no two readers report it at once.

A claim lasts while its holder works on the exam. Every request of the holder
on the exam moves ``claim_active_at`` (:func:`record_activity`). After
``claim_timeout_minutes`` without one, the claim has lapsed: anyone may then
claim the exam, and :func:`expire_lapsed_claims` clears it.

Every change is one conditional UPDATE that names the holder it expects (no
holder, or the lapsed one) and checks the number of rows it changed. Of two
readers who claim at the same moment, the database lets exactly one UPDATE
match on PostgreSQL and on SQLite, and the other reader gets ClaimRefused.
"""

from __future__ import annotations

import datetime
import logging

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from telerad.accounts.roles import Permission, has_permission
from telerad.audit import events as audit
from telerad.reading.models import OPEN_STATUSES, Exam, ExamStatus, ExamStudy

logger = logging.getLogger(__name__)

# Lapsed claims cleared per run of expire_lapsed_claims; the rest wait for the next run.
EXPIRE_BATCH_SIZE = 500


class ClaimRefused(Exception):
    """The claim, release or reassignment was rejected; the message gives the reason, for the user."""


def claim_timeout() -> datetime.timedelta:
    return datetime.timedelta(minutes=settings.TELERAD.claim_timeout_minutes)


def lapse_cutoff(now: datetime.datetime | None = None) -> datetime.datetime:
    """Return the time before which a holder's last activity means that the claim has lapsed."""
    return (now or timezone.now()) - claim_timeout()


def active_holder_id(exam: Exam, cutoff: datetime.datetime) -> int | None:
    """Return the id of the user whose claim on `exam` is still active, or None."""
    if exam.claimed_by_id is None or exam.claim_active_at is None or exam.claim_active_at < cutoff:
        return None
    return exam.claimed_by_id


def _first_study_uid(exam: Exam) -> str:
    return ExamStudy.objects.filter(exam=exam).order_by("id").values_list("study__study_instance_uid", flat=True).first() or ""


def _record(action: audit.Action, exam: Exam, *, user: str, address: str, detail: str) -> None:
    audit.record_event(
        action=action,
        user=user,
        address=address,
        patient_id=exam.patient.patient_id,
        study_instance_uid=_first_study_uid(exam),
        detail=f"exam={exam.pk}; accession={exam.accession_number}; {detail}",
    )


def _load(exam_id: int) -> Exam:
    """Return the exam with its holder and patient; raise Exam.DoesNotExist when it is gone."""
    return Exam.objects.select_related("claimed_by", "patient").get(pk=exam_id)


def _free_or_lapsed(exam: Exam, cutoff: datetime.datetime) -> Q:
    """Match the row while it is unclaimed, or while the lapsed claim this process read is still there.

    record_activity never moves a lapsed claim, so the holder coming back does not revive it.
    """
    if exam.claimed_by_id is None:
        return Q(claimed_by__isnull=True)
    return Q(claimed_by=exam.claimed_by_id, claim_active_at__lt=cutoff)


def _held_by(exam: Exam) -> Q:
    """Match the row while its holder is still the one this process read."""
    if exam.claimed_by_id is None:
        return Q(claimed_by__isnull=True)
    return Q(claimed_by=exam.claimed_by_id)


def _claim_fields(user: AbstractBaseUser, now: datetime.datetime) -> dict[str, object]:
    return {
        "claimed_by": user,
        "claimed_at": now,
        "claim_active_at": now,
        "first_claimed_at": Coalesce(F("first_claimed_at"), Value(now)),
        "status": Case(When(status=ExamStatus.UNREAD, then=Value(ExamStatus.IN_PROGRESS)), default=F("status")),
        "updated_at": now,
    }


def _release_fields(now: datetime.datetime) -> dict[str, object]:
    # A draft or preliminary report keeps its status; only "being read" goes back to unread.
    return {
        "claimed_by": None,
        "claimed_at": None,
        "claim_active_at": None,
        "status": Case(When(status=ExamStatus.IN_PROGRESS, then=Value(ExamStatus.UNREAD)), default=F("status")),
        "updated_at": now,
    }


def _audit_lapse(exam: Exam, address: str) -> None:
    holder = exam.claimed_by.get_username() if exam.claimed_by else ""
    _record(
        audit.Action.CLAIM_LAPSED, exam, user=holder, address=address,
        detail=f"no activity since {exam.claim_active_at.isoformat() if exam.claim_active_at else '-'}",
    )


def claim(exam_id: int, user: AbstractBaseUser, *, address: str = "") -> Exam:
    """Claim an open exam for `user`, or keep their active claim; return the exam as it is now.

    Raises ClaimRefused when another reader's claim is active or the exam
    has its final report, and Exam.DoesNotExist for an unknown exam.
    """
    now = timezone.now()
    cutoff = lapse_cutoff(now)
    if Exam.objects.filter(pk=exam_id, claimed_by=user, claim_active_at__gte=cutoff).update(claim_active_at=now):
        return _load(exam_id)

    exam = _load(exam_id)
    if exam.status not in OPEN_STATUSES:
        raise ClaimRefused(_("This exam is reported already, so it cannot be claimed."))
    holder_id = active_holder_id(exam, cutoff)
    if holder_id is not None:
        raise ClaimRefused(_("%(name)s is reading this exam.") % {"name": exam.claimed_by.get_username()})

    with transaction.atomic():
        condition = Q(pk=exam_id, status__in=OPEN_STATUSES) & _free_or_lapsed(exam, cutoff)
        if Exam.objects.filter(condition).update(**_claim_fields(user, now)) != 1:
            # Another reader's UPDATE matched first.
            current = _load(exam_id)
            name = current.claimed_by.get_username() if current.claimed_by else _("another reader")
            raise ClaimRefused(_("%(name)s claimed this exam a moment ago.") % {"name": name})
        if exam.claimed_by_id is not None:
            _audit_lapse(exam, address)
        claimed = _load(exam_id)
        _record(audit.Action.EXAM_CLAIMED, claimed, user=user.get_username(), address=address, detail=f"status={exam.status}")
    logger.info("exam claimed exam_pk=%s accession=%s user=%s", exam_id, exam.accession_number, user.get_username())
    return claimed


def record_activity(exam_id: int, user: AbstractBaseUser) -> bool:
    """Record a request of the claim's holder on the exam, which keeps the claim alive; return whether `user` has an active claim."""
    now = timezone.now()
    return Exam.objects.filter(pk=exam_id, claimed_by=user, claim_active_at__gte=lapse_cutoff(now)).update(claim_active_at=now) == 1


def release(exam_id: int, user: AbstractBaseUser, *, address: str = "") -> Exam:
    """End the claim on an exam: the holder's own, or anyone's for a user with MANAGE_READING.

    Raises ClaimRefused when the exam is not claimed or the claim belongs to someone else.
    """
    now = timezone.now()
    exam = _load(exam_id)
    if exam.claimed_by_id is None:
        raise ClaimRefused(_("Nobody is reading this exam."))
    if exam.claimed_by_id != user.pk and not has_permission(user, Permission.MANAGE_READING):
        raise ClaimRefused(_("Only %(name)s or a lead radiologist can release this claim.") % {"name": exam.claimed_by.get_username()})

    holder = exam.claimed_by.get_username()
    with transaction.atomic():
        if Exam.objects.filter(Q(pk=exam_id) & _held_by(exam)).update(**_release_fields(now)) != 1:
            raise ClaimRefused(_("The claim changed a moment ago. Reload the page and try again."))
        _record(audit.Action.CLAIM_RELEASED, exam, user=user.get_username(), address=address, detail=f"holder={holder}")
    logger.info("claim released exam_pk=%s accession=%s holder=%s by=%s", exam_id, exam.accession_number, holder, user.get_username())
    return _load(exam_id)


def record_release_by_signing(exam: Exam, user: AbstractBaseUser, *, address: str) -> None:
    """Audit the end of `user`'s claim when they sign the exam's report; the caller clears the claim in the same transaction."""
    _record(audit.Action.CLAIM_RELEASED, exam, user=user.get_username(), address=address, detail=f"holder={user.get_username()}; signed")
    logger.info("claim released by signing exam_pk=%s accession=%s holder=%s", exam.pk, exam.accession_number, user.get_username())


def reassign(exam_id: int, reader: AbstractBaseUser, by: AbstractBaseUser, *, address: str = "") -> Exam:
    """Give the claim on an open exam to `reader`, taking it from its holder if there is one; for users with MANAGE_READING.

    Raises ClaimRefused when `by` may not reassign, `reader` may not read
    exams, the exam is reported already or its claim changed meanwhile.
    """
    if not has_permission(by, Permission.MANAGE_READING):
        raise ClaimRefused(_("Only a lead radiologist can reassign exams."))
    if not reader.is_active or not has_permission(reader, Permission.READ_EXAMS):
        raise ClaimRefused(_("%(name)s cannot read exams. Choose a radiologist or resident.") % {"name": reader.get_username()})

    now = timezone.now()
    exam = _load(exam_id)
    if exam.status not in OPEN_STATUSES:
        raise ClaimRefused(_("This exam is reported already, so it cannot be reassigned."))
    previous = exam.claimed_by.get_username() if exam.claimed_by else ""
    with transaction.atomic():
        condition = Q(pk=exam_id, status__in=OPEN_STATUSES) & _held_by(exam)
        if Exam.objects.filter(condition).update(**_claim_fields(reader, now)) != 1:
            raise ClaimRefused(_("The claim changed a moment ago. Reload the page and try again."))
        _record(
            audit.Action.CLAIM_REASSIGNED, exam, user=by.get_username(), address=address,
            detail=f"from={previous or '-'}; to={reader.get_username()}",
        )
    logger.info("claim reassigned exam_pk=%s accession=%s from=%s to=%s by=%s", exam_id, exam.accession_number, previous or "-", reader.get_username(), by.get_username())
    return _load(exam_id)


def expire_lapsed_claims(now: datetime.datetime | None = None) -> int:
    """Clear claims whose holder has been inactive past the timeout, auditing each; return how many were cleared."""
    now = now or timezone.now()
    cutoff = lapse_cutoff(now)
    lapsed = (
        Exam.objects.filter(claimed_by__isnull=False, claim_active_at__lt=cutoff)
        .select_related("claimed_by", "patient")
        .order_by("claim_active_at")[:EXPIRE_BATCH_SIZE]
    )
    cleared = 0
    for exam in lapsed:
        with transaction.atomic():
            # The holder may have come back, or someone else claimed it, since the query.
            if Exam.objects.filter(Q(pk=exam.pk) & _free_or_lapsed(exam, cutoff)).update(**_release_fields(now)) != 1:
                continue
            _audit_lapse(exam, "")
        cleared += 1
        logger.info("claim lapsed exam_pk=%s accession=%s holder=%s", exam.pk, exam.accession_number, exam.claimed_by.get_username())
    return cleared
