"""Template tags of notifications, critical results and questions, for pages of other apps: the header's counter, an exam's critical results and question threads."""

from __future__ import annotations

import datetime

from django import template
from django.utils import timezone

from telerad.clinicians import notifications, questions
from telerad.clinicians.models import CriticalResult, Question
from telerad.reading.worklist import format_waiting

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


@register.simple_tag(takes_context=True)
def question_threads_of(context, exam) -> list[Question]:
    """Return the threads on `exam` that the page's user may read."""
    return questions.threads_of_exam(exam, context["request"].user)


@register.simple_tag(takes_context=True)
def may_ask_about(context, exam) -> bool:
    return questions.may_ask(context["request"].user, exam)


@register.filter
def age(value: datetime.datetime | None) -> str:
    """Format the time since `value` as the worklist formats waiting times: "35 min", "2 h 05 min", "3 days 4 h"."""
    if value is None:
        return ""
    return format_waiting(max(timezone.now() - value, datetime.timedelta(0)))
