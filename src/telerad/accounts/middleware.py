"""Enforce the permission each view declares, and deny views that declare none."""

from __future__ import annotations

import logging
from typing import Any, Callable

from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.template import loader
from django.utils.translation import gettext as _

from telerad.accounts.roles import ANY_SIGNED_IN_USER, declared_permission, meets_requirement

logger = logging.getLogger(__name__)

# Views that serve programs rather than browsers carry this attribute, and
# get a plain-text 403.
API_VIEW_ATTRIBUTE = "telerad_api"
# A view served per HTTP method carries a mapping of method to permission.
METHOD_PERMISSIONS_ATTRIBUTE = "telerad_permissions_by_method"


def forbidden(request: HttpRequest, view: Callable[..., Any], message: str) -> HttpResponse:
    if getattr(view, API_VIEW_ATTRIBUTE, False):
        return HttpResponse(message + "\n", status=403, content_type="text/plain; charset=utf-8")
    body = loader.render_to_string("403.html", {"message": message}, request)
    return HttpResponseForbidden(body)


class PermissionMiddleware:
    """Let a signed-in user reach a view only when one of their roles grants its declared permission (or one of several).

    Anonymous requests pass through. LoginRequiredMiddleware sends them to the
    login page, and views marked ``login_not_required`` (the login page, the
    APIs that answer 401 themselves) handle them. The Django admin checks its
    own permissions through :class:`telerad.accounts.backends.RoleBackend`.
    """

    def __init__(self, get_response: Callable[[HttpRequest], Any]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any) -> HttpResponse | None:
        if not request.user.is_authenticated:
            return None
        match = request.resolver_match
        if match is not None and match.app_name == "admin":
            return None

        by_method = getattr(view, METHOD_PERMISSIONS_ATTRIBUTE, None)
        if by_method is not None:
            method = "GET" if request.method == "HEAD" else request.method
            permission = by_method.get(method)
            if permission is None:
                # The view itself returns 405 for a method it does not serve.
                return None
        else:
            permission = declared_permission(view)

        if permission is None:
            if getattr(view, "login_required", True) is False:
                # Public views such as the login page declare no permission.
                return None
            logger.error("view %s declares no permission; denied %s", getattr(view, "__qualname__", view), request.path)
            return forbidden(request, view, _("This page is not open to any role."))
        if permission == ANY_SIGNED_IN_USER:
            return None
        if not meets_requirement(request.user, permission):
            missing = " or ".join(permission) if isinstance(permission, tuple) else permission
            logger.info("denied %s to user %s: missing permission %s", request.path, request.user.get_username(), missing)
            return forbidden(request, view, _("Your role does not allow this."))
        return None
