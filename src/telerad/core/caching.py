"""Let browsers keep files that are the same for every user and every session, such as the viewer's hashed bundles.

Django adds ``Vary: Cookie`` to every response of a request that read the
session, and ``Vary: Accept-Language`` to every response of the locale
middleware. telerad sets a new last-activity cookie on each response of a
signed-in user, so the Cookie header of the next request never matches the
one a cached response was stored with. A browser then fetched the viewer's
immutable bundles again on every visit, and Chromium could not reuse the
compiled code it keeps with a cached script. A view marks such a response with
``same_for_everyone``; this middleware then takes Cookie and Accept-Language
out of its Vary header.

Mark only files without patient data, because the browser then serves them
from its cache to any user of that browser, without a request to the server.
"""

from __future__ import annotations

from typing import Any, Callable

from django.http import HttpRequest, HttpResponse
from django.utils.http import parse_etags

# Request headers that select nothing in a marked response.
IRRELEVANT_VARY_HEADERS = frozenset({"cookie", "accept-language"})
MARK = "telerad_same_for_everyone"


def not_modified(request: HttpRequest, tag: str) -> bool:
    """Return whether the request's If-None-Match names entity tag `tag`, compared weakly (RFC 9110 13.1.2)."""
    return tag.removeprefix("W/") in {candidate.removeprefix("W/") for candidate in parse_etags(request.headers.get("If-None-Match", ""))}


def same_for_everyone(response: HttpResponse) -> HttpResponse:
    """Mark `response` as the same for every user, session and language."""
    setattr(response, MARK, True)
    return response


class SameForEveryoneMiddleware:
    """Drop Cookie and Accept-Language from the Vary header of responses marked by same_for_everyone."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if getattr(response, MARK, False) and response.has_header("Vary"):
            relevant = [name.strip() for name in response["Vary"].split(",") if name.strip() and name.strip().lower() not in IRRELEVANT_VARY_HEADERS]
            if relevant:
                response["Vary"] = ", ".join(relevant)
            else:
                del response["Vary"]
        return response
