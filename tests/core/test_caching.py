"""Responses marked as the same for everyone drop Cookie and Accept-Language from Vary; others keep them."""

from __future__ import annotations

from django.http import HttpResponse
from django.test import RequestFactory

from telerad.core.caching import SameForEveryoneMiddleware, same_for_everyone


def run_middleware(response: HttpResponse) -> HttpResponse:
    return SameForEveryoneMiddleware(lambda request: response)(RequestFactory().get("/viewer/app.bundle.0123456789abcdef.js"))


def test_marked_response_keeps_only_relevant_vary_headers():
    response = same_for_everyone(HttpResponse("bundle"))
    response["Vary"] = "Accept-Encoding, Cookie, accept-language"

    assert run_middleware(response)["Vary"] == "Accept-Encoding"


def test_marked_response_loses_cookie_only_vary():
    response = same_for_everyone(HttpResponse("bundle"))
    response["Vary"] = "Cookie"

    assert not run_middleware(response).has_header("Vary")


def test_unmarked_response_keeps_its_vary_header():
    response = HttpResponse("study list")
    response["Vary"] = "Accept-Encoding, Cookie, Accept-Language"

    assert run_middleware(response)["Vary"] == "Accept-Encoding, Cookie, Accept-Language"


def test_marked_response_without_vary_stays_without():
    response = same_for_everyone(HttpResponse("bundle"))

    assert not run_middleware(response).has_header("Vary")
