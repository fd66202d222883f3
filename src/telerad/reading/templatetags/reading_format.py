"""Template filters and tags for the values of the reading pages."""

from __future__ import annotations

import datetime
from typing import Any

from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

from telerad.reading.models import Exam
from telerad.reading.worklist import exam_reference, format_waiting

register = template.Library()


@register.filter
def waiting_time(value: datetime.timedelta) -> str:
    return format_waiting(value)


@register.filter
def modality_list(value: str) -> str:
    """Show a backslash-separated list of modalities as "CT, MR"."""
    return ", ".join(modality for modality in (value or "").split("\\") if modality)


@register.filter(name="exam_reference")
def exam_reference_filter(exam: Exam) -> str:
    """Name the exam by its accession number (see worklist.exam_reference)."""
    return exam_reference(exam)


@register.simple_tag
def join_nonempty(*parts: Any, separator: str = " · ") -> SafeString:
    """Join the parts that are not empty or blank with `separator`, so that missing values leave no stray separators.

    ``{% join_nonempty patient.patient_id birth_date sex %}`` gives "98890234 · Male" when the birth date is empty.
    Each part is escaped unless it is marked safe.
    """
    present = [conditional_escape(part) for part in parts if part is not None and str(part).strip()]
    return mark_safe(conditional_escape(separator).join(present))
