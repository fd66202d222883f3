"""What every DICOMweb endpoint shares: authentication, method checks, errors and audit records.

Endpoints report errors in plain text naming what was wrong, with the HTTP
status PS3.18 gives for the case. A request without a valid session or API
token gets 401 rather than the login page's redirect, since DICOMweb clients
are programs.
"""

from __future__ import annotations

import datetime
import functools
import threading
import time
import logging
from typing import Any, Callable, Iterable

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt

from telerad.accounts.middleware import API_VIEW_ATTRIBUTE, METHOD_PERMISSIONS_ATTRIBUTE
from telerad.accounts.roles import declared_permission
from telerad.accounts.tokens import unauthorized
from telerad.audit import events as audit
from telerad.audit.models import AuditEvent

logger = logging.getLogger(__name__)

# The second instance of the DICOMweb URLs, under /viewer/dicom-web, which
# the web viewer reads: its metadata leaves out private attributes.
VIEWER_NAMESPACE = "viewer-dicomweb"

View = Callable[..., HttpResponse]


class DicomwebError(Exception):
    """A response other than success: its HTTP status and a message naming what was wrong."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def response(self) -> HttpResponse:
        response = HttpResponse(self.message + "\n", status=self.status, content_type="text/plain; charset=utf-8")
        for name, value in self.headers.items():
            response[name] = value
        return response


def endpoint(view: View) -> View:
    """Wrap a DICOMweb view: require an authenticated user and turn DicomwebError into its response."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return unauthorized(_("Sign in, or send an API token as `Authorization: Bearer TOKEN`."))
        try:
            return view(request, *args, **kwargs)
        except DicomwebError as error:
            return error.response()

    setattr(wrapped, API_VIEW_ATTRIBUTE, True)
    return login_not_required(wrapped)


def by_method(**views: View) -> View:
    """One URL served by a view per HTTP method, as PS3.18 puts search and store on the same resource.

    Each view declares its permission with ``requires``; PermissionMiddleware
    checks the one of the request's method.
    """
    allowed = ", ".join(sorted(views))
    permissions = {}
    for method, view in views.items():
        permission = declared_permission(view)
        if permission is None:
            raise ImproperlyConfigured(f"the {method} view {view.__qualname__} declares no permission")
        permissions[method] = permission

    def dispatch(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        view = views.get(request.method or "")
        if view is None and request.method == "HEAD":
            view = views.get("GET")
        if view is None:
            response = HttpResponse(_("Method %(method)s is not allowed here; use %(allowed)s.") % {"method": request.method, "allowed": allowed} + "\n", status=405, content_type="text/plain; charset=utf-8")
            response["Allow"] = allowed
            return response
        if request.user.is_authenticated:
            # The CSRF check protects cookie sessions; token requests are
            # exempt (see BearerTokenMiddleware). It runs here, after the
            # authentication check, so that a request without credentials
            # gets 401 rather than a CSRF failure.
            rejection = _CSRF_CHECK.process_view(request, view, args, kwargs)
            if rejection is not None:
                return rejection
        return view(request, *args, **kwargs)

    setattr(dispatch, METHOD_PERMISSIONS_ATTRIBUTE, permissions)
    setattr(dispatch, API_VIEW_ATTRIBUTE, True)
    return login_not_required(csrf_exempt(dispatch))


_CSRF_CHECK = CsrfViewMiddleware(lambda request: HttpResponse())


def client_address(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "")


# Requests a viewer makes while a study is open: metadata, frames, bulk data,
# rendered images and thumbnails. A viewer fetches hundreds of them per study,
# so the audit trail records one viewing per user, study and address within
# VIEWING_WINDOW rather than one event per request.
VIEWING_SUFFIXES = ("/metadata", "/rendered", "/thumbnail")
VIEWING_SEGMENTS = ("/frames/", "/bulkdata/")
VIEWING_WINDOW = datetime.timedelta(minutes=10)


def is_viewing_request(path: str) -> bool:
    return path.endswith(VIEWING_SUFFIXES) or any(segment in path for segment in VIEWING_SEGMENTS)


def _viewing_already_recorded(request: HttpRequest, action: audit.Action, study_instance_uid: str) -> bool:
    """Return whether this viewing already has its event; the caller holds _viewing_lock."""
    key = (request.user.get_username(), client_address(request), str(action), study_instance_uid)
    now = time.monotonic()
    seen = _recent_viewings.get(key)
    if seen is not None and now - seen < VIEWING_WINDOW.total_seconds():
        return True
    recorded = AuditEvent.objects.filter(
        study_instance_uid=study_instance_uid,
        action=str(action),
        user=request.user.get_username(),
        address=client_address(request),
        outcome=int(audit.Outcome.SUCCESS),
        occurred_at__gte=timezone.now() - VIEWING_WINDOW,
    ).exists()
    if recorded:
        # The event may be younger than the window: remembering it from now
        # on at most delays the next event by the time already passed.
        _remember(key, now)
    return recorded


def forget_viewings() -> None:
    """Drop the remembered viewings, so that the next request checks the audit trail."""
    with _viewing_lock:
        _recent_viewings.clear()


def _remember(key: tuple[str, str, str, str], now: float) -> None:
    if len(_recent_viewings) >= RECENT_VIEWINGS_LIMIT:
        _recent_viewings.clear()
    _recent_viewings[key] = now


def record_access(
    request: HttpRequest,
    action: audit.Action,
    *,
    patient_id: str = "",
    study_instance_uid: str = "",
    detail: str = "",
    outcome: audit.Outcome = audit.Outcome.SUCCESS,
    patient_ids: Iterable[str] = (),
) -> None:
    """Write one audit event for a DICOMweb request, naming the user, their address and the patient and study.

    A successful viewing request (see VIEWING_SUFFIXES) for a study that the
    same user already viewed from the same address within VIEWING_WINDOW adds
    no event: the first one stands for the whole viewing.
    """
    if outcome == audit.Outcome.SUCCESS and study_instance_uid and is_viewing_request(request.path):
        # The web server handles a viewer's parallel requests on several
        # threads; the lock keeps two of them from both recording the viewing.
        with _viewing_lock:
            if not _viewing_already_recorded(request, action, study_instance_uid):
                _write(request, action, patient_id, study_instance_uid, detail, outcome, patient_ids)
                _remember((request.user.get_username(), client_address(request), str(action), study_instance_uid), time.monotonic())
        return
    _write(request, action, patient_id, study_instance_uid, detail, outcome, patient_ids)


_viewing_lock = threading.Lock()
# Viewings this process recorded or found recently, by user, address, action
# and study, so that a viewer's frame requests skip the database check.
_recent_viewings: dict[tuple[str, str, str, str], float] = {}
RECENT_VIEWINGS_LIMIT = 10_000


def _write(
    request: HttpRequest, action: audit.Action, patient_id: str, study_instance_uid: str, detail: str, outcome: audit.Outcome,
    patient_ids: Iterable[str] = (),
) -> None:
    audit.record_event(
        action=action,
        outcome=outcome,
        user=request.user.get_username(),
        address=client_address(request),
        patient_id=patient_id,
        study_instance_uid=study_instance_uid,
        detail=f"DICOMweb {request.method} {request.path}" + (f": {detail}" if detail else ""),
        patient_ids=patient_ids,
    )
