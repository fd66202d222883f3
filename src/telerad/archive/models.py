"""The archive index: the DICOM hierarchy of patients, studies, series and instances.

Column names are the snake_case forms of the DICOM keywords they mirror.
Dates (DA) are kept as the 8-character ``YYYYMMDD`` text of the standard, so
that range matching is a plain string comparison; times (TM) likewise.
Person names keep the full DICOM PN text, with a ``*_folded`` copy (case and
accents folded) for matching.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Patient(models.Model):
    patient_id = models.TextField(_("patient ID"), blank=True)
    issuer_of_patient_id = models.TextField(_("issuer of patient ID"), blank=True)
    patient_name = models.TextField(_("patient name"), blank=True)
    patient_name_folded = models.TextField(blank=True, db_index=True)
    patient_birth_date = models.CharField(_("birth date"), max_length=8, blank=True)
    patient_sex = models.CharField(_("sex"), max_length=16, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Studies without a Patient ID have unknown patients: each gets a
            # row of its own rather than one shared "patient" (PS3.3 C.7.1.1).
            models.UniqueConstraint(
                fields=["patient_id", "issuer_of_patient_id"], condition=~models.Q(patient_id=""), name="patient_unique_identifier",
            ),
        ]
        indexes = [
            # Names with ideographic or phonetic groups, which name matching
            # searches past the first "=" (see telerad.archive.query).
            models.Index(
                fields=["patient_name_folded"],
                condition=models.Q(patient_name_folded__contains="="),
                name="patient_name_with_groups",
            ),
        ]

    def __str__(self) -> str:
        return self.patient_id or f"patient {self.pk}"


class Study(models.Model):
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="studies")
    study_instance_uid = models.CharField(_("study instance UID"), max_length=64, unique=True)
    study_date = models.CharField(_("study date"), max_length=8, blank=True)
    study_time = models.CharField(_("study time"), max_length=16, blank=True)
    accession_number = models.TextField(_("accession number"), blank=True, db_index=True)
    study_id = models.TextField(_("study ID"), blank=True)
    study_description = models.TextField(_("study description"), blank=True)
    referring_physician_name = models.TextField(_("referring physician"), blank=True)
    referring_physician_name_folded = models.TextField(blank=True)
    # Maintained on every stored instance, so that lists and queries need no aggregation.
    modalities_in_study = models.TextField(_("modalities"), blank=True)
    number_of_study_related_series = models.PositiveIntegerField(_("series"), default=0)
    number_of_study_related_instances = models.PositiveIntegerField(_("instances"), default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = _("studies")
        indexes = [
            # The study list's default order: newest study first.
            models.Index(fields=["-study_date", "-study_time", "-id"], name="study_newest_first"),
        ]

    def __str__(self) -> str:
        return self.study_instance_uid

    @property
    def modalities(self) -> list[str]:
        return [value for value in self.modalities_in_study.split("\\") if value]


class Series(models.Model):
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="series")
    series_instance_uid = models.CharField(_("series instance UID"), max_length=64, unique=True)
    modality = models.CharField(_("modality"), max_length=16, blank=True)
    series_number = models.IntegerField(_("series number"), null=True, blank=True)
    series_description = models.TextField(_("series description"), blank=True)
    body_part_examined = models.TextField(_("body part"), blank=True)
    series_date = models.CharField(_("series date"), max_length=8, blank=True)
    series_time = models.CharField(_("series time"), max_length=16, blank=True)
    number_of_series_related_instances = models.PositiveIntegerField(_("instances"), default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = _("series")
        indexes = [
            # ModalitiesInStudy matching and relational queries filter on it.
            models.Index(fields=["modality"], name="series_modality"),
        ]

    def __str__(self) -> str:
        return self.series_instance_uid


class Instance(models.Model):
    series = models.ForeignKey(Series, on_delete=models.PROTECT, related_name="instances")
    sop_instance_uid = models.CharField(_("SOP instance UID"), max_length=64, unique=True)
    sop_class_uid = models.CharField(_("SOP class UID"), max_length=64)
    instance_number = models.IntegerField(_("instance number"), null=True, blank=True)
    transfer_syntax_uid = models.CharField(_("transfer syntax UID"), max_length=64)
    rows = models.PositiveIntegerField(null=True, blank=True)
    columns = models.PositiveIntegerField(null=True, blank=True)
    number_of_frames = models.PositiveIntegerField(_("frames"), null=True, blank=True)
    storage_key = models.CharField(max_length=200, unique=True)
    file_size = models.PositiveBigIntegerField()
    # SHA-256 of the encoded dataset after the file meta information: equal
    # for the same content whether it came over DIMSE, DICOMweb or a file.
    dataset_sha256 = models.CharField(max_length=64)
    # Where the dataset starts in the stored file (after preamble and meta).
    dataset_offset = models.PositiveIntegerField()
    source_ae_title = models.CharField(max_length=16, blank=True)
    source_address = models.CharField(max_length=64, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.sop_instance_uid
