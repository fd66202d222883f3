"""Delivery endpoints of signed reports, and the outbox of deliveries.

Both models belong to the reading app; ``telerad.reading.models`` imports
them so that Django finds them.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class EndpointKind(models.TextChoices):
    HL7_MLLP = "hl7-mllp", _("HL7 v2 over MLLP")
    FHIR = "fhir", _("FHIR server")


class DeliveryEndpoint(models.Model):
    """A system that receives every final report and addendum: an HL7 MLLP listener or a FHIR server."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    kind = models.CharField(_("kind"), max_length=16, choices=EndpointKind.choices)
    # HL7 MLLP: the listener's host and TCP port.
    host = models.CharField(_("host"), max_length=255, blank=True)
    port = models.PositiveIntegerField(_("port"), null=True, blank=True)
    # FHIR: the base URL, for example https://fhir.example.org/r4; reports go to BASE/DiagnosticReport.
    url = models.URLField(_("FHIR base URL"), max_length=500, blank=True)
    use_tls = models.BooleanField(_("TLS"), default=False, help_text=_("Encrypt MLLP connections with TLS; FHIR uses TLS for https URLs."))
    ca_file = models.CharField(
        _("CA file"), max_length=500, blank=True,
        help_text=_("PEM file of the CA that signed the peer's certificate; empty uses the system's trusted CAs."),
    )
    # MSH-5 and MSH-6 of the HL7 messages.
    receiving_application = models.CharField(_("receiving application"), max_length=100, blank=True)
    receiving_facility = models.CharField(_("receiving facility"), max_length=100, blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "reading"
        verbose_name = _("report delivery endpoint")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def address(self) -> str:
        """The peer as logs name it: host:port for MLLP, the URL for FHIR."""
        return self.url if self.kind == EndpointKind.FHIR else f"{self.host}:{self.port}"


class JobTarget(models.TextChoices):
    # The report's Encapsulated PDF and Basic Text SR, stored in the exam's study.
    ARCHIVE = "archive", _("Archive")
    HL7_MLLP = "hl7-mllp", _("HL7 v2 over MLLP")
    FHIR = "fhir", _("FHIR server")


class JobState(models.TextChoices):
    PENDING = "pending", _("Pending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed")


class DeliveryJob(models.Model):
    """One delivery of one signed report to one target, tried until it succeeds or runs out of attempts."""

    signed_report = models.ForeignKey("reading.SignedReport", on_delete=models.PROTECT, related_name="delivery_jobs")
    target = models.CharField(_("target"), max_length=16, choices=JobTarget.choices)
    # Empty for the archive target.
    endpoint = models.ForeignKey(DeliveryEndpoint, on_delete=models.PROTECT, null=True, blank=True, related_name="jobs", verbose_name=_("endpoint"))
    state = models.CharField(_("state"), max_length=16, choices=JobState.choices, default=JobState.PENDING)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"))
    last_error = models.TextField(_("last error"), blank=True)
    # The worker that claimed the job and until when; another worker takes
    # the job over only after the lease expired.
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)

    class Meta:
        app_label = "reading"
        verbose_name = _("report delivery")
        verbose_name_plural = _("report deliveries")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["signed_report", "endpoint"], name="delivery_job_once_per_endpoint"),
            models.UniqueConstraint(
                fields=["signed_report"], condition=models.Q(target="archive"), name="delivery_job_once_to_archive",
            ),
        ]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="delivery_job_due")]

    def __str__(self) -> str:
        return f"delivery {self.pk} of report {self.signed_report_id} to {self.endpoint or self.get_target_display()}"
