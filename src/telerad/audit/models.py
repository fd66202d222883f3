"""The audit trail: append-only events, each chained to the previous one by a SHA-256 hash."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class AuditEvent(models.Model):
    sequence = models.PositiveBigIntegerField(unique=True)
    occurred_at = models.DateTimeField(db_index=True)
    # A user name, or a DICOM AE title for network peers.
    user = models.CharField(_("user"), max_length=150, blank=True, db_index=True)
    address = models.CharField(_("source address"), max_length=64, blank=True)
    action = models.CharField(_("action"), max_length=64, db_index=True)
    # RFC 3881 EventOutcomeIndicator: 0 success, 4 minor, 8 serious, 12 major failure.
    outcome = models.PositiveSmallIntegerField(_("outcome"))
    patient_id = models.TextField(_("patient ID"), blank=True, db_index=True)
    study_instance_uid = models.CharField(_("study instance UID"), max_length=64, blank=True, db_index=True)
    detail = models.TextField(_("detail"), blank=True)
    # The other patients the event concerns, one ID per line: for example
    # those a search returned. AuditEventPatient indexes them for searching.
    other_patient_ids = models.TextField(_("other patient IDs"), blank=True, default="", db_default="")
    previous_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["sequence"]

    def __str__(self) -> str:
        return f"{self.sequence} {self.action}"


class AuditChainHead(models.Model):
    """One row that holds the chain's last sequence and hash; locking it orders concurrent writers."""

    last_sequence = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)


class AuditForwardCursor(models.Model):
    """One row that stores the last event sent to the audit repository, and which process is sending.

    A forwarder takes the lease before it sends, so that several processes on
    one database (web and DICOM nodes) send each event once and in order. A
    lease left by a stopped process expires and is taken over.
    """

    last_sequence = models.PositiveBigIntegerField(default=0)
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True)
    forwarded_at = models.DateTimeField(null=True)


class AuditEventPatient(models.Model):
    """An index row: one of an event's other patient IDs, so that auditors find the event by patient."""

    event = models.ForeignKey(AuditEvent, on_delete=models.CASCADE, related_name="patient_index")
    patient_id = models.TextField(db_index=True)
