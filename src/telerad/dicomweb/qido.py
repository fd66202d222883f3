"""QIDO-RS: search for studies, series and instances (PS3.18 10.6)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from telerad.dicomweb.http import DicomwebError, endpoint


@endpoint
def search_studies(request: HttpRequest, **resource: Any) -> HttpResponse:
    raise DicomwebError(501, "not available yet")


@endpoint
def search_series(request: HttpRequest, **resource: Any) -> HttpResponse:
    raise DicomwebError(501, "not available yet")


@endpoint
def search_instances(request: HttpRequest, **resource: Any) -> HttpResponse:
    raise DicomwebError(501, "not available yet")
