"""Signing reports: re-authentication, preliminary and final reports, addenda and their content hashes.

A user with SIGN_REPORTS signs final reports and addenda. A reader without
it signs preliminary reports, which an attending radiologist then edits and
signs as the final report. Signed versions are SignedReport rows, which are
never changed.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import math
from typing import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from telerad.accounts import lockout, two_factor
from telerad.accounts.roles import Permission, has_permission
from telerad.audit import events as audit
from telerad.clinicians.critical import open_critical_result, route_critical_result
from telerad.reading import claims, delivery
from telerad.reading.models import Exam, ExamStatus, SignedKind, SignedReport
from telerad.reading.reports import (
    Draft, ReportError, ReportSignedError, audit_fields, current_draft, exam_label, save_locked, template_sections,
)
from telerad.reading.reports_templates import section_title

logger = logging.getLogger(__name__)

MAX_ADDENDUM_CHARACTERS = 20_000
ADDENDUM_SECTION = "addendum"

SIGNED_ACTIONS = {
    SignedKind.PRELIMINARY: audit.Action.REPORT_PRELIMINARY_SIGNED,
    SignedKind.FINAL: audit.Action.REPORT_FINAL_SIGNED,
    SignedKind.ADDENDUM: audit.Action.REPORT_ADDENDUM_SIGNED,
}


class ReauthenticationError(ReportError):
    status = 403


class NoCriticalRecipientError(ReportError):
    """Raised when a report signed critical would reach nobody: no referring clinician and no contact configured."""

    status = 409

    def __init__(self) -> None:
        super().__init__(_(
            "Nobody would receive this critical result, so the report was not signed. "
            "Set the referring clinician in the exam's clinical information, "
            "or ask an administrator to configure the department contact (TELERAD_CRITICAL_DEPARTMENT_CONTACT). "
            "Your text is kept."
        ))


# Content hashes


def canonical_content(
    exam_id: int, kind: str, section_order: Iterable[str], sections: dict[str, str], text: str, critical: bool,
    signer_id: int, signed_at: datetime.datetime,
) -> bytes:
    """Return the canonical JSON of a signed version: sorted keys, no spaces, UTF-8.

    Besides the exam, kind, sections in order, signer and time, the hash
    covers the rendered text and the critical flag, so that neither can change
    unnoticed. The signer is named by user ID, which stays when a user is renamed.
    """
    content = {
        "exam": exam_id,
        "kind": kind,
        "sections": [[key, sections.get(key, "")] for key in section_order],
        "text": text,
        "critical": critical,
        "signer": signer_id,
        "signed_at": signed_at.astimezone(datetime.timezone.utc).isoformat(timespec="microseconds"),
    }
    return json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def compute_hash(signed: SignedReport) -> str:
    content = canonical_content(
        signed.exam_id, signed.kind, signed.section_order, signed.sections, signed.text, signed.critical, signed.signer_id, signed.signed_at,
    )
    return hashlib.sha256(content).hexdigest()


def hash_matches(signed: SignedReport) -> bool:
    return compute_hash(signed) == signed.content_hash


def report_text(template, section_order: list[str], sections: dict[str, str]) -> str:
    """Render the sections as plain text: each section with text under its title, in order."""
    parts = []
    for key in section_order:
        text = sections.get(key, "").strip()
        if text:
            parts.append(f"{section_title(template, key)}:\n{text}")
    return "\n\n".join(parts)


def versions_for_display(exam: Exam) -> list[SignedReport]:
    """Return the signed versions of `exam`: addenda newest first, then the final report, then preliminary ones newest first."""
    rank = {SignedKind.ADDENDUM: 0, SignedKind.FINAL: 1, SignedKind.PRELIMINARY: 2}
    versions = list(SignedReport.objects.filter(exam=exam).select_related("signer"))
    versions.sort(key=lambda version: (version.signed_at, version.pk), reverse=True)
    versions.sort(key=lambda version: rank[version.kind])
    return versions


def critical_preliminary(exam: Exam) -> SignedReport | None:
    """Return the newest preliminary report of `exam` that was signed critical, or None."""
    return (
        SignedReport.objects.filter(exam=exam, kind=SignedKind.PRELIMINARY, critical=True)
        .select_related("signer").order_by("-signed_at", "-id").first()
    )


# Re-authentication


def reauthenticate(user: AbstractBaseUser, password: str, code: str, address: str, exam: Exam) -> str:
    """Check the password or authenticator code that confirms a signature; return the method used.

    A wrong one is audited and counted with the failed logins of the user
    and address, so that guessing here locks logins too. While a lock lasts,
    signing is rejected as well.
    """
    username = user.get_username()
    until = lockout.locked_until(username, address)
    if until is not None:
        minutes = max(1, math.ceil((until - timezone.now()).total_seconds() / 60))
        raise ReauthenticationError(ngettext(
            "Too many wrong passwords or codes. Signing is blocked for %(minutes)d minute; try again then.",
            "Too many wrong passwords or codes. Signing is blocked for %(minutes)d minutes; try again then.",
            minutes,
        ) % {"minutes": minutes})

    if password:
        method = "password"
        accepted = user.check_password(password)
        message = _("The password is not correct, so the report was not signed.")
    elif code:
        method = "authenticator code"
        normalized = two_factor.normalize_code(code)
        # Recovery codes are for a lost authenticator, not for signing.
        accepted = normalized.isdigit() and two_factor.verify_code(user, normalized) is not None
        message = _("The authenticator code is not correct or has expired, so the report was not signed.")
    else:
        raise ReauthenticationError(_("Enter your password or a code from your authenticator app to sign."))
    if accepted:
        return method

    audit.record_event(
        action=audit.Action.REAUTHENTICATION_FAILED, outcome=audit.Outcome.MINOR_FAILURE, user=username, address=address,
        detail=f"wrong {method} to sign the report of {exam_label(exam)}", **audit_fields(exam),
    )
    logger.warning("user %s gave a wrong %s to sign the report of %s", username, method, exam_label(exam))
    locked_until = lockout.record_failure(username, address)
    if locked_until is not None:
        audit.record_event(
            action=audit.Action.LOGIN_LOCKED, outcome=audit.Outcome.SERIOUS_FAILURE, user=username, address=address,
            detail=f"account and address locked until {locked_until.isoformat()} after wrong signature confirmations",
        )
    raise ReauthenticationError(message)


# Signing


def _already_final(final: SignedReport) -> ReportSignedError:
    signed_at = timezone.localtime(final.signed_at).strftime("%Y-%m-%d %H:%M")
    return ReportSignedError(
        _("This exam already has a final report, signed by %(user)s at %(time)s. Add an addendum to change it.")
        % {"user": final.signer.get_username(), "time": signed_at}
    )


def _create_signed(exam: Exam, kind: str, user: AbstractBaseUser, order: list[str], sections: dict[str, str], text: str, critical: bool) -> SignedReport:
    signed = SignedReport(
        exam=exam, kind=kind, sections=sections, section_order=order, text=text, signer=user, signed_at=timezone.now(), critical=critical,
    )
    signed.content_hash = compute_hash(signed)
    signed.save()
    return signed


def _has_own_text(draft: Draft) -> bool:
    """Return whether some section has text other than its template's starting text."""
    _order, starting_texts = template_sections(draft.template)
    return any(text.strip() and text.strip() != starting_texts.get(key, "").strip() for key, text in draft.sections.items())


def _end_claim(exam: Exam) -> None:
    exam.claimed_by = None
    exam.claimed_at = None
    exam.claim_active_at = None


def _audit_signed(signed: SignedReport, exam: Exam, user: AbstractBaseUser, address: str, method: str) -> None:
    critical = ", critical result" if signed.critical else ""
    if signed.kind == SignedKind.FINAL and not signed.critical:
        preliminary = critical_preliminary(exam)
        if preliminary is not None:
            # The attending unticked the box that the critical preliminary report ticked.
            critical = f", not critical although preliminary report {preliminary.pk} was"
    audit.record_event(
        action=SIGNED_ACTIONS[signed.kind], user=user.get_username(), address=address,
        detail=f"{exam_label(exam)}, signed report {signed.pk}, confirmed by {method}{critical}", **audit_fields(exam),
    )
    logger.info("user %s signed a %s report of %s (signed report %d)", user.get_username(), signed.kind, exam_label(exam), signed.pk)


def _require_critical_recipient(exam: Exam, user: AbstractBaseUser) -> None:
    """Raise NoCriticalRecipientError when a critical result of `exam` would reach nobody."""
    if route_critical_result(exam).reaches_someone:
        return
    logger.warning(
        "rejected a critical signature by user %s on %s: no referring clinician and no critical result contact can be reached",
        user.get_username(), exam_label(exam),
    )
    raise NoCriticalRecipientError()


def sign_report(
    exam_id: int, user: AbstractBaseUser, base_revision: int, data: dict[str, str], *, critical: bool, password: str, code: str, address: str,
) -> SignedReport:
    """Save the posted draft and sign it: final with SIGN_REPORTS, preliminary without.

    The exam row is locked for the whole signing, so a second signer waits
    and then finds the final report. The database constraint
    one_final_report_per_exam catches any path that skips the lock.
    Signing ends the claim. A report signed critical, preliminary or final,
    opens a critical result; NoCriticalRecipientError is raised when nobody
    would receive it.
    """
    exam = Exam.objects.select_related("patient").get(pk=exam_id)
    method = reauthenticate(user, password, code, address, exam)
    kind = SignedKind.FINAL if has_permission(user, Permission.SIGN_REPORTS) else SignedKind.PRELIMINARY

    try:
        with transaction.atomic():
            exam = Exam.objects.select_for_update(of=("self",)).select_related("patient", "claimed_by", "referring_clinician").get(pk=exam_id)
            final = SignedReport.objects.filter(exam=exam, kind=SignedKind.FINAL).select_related("signer").first()
            if final is not None:
                raise _already_final(final)
            report, _changed = save_locked(exam, user, base_revision, data)
            draft = current_draft(exam)
            text = report_text(draft.template, draft.section_order, draft.sections)
            if not text or not _has_own_text(draft):
                raise ReportError(_("The report is empty or contains only the template's starting text. Write the report before signing."))
            if critical:
                _require_critical_recipient(exam, user)

            signed = _create_signed(exam, kind, user, draft.section_order, draft.sections, text, critical)
            if kind == SignedKind.FINAL:
                exam.status = ExamStatus.FINAL
                exam.signed_at = signed.signed_at
            else:
                exam.status = ExamStatus.PRELIMINARY
                # The first preliminary report counts for turnaround times.
                exam.preliminary_at = exam.preliminary_at or signed.signed_at
            _end_claim(exam)
            exam.save(update_fields=["status", "signed_at", "preliminary_at", "claimed_by", "claimed_at", "claim_active_at", "updated_at"])
            _audit_signed(signed, exam, user, address, method)
            claims.record_release_by_signing(exam, user, address=address)
            # Queued in this transaction, so that a signature that rolls back sends nothing.
            if kind == SignedKind.FINAL:
                delivery.deliver_signed_report(signed)
            open_critical_result(signed)
    except IntegrityError:
        final = SignedReport.objects.filter(exam_id=exam_id, kind=SignedKind.FINAL).select_related("signer").first()
        if final is None:
            raise
        raise _already_final(final) from None
    return signed


def sign_addendum(exam_id: int, user: AbstractBaseUser, text: str, *, critical: bool, password: str, code: str, address: str) -> SignedReport:
    """Sign an addendum to the final report of an exam. The caller checks that `user` has SIGN_REPORTS."""
    text = text.replace("\r\n", "\n").strip()
    if not text:
        raise ReportError(_("The addendum is empty. Write its text before signing."))
    if len(text) > MAX_ADDENDUM_CHARACTERS:
        raise ReportError(_("The addendum is longer than %(max)d characters.") % {"max": MAX_ADDENDUM_CHARACTERS})
    exam = Exam.objects.select_related("patient").get(pk=exam_id)
    method = reauthenticate(user, password, code, address, exam)

    with transaction.atomic():
        exam = Exam.objects.select_for_update(of=("self",)).select_related("patient", "referring_clinician").get(pk=exam_id)
        if not SignedReport.objects.filter(exam=exam, kind=SignedKind.FINAL).exists():
            raise ReportError(_("An addendum follows a final report, and this exam has none yet."))
        if critical:
            _require_critical_recipient(exam, user)
        signed = _create_signed(exam, SignedKind.ADDENDUM, user, [ADDENDUM_SECTION], {ADDENDUM_SECTION: text}, text, critical)
        exam.status = ExamStatus.ADDENDED
        exam.save(update_fields=["status", "updated_at"])
        _audit_signed(signed, exam, user, address, method)
        delivery.deliver_signed_report(signed)
        open_critical_result(signed)
    return signed
