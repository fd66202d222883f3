"""Changes an administrator makes to another user's account, shared by `telerad user` and the Django admin.

Each function writes its audit event with the acting user name ("cli" for the
command line) and the source address, and names the target user in the detail.
"""

from __future__ import annotations

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from telerad.accounts import roles, tokens, two_factor
from telerad.accounts.user_sessions import end_sessions
from telerad.audit import events as audit

logger = logging.getLogger(__name__)


def disable_user(user: AbstractBaseUser, *, actor: str, address: str = "") -> None:
    """Disable `user`, end all of their sessions and revoke all of their API tokens.

    Sessions are deleted and tokens revoked, rather than only refused while
    the account is inactive, so that enabling the account again brings
    neither back. Callers that saved ``is_active=False`` themselves (the
    admin's change form) still call this for the rest.
    """
    username = user.get_username()
    with transaction.atomic():
        if user.is_active:
            user.is_active = False
            user.save(update_fields=["is_active"])
        ended = end_sessions(user)
        revoked = tokens.revoke_user_tokens(user, revoked_by=actor, address=address)
        audit.record_event(
            action=audit.Action.USER_DISABLED, user=actor, address=address,
            detail=f"disabled user {username}; ended {ended} sessions and revoked {revoked} API tokens",
        )
    logger.info("%s disabled user %s; ended %d sessions and revoked %d API tokens", actor, username, ended, revoked)


def enable_user(user: AbstractBaseUser, *, actor: str, address: str = "") -> None:
    """Let `user` sign in again. Sessions and tokens ended when the account was disabled stay ended."""
    with transaction.atomic():
        if not user.is_active:
            user.is_active = True
            user.save(update_fields=["is_active"])
        audit.record_event(action=audit.Action.USER_ENABLED, user=actor, address=address, detail=f"enabled user {user.get_username()}")
    logger.info("%s enabled user %s", actor, user.get_username())


def reset_two_factor(user: AbstractBaseUser, *, actor: str, address: str = "") -> None:
    """Delete the authenticator and recovery codes of `user` and end their sessions.

    For a user who lost both. When two-factor login is required, the user
    sets up a new authenticator at the next login.
    """
    username = user.get_username()
    with transaction.atomic():
        two_factor.remove_two_factor(user)
        ended = end_sessions(user)
        audit.record_event(
            action=audit.Action.TWO_FACTOR_RESET, user=actor, address=address,
            detail=f"reset two-factor login of user {username}; ended {ended} sessions",
        )
    logger.info("%s reset two-factor login of user %s; ended %d sessions", actor, username, ended)


def role_names(user: AbstractBaseUser) -> list[str]:
    """Return the sorted names of the user's roles, also for a disabled user."""
    valid = {role.value for role in roles.Role}
    return sorted(group.name for group in user.groups.all() if group.name in valid)


def replace_roles(user: AbstractBaseUser, requested: set[roles.Role], *, actor: str, address: str = "") -> None:
    """Give `user` exactly `requested` (possibly none) and audit the change when there is one."""
    with transaction.atomic():
        before = role_names(user)
        roles.set_roles(user, requested)
        after = sorted(role.value for role in requested)
        if before != after:
            audit.record_event(
                action=audit.Action.ROLES_CHANGED, user=actor, address=address,
                detail=f"user {user.get_username()}: {', '.join(before) or '(none)'} -> {', '.join(after) or '(none)'}",
            )
