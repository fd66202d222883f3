"""Drafting an exam's report: the claim check, the working copy and its saves.

Every save names the revision it was based on. A save based on an older
revision raises StaleRevisionError instead of overwriting text that another
window or user saved in between.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from telerad.audit import events as audit
from telerad.audit.models import AuditEvent
from telerad.reading.models import Exam, ExamStatus, Report, ReportTemplate
from telerad.reading.priors import comparison_text
from telerad.reading.reports_templates import best_template

logger = logging.getLogger(__name__)

# Autosave writes every few seconds; the audit trail gets one draft event per
# user and exam in this period.
DRAFT_AUDIT_INTERVAL = datetime.timedelta(minutes=10)
MAX_SECTION_CHARACTERS = 50_000
SIGNED_STATUSES = (ExamStatus.FINAL, ExamStatus.ADDENDED)
# The template section that a new draft fills with the exam's reason for study and clinical history.
CLINICAL_INFORMATION_KEY = "clinical_information"
# The template section that a new draft fills with the patient's prior exams of the same modality.
COMPARISON_KEY = "comparison"


class ReportError(Exception):
    """A report action that cannot be done; `message` is shown to the user and `status` is the HTTP status."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ClaimRequiredError(ReportError):
    status = 403


class StaleRevisionError(ReportError):
    status = 409


class ReportSignedError(ReportError):
    status = 409


@dataclasses.dataclass
class Draft:
    """The text of an exam's report as the editor shows it, saved or not yet."""

    template: ReportTemplate | None
    section_order: list[str]
    sections: dict[str, str]
    revision: int
    report: Report | None


def require_claim(exam: Exam, user: AbstractBaseUser) -> None:
    """Raise ClaimRequiredError unless `user` has the claim on `exam`."""
    if exam.claimed_by_id != user.pk:
        if exam.claimed_by_id is None:
            raise ClaimRequiredError(_("Claim this exam on the worklist before you edit its report."))
        raise ClaimRequiredError(
            _("%(user)s is reading this exam, so you cannot edit its report.") % {"user": exam.claimed_by.get_username()}
        )


def audit_fields(exam: Exam) -> dict[str, str]:
    """Return the patient ID and the first study's UID of `exam`, for audit events."""
    study = exam.studies.order_by("pk").first()
    return {
        "patient_id": exam.patient.patient_id,
        "study_instance_uid": study.study_instance_uid if study is not None else "",
    }


def exam_label(exam: Exam) -> str:
    """Return the identifiers of `exam` that audit details and logs carry: never patient names or report text."""
    return f"exam {exam.pk}, accession {exam.accession_number or '(none)'}"


def template_sections(template: ReportTemplate | None) -> tuple[list[str], dict[str, str]]:
    if template is None:
        return ["findings", "impression"], {"findings": "", "impression": ""}
    order = [section["key"] for section in template.sections]
    return order, {section["key"]: section.get("text", "") for section in template.sections}


def starting_sections(template: ReportTemplate | None, exam: Exam) -> tuple[list[str], dict[str, str]]:
    """Return the section order and texts that a new draft of `exam` starts with: the template's, with the exam's clinical information and priors."""
    order, sections = template_sections(template)
    if CLINICAL_INFORMATION_KEY in sections:
        sections[CLINICAL_INFORMATION_KEY] = _clinical_information(exam, sections[CLINICAL_INFORMATION_KEY])
    if COMPARISON_KEY in sections:
        sections[COMPARISON_KEY] = comparison_text(exam, sections[COMPARISON_KEY])
    return order, sections


def _is_untouched(text: str, starting_text: str) -> bool:
    return text.strip() == starting_text.strip()


def merge_into_template(
    order: list[str], sections: dict[str, str], previous: ReportTemplate | None, template: ReportTemplate | None, exam: Exam,
) -> tuple[list[str], dict[str, str]]:
    """Return the sections of `template` filled with the text the reader wrote in `previous`; no written text is dropped.

    A section whose text is empty, or still the starting text that
    `previous` gave it, counts as not written: it takes the new template's
    starting text, or goes when the new template lacks it. Written text
    stays, in the new template's section of the same key or after its
    sections.
    """
    new_order, new_sections = starting_sections(template, exam)
    _previous_order, previous_sections = starting_sections(previous, exam)
    for key in order:
        text = sections.get(key, "")
        if _is_untouched(text, previous_sections.get(key, "")):
            continue
        if key not in new_sections:
            new_order.append(key)
        new_sections[key] = text
    return new_order, new_sections


def written_section_keys(report: Report, exam: Exam) -> list[str]:
    """Return the keys of the sections whose text differs from the starting text of the report's template, in report order."""
    _order, starting = starting_sections(report.template, exam)
    return [
        key for key in report.section_order
        if report.sections.get(key, "").strip() and not _is_untouched(report.sections.get(key, ""), starting.get(key, ""))
    ]


def current_draft(exam: Exam) -> Draft:
    """Return the saved working copy of `exam`'s report, or a new one from the best matching template."""
    report = Report.objects.filter(exam=exam).select_related("template").first()
    if report is not None:
        sections = {key: report.sections.get(key, "") for key in report.section_order}
        return Draft(report.template, list(report.section_order), sections, report.revision, report)
    template = best_template(exam)
    order, sections = starting_sections(template, exam)
    return Draft(template, order, sections, 0, None)


def _clinical_information(exam: Exam, template_text: str) -> str:
    """Join the exam's reason for study and clinical history, one a line, before the template's starting text."""
    parts = [exam.reason_for_study.strip(), exam.clinical_history.strip(), template_text]
    return "\n".join(part for part in parts if part)


def posted_sections(order: list[str], data: dict[str, str]) -> dict[str, str]:
    """Return the text of each section key in `order` found in `data` (as "section-KEY" fields)."""
    texts = {}
    for key in order:
        value = data.get(f"section-{key}")
        if value is None:
            continue
        if len(value) > MAX_SECTION_CHARACTERS:
            raise ReportError(_("A section is longer than %(max)d characters; shorten it before saving.") % {"max": MAX_SECTION_CHARACTERS})
        # Browsers send CRLF line breaks in form fields.
        texts[key] = value.replace("\r\n", "\n")
    return texts


def _stale(report: Report | None) -> StaleRevisionError:
    if report is None:
        return StaleRevisionError(_("This report was changed in another window. Your text is still on screen: copy it, then reload the report."))
    saved_at = timezone.localtime(report.updated_at).strftime("%H:%M:%S")
    return StaleRevisionError(
        _("This report was saved in another window at %(time)s (revision %(revision)d), so your changes were not saved. "
          "Your text is still on screen: copy it, then reload the report.") % {"time": saved_at, "revision": report.revision}
    )


def save_locked(
    exam: Exam, user: AbstractBaseUser, base_revision: int, data: dict[str, str], template: ReportTemplate | None = None, *, change_template: bool = False,
) -> tuple[Report, bool]:
    """Save the draft of `exam`, whose row the caller has locked; return the report and whether it changed.

    `data` contains the posted "section-KEY" fields. With `change_template` the
    sections are rearranged into `template` (see merge_into_template).
    """
    if exam.status in SIGNED_STATUSES:
        raise ReportSignedError(_("This exam has a final report, so its draft cannot change. Add an addendum instead."))
    require_claim(exam, user)
    draft = current_draft(exam)
    if draft.revision != base_revision:
        raise _stale(draft.report)

    sections = dict(draft.sections)
    sections.update(posted_sections(draft.section_order, data))
    order = list(draft.section_order)
    chosen_template = draft.template
    if change_template:
        order, sections = merge_into_template(order, sections, draft.template, template, exam)
        chosen_template = template

    if draft.report is None:
        try:
            with transaction.atomic():
                report = Report.objects.create(
                    exam=exam, template=chosen_template, author=user, sections=sections, section_order=order, revision=1,
                )
        except IntegrityError:
            # Another request created the report first.
            raise _stale(Report.objects.filter(exam=exam).first()) from None
        changed = True
    else:
        report = draft.report
        changed = sections != draft.sections or order != draft.section_order or chosen_template != draft.template
        if changed:
            updated = Report.objects.filter(pk=report.pk, revision=base_revision).update(
                sections=sections, section_order=order, template=chosen_template, revision=F("revision") + 1, updated_at=timezone.now(),
            )
            if not updated:
                raise _stale(Report.objects.get(pk=report.pk))
            report.refresh_from_db()

    # A preliminary report stays the exam's current report until the final one is signed.
    if exam.status != ExamStatus.PRELIMINARY and exam.status != ExamStatus.DRAFT:
        exam.status = ExamStatus.DRAFT
        exam.save(update_fields=["status", "updated_at"])
    return report, changed


def save_draft(
    exam_id: int, user: AbstractBaseUser, base_revision: int, data: dict[str, str], address: str = "",
    template: ReportTemplate | None = None, *, change_template: bool = False,
) -> Report:
    """Save the posted sections of an exam's draft in one transaction, and audit the save (see audit_draft_saved)."""
    with transaction.atomic():
        exam = Exam.objects.select_for_update(of=("self",)).select_related("patient", "claimed_by").get(pk=exam_id)
        report, changed = save_locked(exam, user, base_revision, data, template, change_template=change_template)
        if changed:
            audit_draft_saved(exam, user, address, report.revision)
    return report


def audit_draft_saved(exam: Exam, user: AbstractBaseUser, address: str, revision: int) -> None:
    """Record a draft save, unless the same user saved the same exam within DRAFT_AUDIT_INTERVAL.

    The caller holds the exam's row lock, so two saves cannot both miss the
    other's event.
    """
    username = user.get_username()
    label = exam_label(exam)
    recent = AuditEvent.objects.filter(
        action=audit.Action.REPORT_DRAFT_SAVED,
        user=username,
        occurred_at__gte=timezone.now() - DRAFT_AUDIT_INTERVAL,
        detail__startswith=label + ",",
    )
    if recent.exists():
        return
    audit.record_event(
        action=audit.Action.REPORT_DRAFT_SAVED, user=username, address=address, detail=f"{label}, revision {revision}", **audit_fields(exam),
    )
    logger.info("user %s saved the report draft of %s (revision %d)", username, label, revision)
