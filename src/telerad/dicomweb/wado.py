"""WADO-RS: retrieve instances, metadata, frames and bulk data (PS3.18 10.4)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from telerad.dicomweb.http import DicomwebError, endpoint


@endpoint
def retrieve_study(request: HttpRequest, **resource: Any) -> HttpResponse:
    raise DicomwebError(501, "not available yet")


@endpoint
def retrieve_series(request: HttpRequest, **resource: Any) -> HttpResponse:
    raise DicomwebError(501, "not available yet")


@endpoint
def retrieve_instance(request: HttpRequest, **resource: Any) -> HttpResponse:
    raise DicomwebError(501, "not available yet")


@endpoint
def study_metadata(request: HttpRequest, **resource: Any) -> HttpResponse:
    raise DicomwebError(501, "not available yet")


@endpoint
def series_metadata(request: HttpRequest, **resource: Any) -> HttpResponse:
    raise DicomwebError(501, "not available yet")


@endpoint
def instance_metadata(request: HttpRequest, **resource: Any) -> HttpResponse:
    raise DicomwebError(501, "not available yet")


@endpoint
def retrieve_frames(request: HttpRequest, **resource: Any) -> HttpResponse:
    raise DicomwebError(501, "not available yet")


@endpoint
def retrieve_bulkdata(request: HttpRequest, **resource: Any) -> HttpResponse:
    raise DicomwebError(501, "not available yet")
