"""Administration of the reading subspecialties, the rules that assign them, and the readers' subspecialties and duty."""

from __future__ import annotations

import logging

from django.contrib import admin
from django.utils import timezone

from telerad.reading.models import Reader, Subspecialty, SubspecialtyRule

logger = logging.getLogger(__name__)


class SubspecialtyRuleInline(admin.TabularInline):
    model = SubspecialtyRule
    extra = 1


@admin.register(Subspecialty)
class SubspecialtyAdmin(admin.ModelAdmin):
    list_display = ("name", "code", "active")
    list_filter = ("active",)
    search_fields = ("name", "code")
    inlines = [SubspecialtyRuleInline]


@admin.register(SubspecialtyRule)
class SubspecialtyRuleAdmin(admin.ModelAdmin):
    list_display = ("position", "modality", "body_part_keyword", "subspecialty", "active")
    list_display_links = ("position", "modality", "body_part_keyword")
    list_filter = ("subspecialty", "active")
    ordering = ("position", "id")


@admin.register(Reader)
class ReaderAdmin(admin.ModelAdmin):
    list_display = ("user", "on_duty", "on_duty_since")
    list_filter = ("on_duty",)
    search_fields = ("user__username",)
    filter_horizontal = ("subspecialties",)
    autocomplete_fields = ("user",)
    readonly_fields = ("on_duty_since",)

    def save_model(self, request, obj, form, change):
        if "on_duty" in form.changed_data or (not change and obj.on_duty):
            # The form has already set on_duty, so only its start time follows here.
            obj.on_duty_since = timezone.now() if obj.on_duty else None
            logger.info("reader %s set %s by %s in the administration", obj.user.get_username(), "on duty" if obj.on_duty else "off duty", request.user.get_username())
        super().save_model(request, obj, form, change)
