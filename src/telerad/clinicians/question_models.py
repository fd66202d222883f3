"""Question threads about an exam between the people who ordered, performed or read it, and their messages."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class QuestionState(models.TextChoices):
    # Waiting for a radiologist's answer.
    OPEN = "open", _("Open")
    ANSWERED = "answered", _("Answered")
    CLOSED = "closed", _("Closed")


class Assignment(models.TextChoices):
    """The reason the assigned radiologist got the question."""

    SIGNER = "signer", _("Signed the final report")
    READER = "reader", _("Claimed the exam or wrote its draft")
    ON_DUTY_SUBSPECIALTY = "on-duty-subspecialty", _("On duty in the exam's subspecialty")
    ON_DUTY = "on-duty", _("On duty")
    LEAD = "lead", _("Lead radiologist")
    # A reader wrote in a thread without an assigned radiologist and so took it.
    TAKEN = "taken", _("Took the question by writing in it")
    NOBODY = "nobody", _("Nobody could be assigned")


class Question(models.Model):
    """A thread opened on an exam, optionally about one of its signed reports, owned by one radiologist."""

    exam = models.ForeignKey("reading.Exam", on_delete=models.PROTECT, related_name="questions", verbose_name=_("exam"))
    signed_report = models.ForeignKey(
        "reading.SignedReport", on_delete=models.PROTECT, null=True, blank=True, related_name="questions", verbose_name=_("signed report"),
    )
    subject = models.CharField(_("subject"), max_length=200)
    opened_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="questions_opened", verbose_name=_("opened by"))
    opened_at = models.DateTimeField(_("opened"), default=timezone.now)
    state = models.CharField(_("state"), max_length=16, choices=QuestionState.choices, default=QuestionState.OPEN)
    # The radiologist who is notified and owns the answer. Empty when no radiologist could be found.
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="questions_assigned",
        verbose_name=_("assigned to"),
    )
    assignment = models.CharField(_("assigned because"), max_length=32, choices=Assignment.choices)
    # When the thread last became open: when it was opened, or reopened by a message. The age shown on the worklist counts from here.
    open_since = models.DateTimeField(_("open since"), default=timezone.now)
    last_message_at = models.DateTimeField(_("last message"), default=timezone.now)
    answered_at = models.DateTimeField(_("answered"), null=True, blank=True)
    answered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("answered by"),
    )
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("closed by"),
    )

    class Meta:
        verbose_name = _("question")
        ordering = ["-last_message_at", "-id"]
        indexes = [
            # The worklist counts the open questions of each exam on its page and finds the oldest.
            models.Index(fields=["exam", "open_since"], condition=models.Q(state="open"), name="question_open_by_exam"),
            models.Index(fields=["assigned_to", "state", "open_since"], name="question_assigned"),
            models.Index(fields=["opened_by", "state"], name="question_opened_by"),
            models.Index(fields=["state", "open_since"], name="question_state"),
        ]

    def __str__(self) -> str:
        return f"question {self.pk} on {self.exam}"


class QuestionMessageChangeError(Exception):
    """Raised on an attempt to change or delete a message of a question thread, because threads are kept whole."""


class QuestionMessageQuerySet(models.QuerySet):
    """Queries of messages, without bulk updates or deletes."""

    def update(self, **kwargs):
        raise QuestionMessageChangeError("messages of question threads cannot be changed")

    def delete(self):
        raise QuestionMessageChangeError("messages of question threads cannot be deleted")


class QuestionMessage(models.Model):
    """One message of a thread, with the state the thread took through it (empty when the state stayed). Rows are never changed."""

    question = models.ForeignKey(Question, on_delete=models.PROTECT, related_name="messages", verbose_name=_("question"))
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="question_messages", verbose_name=_("author"))
    body = models.TextField(_("message"), blank=True)
    new_state = models.CharField(_("new state"), max_length=16, choices=QuestionState.choices, blank=True)
    created_at = models.DateTimeField(_("written"), default=timezone.now)

    objects = QuestionMessageQuerySet.as_manager()

    class Meta:
        verbose_name = _("question message")
        ordering = ["created_at", "id"]
        constraints = [
            # A message without text only records a change of state, such as "marked answered".
            models.CheckConstraint(condition=~models.Q(body="") | ~models.Q(new_state=""), name="question_message_has_content"),
        ]

    def __str__(self) -> str:
        return f"message {self.pk} of question {self.question_id}"

    def save(self, *args, **kwargs):
        """Insert the row; raise QuestionMessageChangeError when it exists already."""
        if not self._state.adding or (self.pk is not None and QuestionMessage.objects.filter(pk=self.pk).exists()):
            raise QuestionMessageChangeError(f"message {self.pk} of a question thread cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise QuestionMessageChangeError(f"message {self.pk} of a question thread cannot be deleted")
