"""Read-only administration pages for the archive index.

Only ingest writes index rows, because a row must always describe a file in
storage. Staff can look rows up here but not add, change or delete them.
Each page that shows patient data writes an audit event, as the study pages do.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _

from telerad.archive.models import Instance, Patient, Series, Study
from telerad.archive.names import fold
from telerad.archive.templatetags.dicom_format import person_name, uid_name
from telerad.audit import events as audit
from telerad.core.admin import ReadOnlyAdmin


class IndexAdmin(ReadOnlyAdmin):
    """Shared behaviour of the index pages: read-only, exact identifier search, audited."""

    def audit_identifiers(self, obj: Any) -> dict[str, str]:
        """Return the patient ID and study instance UID that `obj` belongs to."""
        raise NotImplementedError

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        if response.status_code == 200:
            # The search term may be a patient name, so only its presence is recorded.
            searched = "; search=(not recorded)" if request.GET.get("q") else ""
            _record_view(request, audit.Action.STUDY_LIST_VIEWED, detail=f"admin {self.opts.model_name} list{searched}")
        return response

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().change_view(request, object_id, form_url, extra_context)
        obj = self.get_object(request, unquote(object_id)) if response.status_code == 200 else None
        if obj is not None:
            detail = f"admin {self.opts.model_name} {obj}"
            _record_view(request, audit.Action.STUDY_VIEWED, detail=detail, **self.audit_identifiers(obj))
        return response


def _record_view(request: HttpRequest, action: audit.Action, **fields: str) -> None:
    audit.record_event(action=action, user=request.user.get_username(), address=request.META.get("REMOTE_ADDR", ""), **fields)


@admin.register(Patient)
class PatientAdmin(IndexAdmin):
    list_display = ("patient_id", "issuer_of_patient_id", "display_name", "patient_birth_date", "patient_sex", "created_at")
    search_fields = ("patient_id", "patient_name")
    search_help_text = _("An exact patient ID, or the start of a patient name (case and accents ignored).")
    exact_search_fields = ("patient_id",)
    ordering = ("-id",)

    @admin.display(description=_("patient name"))
    def display_name(self, patient: Patient) -> str:
        return person_name(patient.patient_name)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(patient_id=term) | Q(patient_name_folded__startswith=fold(term))), False

    def audit_identifiers(self, obj: Patient) -> dict[str, str]:
        return {"patient_id": obj.patient_id}


@admin.register(Study)
class StudyAdmin(IndexAdmin):
    list_display = (
        "study_date", "study_time", "accession_number", "patient_identifier", "modalities_in_study",
        "study_description", "number_of_study_related_series", "number_of_study_related_instances",
    )
    list_select_related = ("patient",)
    search_fields = ("study_instance_uid", "accession_number", "patient__patient_id")
    search_help_text = _("An exact study instance UID, accession number or patient ID.")
    exact_search_fields = ("study_instance_uid", "accession_number", "patient__patient_id")
    ordering = ("-study_date", "-study_time", "-id")

    @admin.display(description=_("patient ID"), ordering="patient__patient_id")
    def patient_identifier(self, study: Study) -> str:
        return study.patient.patient_id

    def audit_identifiers(self, obj: Study) -> dict[str, str]:
        return {"patient_id": obj.patient.patient_id, "study_instance_uid": obj.study_instance_uid}


@admin.register(Series)
class SeriesAdmin(IndexAdmin):
    list_display = (
        "series_instance_uid", "modality", "series_number", "series_description", "body_part_examined",
        "number_of_series_related_instances", "created_at",
    )
    search_fields = ("series_instance_uid", "study__study_instance_uid")
    search_help_text = _("An exact series or study instance UID.")
    exact_search_fields = ("series_instance_uid", "study__study_instance_uid")
    ordering = ("-id",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("study__patient")

    def audit_identifiers(self, obj: Series) -> dict[str, str]:
        return {"patient_id": obj.study.patient.patient_id, "study_instance_uid": obj.study.study_instance_uid}


@admin.register(Instance)
class InstanceAdmin(IndexAdmin):
    list_display = ("sop_instance_uid", "sop_class_name", "instance_number", "transfer_syntax_name", "file_size", "source_ae_title", "received_at")
    search_fields = ("sop_instance_uid", "series__series_instance_uid")
    search_help_text = _("An exact SOP instance UID or series instance UID.")
    exact_search_fields = ("sop_instance_uid", "series__series_instance_uid")
    ordering = ("-id",)

    @admin.display(description=_("SOP class"))
    def sop_class_name(self, instance: Instance) -> str:
        return uid_name(instance.sop_class_uid)

    @admin.display(description=_("transfer syntax"))
    def transfer_syntax_name(self, instance: Instance) -> str:
        return uid_name(instance.transfer_syntax_uid)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("series__study__patient")

    def audit_identifiers(self, obj: Instance) -> dict[str, str]:
        study = obj.series.study
        return {"patient_id": study.patient.patient_id, "study_instance_uid": study.study_instance_uid}
