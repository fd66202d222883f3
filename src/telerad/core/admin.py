"""Shared bases of admin pages: records that only telerad's own code writes, and outbox lists."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Model, Q, QuerySet, TextChoices
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _


class ReadOnlyAdmin(admin.ModelAdmin):
    """Admin pages that list and show records but never add, change or delete them."""

    # Searches compare whole values, so that they use the indexes on these
    # columns instead of the full scan that a case-insensitive "contains" needs.
    exact_search_fields: tuple[str, ...] = ()
    # The "N total" link of a search costs a count of the whole table on every page.
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False

        condition = Q()
        for field in self.exact_search_fields:
            condition |= Q(**{field: term})
        return queryset.filter(condition), False


class FailedOrPendingFilter(admin.SimpleListFilter):
    """The state filter of an outbox list: failed and pending rows by default, since those are the ones that need attention.

    Subclasses set `states` to the model's state choices, which must have
    the values "failed" and "pending".
    """

    title = _("state")
    parameter_name = "state"
    states: type[TextChoices]
    OPEN_STATES = ("failed", "pending")

    def lookups(self, request, model_admin):
        return [("open", _("Failed or pending")), *self.states.choices, ("all", _("All"))]

    def choices(self, changelist):
        for lookup, title in self.lookup_choices:
            yield {
                "selected": (self.value() or "open") == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        value = self.value() or "open"
        if value == "open":
            return queryset.filter(state__in=self.OPEN_STATES)
        if value in self.states.values:
            return queryset.filter(state=value)
        return queryset
