"""Create, check and revoke API tokens, and the middleware that accepts them as `Authorization: Bearer`."""

from __future__ import annotations

import datetime
import hashlib
import logging
import secrets
from typing import Any, Callable

from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _

from telerad.accounts.models import ApiToken
from telerad.audit import events as audit

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "trt_"
# 32 random bytes: guessing is out of reach, so a plain digest suffices for storage.
TOKEN_BYTES = 32
SHOWN_PREFIX_LENGTH = len(TOKEN_PREFIX) + 6
# last_used_at is written at most this often per token, to keep reads cheap.
LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)
# Maximum lifetime, in days, of a token made on the account page, so that
# those expire within a year. `telerad token create` can make tokens that
# never expire.
MAX_LIFETIME_DAYS = 366


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(user: AbstractBaseUser, *, name: str = "", lifetime: datetime.timedelta | None = None, created_by: str = "") -> tuple[ApiToken, str]:
    """Make a token for `user`; return its row and the token text, which is not kept anywhere."""
    text = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    expires_at = timezone.now() + lifetime if lifetime is not None else None
    token = ApiToken.objects.create(user=user, name=name, prefix=text[:SHOWN_PREFIX_LENGTH], digest=digest_of(text), expires_at=expires_at)
    audit.record_event(
        action=audit.Action.TOKEN_CREATED,
        user=created_by or user.get_username(),
        detail=f"token {token.prefix} for {user.get_username()}",
    )
    return token, text


def revoke_token(token: ApiToken, *, revoked_by: str) -> None:
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit.record_event(action=audit.Action.TOKEN_REVOKED, user=revoked_by, detail=f"token {token.prefix} of {token.user.get_username()}")


def user_for_token(text: str) -> AbstractBaseUser | None:
    """Return the active user a token belongs to, or None when the token is unknown, expired or revoked."""
    if not text.startswith(TOKEN_PREFIX):
        return None
    token = ApiToken.objects.select_related("user").filter(digest=digest_of(text)).first()
    if token is None or not token.is_active or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


def bearer_token(request: HttpRequest) -> str | None:
    """Return the token of an `Authorization: Bearer` header, "" for a malformed one, None when there is none."""
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _separator, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip()


def unauthorized(message: str) -> HttpResponse:
    response = HttpResponse(message + "\n", status=401, content_type="text/plain; charset=utf-8")
    response["WWW-Authenticate"] = 'Bearer realm="telerad"'
    return response


class BearerTokenMiddleware:
    """Authenticate requests that carry `Authorization: Bearer TOKEN`.

    A valid token sets request.user and exempts the request from CSRF checks,
    which protect cookie sessions only. An invalid token gets 401
    at once, rather than falling back to the session.
    """

    def __init__(self, get_response: Callable[[HttpRequest], Any]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        text = bearer_token(request)
        if text is not None:
            user = user_for_token(text) if text else None
            if user is None:
                logger.info("rejected an API token from %s", request.META.get("REMOTE_ADDR", ""))
                return unauthorized(_("The API token is unknown, expired or revoked."))
            request.user = user
            request._dont_enforce_csrf_checks = True  # noqa: SLF001 - Django's documented switch for non-cookie auth
            request.authenticated_by_token = True
        return self.get_response(request)
