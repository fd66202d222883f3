"""Template context: the permissions of the signed-in user, for showing only the links they may follow."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from telerad.accounts.roles import user_permissions


def permissions(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    granted = user_permissions(user) if user is not None else frozenset()
    # Templates test membership with the permission's text, e.g. "view-studies" in granted_permissions.
    return {"granted_permissions": frozenset(str(permission) for permission in granted)}
