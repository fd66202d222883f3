"""Notifications, the e-mail preferences and outbox behind them, critical results awaiting acknowledgement, clinicians' access to exams, and question threads."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class NotificationKind(models.TextChoices):
    CRITICAL_RESULT = "critical-result", _("Critical result to acknowledge")
    CRITICAL_ESCALATED = "critical-escalated", _("Critical result not acknowledged in time")
    CRITICAL_ACKNOWLEDGED = "critical-acknowledged", _("Critical result acknowledged")
    QUESTION_ASKED = "question-asked", _("Question about an exam assigned to you")
    QUESTION_REPLIED = "question-replied", _("New message in a question thread")
    QUESTION_ANSWERED = "question-answered", _("Question marked answered")
    QUESTION_CLOSED = "question-closed", _("Question thread closed")


# Kinds e-mailed whatever the user's preferences, because a critical result
# that nobody reads can harm the patient.
ALWAYS_EMAILED = frozenset({NotificationKind.CRITICAL_RESULT, NotificationKind.CRITICAL_ESCALATED})


class Notification(models.Model):
    """A notice to one user about an exam. Its text names the accession number, never the patient."""

    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(_("kind"), max_length=32, choices=NotificationKind.choices)
    exam = models.ForeignKey("reading.Exam", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    accession_number = models.TextField(_("accession number"), blank=True)
    text = models.CharField(_("text"), max_length=300)
    # A path inside telerad, such as /critical/5/.
    link = models.CharField(_("link"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    read_at = models.DateTimeField(_("read"), null=True, blank=True)

    class Meta:
        verbose_name = _("notification")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["recipient", "read_at"], name="notification_unread")]

    def __str__(self) -> str:
        return f"{self.kind} {self.accession_number} for {self.recipient_id}"


class EmailPreference(models.Model):
    """Whether a user wants one kind of notification by e-mail; without a row they do."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="email_preferences")
    kind = models.CharField(max_length=32, choices=NotificationKind.choices)
    send_email = models.BooleanField(default=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "kind"], name="email_preference_once_per_kind")]


class EmailState(models.TextChoices):
    PENDING = "pending", _("Pending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed")


class EmailJob(models.Model):
    """One e-mail in the outbox, tried until the SMTP server accepts it or the attempts run out."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, null=True, blank=True, related_name="email_jobs")
    kind = models.CharField(max_length=32, choices=NotificationKind.choices)
    exam = models.ForeignKey("reading.Exam", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    to_address = models.CharField(_("to"), max_length=254)
    subject = models.CharField(_("subject"), max_length=200)
    body = models.TextField(_("body"))
    state = models.CharField(_("state"), max_length=16, choices=EmailState.choices, default=EmailState.PENDING)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"))
    last_error = models.TextField(_("last error"), blank=True)
    # The worker that claimed the job and until when, as in the report delivery outbox.
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)

    class Meta:
        verbose_name = _("notification e-mail")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="email_job_due")]

    def __str__(self) -> str:
        return f"e-mail {self.pk} ({self.kind})"


class CriticalResult(models.Model):
    """A signed report flagged critical, and whether its recipient acknowledged it or it escalated.

    The recipient is the exam's referring clinician, or the department's
    contact. A contact given only as an e-mail address has no user, so
    `recipient` is empty and `recipient_address` contains the address.
    """

    exam = models.ForeignKey("reading.Exam", on_delete=models.PROTECT, related_name="critical_results")
    signed_report = models.OneToOneField("reading.SignedReport", on_delete=models.PROTECT, related_name="critical_result")
    opened_at = models.DateTimeField(_("opened"))
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="critical_results_received",
        verbose_name=_("recipient"),
    )
    recipient_address = models.CharField(_("recipient e-mail address"), max_length=254, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("acknowledged by"),
    )
    acknowledged_at = models.DateTimeField(_("acknowledged"), null=True, blank=True)
    escalated_at = models.DateTimeField(_("escalated"), null=True, blank=True)
    escalated_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="critical_results_escalated",
        verbose_name=_("escalated to"),
    )
    escalated_to_address = models.CharField(_("escalated to e-mail address"), max_length=254, blank=True)

    class Meta:
        verbose_name = _("critical result")
        ordering = ["opened_at", "id"]
        indexes = [models.Index(fields=["acknowledged_at", "escalated_at", "opened_at"], name="critical_result_open")]

    def __str__(self) -> str:
        return f"critical result {self.pk} of {self.exam}"

    @property
    def recipient_label(self) -> str:
        return self.recipient.get_username() if self.recipient is not None else self.recipient_address

    @property
    def escalated_to_label(self) -> str:
        return self.escalated_to.get_username() if self.escalated_to is not None else self.escalated_to_address


class ClinicianProfile(models.Model):
    """The names a clinician has in DICOM headers, by which exam creation matches Referring Physician's Name to their account."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="clinician_profile", verbose_name=_("clinician"),
    )
    dicom_names = models.TextField(
        _("names in DICOM headers"), blank=True,
        help_text=_(
            "One name per line, written as DICOM person names are: FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX, such as WELBY^MARCUS. "
            "Case and empty trailing components do not matter."
        ),
    )
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("clinician profile")

    def __str__(self) -> str:
        return self.user.get_username()

    def name_list(self) -> list[str]:
        return [line.strip() for line in self.dicom_names.splitlines() if line.strip()]


class ClinicianGrant(models.Model):
    """An administrator's grant to a clinician: the exams of one patient, or of one ward or department.

    Exactly one of `patient` and `department` is set. A department grant
    matches exams whose department is equal, ignoring case and surrounding
    spaces. A grant with an expiry time stops counting at that time.
    """

    clinician = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="clinician_grants", verbose_name=_("clinician"),
    )
    patient = models.ForeignKey(
        "archive.Patient", on_delete=models.PROTECT, null=True, blank=True, related_name="clinician_grants", verbose_name=_("patient"),
    )
    department = models.CharField(_("ward or department"), max_length=200, blank=True)
    # The user name of the administrator, or "cli" for the command line.
    granted_by = models.CharField(_("granted by"), max_length=150)
    granted_at = models.DateTimeField(_("granted"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    note = models.TextField(_("note"), blank=True)

    class Meta:
        verbose_name = _("clinician grant")
        ordering = ["clinician_id", "granted_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(patient__isnull=False) & models.Q(department=""))
                | (models.Q(patient__isnull=True) & ~models.Q(department="")),
                name="clinician_grant_patient_or_department",
                violation_error_message=_("Give either a patient or a ward or department: one of them, not both."),
            ),
            models.UniqueConstraint(
                fields=["clinician", "patient"], condition=models.Q(patient__isnull=False), name="clinician_grant_unique_patient",
                violation_error_message=_("This clinician has a grant for this patient already."),
            ),
            models.UniqueConstraint(
                Lower("department"), "clinician", condition=~models.Q(department=""), name="clinician_grant_unique_department",
                violation_error_message=_("This clinician has a grant for this ward or department already."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.target_label} for {self.clinician.get_username()}"

    @property
    def target_label(self) -> str:
        """The Patient ID or the department that the grant opens, never a patient name."""
        if self.patient_id is not None:
            return f"patient {self.patient.patient_id or self.patient_id}"
        return f"department {self.department}"

    def is_active(self, now=None) -> bool:
        return self.expires_at is None or self.expires_at > (now or timezone.now())


# The question threads live in their own module of this app.
from telerad.clinicians.question_models import Question, QuestionMessage  # noqa: E402,F401
