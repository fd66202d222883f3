"""Keep track of each user's browser sessions, so that a user can end them all and a password change ends the others."""

from __future__ import annotations

import logging
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest

from telerad.accounts.models import UserSession
from telerad.audit import events as audit

logger = logging.getLogger(__name__)


def client_address(request: HttpRequest) -> str:
    # NOTE: behind a reverse proxy this is the proxy's address, so address
    # locks then apply to every client of that proxy.
    return request.META.get("REMOTE_ADDR", "")


def _session_store_class() -> Any:
    return import_module(settings.SESSION_ENGINE).SessionStore


def remember_session(sender: Any, request: HttpRequest, user: AbstractBaseUser, **kwargs: Any) -> None:
    """Record the session that django.contrib.auth.login just started (a user_logged_in receiver)."""
    if request is None or not hasattr(request, "session"):
        return
    if request.session.session_key is None:
        request.session.save()
    store_class = _session_store_class()
    # Sessions that ended by expiry or by clearsessions leave rows behind.
    for row in UserSession.objects.filter(user=user):
        if not store_class().exists(row.session_key):
            row.delete()
    UserSession.objects.update_or_create(
        session_key=request.session.session_key,
        defaults={"user": user, "address": client_address(request)[:64]},
    )


def forget_session(sender: Any, request: HttpRequest, user: AbstractBaseUser | None, **kwargs: Any) -> None:
    """Drop the record of a session that is being logged out, and audit the logout (a user_logged_out receiver)."""
    if request is None or not hasattr(request, "session"):
        return
    if request.session.session_key:
        UserSession.objects.filter(session_key=request.session.session_key).delete()
    if user is not None:
        audit.record_event(action=audit.Action.LOGOUT, user=user.get_username(), address=client_address(request))
        logger.info("user %s logged out", user.get_username())


def end_other_sessions(user: AbstractBaseUser, request: HttpRequest) -> int:
    """Delete every session of `user` except the one of `request`; return how many were ended."""
    store_class = _session_store_class()
    rows = UserSession.objects.filter(user=user).exclude(session_key=request.session.session_key or "")
    ended = 0
    for row in rows:
        store = store_class(session_key=row.session_key)
        if store.exists(row.session_key):
            ended += 1
        store.delete(row.session_key)
        row.delete()
    return ended
