"""Audit every password change, whichever page or command made it, and end the user's sessions except the one making the change."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from telerad.accounts import audit_context
from telerad.accounts.user_sessions import end_sessions
from telerad.audit import events as audit

logger = logging.getLogger(__name__)


def audit_password_change(sender: Any, instance: AbstractBaseUser, created: bool, **kwargs: Any) -> None:
    """Record PASSWORD_CHANGED after a user is saved with a new password (a post_save receiver).

    AbstractBaseUser.set_password() keeps the new password in `_password`
    until save() has passed it to the password validators (Django 5.2,
    django/contrib/auth/base_user.py). The hash upgrade inside
    check_password() clears it before saving, so a rehash is no change.
    A new account's first password is part of USER_CREATED instead.
    """
    if created or getattr(instance, "_password", None) is None:
        return
    actor, address = audit_context.current_actor()
    target = instance.get_username()
    request = audit_context.current_request()
    # A user who changes their own password keeps the current session. All
    # other sessions end now, because Django's session hash check would end
    # them at their next request anyway.
    keep = ""
    if request is not None and getattr(request, "user", None) is not None and request.user.pk == instance.pk and hasattr(request, "session"):
        keep = request.session.session_key or ""
    ended = end_sessions(instance, keep_session_key=keep)
    other = "other " if keep else ""
    audit.record_event(
        action=audit.Action.PASSWORD_CHANGED, user=actor, address=address,
        detail=f"{actor or 'an anonymous request'} changed the password of user {target}; ended {ended} {other}sessions",
    )
    logger.info("%s changed the password of user %s; ended %d %ssessions", actor, target, ended, other)
