"""The user and source address that audit events name when the code that writes them has no request at hand.

A password saved by the Django admin reaches telerad only through a model
signal. :class:`AuditActorMiddleware` keeps the current request in a context
variable so that such a receiver can still name who acted and from where.
"""

from __future__ import annotations

import contextvars
from typing import Any, Callable

from django.http import HttpRequest

from telerad.accounts.user_sessions import client_address

# Outside a web request the change comes from a management command or the
# Django shell, which audit events of the `telerad` commands call "cli".
COMMAND_LINE_ACTOR = "cli"

_current_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar("telerad_current_request", default=None)


class AuditActorMiddleware:
    """Make the request being handled available to :func:`current_request` until its response is returned."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        token = _current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            _current_request.reset(token)


def current_request() -> HttpRequest | None:
    return _current_request.get()


def current_actor() -> tuple[str, str]:
    """Return the user name and source address of the current request, or ("cli", "") outside one."""
    request = current_request()
    if request is None:
        return COMMAND_LINE_ACTOR, ""
    user = getattr(request, "user", None)
    username = user.get_username() if user is not None and user.is_authenticated else ""
    return username, client_address(request)
