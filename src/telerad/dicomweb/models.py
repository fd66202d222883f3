"""Stored results that make DICOMweb responses fast."""

from __future__ import annotations

from django.db import models

from telerad.archive.models import Instance


class InstanceMetadata(models.Model):
    """The DICOM JSON (PS3.18 F.2) of one instance without bulk data, zlib-compressed.

    A row is valid while `dataset_sha256` equals the instance's and
    `encoder_version` equals the encoder's. A replaced instance or a changed
    encoder makes the row stale, and the next metadata request rebuilds it.
    """

    instance = models.OneToOneField(Instance, on_delete=models.CASCADE, primary_key=True, related_name="dicom_json")
    dataset_sha256 = models.CharField(max_length=64)
    encoder_version = models.PositiveSmallIntegerField()
    document = models.BinaryField()
    built_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "instance metadata"
        verbose_name_plural = "instance metadata"

    def __str__(self) -> str:
        return f"metadata of instance {self.instance_id}"
