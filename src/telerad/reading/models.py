"""Exams to report and their reports.

An exam is the unit a radiologist reads: one or more studies of a patient
under one accession number, with its priority, clinical information and
turnaround times. Its report is drafted in ``Report`` and each signed version
is kept, unchangeable, as a ``SignedReport``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from telerad.archive.models import Patient, Study


class Priority(models.IntegerChoices):
    """Reading priority; a lower value is more urgent, so ascending order puts STAT first."""

    STAT = 1, _("STAT")
    URGENT = 2, _("Urgent")
    ROUTINE = 3, _("Routine")


class ExamStatus(models.TextChoices):
    UNREAD = "unread", _("Unread")
    # Claimed by a radiologist who has not saved a draft yet.
    IN_PROGRESS = "in-progress", _("Being read")
    DRAFT = "draft", _("Draft")
    PRELIMINARY = "preliminary", _("Preliminary")
    FINAL = "final", _("Final")
    ADDENDED = "addended", _("Addended")


# Exams waiting for a report; only these appear on the worklist and can be claimed.
OPEN_STATUSES = (ExamStatus.UNREAD, ExamStatus.IN_PROGRESS, ExamStatus.DRAFT, ExamStatus.PRELIMINARY)


class StatusInLiterals(models.Lookup):
    """``status IN ('unread', ...)`` with the statuses written into the SQL instead of bound as parameters.

    SQLite uses a partial index only when the query's WHERE contains the
    index's condition, and it does not match a bound parameter against a
    value of that condition. So the worklist filters with this lookup to use
    the exam_open_worklist index. It accepts ExamStatus values only, which
    makes quoting them safe.
    """

    lookup_name = "in_literals"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        unknown = [value for value in self.rhs if value not in ExamStatus.values]
        if unknown or not self.rhs:
            raise ValueError(f"status__in_literals takes a non-empty list of ExamStatus values, not {list(self.rhs)!r}")
        lhs, lhs_params = self.process_lhs(compiler, connection)
        literals = ", ".join(f"'{value}'" for value in self.rhs)
        return f"{lhs} IN ({literals})", lhs_params


class Subspecialty(models.Model):
    """A reading subspecialty (neuro, chest, ...), configured by administrators."""

    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=100)
    active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("subspecialty")
        verbose_name_plural = _("subspecialties")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Exam(models.Model):
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="exams")
    studies = models.ManyToManyField(Study, through="ExamStudy", related_name="exams")
    accession_number = models.TextField(_("accession number"), blank=True, db_index=True)
    priority = models.PositiveSmallIntegerField(_("priority"), choices=Priority.choices, default=Priority.ROUTINE)
    # Backslash-separated, as Modalities in Study.
    modalities = models.TextField(_("modalities"), blank=True)
    body_part = models.TextField(_("body part"), blank=True)
    description = models.TextField(_("description"), blank=True)
    subspecialty = models.ForeignKey(Subspecialty, on_delete=models.SET_NULL, null=True, blank=True, related_name="exams")
    # Institution Name of the images, or the calling AE title when the header has none.
    sending_site = models.TextField(_("sending site"), blank=True)
    referring_physician_name = models.TextField(_("referring physician"), blank=True)
    referring_clinician = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="referred_exams",
        verbose_name=_("referring clinician"),
    )
    # The ward or department that asked for the exam: Requesting Service
    # (0032,1033), else Current Patient Location (0038,0300). Clinicians'
    # department grants match it, ignoring case.
    department = models.CharField(_("department"), max_length=200, blank=True)
    requested_procedure = models.TextField(_("requested procedure"), blank=True)
    reason_for_study = models.TextField(_("reason for study"), blank=True)
    clinical_history = models.TextField(_("clinical history"), blank=True)
    status = models.CharField(_("status"), max_length=16, choices=ExamStatus.choices, default=ExamStatus.UNREAD)

    # The current claim: who is reading the exam, since when, and their last activity on it.
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="claimed_exams",
        verbose_name=_("being read by"),
    )
    claimed_at = models.DateTimeField(_("claimed"), null=True, blank=True)
    claim_active_at = models.DateTimeField(null=True, blank=True)

    # Turnaround times.
    study_received_at = models.DateTimeField(_("images received"))
    completed_at = models.DateTimeField(_("study complete"), null=True, blank=True)
    first_claimed_at = models.DateTimeField(_("first claimed"), null=True, blank=True)
    preliminary_at = models.DateTimeField(_("preliminary report"), null=True, blank=True)
    signed_at = models.DateTimeField(_("signed"), null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("exam")
        constraints = [
            # One exam per accession number and patient; exams without one stand alone.
            models.UniqueConstraint(
                fields=["patient", "accession_number"], condition=~models.Q(accession_number=""), name="exam_unique_accession",
            ),
        ]
        indexes = [
            # The worklist's default view: open exams, most urgent and longest waiting first.
            models.Index(fields=["status", "priority", "study_received_at"], name="exam_worklist"),
            models.Index(fields=["claimed_by", "status"], name="exam_claims"),
            # The worklist's default order over the open exams alone, so that its
            # first page is read in index order instead of sorting every open exam.
            # The worklist filters with status__in_literals=OPEN_STATUSES, so that
            # SQLite finds this condition in its WHERE.
            models.Index(
                fields=["priority", "study_received_at", "id"], condition=models.Q(status__in=OPEN_STATUSES), name="exam_open_worklist",
            ),
        ]

    def __str__(self) -> str:
        return self.accession_number or f"exam {self.pk}"


Exam._meta.get_field("status").register_lookup(StatusInLiterals)


class ExamStudy(models.Model):
    """The link of a study to the exam it is reported with; a study belongs to one exam."""

    exam = models.ForeignKey(Exam, on_delete=models.CASCADE, related_name="exam_studies")
    study = models.OneToOneField(Study, on_delete=models.CASCADE, related_name="exam_link")


class ReportTemplate(models.Model):
    """A report skeleton: its sections, in order, with their starting text."""

    name = models.CharField(_("name"), max_length=200, unique=True)
    # One modality or several separated by backslashes ("CR\\DX"), as in
    # Exam.modalities. Empty matches any modality or exam type.
    modality = models.CharField(_("modality"), max_length=16, blank=True)
    exam_type = models.CharField(_("exam type"), max_length=200, blank=True)
    # A list of {"key": "findings", "title": "Findings", "text": "..."} objects.
    sections = models.JSONField(_("sections"), default=list)
    active = models.BooleanField(_("active"), default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("report template")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Phrase(models.Model):
    """A reusable piece of report text, for one template's section or for all."""

    template = models.ForeignKey(ReportTemplate, on_delete=models.CASCADE, null=True, blank=True, related_name="phrases")
    section_key = models.CharField(_("section"), max_length=64, blank=True)
    label = models.CharField(_("label"), max_length=100)
    text = models.TextField(_("text"))

    class Meta:
        verbose_name = _("phrase")
        ordering = ["label"]

    def __str__(self) -> str:
        return self.label


class Report(models.Model):
    """The working copy of an exam's report, saved while it is written; signed versions are SignedReport rows."""

    exam = models.OneToOneField(Exam, on_delete=models.PROTECT, related_name="report")
    template = models.ForeignKey(ReportTemplate, on_delete=models.SET_NULL, null=True, blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="authored_reports")
    # Section key to text, in the order of `section_order`.
    sections = models.JSONField(default=dict)
    section_order = models.JSONField(default=list)
    # Incremented on every save, so that a save based on an older copy is detected instead of overwriting.
    revision = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("report")


class SignedReportChangeError(Exception):
    """Raised on an attempt to change or delete a signed report; corrections are addenda."""


class SignedReportQuerySet(models.QuerySet):
    """Queries of signed reports, without bulk updates or deletes."""

    def update(self, **kwargs):
        raise SignedReportChangeError("signed reports cannot be changed; add an addendum instead")

    def delete(self):
        raise SignedReportChangeError("signed reports cannot be deleted")


class SignedKind(models.TextChoices):
    PRELIMINARY = "preliminary", _("Preliminary")
    FINAL = "final", _("Final")
    ADDENDUM = "addendum", _("Addendum")


class SignedReport(models.Model):
    """One signed version of a report: preliminary, final or an addendum. Rows are never changed."""

    exam = models.ForeignKey(Exam, on_delete=models.PROTECT, related_name="signed_reports")
    kind = models.CharField(_("kind"), max_length=16, choices=SignedKind.choices)
    sections = models.JSONField(default=dict)
    section_order = models.JSONField(default=list)
    text = models.TextField(_("text"))
    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="signed_reports")
    signed_at = models.DateTimeField(_("signed"))
    critical = models.BooleanField(_("critical result"), default=False)
    # SHA-256 of the canonical form of the signed content, signer and time.
    content_hash = models.CharField(max_length=64)

    objects = SignedReportQuerySet.as_manager()

    class Meta:
        verbose_name = _("signed report")
        ordering = ["signed_at", "id"]
        constraints = [
            # Never two final reports for one exam, also under concurrent signing; corrections are addenda.
            models.UniqueConstraint(fields=["exam"], condition=models.Q(kind="final"), name="one_final_report_per_exam"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.exam} {self.signed_at:%Y-%m-%d %H:%M}"

    def save(self, *args, **kwargs):
        """Insert the row; raise SignedReportChangeError when it exists already."""
        if not self._state.adding or (self.pk is not None and SignedReport.objects.filter(pk=self.pk).exists()):
            raise SignedReportChangeError(f"signed report {self.pk} cannot be changed; add an addendum instead")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise SignedReportChangeError(f"signed report {self.pk} cannot be deleted")


class SubspecialtyRule(models.Model):
    """A rule that gives a new exam its subspecialty from its modalities, its body part, or both."""

    subspecialty = models.ForeignKey(Subspecialty, on_delete=models.CASCADE, related_name="rules", verbose_name=_("subspecialty"))
    modality = models.CharField(
        _("modality"), max_length=16, blank=True,
        help_text=_("A DICOM modality such as MR or MG, matched against every modality of the exam. Empty matches any modality."),
    )
    body_part_keyword = models.CharField(
        _("body part keyword"), max_length=64, blank=True,
        help_text=_("Matched, ignoring case, inside the body part, the description and the requested procedure. Empty matches any exam."),
    )
    position = models.PositiveIntegerField(
        _("position"), default=100, help_text=_("Rules are tried from the lowest position up; the first that matches decides."),
    )
    active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("subspecialty rule")
        ordering = ["position", "id"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(modality="", body_part_keyword=""), name="subspecialty_rule_has_criterion",
                violation_error_message=_("Give a modality, a body part keyword, or both."),
            ),
        ]

    def __str__(self) -> str:
        criteria = " + ".join(value for value in (self.modality, self.body_part_keyword) if value)
        return f"{criteria} → {self.subspecialty}"


class Reader(models.Model):
    """A reader's worklist settings: the subspecialties they read, and whether they are on duty."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reader", verbose_name=_("user"))
    subspecialties = models.ManyToManyField(Subspecialty, blank=True, related_name="readers", verbose_name=_("subspecialties"))
    # Set by the reader on the worklist or by an administrator. A question on
    # an exam that no reader has taken goes to a reader on duty (see reading.duty).
    on_duty = models.BooleanField(_("on duty"), default=False)
    on_duty_since = models.DateTimeField(_("on duty since"), null=True, blank=True)

    class Meta:
        verbose_name = _("reader")

    def __str__(self) -> str:
        return self.user.get_username()


class WorklistView(models.Model):
    """A set of worklist filters that a user saved under a name."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="worklist_views")
    name = models.CharField(_("name"), max_length=100)
    # The worklist's query parameters (priority, modality, subspecialty, status, mine, sort), never a search text.
    filters = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("saved worklist view")
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="worklist_view_unique_name")]

    def __str__(self) -> str:
        return self.name


class ExamSyncState(models.Model):
    """How far exam creation has checked the archive; one row, shared by every process that runs it."""

    # Every study created before this time has an exam, unless its transaction
    # committed more than the sync's margin later (see reading.exams).
    checked_until = models.DateTimeField(null=True)
    updated_at = models.DateTimeField(auto_now=True)


# The models of report delivery and of image-quality issues live in their own modules of this app.
from telerad.reading.delivery.models import DeliveryEndpoint, DeliveryJob  # noqa: E402,F401
from telerad.reading.quality_models import QualityIssue, QualityReply  # noqa: E402,F401
