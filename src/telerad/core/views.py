"""Pages that belong to no single part of telerad."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _

from telerad.accounts.middleware import forbidden
from telerad.accounts.roles import ANY_SIGNED_IN_USER, Permission, requires, user_permissions

# Start pages by role, as (URL name, permission it needs). The first one a
# user's roles open wins.
HOME_PAGES = (
    ("reading:worklist", Permission.READ_EXAMS),
    ("archive:study-list", Permission.VIEW_STUDIES),
    ("portal:exam-list", Permission.VIEW_REFERRED_STUDIES),
    ("audit:event-list", Permission.VIEW_AUDIT),
    ("admin:index", Permission.USE_ADMIN_SITE),
    ("account:home", Permission.MANAGE_OWN_ACCOUNT),
)


@requires(ANY_SIGNED_IN_USER)
def home(request: HttpRequest) -> HttpResponse:
    """Send the user to the first page of HOME_PAGES that one of their roles opens."""
    granted = user_permissions(request.user)
    for url_name, permission in HOME_PAGES:
        if permission not in granted:
            continue
        try:
            return redirect(reverse(url_name))
        except NoReverseMatch:
            continue
    return forbidden(request, home, _("Your account has no role yet. Ask an administrator to give you one."))
