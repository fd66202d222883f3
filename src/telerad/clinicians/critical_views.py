"""Critical result pages: one result for its recipient to read and acknowledge, and the open results for lead radiologists."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from telerad.accounts.middleware import forbidden
from telerad.accounts.roles import Permission, has_permission, requires
from telerad.audit import events as audit
from telerad.clinicians import critical, notifications
from telerad.clinicians.access import can_view_exam
from telerad.clinicians.models import CriticalResult
from telerad.reading.reports import audit_fields, exam_label


def _address(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "")


def _result_or_404(result_pk: int) -> CriticalResult:
    related = ("exam__patient", "signed_report__signer", "recipient", "acknowledged_by", "escalated_to")
    return get_object_or_404(CriticalResult.objects.select_related(*related), pk=result_pk)


def _refuse(request: HttpRequest, view, result: CriticalResult) -> HttpResponse:
    """Answer a user who may not acknowledge `result`: 403 if they may see its exam, else 404 as for an unknown result."""
    if not can_view_exam(request.user, result.exam):
        raise Http404(_("No such critical result."))
    return forbidden(request, view, _("This critical result was sent to someone else."))


# Clinicians have no access to the archive, so the permission every role has
# opens these views and the recipient check inside decides.
@requires(Permission.MANAGE_OWN_ACCOUNT)
@require_GET
def critical_result(request: HttpRequest, result_pk: int) -> HttpResponse:
    """Show the accession, the exam and the impression (or the addendum) to someone who may acknowledge the result."""
    result = _result_or_404(result_pk)
    if not critical.may_acknowledge(request.user, result):
        return _refuse(request, critical_result, result)
    audit.record_event(
        action=audit.Action.REPORT_VIEWED, user=request.user.get_username(), address=_address(request),
        detail=f"critical result {result.pk}, {exam_label(result.exam)}, signed report {result.signed_report_id}", **audit_fields(result.exam),
    )
    notifications.mark_link_read(request.user, request.path)
    text_heading, text = critical.critical_text(result.signed_report)
    context = {
        "result": result,
        "exam": result.exam,
        "patient": result.exam.patient,
        "signed": result.signed_report,
        "text_heading": text_heading,
        "text": text,
        "can_open_exam": has_permission(request.user, Permission.READ_EXAMS),
        "can_open_in_portal": has_permission(request.user, Permission.VIEW_REFERRED_STUDIES) and can_view_exam(request.user, result.exam),
    }
    return render(request, "clinicians/critical_result.html", context)


@requires(Permission.MANAGE_OWN_ACCOUNT)
@require_POST
def acknowledge(request: HttpRequest, result_pk: int) -> HttpResponse:
    requested = get_object_or_404(CriticalResult.objects.select_related("exam"), pk=result_pk)
    try:
        result, acknowledged_now = critical.acknowledge(result_pk, request.user, address=_address(request))
    except PermissionDenied:
        return _refuse(request, acknowledge, requested)
    if acknowledged_now:
        messages.success(request, _("You acknowledged the critical result. The radiologist can see it."))
    else:
        earlier = result.acknowledged_by.get_username() if result.acknowledged_by is not None else _("Another user")
        messages.info(request, _("%(user)s acknowledged this critical result already.") % {"user": earlier})
    return HttpResponseRedirect(reverse("critical:detail", args=[result_pk]), status=303)


@requires(Permission.MANAGE_READING)
@require_GET
def open_results(request: HttpRequest) -> HttpResponse:
    """List the results nobody has acknowledged yet, oldest first, with their age and whether they escalated."""
    now = timezone.now()
    rows = [(result, int((now - result.opened_at).total_seconds() // 60)) for result in critical.open_results()]
    return render(request, "clinicians/critical_list.html", {"rows": rows, "ack_minutes": settings.TELERAD.critical_ack_minutes})
