"""STOW-RS: store instances sent as multipart/related (PS3.18 10.5)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from telerad.dicomweb.http import DicomwebError, endpoint


@endpoint
def store_instances(request: HttpRequest, **resource: Any) -> HttpResponse:
    raise DicomwebError(501, "not available yet")
