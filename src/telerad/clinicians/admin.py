"""Administration of clinicians' grants and DICOM names, and of the notification e-mails that failed or wait.

Grants and names open to users whose role grants MANAGE_USERS (see
telerad.accounts.backends). Patients are named by Patient ID only, so that
administrators, who do not see the archive, see no patient names here. Every
change writes a CLINICIAN_ACCESS_CHANGED audit event in the same transaction.

The e-mail list, with a retry action, opens to the roles that grant
MANAGE_REMOTE_AES, as the report delivery list does: telerad.accounts.backends
maps that permission to the view and change permissions of EmailJob. E-mails
carry no patient data beyond the accession number and a link, so the list
shows them whole.
"""

from __future__ import annotations

import logging
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from telerad.accounts.roles import Role
from telerad.archive.models import Patient
from telerad.clinicians import grants, mail, matching
from telerad.clinicians.models import ClinicianGrant, ClinicianProfile, EmailJob, EmailState
from telerad.core.admin import FailedOrPendingFilter

logger = logging.getLogger(__name__)


class OpenEmailFilter(FailedOrPendingFilter):
    states = EmailState


@admin.register(EmailJob)
class EmailJobAdmin(admin.ModelAdmin):
    list_display = ("id", "state", "kind", "to_address", "accession_number", "attempts", "next_attempt_at", "last_error", "created_at", "sent_at")
    list_filter = (OpenEmailFilter, "kind")
    list_select_related = ("exam",)
    search_fields = ("exam__accession_number", "to_address", "last_error")
    actions = ["retry"]
    readonly_fields = [field.name for field in EmailJob._meta.fields]

    @admin.display(description=_("accession number"))
    def accession_number(self, job: EmailJob) -> str:
        return job.exam.accession_number if job.exam is not None else ""

    # E-mails come from notifications only, so the list shows and retries them but never adds or deletes one.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(description=_("Retry the selected e-mails now"), permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[EmailJob]) -> None:
        retried = 0
        with transaction.atomic():
            for job in queryset.exclude(state=EmailState.SENT):
                if mail.retry_now(job):
                    retried += 1
                    logger.info("e-mail job %s queued again by %s", job.pk, request.user.get_username())
        self.message_user(
            request,
            ngettext("%(count)d e-mail queued again.", "%(count)d e-mails queued again.", retried) % {"count": retried},
            messages.SUCCESS,
        )



def _address(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "")


def _clinicians() -> QuerySet:
    return get_user_model().objects.filter(is_active=True, groups__name=Role.CLINICIAN.value).order_by("username")


class PatientIdField(forms.ModelChoiceField):
    """A patient typed in by Patient ID rather than picked from a list of names."""

    def __init__(self, **kwargs: Any):
        super().__init__(
            queryset=Patient.objects.exclude(patient_id=""), to_field_name="patient_id", widget=forms.TextInput, required=False,
            label=_("Patient ID"), help_text=_("The Patient ID of the patient whose exams the clinician may see."), **kwargs,
        )

    def to_python(self, value: Any) -> Patient | None:
        if value in self.empty_values:
            return None
        try:
            return grants.find_patient(str(value))
        except grants.GrantError as exc:
            raise forms.ValidationError(str(exc), code="invalid_choice") from None


class ClinicianGrantForm(forms.ModelForm):
    clinician = forms.ModelChoiceField(label=_("Clinician"), queryset=get_user_model().objects.none())
    patient = PatientIdField()

    class Meta:
        model = ClinicianGrant
        fields = ["clinician", "patient", "department", "expires_at", "note"]
        help_texts = {
            "department": _("Instead of a patient: the ward or department whose exams the clinician may see. Case does not matter."),
            "expires_at": _("Empty: the grant counts until it is revoked."),
        }

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["clinician"].queryset = _clinicians()
        # The form's initial value is the patient's primary key; the field shows and reads the Patient ID.
        if self.instance.patient_id is not None:
            self.initial["patient"] = self.instance.patient.patient_id

    def clean_department(self) -> str:
        return grants.normalise_department(self.cleaned_data.get("department", ""))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("patient") is None and not cleaned.get("department") and "patient" not in self.errors:
            raise forms.ValidationError(_("Give a Patient ID or a ward or department."))
        if cleaned.get("patient") is not None and cleaned.get("department"):
            raise forms.ValidationError(_("Give either a Patient ID or a ward or department, not both."))
        expires_at = cleaned.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now() and "expires_at" in self.changed_data:
            self.add_error("expires_at", _("This time is in the past. Give a later one, or revoke the grant instead."))
        return cleaned


@admin.register(ClinicianGrant)
class ClinicianGrantAdmin(admin.ModelAdmin):
    form = ClinicianGrantForm
    list_display = ("clinician", "target", "granted_by", "granted_at", "expires_at", "active")
    list_filter = ("granted_at", "expires_at")
    search_fields = ("clinician__username", "patient__patient_id", "department")
    list_select_related = ("clinician", "patient")
    readonly_fields = ("granted_by", "granted_at")

    @admin.display(description=_("grants"))
    def target(self, grant: ClinicianGrant) -> str:
        return grant.target_label

    @admin.display(description=_("active"), boolean=True)
    def active(self, grant: ClinicianGrant) -> bool:
        return grant.is_active()

    def save_model(self, request: HttpRequest, obj: ClinicianGrant, form: forms.ModelForm, change: bool) -> None:
        with transaction.atomic():
            if not change:
                obj.granted_by = request.user.get_username()
            super().save_model(request, obj, form, change)
            detail = f"changed ({', '.join(form.changed_data)})" if change else "added"
            grants.record_change(obj, detail, actor=request.user.get_username(), address=_address(request))

    def delete_model(self, request: HttpRequest, obj: ClinicianGrant) -> None:
        with transaction.atomic():
            grants.record_change(obj, "revoked", actor=request.user.get_username(), address=_address(request))
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ClinicianGrant]) -> None:
        with transaction.atomic():
            for grant in queryset.select_related("clinician", "patient"):
                grants.record_change(grant, "revoked", actor=request.user.get_username(), address=_address(request))
            super().delete_queryset(request, queryset)


class ClinicianProfileForm(forms.ModelForm):
    user = forms.ModelChoiceField(label=_("Clinician"), queryset=get_user_model().objects.none())

    class Meta:
        model = ClinicianProfile
        fields = ["user", "dicom_names"]
        widgets = {"dicom_names": forms.Textarea(attrs={"rows": 4})}

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = _clinicians()


@admin.register(ClinicianProfile)
class ClinicianProfileAdmin(admin.ModelAdmin):
    form = ClinicianProfileForm
    list_display = ("user", "names", "updated_at")
    search_fields = ("user__username", "dicom_names")
    list_select_related = ("user",)
    actions = ["match_exams"]

    @admin.display(description=_("names in DICOM headers"))
    def names(self, profile: ClinicianProfile) -> str:
        return ", ".join(profile.name_list())

    def save_model(self, request: HttpRequest, obj: ClinicianProfile, form: forms.ModelForm, change: bool) -> None:
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            grants.record_profile_change(obj, actor=request.user.get_username(), address=_address(request))

    def delete_model(self, request: HttpRequest, obj: ClinicianProfile) -> None:
        with transaction.atomic():
            obj.dicom_names = ""
            grants.record_profile_change(obj, actor=request.user.get_username(), address=_address(request))
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ClinicianProfile]) -> None:
        with transaction.atomic():
            for profile in queryset.select_related("user"):
                profile.dicom_names = ""
                grants.record_profile_change(profile, actor=request.user.get_username(), address=_address(request))
            super().delete_queryset(request, queryset)

    @admin.action(description=_("Match exams without a referring clinician to every clinician's names"))
    def match_exams(self, request: HttpRequest, queryset: QuerySet[ClinicianProfile]) -> None:
        # Matching needs every profile, since a name listed by two clinicians matches neither, so the selection does not narrow it.
        matched = matching.match_existing_exams(actor=request.user.get_username())
        self.message_user(
            request,
            ngettext("%(count)d exam got a referring clinician.", "%(count)d exams got a referring clinician.", matched) % {"count": matched},
            messages.SUCCESS,
        )
