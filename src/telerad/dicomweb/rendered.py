"""Rendered images and thumbnails (PS3.18 10.4.1.1.3 and 10.4.1.1.4)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from telerad.dicomweb.http import DicomwebError, endpoint


@endpoint
def study_rendered(request: HttpRequest, **resource: Any) -> HttpResponse:
    raise DicomwebError(501, "not available yet")


@endpoint
def study_thumbnail(request: HttpRequest, **resource: Any) -> HttpResponse:
    raise DicomwebError(501, "not available yet")


@endpoint
def series_rendered(request: HttpRequest, **resource: Any) -> HttpResponse:
    raise DicomwebError(501, "not available yet")


@endpoint
def series_thumbnail(request: HttpRequest, **resource: Any) -> HttpResponse:
    raise DicomwebError(501, "not available yet")


@endpoint
def instance_rendered(request: HttpRequest, **resource: Any) -> HttpResponse:
    raise DicomwebError(501, "not available yet")


@endpoint
def instance_thumbnail(request: HttpRequest, **resource: Any) -> HttpResponse:
    raise DicomwebError(501, "not available yet")


@endpoint
def frames_rendered(request: HttpRequest, **resource: Any) -> HttpResponse:
    raise DicomwebError(501, "not available yet")


@endpoint
def frames_thumbnail(request: HttpRequest, **resource: Any) -> HttpResponse:
    raise DicomwebError(501, "not available yet")
