"""Administration of the reading subspecialties, the rules that assign them, and the readers' subspecialties."""

from __future__ import annotations

from django.contrib import admin

from telerad.reading.models import Reader, Subspecialty, SubspecialtyRule


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
    list_display = ("user",)
    search_fields = ("user__username",)
    filter_horizontal = ("subspecialties",)
    autocomplete_fields = ("user",)
