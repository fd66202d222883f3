"""The test the navigation uses to show the audit pages only to users who may open them."""

from __future__ import annotations

from django import template
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from telerad.accounts.roles import Permission, has_permission

register = template.Library()


@register.filter
def can_view_audit(user: AbstractBaseUser | AnonymousUser) -> bool:
    return has_permission(user, Permission.VIEW_AUDIT)
