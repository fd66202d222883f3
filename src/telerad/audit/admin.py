"""A read-only view of the audit trail for staff. Only the code that acts appends events."""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from telerad.audit.labels import outcome_label
from telerad.audit.models import AuditEvent
from telerad.core.admin import ReadOnlyAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("sequence", "occurred_at", "action", "outcome_name", "user", "address", "patient_id", "study_instance_uid")
    list_filter = ("action", "outcome")
    date_hierarchy = "occurred_at"
    search_fields = ("user", "patient_id", "study_instance_uid")
    search_help_text = _("An exact user name, patient ID or study instance UID.")
    exact_search_fields = ("user", "patient_id", "study_instance_uid")
    ordering = ("-sequence",)

    @admin.display(description=_("outcome"), ordering="outcome")
    def outcome_name(self, event: AuditEvent) -> str:
        return outcome_label(event.outcome)
