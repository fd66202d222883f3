"""A read-only view of the audit trail for staff. Only the code that acts appends events."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from telerad.audit.events import Outcome
from telerad.audit.models import AuditEvent

OUTCOME_LABELS = {
    Outcome.SUCCESS: _("success"),
    Outcome.MINOR_FAILURE: _("minor failure"),
    Outcome.SERIOUS_FAILURE: _("serious failure"),
    Outcome.MAJOR_FAILURE: _("major failure"),
}


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("sequence", "occurred_at", "action", "outcome_name", "user", "address", "patient_id", "study_instance_uid")
    list_filter = ("action", "outcome")
    date_hierarchy = "occurred_at"
    search_fields = ("user", "patient_id", "study_instance_uid")
    search_help_text = _("An exact user name, patient ID or study instance UID.")
    ordering = ("-sequence",)
    # The "N total" link of a search costs a count of the whole trail on every page.
    show_full_result_count = False

    @admin.display(description=_("outcome"), ordering="outcome")
    def outcome_name(self, event: AuditEvent) -> str:
        return str(OUTCOME_LABELS.get(event.outcome, event.outcome))

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        # Whole values match through the indexes on these columns.
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(user=term) | Q(patient_id=term) | Q(study_instance_uid=term)), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
