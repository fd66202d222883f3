"""Administration of the remote AEs, where every change writes an audit event in the same transaction."""

from __future__ import annotations

from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from telerad.audit import events as audit
from telerad.dimse.models import RemoteAE


def _record_change(request: HttpRequest, detail: str) -> None:
    audit.record_event(
        action=audit.Action.REMOTE_AE_CHANGED,
        user=request.user.get_username(),
        address=request.META.get("REMOTE_ADDR", ""),
        detail=detail,
    )


def _change_detail(remote_ae: RemoteAE, form: ModelForm, change: bool) -> str:
    if not change:
        return f"added AE {remote_ae.ae_title}"

    changed = []
    for field in form.changed_data:
        if field == "ae_title":
            changed.append(f"ae_title (was {form.initial.get('ae_title', '')})")
        else:
            changed.append(field)
    return f"updated AE {remote_ae.ae_title}: {', '.join(changed) or 'no field changed'}"


@admin.register(RemoteAE)
class RemoteAEAdmin(admin.ModelAdmin):
    list_display = (
        "ae_title", "host", "port", "description", "allow_store", "allow_find", "allow_move", "allow_get",
        "tls_required", "enabled",
    )
    list_filter = ("enabled", "tls_required")
    search_fields = ("ae_title", "host", "description")
    readonly_fields = ("created_at", "updated_at")

    # A change and its audit event commit together or not at all. The admin's
    # own transaction covers the add, change and delete pages, but not every
    # caller, so each method opens one of its own.
    def save_model(self, request: HttpRequest, obj: RemoteAE, form: ModelForm, change: bool) -> None:
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            _record_change(request, _change_detail(obj, form, change))

    def delete_model(self, request: HttpRequest, obj: RemoteAE) -> None:
        with transaction.atomic():
            title = obj.ae_title
            super().delete_model(request, obj)
            _record_change(request, f"removed AE {title}")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[RemoteAE]) -> None:
        with transaction.atomic():
            titles = list(queryset.values_list("ae_title", flat=True))
            super().delete_queryset(request, queryset)
            for title in titles:
                _record_change(request, f"removed AE {title}")
