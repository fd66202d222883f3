"""Checks of the critical result contacts for ``telerad check``: contacts that name nobody or cannot be reached.

An unset escalation contact is no warning, so that the defaults pass the
check. Escalating then records a serious failure in the audit trail, and
lead radiologists still see the result at /critical/.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.checks import CheckMessage, Warning, register
from django.db import DatabaseError, connection


@register("telerad")
def check_notification_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    config = settings.TELERAD
    if config.problems:
        # `telerad check` lists the configuration problems first; these checks need a valid configuration.
        return []
    messages: list[CheckMessage] = []
    try:
        for setting in ("critical_escalation_contact", "critical_department_contact"):
            messages += _check_contact(setting, getattr(config, setting), email_enabled=config.email_enabled)
    except DatabaseError:
        # The tables do not exist before the first migration; the core checks report a database that cannot be reached.
        return messages
    finally:
        if not connection.in_atomic_block:
            connection.close()
    return messages


def _check_contact(setting: str, value: str, *, email_enabled: bool) -> list[CheckMessage]:
    name = f"TELERAD_{setting.upper()}"
    if not value:
        return []
    if "@" in value:
        if not email_enabled:
            return [Warning(f"{name}: {value!r} is an e-mail address, but e-mail is off; set TELERAD_SMTP_HOST or give a user name", id="telerad.W103")]
        return []
    user = get_user_model().objects.filter(username=value).first()
    if user is None or not user.is_active:
        return [Warning(f"{name}: {value!r} is not an active user; give the user name of an active account or an e-mail address", id="telerad.W103")]
    if email_enabled and not user.email:
        return [Warning(f"{name}: the user {value} has no e-mail address, so notices reach them only inside telerad; add an address to the account", id="telerad.W103")]
    return []
