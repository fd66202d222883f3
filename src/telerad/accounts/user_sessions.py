"""Keep track of each user's browser sessions, so that they can be ended: by the user, by a password change, and when an account is disabled."""

from __future__ import annotations

import logging
import time
from importlib import import_module
from typing import Any, Callable

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse

from telerad.accounts.models import UserSession
from telerad.audit import events as audit

logger = logging.getLogger(__name__)

# A cookie with the Unix time of the user's last request in a session. It
# outlives the session cookie, which the browser drops after the idle
# timeout, so that the login page can show why the session ended. It holds no
# secret, and a forged value changes nothing but that message.
LAST_ACTIVITY_COOKIE = "telerad_last_activity"
# The session key under which the key of the recorded UserSession row is kept.
TRACKED_SESSION_KEY = "telerad_tracked_session"
# Set on a request by the user_logged_out receiver.
LOGGED_OUT_ATTRIBUTE = "telerad_logged_out"
# The session data key of the time its expiry was last moved forward.
EXPIRY_EXTENSION_KEY = "telerad_expiry_extended"
# How often use of a session moves its expiry forward. A session thus ends
# between SESSION_COOKIE_AGE minus this and SESSION_COOKIE_AGE after its last request.
EXPIRY_EXTENSION_SECONDS = 60


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
    request.session[TRACKED_SESSION_KEY] = request.session.session_key


def forget_session(sender: Any, request: HttpRequest, user: AbstractBaseUser | None, **kwargs: Any) -> None:
    """Drop the record of a session that is being logged out, and audit the logout (a user_logged_out receiver)."""
    if request is None or not hasattr(request, "session"):
        return
    setattr(request, LOGGED_OUT_ATTRIBUTE, True)
    if request.session.session_key:
        UserSession.objects.filter(session_key=request.session.session_key).delete()
    if user is not None:
        audit.record_event(action=audit.Action.LOGOUT, user=user.get_username(), address=client_address(request))
        logger.info("user %s logged out", user.get_username())


def end_other_sessions(user: AbstractBaseUser, request: HttpRequest) -> int:
    """Delete every session of `user` except the one of `request`; return how many were ended."""
    return end_sessions(user, keep_session_key=request.session.session_key or "")


def end_sessions(user: AbstractBaseUser, keep_session_key: str = "") -> int:
    """Delete every recorded session of `user` except `keep_session_key`; return how many were still open."""
    store_class = _session_store_class()
    rows = UserSession.objects.filter(user=user).exclude(session_key=keep_session_key)
    ended = 0
    for row in rows:
        store = store_class(session_key=row.session_key)
        if store.exists(row.session_key):
            ended += 1
        store.delete(row.session_key)
        row.delete()
    return ended


def idle_timeout_ended_session(request: HttpRequest) -> bool:
    """Return whether the browser's last session ended by the idle timeout, judged from the last-activity cookie."""
    if request.user.is_authenticated:
        return False
    try:
        last_activity = int(request.COOKIES.get(LAST_ACTIVITY_COOKIE, ""))
    except ValueError:
        return False
    return time.time() - last_activity >= settings.SESSION_COOKIE_AGE


class SessionActivityMiddleware:
    """Record a session again after Django changed its key, and stamp the last-activity cookie.

    Django gives a session a new key when the user's password changes
    (update_session_auth_hash), which would leave the session unrecorded, so
    that disabling the user could not end it. The key last recorded is kept
    in the session and compared on each response.
    """

    def __init__(self, get_response: Callable[[HttpRequest], Any]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        response = self.get_response(request)
        if getattr(request, LOGGED_OUT_ATTRIBUTE, False):
            response.delete_cookie(LAST_ACTIVITY_COOKIE, samesite="Lax")
            return response
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or getattr(request, "authenticated_by_token", False) or not hasattr(request, "session"):
            return response
        self._track_session_key(request, user)
        self._extend_expiry(request)
        self._stamp_last_activity(response)
        return response

    @staticmethod
    def _extend_expiry(request: HttpRequest) -> None:
        # A modified session is saved with a new expiry, SESSION_COOKIE_AGE
        # from now. Doing so on every request cost a database write per
        # image frame, so it happens once per EXPIRY_EXTENSION_SECONDS.
        now = int(time.time())
        if now - request.session.get(EXPIRY_EXTENSION_KEY, 0) >= EXPIRY_EXTENSION_SECONDS:
            request.session[EXPIRY_EXTENSION_KEY] = now

    @staticmethod
    def _track_session_key(request: HttpRequest, user: AbstractBaseUser) -> None:
        key = request.session.session_key
        if key is None or request.session.get(TRACKED_SESSION_KEY) == key:
            return
        UserSession.objects.update_or_create(session_key=key, defaults={"user": user, "address": client_address(request)[:64]})
        request.session[TRACKED_SESSION_KEY] = key

    @staticmethod
    def _stamp_last_activity(response: HttpResponse) -> None:
        # No max_age: the cookie ends when the browser closes.
        response.set_cookie(
            LAST_ACTIVITY_COOKIE, str(int(time.time())),
            secure=settings.SESSION_COOKIE_SECURE, httponly=True, samesite="Lax",
        )
