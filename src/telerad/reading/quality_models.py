"""Image-quality issues that readers raise on an exam and technologists answer, fix and close."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class QualityReason(models.TextChoices):
    MOTION = "motion", _("Motion")
    ARTEFACT = "artefact", _("Artefact")
    WRONG_PROTOCOL = "wrong-protocol", _("Wrong protocol")
    MISSING_IMAGES = "missing-images", _("Missing images")
    OTHER = "other", _("Other")


class QualityState(models.TextChoices):
    # Raised by a reader, not yet answered.
    OPEN = "open", _("Open")
    ANSWERED = "answered", _("Answered")
    # The technologist corrected the problem, for example by sending the missing images.
    FIXED = "fixed", _("Fixed")
    CLOSED = "closed", _("Closed")


# States of the technologists' queue by default: everything not closed.
UNRESOLVED_STATES = (QualityState.OPEN, QualityState.ANSWERED, QualityState.FIXED)


class QualityIssue(models.Model):
    """A reader's flag on the images of an exam: one series, or the whole study when the series is empty."""

    exam = models.ForeignKey("reading.Exam", on_delete=models.CASCADE, related_name="quality_issues", verbose_name=_("exam"))
    study_instance_uid = models.CharField(_("study instance UID"), max_length=64)
    # Empty when the issue concerns the whole study.
    series_instance_uid = models.CharField(_("series instance UID"), max_length=64, blank=True)
    # Copied from the series when the issue is raised, so that the queue names it without a join.
    series_label = models.CharField(_("series"), max_length=200, blank=True)
    reason = models.CharField(_("reason"), max_length=16, choices=QualityReason.choices)
    comment = models.TextField(_("comment"))
    state = models.CharField(_("state"), max_length=16, choices=QualityState.choices, default=QualityState.OPEN)
    raised_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="raised_quality_issues", verbose_name=_("raised by"),
    )
    created_at = models.DateTimeField(_("raised"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)

    class Meta:
        verbose_name = _("image-quality issue")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "created_at"], name="quality_issue_queue")]

    def __str__(self) -> str:
        return f"{self.get_reason_display()} · {self.exam}"


class QualityReply(models.Model):
    """An answer on an issue, with the state the issue took through it (empty when the state stayed)."""

    issue = models.ForeignKey(QualityIssue, on_delete=models.CASCADE, related_name="replies", verbose_name=_("issue"))
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="quality_replies", verbose_name=_("author"))
    text = models.TextField(_("answer"), blank=True)
    new_state = models.CharField(_("new state"), max_length=16, choices=QualityState.choices, blank=True)
    created_at = models.DateTimeField(_("written"), auto_now_add=True)

    class Meta:
        verbose_name = _("image-quality answer")
        ordering = ["created_at", "id"]
