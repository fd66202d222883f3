"""Error pages: plain text for the DICOMweb API, whose clients are programs, and HTML pages for people."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from django.views import defaults

API_PREFIX = "/dicom-web/"


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        message = _("No DICOMweb resource at %(path)s. Check the UIDs and frame numbers in the address (PS3.18 10.4 to 10.6).") % {"path": request.path}
        return HttpResponse(message + "\n", status=404, content_type="text/plain; charset=utf-8")
    return defaults.page_not_found(request, exception)
