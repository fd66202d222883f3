"""The report editor of an exam, signing, addenda and the list of signed versions.

The editor is a fragment: the exam page loads it with htmx, and the same
address opened directly shows it on a page of its own. Without htmx the
forms still work as plain posts that lead back to the editor page.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from telerad.accounts.roles import Permission, has_permission, requires
from telerad.accounts.user_sessions import client_address
from telerad.audit import events as audit
from telerad.clinicians.critical import CriticalRoute, RecipientSource, route_critical_result
from telerad.reading.models import Exam, ExamStatus, Report, ReportTemplate, SignedKind
from telerad.reading.reports import (
    SIGNED_STATUSES, ClaimRequiredError, Draft, ReportError, audit_fields, current_draft, exam_label, require_claim, save_draft,
    written_section_keys,
)
from telerad.reading.reports_forms import AddendumForm, ConfirmSignatureForm
from telerad.reading.reports_signing import (
    ReauthenticationError, critical_preliminary, hash_matches, sign_addendum, sign_report, versions_for_display,
)
from telerad.reading.reports_templates import phrases_by_section, section_title


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def posted_revision(request: HttpRequest) -> int:
    try:
        return max(0, int(request.POST.get("revision", "")))
    except ValueError:
        raise ReportError(_("The form has no valid revision number; reload the report.")) from None


def editor_sections(draft: Draft, texts: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Return each section with its title, text and phrases, using `texts` (posted, unsaved) over the saved text."""
    phrases = phrases_by_section(draft.template)
    sections = []
    for key in draft.section_order:
        text = draft.sections.get(key, "")
        if texts is not None and f"section-{key}" in texts:
            text = texts[f"section-{key}"]
        sections.append({
            "key": key,
            "title": section_title(draft.template, key),
            "text": text,
            "phrases": [*phrases.get(key, []), *phrases.get("", [])],
        })
    return sections


def critical_recipient_notice(route: CriticalRoute) -> str:
    """Return the sentence beside a "Critical result" box that names who would receive the result."""
    name = {"name": route.display_name}
    if route.source is RecipientSource.REFERRING_CLINICIAN:
        return _("A critical result will be sent to the referring clinician, %(name)s.") % name
    if route.source is RecipientSource.DEPARTMENT_CONTACT:
        return _("The exam has no referring clinician, so a critical result will be sent to the department contact, %(name)s.") % name
    if route.source is RecipientSource.ESCALATION_CONTACT:
        return _(
            "The exam has no referring clinician and no department contact is configured, "
            "so a critical result will go straight to the escalation contact, %(name)s."
        ) % name
    return _(
        "Nobody will receive this critical result: set the exam's referring clinician in its clinical information, "
        "or ask an administrator to configure the department contact (TELERAD_CRITICAL_DEPARTMENT_CONTACT)."
    )


def _critical_context(request: HttpRequest, exam: Exam) -> dict[str, Any]:
    """Return what the "Critical result" boxes show: who would receive the result, and the critical preliminary report."""
    route = route_critical_result(exam, log_unknown=False)
    return {
        "critical_notice": critical_recipient_notice(route),
        "critical_recipient_missing": not route.reaches_someone,
        "can_edit_details": has_permission(request.user, Permission.EDIT_EXAM_DETAILS),
        "critical_preliminary": critical_preliminary(exam),
    }


def editor_context(request: HttpRequest, exam: Exam, *, texts: dict[str, str] | None = None, revision: int | None = None, **extra: Any) -> dict[str, Any]:
    """Build the context of the editor template for `exam`; `texts` and `revision` keep what the user posted but was not saved.

    The sign form's "Critical result" box starts ticked when a preliminary
    report of the exam was signed critical. After a rejected signature,
    `extra` passes a sign_form that keeps the posted choice instead.
    """
    draft = current_draft(exam)
    can_sign = has_permission(request.user, Permission.SIGN_REPORTS)
    claim_problem = None
    try:
        require_claim(exam, request.user)
    except ClaimRequiredError as exc:
        claim_problem = exc.message
    versions = versions_for_display(exam)
    critical_context = _critical_context(request, exam)
    context = {
        "exam": exam,
        "draft": draft,
        "revision": draft.revision if revision is None else revision,
        "sections": editor_sections(draft, texts),
        "templates": ReportTemplate.objects.filter(active=True).order_by("name"),
        "is_signed": exam.status in SIGNED_STATUSES,
        "can_edit": claim_problem is None and exam.status not in SIGNED_STATUSES,
        "claim_problem": claim_problem,
        "sign_kind": SignedKind.FINAL if can_sign else SignedKind.PRELIMINARY,
        "can_addend": can_sign and exam.status in SIGNED_STATUSES,
        "versions": versions,
        "sign_form": ConfirmSignatureForm(initial={"critical": critical_context["critical_preliminary"] is not None}),
        "addendum_form": AddendumForm(),
        **critical_context,
        "error": None,
        "sign_error": None,
        "addendum_error": None,
        "password_rejected": False,
        "message": None,
    }
    context.update(extra)
    return context


def render_editor(request: HttpRequest, context: dict[str, Any], status: int = 200) -> HttpResponse:
    template = "reading/reports/editor.html" if is_htmx(request) else "reading/reports/editor_page.html"
    return render(request, template, context, status=status)


def get_exam(exam_id: int) -> Exam:
    return get_object_or_404(Exam.objects.select_related("patient", "claimed_by", "referring_clinician"), pk=exam_id)


@requires(Permission.READ_EXAMS)
@never_cache
@require_http_methods(["GET", "POST"])
def editor_view(request: HttpRequest, exam_id: int) -> HttpResponse:
    """Show the report editor (GET) or save the draft (POST, the autosave)."""
    exam = get_exam(exam_id)
    if request.method == "GET":
        audit.record_event(
            action=audit.Action.REPORT_VIEWED, user=request.user.get_username(), address=client_address(request),
            detail=exam_label(exam), **audit_fields(exam),
        )
        return render_editor(request, editor_context(request, exam))

    try:
        report = save_draft(exam.pk, request.user, posted_revision(request), request.POST, client_address(request))
    except ReportError as exc:
        if is_htmx(request):
            return render(request, "reading/reports/save_status.html", {"error": exc.message, "exam_id": exam.pk}, status=exc.status)
        exam.refresh_from_db()
        context = editor_context(request, exam, texts=request.POST, revision=request.POST.get("revision"), error=exc.message)
        return render_editor(request, context, status=exc.status)
    if is_htmx(request):
        return render(request, "reading/reports/save_status.html", {"revision": report.revision, "saved_at": report.updated_at, "exam_id": exam.pk})
    return redirect("reports:editor", exam_id=exam.pk)


@requires(Permission.READ_EXAMS)
@require_POST
def choose_template_view(request: HttpRequest, exam_id: int) -> HttpResponse:
    """Rearrange the draft into another template, keeping every section that has text."""
    exam = get_exam(exam_id)
    template = ReportTemplate.objects.filter(pk=request.POST.get("template") or None, active=True).first()
    if template is None:
        context = editor_context(request, exam, texts=request.POST, revision=request.POST.get("revision"), error=_("Choose one of the listed templates."))
        return render_editor(request, context, status=400)
    try:
        report = save_draft(exam.pk, request.user, posted_revision(request), request.POST, client_address(request), template, change_template=True)
    except ReportError as exc:
        exam.refresh_from_db()
        context = editor_context(request, exam, texts=request.POST, revision=request.POST.get("revision"), error=exc.message)
        return render_editor(request, context, status=exc.status)
    message = _template_change_message(report, exam)
    if not is_htmx(request):
        messages.success(request, message)
        return redirect("reports:editor", exam_id=exam.pk)
    exam.refresh_from_db()
    return render_editor(request, editor_context(request, exam, message=message))


def _template_change_message(report: Report, exam: Exam) -> str:
    """Return the message naming the report's new template and the sections where the reader's own text stayed."""
    changed = _("The report now uses the template “%(name)s”.") % {"name": report.template.name}
    written = [section_title(report.template, key) for key in written_section_keys(report, exam)]
    if not written:
        return changed + " " + _("Its starting text replaced the previous template's.")
    return changed + " " + _("Your own text was kept, not replaced by the template's, in: %(sections)s.") % {"sections": ", ".join(written)}


@requires(Permission.READ_EXAMS)
@sensitive_post_parameters("password", "code")
@require_POST
def sign_view(request: HttpRequest, exam_id: int) -> HttpResponse:
    """Sign the draft: a final report with SIGN_REPORTS, a preliminary one without."""
    exam = get_exam(exam_id)
    form = ConfirmSignatureForm(request.POST)
    if not form.is_valid():
        return _render_rejected_signature(request, exam, form, " ".join(form.non_field_errors()), status=400)
    try:
        signed = sign_report(
            exam.pk, request.user, posted_revision(request), request.POST, critical=form.cleaned_data["critical"],
            password=form.cleaned_data["password"], code=form.cleaned_data["code"], address=client_address(request),
        )
    except ReportError as exc:
        exam.refresh_from_db()
        return _render_rejected_signature(request, exam, form, exc.message, status=exc.status, password_rejected=isinstance(exc, ReauthenticationError))
    if not is_htmx(request):
        return redirect("reports:editor", exam_id=exam.pk)
    exam.refresh_from_db()
    if signed.kind == SignedKind.FINAL:
        message = _("The final report is signed.")
    else:
        message = _("The preliminary report is signed. An attending radiologist will sign the final report.")
    if _embedded_in_exam_page(request):
        # Signing ended the claim and changed the exam's status, which the
        # page around the editor shows, so the whole page reloads.
        messages.success(request, message)
        response = HttpResponse(status=204)
        response["HX-Refresh"] = "true"
        return response
    return render_editor(request, editor_context(request, exam, message=message))


def _render_rejected_signature(
    request: HttpRequest, exam: Exam, form: ConfirmSignatureForm, message: str, *, status: int, password_rejected: bool = False,
) -> HttpResponse:
    """Render the editor with the posted text and critical choice, and `message` beside the password field, which gets the focus."""
    unsigned_form = ConfirmSignatureForm(initial={"critical": form.cleaned_data.get("critical", False)})
    context = editor_context(
        request, exam, texts=request.POST, revision=request.POST.get("revision"), sign_form=unsigned_form, sign_error=message,
        password_rejected=password_rejected,
    )
    return render_editor(request, context, status=status)


def _embedded_in_exam_page(request: HttpRequest) -> bool:
    """Return whether the htmx request comes from the exam page that embeds the editor."""
    return urlsplit(request.headers.get("HX-Current-URL", "")).path.startswith("/worklist/")


@requires(Permission.SIGN_REPORTS)
@sensitive_post_parameters("password", "code")
@require_POST
def addendum_view(request: HttpRequest, exam_id: int) -> HttpResponse:
    exam = get_exam(exam_id)
    form = AddendumForm(request.POST)
    if not form.is_valid():
        errors = [*form.non_field_errors(), *form.errors.get("text", [])]
        context = editor_context(request, exam, addendum_form=form, addendum_error=" ".join(errors))
        return render_editor(request, context, status=400)
    try:
        sign_addendum(
            exam.pk, request.user, form.cleaned_data["text"], critical=form.cleaned_data["critical"],
            password=form.cleaned_data["password"], code=form.cleaned_data["code"], address=client_address(request),
        )
    except ReportError as exc:
        exam.refresh_from_db()
        unsigned_form = AddendumForm(initial={"text": form.cleaned_data["text"], "critical": form.cleaned_data["critical"]})
        context = editor_context(
            request, exam, addendum_form=unsigned_form, addendum_error=exc.message, password_rejected=isinstance(exc, ReauthenticationError),
        )
        return render_editor(request, context, status=exc.status)
    if not is_htmx(request):
        return redirect("reports:editor", exam_id=exam.pk)
    exam.refresh_from_db()
    return render_editor(request, editor_context(request, exam, message=_("The addendum is signed.")))


@requires(Permission.READ_EXAMS)
@never_cache
@require_http_methods(["GET"])
def versions_view(request: HttpRequest, exam_id: int) -> HttpResponse:
    """List every signed version of an exam's report with a check that its content hash still matches."""
    exam = get_exam(exam_id)
    versions = [(version, hash_matches(version)) for version in versions_for_display(exam)]
    audit.record_event(
        action=audit.Action.REPORT_VIEWED, user=request.user.get_username(), address=client_address(request),
        detail=f"{exam_label(exam)}, signed versions", **audit_fields(exam),
    )
    return render(request, "reading/reports/versions.html", {
        "exam": exam, "versions": versions, "all_match": all(matches for _version, matches in versions),
        "status_label": ExamStatus(exam.status).label,
    })
