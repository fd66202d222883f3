"""Security headers for every response that does not set its own."""

from __future__ import annotations

import functools
from typing import Any, Callable

from django.http import HttpRequest, HttpResponse


def page_policy(*, frame_src: str = "'none'") -> str:
    """Return the content security policy of telerad's own pages, which may embed frames from `frame_src` only."""
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        f"frame-src {frame_src}",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


# telerad's own pages load scripts, styles and images from this origin only,
# run no inline code, embed no frames and may not be framed. The viewer
# sends its own policy (see viewer.views).
PAGE_POLICY = page_policy()
# A page that embeds telerad's own pages, such as the viewer, in frames.
SAME_ORIGIN_FRAMES_POLICY = page_policy(frame_src="'self'")


def embeds_same_origin_frames(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Give the view's responses the page policy with ``frame-src 'self'``, so that they may frame telerad's own pages."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> HttpResponse:
        response = view(*args, **kwargs)
        response.headers.setdefault("Content-Security-Policy", SAME_ORIGIN_FRAMES_POLICY)
        return response

    return wrapper
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
