"""Administration of delivery endpoints, and the list of deliveries that failed or wait, with a retry action.

Both open to users whose role grants MANAGE_REMOTE_AES, the permission for
the other network peers. Every change of an endpoint writes an audit event
in the same transaction.
"""

from __future__ import annotations

import logging

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.forms import ModelForm, URLField, ValidationError
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from telerad.accounts.roles import Permission, has_permission
from telerad.audit import events as audit
from telerad.core.admin import FailedOrPendingFilter
from telerad.reading.delivery import outbox
from telerad.reading.delivery.models import DeliveryEndpoint, DeliveryJob, EndpointKind, JobState

logger = logging.getLogger(__name__)

MANAGING_PERMISSION = Permission.MANAGE_REMOTE_AES


def _may_manage(request: HttpRequest) -> bool:
    return request.user.is_active and has_permission(request.user, MANAGING_PERMISSION)


class ManagedByNetworkAdministrators(admin.ModelAdmin):
    """Grant the admin's model permissions from MANAGING_PERMISSION instead of Django's per-user rows."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _may_manage(request)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return _may_manage(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return _may_manage(request)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return _may_manage(request)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return _may_manage(request)


def _record_change(request: HttpRequest, detail: str) -> None:
    audit.record_event(
        action=audit.Action.REMOTE_AE_CHANGED,
        user=request.user.get_username(),
        address=request.META.get("REMOTE_ADDR", ""),
        detail=detail,
    )


class DeliveryEndpointForm(ModelForm):
    url = URLField(label=_("FHIR base URL"), max_length=500, required=False, assume_scheme="https")

    class Meta:
        model = DeliveryEndpoint
        fields = "__all__"

    def clean(self):
        data = super().clean()
        kind = data.get("kind")
        if kind == EndpointKind.HL7_MLLP:
            if not data.get("host"):
                self.add_error("host", ValidationError(_("An HL7 MLLP endpoint needs a host.")))
            if not data.get("port"):
                self.add_error("port", ValidationError(_("An HL7 MLLP endpoint needs a port.")))
            elif not 1 <= data["port"] <= 65535:
                self.add_error("port", ValidationError(_("Use a port from 1 to 65535.")))
        elif kind == EndpointKind.FHIR and not data.get("url"):
            self.add_error("url", ValidationError(_("A FHIR endpoint needs the server's base URL.")))
        return data


@admin.register(DeliveryEndpoint)
class DeliveryEndpointAdmin(ManagedByNetworkAdministrators):
    form = DeliveryEndpointForm
    list_display = ("name", "kind", "host", "port", "url", "use_tls", "enabled")
    list_filter = ("kind", "enabled")
    search_fields = ("name", "host", "url")
    readonly_fields = ("created_at", "updated_at")

    def save_model(self, request: HttpRequest, obj: DeliveryEndpoint, form: ModelForm, change: bool) -> None:
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            action = "updated" if change else "added"
            fields = f": {', '.join(form.changed_data)}" if change else ""
            _record_change(request, f"{action} report delivery endpoint {obj.name} ({obj.kind} {obj.address}){fields}")

    def delete_model(self, request: HttpRequest, obj: DeliveryEndpoint) -> None:
        with transaction.atomic():
            name = obj.name
            super().delete_model(request, obj)
            _record_change(request, f"removed report delivery endpoint {name}")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[DeliveryEndpoint]) -> None:
        with transaction.atomic():
            names = list(queryset.values_list("name", flat=True))
            super().delete_queryset(request, queryset)
            for name in names:
                _record_change(request, f"removed report delivery endpoint {name}")


class OpenJobFilter(FailedOrPendingFilter):
    states = JobState


@admin.register(DeliveryJob)
class DeliveryJobAdmin(ManagedByNetworkAdministrators):
    list_display = ("id", "state", "target", "endpoint", "accession_number", "signed_report", "attempts", "next_attempt_at", "last_error", "created_at", "sent_at")
    list_filter = (OpenJobFilter, "target", "endpoint")
    list_select_related = ("endpoint", "signed_report__exam")
    search_fields = ("signed_report__exam__accession_number", "last_error")
    actions = ["retry"]
    readonly_fields = [field.name for field in DeliveryJob._meta.fields]

    @admin.display(description=_("accession number"))
    def accession_number(self, job: DeliveryJob) -> str:
        return job.signed_report.exam.accession_number

    # Jobs come from signing only; the list shows them and retries them.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(description=_("Retry the selected deliveries now"))
    def retry(self, request: HttpRequest, queryset: QuerySet[DeliveryJob]) -> None:
        retried = 0
        with transaction.atomic():
            for job in queryset.exclude(state=JobState.SENT):
                if outbox.retry_now(job):
                    retried += 1
                    logger.info("report delivery job %s queued again by %s", job.pk, request.user.get_username())
        self.message_user(
            request,
            ngettext("%(count)d delivery queued again.", "%(count)d deliveries queued again.", retried) % {"count": retried},
            messages.SUCCESS,
        )
