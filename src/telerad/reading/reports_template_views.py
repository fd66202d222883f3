"""Managing report templates: list, create, edit, deactivate, import and export."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from telerad.accounts.roles import Permission, requires
from telerad.accounts.user_sessions import client_address
from telerad.audit import events as audit
from telerad.reading.models import Phrase, ReportTemplate
from telerad.reading.reports_forms import GlobalPhraseFormSet, PhraseFormSet, ReportTemplateForm, SectionFormSet, TemplateImportForm
from telerad.reading.reports_templates import TemplateFileError, export_templates, global_phrases, import_templates

logger = logging.getLogger(__name__)


def record_template_event(request: HttpRequest, action: audit.Action, detail: str) -> None:
    audit.record_event(action=action, user=request.user.get_username(), address=client_address(request), detail=detail)
    logger.info("user %s: %s", request.user.get_username(), detail)


@requires(Permission.MANAGE_REPORT_TEMPLATES)
@require_http_methods(["GET"])
def template_list_view(request: HttpRequest) -> HttpResponse:
    templates = ReportTemplate.objects.prefetch_related("phrases").order_by("-active", "name")
    return render(request, "reading/report_templates/list.html", {"templates": templates, "global_phrases": global_phrases()})


def edit_template(request: HttpRequest, template: ReportTemplate | None) -> HttpResponse:
    """Show and save the form of a new template (`template` None) or of an existing one."""
    instance = template or ReportTemplate()
    initial_sections = [
        {"key": section["key"], "title": section.get("title", ""), "text": section.get("text", "")} for section in instance.sections
    ]
    phrase_problem = ""
    if request.method == "POST":
        form = ReportTemplateForm(request.POST, instance=instance)
        sections = SectionFormSet(request.POST, prefix="sections", initial=initial_sections)
        phrases = PhraseFormSet(request.POST, instance=instance, prefix="phrases")
        if form.is_valid() and sections.is_valid() and phrases.is_valid():
            keys = {section["key"] for section in sections.sections()}
            unknown = sorted({
                phrase_form.cleaned_data["section_key"]
                for phrase_form in phrases.forms
                if phrase_form.has_changed() and phrase_form.cleaned_data.get("section_key") and not phrase_form.cleaned_data.get("DELETE")
            } - keys)
            if unknown:
                phrase_problem = _("Some phrases name sections that the template does not have: %(keys)s.") % {"keys": ", ".join(unknown)}
            else:
                with transaction.atomic():
                    saved = form.save(commit=False)
                    saved.sections = sections.sections()
                    saved.save()
                    phrases.instance = saved
                    phrases.save()
                verb = "created" if template is None else "changed"
                record_template_event(request, audit.Action.REPORT_TEMPLATE_CHANGED, f"{verb} report template {saved.pk} “{saved.name}”")
                messages.success(request, _("The template “%(name)s” is saved.") % {"name": saved.name})
                return redirect("reports:template-list")
    else:
        form = ReportTemplateForm(instance=instance)
        sections = SectionFormSet(prefix="sections", initial=initial_sections)
        phrases = PhraseFormSet(instance=instance, prefix="phrases")
    return render(request, "reading/report_templates/edit.html", {
        "template_object": template, "form": form, "sections": sections, "phrases": phrases, "phrase_problem": phrase_problem,
        "global_phrases": global_phrases(template),
    }, status=400 if request.method == "POST" else 200)


@requires(Permission.MANAGE_REPORT_TEMPLATES)
@require_http_methods(["GET", "POST"])
def template_create_view(request: HttpRequest) -> HttpResponse:
    return edit_template(request, None)


@requires(Permission.MANAGE_REPORT_TEMPLATES)
@require_http_methods(["GET", "POST"])
def template_edit_view(request: HttpRequest, template_id: int) -> HttpResponse:
    return edit_template(request, get_object_or_404(ReportTemplate, pk=template_id))


@requires(Permission.MANAGE_REPORT_TEMPLATES)
@require_POST
def template_active_view(request: HttpRequest, template_id: int) -> HttpResponse:
    """Deactivate a template (active=0) so that it is no longer offered, or activate it again (active=1)."""
    template = get_object_or_404(ReportTemplate, pk=template_id)
    active = request.POST.get("active") == "1"
    if template.active != active:
        template.active = active
        template.save(update_fields=["active", "updated_at"])
        verb = "activated" if active else "deactivated"
        record_template_event(request, audit.Action.REPORT_TEMPLATE_CHANGED, f"{verb} report template {template.pk} “{template.name}”")
    if active:
        messages.success(request, _("The template “%(name)s” is active again.") % {"name": template.name})
    else:
        messages.success(request, _("The template “%(name)s” is deactivated; reports already written with it keep their text.") % {"name": template.name})
    return redirect("reports:template-list")


@requires(Permission.MANAGE_REPORT_TEMPLATES)
@require_http_methods(["GET", "POST"])
def global_phrases_view(request: HttpRequest) -> HttpResponse:
    """Show and save the phrases that the report editor offers with every template."""
    queryset = Phrase.objects.filter(template__isnull=True).order_by("section_key", "label", "pk")
    if request.method == "POST":
        formset = GlobalPhraseFormSet(request.POST, queryset=queryset, prefix="phrases")
        if formset.is_valid():
            with transaction.atomic():
                formset.save()
                changed = len(formset.new_objects) + len(formset.changed_objects) + len(formset.deleted_objects)
                if changed:
                    record_template_event(
                        request, audit.Action.REPORT_TEMPLATE_CHANGED,
                        f"changed the global phrases: added {len(formset.new_objects)}, changed {len(formset.changed_objects)}, "
                        f"deleted {len(formset.deleted_objects)}",
                    )
            messages.success(request, _("The phrases for every template are saved."))
            return redirect("reports:template-list")
    else:
        formset = GlobalPhraseFormSet(queryset=queryset, prefix="phrases")
    return render(request, "reading/report_templates/phrases.html", {"phrases": formset}, status=400 if request.method == "POST" else 200)


def download(content: bytes, filename: str) -> HttpResponse:
    response = HttpResponse(content, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@requires(Permission.MANAGE_REPORT_TEMPLATES)
@require_http_methods(["GET"])
def template_export_view(request: HttpRequest, template_id: int) -> HttpResponse:
    template = get_object_or_404(ReportTemplate, pk=template_id)
    record_template_event(request, audit.Action.REPORT_TEMPLATES_EXPORTED, f"exported report template {template.pk} “{template.name}”")
    return download(export_templates([template], include_global_phrases=False), f"report-template-{template.pk}.json")


@requires(Permission.MANAGE_REPORT_TEMPLATES)
@require_http_methods(["GET"])
def template_export_all_view(request: HttpRequest) -> HttpResponse:
    templates = list(ReportTemplate.objects.order_by("name"))
    record_template_event(request, audit.Action.REPORT_TEMPLATES_EXPORTED, f"exported all {len(templates)} report templates and the global phrases")
    filename = f"report-templates-{timezone.localdate():%Y-%m-%d}.json"
    return download(export_templates(templates, include_global_phrases=True), filename)


@requires(Permission.MANAGE_REPORT_TEMPLATES)
@require_http_methods(["GET", "POST"])
def template_import_view(request: HttpRequest) -> HttpResponse:
    """Import a template file; a file with any problem changes nothing, and the page lists every problem."""
    problems: list[str] = []
    if request.method == "POST":
        form = TemplateImportForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                result = import_templates(form.cleaned_data["file"])
            except TemplateFileError as exc:
                problems = exc.problems
            else:
                record_template_event(
                    request, audit.Action.REPORT_TEMPLATES_IMPORTED,
                    f"imported report templates: created {len(result.created)}, updated {len(result.updated)}, "
                    f"global phrases {result.global_phrases}",
                )
                messages.success(request, _("Imported %(created)d new and %(updated)d updated templates and %(phrases)d global phrases.") % {
                    "created": len(result.created), "updated": len(result.updated), "phrases": result.global_phrases,
                })
                return redirect("reports:template-list")
    else:
        form = TemplateImportForm()
    status = 400 if problems or form.errors else 200
    return render(request, "reading/report_templates/import.html", {"form": form, "problems": problems}, status=status)
