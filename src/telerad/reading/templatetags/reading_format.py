"""Template filters for the worklist's values."""

from __future__ import annotations

import datetime

from django import template

from telerad.reading.worklist import format_waiting

register = template.Library()


@register.filter
def waiting_time(value: datetime.timedelta) -> str:
    return format_waiting(value)


@register.filter
def modality_list(value: str) -> str:
    """Show a backslash-separated list of modalities as "CT, MR"."""
    return ", ".join(modality for modality in (value or "").split("\\") if modality)
