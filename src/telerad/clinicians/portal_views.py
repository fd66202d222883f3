"""The clinicians' portal: the list of a clinician's exams, one exam with its signed report, and acknowledging its critical result.

Every view fetches the exam through :func:`telerad.clinicians.access.visible_exams`,
so an exam outside the clinician's scope is 404 whether or not it exists.
Every page that shows patient data writes an audit event before it renders.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from telerad.accounts.middleware import forbidden
from telerad.accounts.roles import Permission, requires
from telerad.audit import events as audit
from telerad.clinicians import critical, portal
from telerad.clinicians.access import visible_exams
from telerad.clinicians.models import CriticalResult
from telerad.core import searches
from telerad.reading.delivery.fhir import latest_delivered

SEARCH_KIND = "portal"


def _address(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "")


def _record(request: HttpRequest, action: audit.Action, *, patient_ids: list[str] | None = None, **identifiers: str) -> None:
    audit.record_event(
        action=action, user=request.user.get_username(), address=_address(request), patient_ids=patient_ids or (), **identifiers,
    )


def _post_search(request: HttpRequest) -> HttpResponse:
    """Keep a posted search in the session and send the browser to the list with its key."""
    list_url = reverse("portal:exam-list")
    form = portal.PortalSearchForm(request.POST)
    if not form.is_valid():
        return render(request, "clinicians/portal_list.html", {"form": form, "page": None})
    if not form.has_criteria():
        return HttpResponseRedirect(list_url, status=303)
    return HttpResponseRedirect(f"{list_url}?{urlencode({'search': searches.remember(request, SEARCH_KIND, form)})}", status=303)


@requires(Permission.VIEW_REFERRED_STUDIES)
@require_http_methods(["GET", "POST"])
def exam_list(request: HttpRequest) -> HttpResponse:
    """List the clinician's exams, newest first, with their report status and critical-result flags."""
    if request.method == "POST":
        return _post_search(request)

    form = portal.PortalSearchForm()
    key = request.GET.get("search", "")
    if key:
        fields = searches.recall(request, SEARCH_KIND, key)
        if fields is None:
            messages.info(request, _("That search is no longer available, for example after signing in again. Search again."))
            return HttpResponseRedirect(reverse("portal:exam-list"))
        form = portal.PortalSearchForm(fields)
        if not form.is_valid():
            return render(request, "clinicians/portal_list.html", {"form": form, "page": None})

    page = Paginator(portal.portal_exams(request.user, form), portal.EXAMS_PER_PAGE).get_page(request.GET.get("page"))
    search_detail = form.audit_detail() if form.is_bound else ""
    _record(
        request, audit.Action.PORTAL_LIST_VIEWED,
        detail="; ".join(part for part in (search_detail, f"page={page.number}") if part),
        # The patients on the page, so that an auditor finds this view by any of them.
        patient_ids=[exam.patient.patient_id for exam in page.object_list],
    )
    context = {
        "form": form,
        "page": page,
        "rows": [(exam, portal.report_status(exam), portal.report_status_label(exam)) for exam in page.object_list],
        "page_range": page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1),
        "searching": form.is_bound and form.has_criteria(),
    }
    return render(request, "clinicians/portal_list.html", context)


@requires(Permission.VIEW_REFERRED_STUDIES)
@require_http_methods(["GET"])
def exam_page(request: HttpRequest, exam_pk: int) -> HttpResponse:
    """Show one exam: its studies with a link to the viewer, its signed final report and addenda, and its critical results."""
    exam = get_object_or_404(visible_exams(request.user).select_related("patient", "referring_clinician"), pk=exam_pk)
    studies = portal.exam_studies(exam)
    reports = portal.delivered_reports(exam)
    results = portal.critical_results(exam, request.user)

    reports_shown = f"signed reports {','.join(str(report.pk) for report in reports)}" if reports else "no signed report"
    _record(
        request, audit.Action.REPORT_VIEWED if reports else audit.Action.EXAM_VIEWED,
        detail=f"portal; exam={exam.pk}; accession={exam.accession_number}; {reports_shown}",
        **portal.audit_identifiers(exam, studies),
    )
    latest = latest_delivered(exam.pk) if reports else None
    context = {
        "exam": exam,
        "patient": exam.patient,
        "studies": studies,
        "viewer_uids": ",".join(study.study_instance_uid for study in studies),
        "report_status": portal.report_status(exam),
        "report_status_label": portal.report_status_label(exam),
        "reports": reports,
        "latest_report": latest,
        "critical_results": results,
    }
    return render(request, "clinicians/portal_exam.html", context)


@requires(Permission.VIEW_REFERRED_STUDIES)
@require_POST
def acknowledge(request: HttpRequest, exam_pk: int, result_pk: int) -> HttpResponse:
    """Acknowledge a critical result of one of the clinician's exams, then return to the exam."""
    exam = get_object_or_404(visible_exams(request.user).only("pk"), pk=exam_pk)
    get_object_or_404(CriticalResult.objects.only("pk"), pk=result_pk, exam=exam)
    try:
        result, acknowledged_now = critical.acknowledge(result_pk, request.user, address=_address(request))
    except PermissionDenied:
        return forbidden(request, acknowledge, _("This critical result was sent to someone else."))
    if acknowledged_now:
        messages.success(request, _("You acknowledged the critical result. The radiologist can see it."))
    else:
        earlier = result.acknowledged_by.get_username() if result.acknowledged_by is not None else _("Another user")
        messages.info(request, _("%(user)s acknowledged this critical result already.") % {"user": earlier})
    return HttpResponseRedirect(reverse("portal:exam", args=[exam_pk]), status=303)
