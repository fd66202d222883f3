"""Template tags of notifications and critical results, for pages of other apps: the header's counter and an exam's critical results."""

from __future__ import annotations

from django import template

from telerad.clinicians import notifications
from telerad.clinicians.models import CriticalResult

register = template.Library()


@register.simple_tag(takes_context=True)
def unread_notification_count(context) -> int:
    user = context["request"].user
    return notifications.unread_count(user) if user.is_authenticated else 0


@register.simple_tag
def critical_results_of(exam) -> list[CriticalResult]:
    return list(
        CriticalResult.objects.filter(exam=exam).select_related("recipient", "acknowledged_by", "escalated_to", "signed_report")
        .order_by("opened_at", "id")
    )
