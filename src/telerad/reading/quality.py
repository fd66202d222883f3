"""Raise, answer, fix and close image-quality issues, writing an audit event for each step.

A reader raises an issue on a series of the exam or on a whole study. The
technologists' queue lists issues until they are closed. Audit events name
the exam, the issue and the reason, never the comment or answer text, which
may quote clinical details.
"""

from __future__ import annotations

import logging

from django import forms
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from telerad.archive.models import Series
from telerad.audit import events as audit
from telerad.reading.models import Exam, ExamStudy
from telerad.reading.quality_models import QualityIssue, QualityReason, QualityReply, QualityState

logger = logging.getLogger(__name__)

# The value of the target field that names the whole study rather than one series.
WHOLE_STUDY_PREFIX = "study:"
SERIES_PREFIX = "series:"
MAX_COMMENT_CHARACTERS = 4000


class QualityIssueClosed(Exception):
    """Raised on an attempt to answer or change a closed issue."""


def exam_series(exam: Exam) -> list[Series]:
    """Return the series of the exam's studies in study and series order."""
    study_ids = ExamStudy.objects.filter(exam=exam).values_list("study_id", flat=True)
    return list(
        Series.objects.filter(study_id__in=study_ids).select_related("study")
        .order_by("study__study_date", "study__study_time", "study_id", "series_number", "id")
    )


def series_label(series: Series) -> str:
    number = "" if series.series_number is None else f"#{series.series_number} "
    return f"{number}{series.modality} {series.series_description}".strip()


class RaiseIssueForm(forms.Form):
    target = forms.ChoiceField(label=gettext_lazy("Concerns"))
    reason = forms.ChoiceField(label=gettext_lazy("Reason"), choices=QualityReason.choices)
    comment = forms.CharField(
        label=gettext_lazy("Comment"), max_length=MAX_COMMENT_CHARACTERS, widget=forms.Textarea(attrs={"rows": 3}),
        help_text=gettext_lazy("What is wrong and what the technologist should do, for example which images to send again."),
    )

    def __init__(self, *args, exam: Exam, series: list[Series] | None = None, **kwargs):
        """Offer the exam's studies and `series`, which default to every series of the exam."""
        super().__init__(*args, **kwargs)
        self.series = {item.series_instance_uid: item for item in (exam_series(exam) if series is None else series)}
        study_uids = list(ExamStudy.objects.filter(exam=exam).order_by("id").values_list("study__study_instance_uid", flat=True))
        choices = [(WHOLE_STUDY_PREFIX + uid, _("The whole study %(uid)s") % {"uid": uid} if len(study_uids) > 1 else _("The whole study")) for uid in study_uids]
        choices += [(SERIES_PREFIX + uid, _("Series %(label)s") % {"label": series_label(series)}) for uid, series in self.series.items()]
        self.fields["target"].choices = choices
        self.fields["target"].widget.attrs["id"] = f"quality-target-{exam.pk}"

    def target_uids(self) -> tuple[str, str, str]:
        """Return the study UID, series UID (empty for the whole study) and series label of the cleaned target."""
        target = self.cleaned_data["target"]
        if target.startswith(SERIES_PREFIX):
            series = self.series[target.removeprefix(SERIES_PREFIX)]
            return series.study.study_instance_uid, series.series_instance_uid, series_label(series)[:200]
        return target.removeprefix(WHOLE_STUDY_PREFIX), "", ""


class AnswerForm(forms.Form):
    ANSWER = "answer"
    FIX = "fix"
    CLOSE = "close"
    NEW_STATES = {ANSWER: QualityState.ANSWERED, FIX: QualityState.FIXED, CLOSE: QualityState.CLOSED}

    text = forms.CharField(label=gettext_lazy("Answer"), max_length=MAX_COMMENT_CHARACTERS, required=False, widget=forms.Textarea(attrs={"rows": 3}))
    action = forms.ChoiceField(choices=[(ANSWER, ANSWER), (FIX, FIX), (CLOSE, CLOSE)], widget=forms.HiddenInput)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("action") == self.ANSWER and not cleaned.get("text", "").strip():
            self.add_error("text", _("Write an answer, or mark the issue fixed or closed."))
        return cleaned


def _audit(action: audit.Action, issue: QualityIssue, *, user: str, address: str, detail: str = "") -> None:
    audit.record_event(
        action=action, user=user, address=address,
        patient_id=issue.exam.patient.patient_id, study_instance_uid=issue.study_instance_uid,
        detail=f"exam={issue.exam_id}; accession={issue.exam.accession_number}; issue={issue.pk}; reason={issue.reason}" + (f"; {detail}" if detail else ""),
    )


def raise_issue(exam: Exam, user, *, study_instance_uid: str, series_instance_uid: str, series_label: str, reason: str, comment: str, address: str) -> QualityIssue:
    with transaction.atomic():
        issue = QualityIssue.objects.create(
            exam=exam, study_instance_uid=study_instance_uid, series_instance_uid=series_instance_uid, series_label=series_label,
            reason=reason, comment=comment.strip(), raised_by=user,
        )
        _audit(
            audit.Action.QUALITY_ISSUE_RAISED, issue, user=user.get_username(), address=address,
            detail=f"series={series_instance_uid or '(whole study)'}",
        )
    logger.info("image-quality issue %s raised on exam %s by %s (%s)", issue.pk, exam.pk, user.get_username(), reason)
    return issue


def answer_issue(issue_pk: int, user, *, text: str, action: str, address: str) -> QualityIssue:
    """Add an answer and move the issue to the state that `action` names.

    Raises QualityIssueClosed when the issue is closed.
    """
    new_state = AnswerForm.NEW_STATES[action]
    with transaction.atomic():
        issue = QualityIssue.objects.select_for_update().select_related("exam__patient").get(pk=issue_pk)
        if issue.state == QualityState.CLOSED:
            raise QualityIssueClosed(_("This issue is closed and cannot be changed."))
        # An answer alone never moves a fixed issue back to answered.
        changes_state = new_state != issue.state and not (action == AnswerForm.ANSWER and issue.state == QualityState.FIXED)
        QualityReply.objects.create(issue=issue, author=user, text=text.strip(), new_state=new_state if changes_state else "")
        if changes_state:
            issue.state = new_state
            if new_state == QualityState.CLOSED:
                issue.closed_at = timezone.now()
        issue.save(update_fields=["state", "closed_at", "updated_at"])
        if text.strip():
            _audit(audit.Action.QUALITY_ISSUE_ANSWERED, issue, user=user.get_username(), address=address)
        if changes_state:
            _audit(audit.Action.QUALITY_ISSUE_STATE_CHANGED, issue, user=user.get_username(), address=address, detail=f"state={issue.state}")
    logger.info("image-quality issue %s is %s after an answer by %s", issue.pk, issue.state, user.get_username())
    return issue


def issues_of_exam(exam: Exam) -> list[QualityIssue]:
    return list(
        QualityIssue.objects.filter(exam=exam).select_related("raised_by")
        .prefetch_related("replies__author").order_by("-created_at", "-id")
    )
