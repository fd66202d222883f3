"""Security headers for every response that does not set its own."""

from __future__ import annotations

from typing import Any, Callable

from django.http import HttpRequest, HttpResponse

# telerad's own pages load scripts, styles and images from this origin only
# and run no inline code. The viewer sends its own policy (see viewer.views).
PAGE_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
# Features no telerad page uses.
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"


class SecurityHeadersMiddleware:
    """Add a content security policy, a permissions policy and, for signed-in users, no-store caching."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and "Cache-Control" not in response:
            # Pages of a signed-in user may show patient data, which must not
            # stay in the browser's or a proxy's cache after the session.
            response["Cache-Control"] = "no-store"
        return response
