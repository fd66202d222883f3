"""Pages of image-quality issues: raising one from the exam page, the technologists' queue, and one issue with its answers."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from telerad.accounts.roles import Permission, has_permission, requires
from telerad.archive.models import Study
from telerad.audit import events as audit
from telerad.reading import quality
from telerad.reading.models import Exam
from telerad.reading.quality_models import UNRESOLVED_STATES, QualityIssue, QualityReason, QualityState

ISSUES_PER_PAGE = 50
UNRESOLVED = "unresolved"
ALL_STATES = "all"


def _address(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "")


def _exam_quality_url(exam_pk: int) -> str:
    return reverse("reading:exam", args=[exam_pk]) + "#quality-heading"


def _exam_url(request: HttpRequest, exam_pk: int) -> str:
    """Return the page of the exam that the user may open: the reading page, else the page of its details."""
    if has_permission(request.user, Permission.READ_EXAMS):
        return reverse("reading:exam", args=[exam_pk])
    return reverse("reading:exam-details", args=[exam_pk])


@requires(Permission.READ_EXAMS)
@require_POST
def raise_issue(request: HttpRequest, exam_pk: int) -> HttpResponse:
    exam = get_object_or_404(Exam.objects.select_related("patient"), pk=exam_pk)
    form = quality.RaiseIssueForm(request.POST, exam=exam)
    if not form.is_valid():
        problems = "; ".join(f"{form.fields[name].label}: {' '.join(errors)}" if name in form.fields else " ".join(errors) for name, errors in form.errors.items())
        messages.error(request, _("The image-quality issue was not saved. %(problems)s") % {"problems": problems})
        return HttpResponseRedirect(_exam_quality_url(exam.pk), status=303)
    study_uid, series_uid, label = form.target_uids()
    quality.raise_issue(
        exam, request.user, study_instance_uid=study_uid, series_instance_uid=series_uid, series_label=label,
        reason=form.cleaned_data["reason"], comment=form.cleaned_data["comment"], address=_address(request),
    )
    messages.success(request, _("The image-quality issue is raised; the technologists see it in their queue."))
    return HttpResponseRedirect(_exam_quality_url(exam.pk), status=303)


class QueueFilterForm(forms.Form):
    state = forms.ChoiceField(
        label=gettext_lazy("State"), required=False,
        choices=[(UNRESOLVED, gettext_lazy("Not closed")), *QualityState.choices, (ALL_STATES, gettext_lazy("All"))],
    )
    reason = forms.ChoiceField(label=gettext_lazy("Reason"), required=False, choices=[("", gettext_lazy("Any reason")), *QualityReason.choices])

    def filter(self, issues):
        state = self.cleaned_data.get("state") or UNRESOLVED
        if state == UNRESOLVED:
            issues = issues.filter(state__in=UNRESOLVED_STATES)
        elif state != ALL_STATES:
            issues = issues.filter(state=state)
        if self.cleaned_data.get("reason"):
            issues = issues.filter(reason=self.cleaned_data["reason"])
        return issues


@requires(Permission.EDIT_EXAM_DETAILS)
@require_GET
def issue_queue(request: HttpRequest) -> HttpResponse:
    """List image-quality issues, newest first; by default those not closed."""
    form = QueueFilterForm(request.GET)
    issues = QualityIssue.objects.select_related("exam__patient", "raised_by").annotate(answers=Count("replies")).order_by("-created_at", "-id")
    if form.is_valid():
        issues = form.filter(issues)
    else:
        issues = issues.none()
    page = Paginator(issues, ISSUES_PER_PAGE).get_page(request.GET.get("page"))
    for issue in page.object_list:
        issue.exam_url = _exam_url(request, issue.exam_id)
    shown = [issue.exam.patient.patient_id for issue in page.object_list]
    audit.record_event(
        action=audit.Action.QUALITY_QUEUE_VIEWED, user=request.user.get_username(), address=_address(request),
        detail=f"state={form.cleaned_data.get('state') or UNRESOLVED if form.is_valid() else 'invalid'}; "
        f"reason={form.cleaned_data.get('reason', '') if form.is_valid() else ''}; page={page.number}",
        patient_ids=shown,
    )
    context = {
        "form": form,
        "page": page,
        "page_range": page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1),
    }
    return render(request, "reading/quality_queue.html", context)


@requires(Permission.EDIT_EXAM_DETAILS)
@require_http_methods(["GET", "POST"])
def issue_page(request: HttpRequest, issue_pk: int) -> HttpResponse:
    """Show one issue with its answers; a POST answers it, marks it fixed or closes it."""
    issue = get_object_or_404(QualityIssue.objects.select_related("exam__patient", "raised_by"), pk=issue_pk)
    form = quality.AnswerForm()
    if request.method == "POST":
        form = quality.AnswerForm(request.POST)
        if form.is_valid():
            try:
                issue = quality.answer_issue(
                    issue.pk, request.user, text=form.cleaned_data["text"], action=form.cleaned_data["action"], address=_address(request),
                )
            except quality.QualityIssueClosed as exc:
                messages.error(request, str(exc))
            else:
                messages.success(request, _("The issue is saved as %(state)s.") % {"state": issue.get_state_display().lower()})
            return HttpResponseRedirect(reverse("quality:issue", args=[issue.pk]), status=303)
    else:
        audit.record_event(
            action=audit.Action.QUALITY_ISSUE_VIEWED, user=request.user.get_username(), address=_address(request),
            patient_id=issue.exam.patient.patient_id, study_instance_uid=issue.study_instance_uid,
            detail=f"exam={issue.exam_id}; accession={issue.exam.accession_number}; issue={issue.pk}",
        )
    context = {
        "issue": issue,
        "exam": issue.exam,
        "exam_url": _exam_url(request, issue.exam_id),
        # The study may have left the archive since the issue was raised.
        "study": Study.objects.filter(study_instance_uid=issue.study_instance_uid).first(),
        "can_view_studies": has_permission(request.user, Permission.VIEW_STUDIES),
        "patient": issue.exam.patient,
        "replies": issue.replies.select_related("author"),
        "form": form,
        "actions": quality.AnswerForm,
    }
    # A valid POST has redirected above, so a bound form here is an invalid one.
    return render(request, "reading/quality_issue.html", context, status=400 if form.is_bound else 200)
