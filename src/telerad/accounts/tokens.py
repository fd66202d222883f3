"""Create, check and revoke API tokens, and the middleware that accepts them as `Authorization: Bearer`."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import re
import secrets
from typing import Any, Callable

from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _

from telerad.accounts.models import ApiToken
from telerad.accounts.user_sessions import client_address
from telerad.audit import events as audit

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "trt_"
# 32 random bytes: guessing is out of reach, so a plain digest suffices for storage.
TOKEN_BYTES = 32
SHOWN_PREFIX_LENGTH = len(TOKEN_PREFIX) + 6
# last_used_at is written at most this often per token, to keep reads cheap.
LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)
# Maximum lifetime, in days, of a token made on the account page, so that
# those expire within a year. `telerad token create --no-expiry` can make
# tokens that never expire.
MAX_LIFETIME_DAYS = 366
# Lifetime, in days, of a new token when none is given, on the account page and in `telerad token create`.
DEFAULT_LIFETIME_DAYS = 90
# A rejected token is audited at most once per shown prefix and source address in this period, per web process.
REJECTION_AUDIT_INTERVAL_SECONDS = 60
_PREFIX_CHARACTERS = re.compile(r"[A-Za-z0-9_-]*")


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(
    user: AbstractBaseUser, *, name: str = "", lifetime: datetime.timedelta | None = None, created_by: str = "", address: str = "",
) -> tuple[ApiToken, str]:
    """Make a token for `user`; return its row and the token text, which is not kept anywhere."""
    text = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    expires_at = timezone.now() + lifetime if lifetime is not None else None
    token = ApiToken.objects.create(user=user, name=name, prefix=text[:SHOWN_PREFIX_LENGTH], digest=digest_of(text), expires_at=expires_at)
    audit.record_event(
        action=audit.Action.TOKEN_CREATED,
        user=created_by or user.get_username(),
        address=address,
        detail=f"token {token.prefix} for {user.get_username()}",
    )
    return token, text


def revoke_token(token: ApiToken, *, revoked_by: str, address: str = "") -> None:
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit.record_event(action=audit.Action.TOKEN_REVOKED, user=revoked_by, address=address, detail=f"token {token.prefix} of {token.user.get_username()}")


def revoke_user_tokens(user: AbstractBaseUser, *, revoked_by: str, address: str = "") -> int:
    """Revoke every token of `user` that is not revoked yet, expired ones included; return how many."""
    revoked = 0
    for token in ApiToken.objects.select_related("user").filter(user=user, revoked_at__isnull=True):
        revoke_token(token, revoked_by=revoked_by, address=address)
        revoked += 1
    return revoked


@dataclasses.dataclass(frozen=True)
class TokenCheck:
    """The outcome of checking a token text: the user it authenticates, or why it was rejected."""

    user: AbstractBaseUser | None
    # "unknown", "revoked", "expired" or "user disabled"; empty when the token is accepted.
    rejection: str = ""
    # The token's owner, also when the token was rejected; None for an unknown token.
    owner: AbstractBaseUser | None = None


def check_token(text: str) -> TokenCheck:
    """Look a token text up and return whose it is, or why it does not authenticate."""
    if not text.startswith(TOKEN_PREFIX):
        return TokenCheck(None, "unknown")
    token = ApiToken.objects.select_related("user").filter(digest=digest_of(text)).first()
    if token is None:
        return TokenCheck(None, "unknown")
    if token.revoked_at is not None:
        return TokenCheck(None, "revoked", token.user)
    if not token.is_active:
        return TokenCheck(None, "expired", token.user)
    if not token.user.is_active:
        return TokenCheck(None, "user disabled", token.user)
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return TokenCheck(token.user, owner=token.user)


def user_for_token(text: str) -> AbstractBaseUser | None:
    """Return the active user a token belongs to, or None when the token is unknown, expired or revoked."""
    return check_token(text).user


def loggable_prefix(text: str) -> str:
    """Return the part of a presented token that lists show, or a placeholder when it is not a telerad token.

    Only telerad's own prefix length is kept, so that a token of another
    system sent here by mistake does not land in the audit trail.
    """
    if not text:
        return "(empty)"
    if not text.startswith(TOKEN_PREFIX) or not _PREFIX_CHARACTERS.fullmatch(text[:SHOWN_PREFIX_LENGTH]):
        return "(not a telerad token)"
    return text[:SHOWN_PREFIX_LENGTH]


def audit_rejected_token(text: str, address: str, check: TokenCheck) -> bool:
    """Record a LOGIN_FAILED event for a rejected token, unless one for the same prefix and address is recent; return whether it did.

    The limit lives in Django's default cache. telerad configures none, so
    that is the local-memory cache of each process, which keeps at most 300
    keys. A site with several web processes therefore records up to one
    event per process in each interval.
    """
    prefix = loggable_prefix(text)
    key = "telerad:rejected-token:" + hashlib.sha256(f"{prefix}|{address}".encode("utf-8")).hexdigest()
    if not cache.add(key, True, timeout=REJECTION_AUDIT_INTERVAL_SECONDS):
        return False
    audit.record_event(
        action=audit.Action.LOGIN_FAILED,
        outcome=audit.Outcome.MINOR_FAILURE,
        user=check.owner.get_username() if check.owner is not None else "",
        address=address,
        detail=f"API token {prefix} rejected: {check.rejection or 'unknown'}",
    )
    return True


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
            check = check_token(text) if text else TokenCheck(None, "unknown")
            if check.user is None:
                address = client_address(request)
                if audit_rejected_token(text, address, check):
                    logger.info("rejected API token %s from %s: %s", loggable_prefix(text), address, check.rejection)
                return unauthorized(_("The API token is unknown, expired or revoked."))
            request.user = check.user
            request._dont_enforce_csrf_checks = True  # noqa: SLF001 - Django's documented switch for non-cookie auth
            request.authenticated_by_token = True
        return self.get_response(request)
