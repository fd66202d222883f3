"""The worklist pages: the list of exams awaiting a report, its saved views, the reader's subspecialties and duty.

The list writes an audit event when it is opened. Its live refresh (htmx
polls the table) writes one only when the exams shown change, so that an
open worklist does not fill the audit trail with identical events.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from telerad.accounts.roles import Permission, has_permission, requires
from telerad.audit import events as audit
from telerad.clinicians import questions
from telerad.core import searches
from telerad.reading import duty, worklist
from telerad.reading.models import Reader, Subspecialty, WorklistView

SEARCH_KIND = "worklist"
# The session key under which the digest of the exams last audited is kept.
AUDITED_DIGEST_KEY = "worklist:audited"
TABLE_TARGET = "worklist-table"
# Open questions assigned to the reader that the worklist lists above the exams. The list page at /questions/ has the rest.
ASSIGNED_QUESTIONS_SHOWN = 10


def record_view(request: HttpRequest, action: audit.Action, **identifiers: str) -> None:
    audit.record_event(
        action=action,
        user=request.user.get_username(),
        address=request.META.get("REMOTE_ADDR", ""),
        **identifiers,
    )


def _worklist_url(parameters: dict[str, Any] | QueryDict) -> str:
    query = parameters.urlencode() if isinstance(parameters, QueryDict) else urlencode(parameters, doseq=True)
    return reverse("reading:worklist") + (f"?{query}" if query else "")


def _search_from_session(request: HttpRequest) -> tuple[worklist.WorklistSearchForm, bool]:
    """Return the search form filled from the session key in the address, and whether the key was unknown."""
    key = request.GET.get("search", "")
    if not key:
        return worklist.WorklistSearchForm(), False
    fields = searches.recall(request, SEARCH_KIND, key)
    if fields is None:
        return worklist.WorklistSearchForm(), True
    form = worklist.WorklistSearchForm(fields)
    form.is_valid()
    return form, False


def _audit_if_changed(request: HttpRequest, detail: str, exam_ids: list[int], *, refresh: bool) -> None:
    digest = hashlib.sha256(f"{detail}|{exam_ids}".encode()).hexdigest()
    if refresh and request.session.get(AUDITED_DIGEST_KEY) == digest:
        return
    request.session[AUDITED_DIGEST_KEY] = digest
    record_view(request, audit.Action.WORKLIST_VIEWED, detail=detail)


@requires(Permission.READ_EXAMS)
@require_http_methods(["GET", "POST"])
def worklist_page(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return _post_search(request)

    filters = worklist.WorklistFilterForm(request.GET)
    search, search_lost = _search_from_session(request)
    if search_lost:
        messages.info(request, _("That search is no longer available, for example after signing in again. Search again."))
        remaining = request.GET.copy()
        remaining.pop("search", None)
        return HttpResponseRedirect(_worklist_url(remaining))
    if not filters.is_valid():
        return render(request, "reading/worklist.html", {"filters": filters, "search": search, "page": None})

    search_data = search.cleaned_data if search.is_bound and search.is_valid() else {}
    exams = worklist.filtered_exams(
        filters.cleaned_data, request.user,
        accession_number=search_data.get("accession_number", ""), patient_id=search_data.get("patient_id", ""),
    )
    page = Paginator(exams, worklist.EXAMS_PER_PAGE).get_page(request.GET.get("page"))
    table_rows = worklist.rows(page.object_list, request.user)

    refresh = request.headers.get("HX-Target") == TABLE_TARGET
    parameters = filters.query_parameters()
    detail_parts = [f"{name}={value}" for name, value in sorted(parameters.items())]
    detail_parts += [f"{name}={value}" for name, value in sorted(search_data.items()) if value]
    detail_parts.append(f"page={page.number}")
    _audit_if_changed(request, "; ".join(detail_parts), [row.exam.pk for row in table_rows], refresh=refresh)

    context = {
        "filters": filters,
        "search": search,
        "page": page,
        "rows": table_rows,
        "page_range": page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1),
        "presets": [(label, _worklist_url(preset)) for _key, label, preset in worklist.PRESET_VIEWS],
        "saved_views": [(view, _worklist_url(view.filters)) for view in WorklistView.objects.filter(user=request.user)],
        "current_parameters": parameters,
        "save_form": SaveViewForm(),
        "now": timezone.now(),
        "searching": bool(search_data and any(search_data.values())),
        "can_manage": has_permission(request.user, Permission.MANAGE_READING),
        "on_duty": duty.is_on_duty(request.user),
        **_assigned_questions(request.user),
    }
    template = "reading/worklist_table.html" if refresh else "reading/worklist.html"
    return render(request, template, context)


def _assigned_questions(user) -> dict[str, Any]:
    """Return the open questions assigned to `user` that the worklist's box lists, oldest first, and how many there are."""
    if not questions.may_answer(user):
        return {"assigned_questions": [], "assigned_question_count": 0}
    assigned = questions.open_assigned_to(user)
    listed = list(assigned[:ASSIGNED_QUESTIONS_SHOWN])
    count = len(listed) if len(listed) < ASSIGNED_QUESTIONS_SHOWN else assigned.count()
    return {"assigned_questions": listed, "assigned_question_count": count}


def _post_search(request: HttpRequest) -> HttpResponse:
    """Keep a posted search in the session and send the browser to the list with its key and the current filters."""
    form = worklist.WorklistSearchForm(request.POST)
    filters = request.GET.copy()
    filters.pop("page", None)
    filters.pop("search", None)
    if not form.is_valid():
        messages.error(request, _("The search is invalid: %(errors)s") % {"errors": "; ".join(str(error) for errors in form.errors.values() for error in errors)})
        return HttpResponseRedirect(_worklist_url(filters), status=303)
    if form.has_criteria():
        filters["search"] = searches.remember(request, SEARCH_KIND, form)
    return HttpResponseRedirect(_worklist_url(filters), status=303)


class SaveViewForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name of the view"), max_length=100)


@requires(Permission.READ_EXAMS)
@require_POST
def save_view(request: HttpRequest) -> HttpResponse:
    """Save the filters of the address the form was posted from under a name of the user's choice."""
    form = SaveViewForm(request.POST)
    filters = worklist.WorklistFilterForm(request.GET)
    if not form.is_valid() or not filters.is_valid():
        messages.error(request, _("Give the view a name of at most 100 characters."))
        return HttpResponseRedirect(_worklist_url(request.GET), status=303)
    name = form.cleaned_data["name"].strip()
    try:
        with transaction.atomic():
            WorklistView.objects.create(user=request.user, name=name, filters=filters.query_parameters())
    except IntegrityError:
        messages.error(request, _("You already have a view named “%(name)s”. Choose another name or delete that view first.") % {"name": name})
    else:
        messages.success(request, _("View “%(name)s” saved.") % {"name": name})
    return HttpResponseRedirect(_worklist_url(filters.query_parameters()), status=303)


@requires(Permission.READ_EXAMS)
@require_POST
def delete_view(request: HttpRequest, view_pk: int) -> HttpResponse:
    view = get_object_or_404(WorklistView, pk=view_pk, user=request.user)
    view.delete()
    messages.success(request, _("View “%(name)s” deleted.") % {"name": view.name})
    return HttpResponseRedirect(reverse("reading:worklist"), status=303)


class SubspecialtiesForm(forms.Form):
    subspecialties = forms.ModelMultipleChoiceField(
        label=gettext_lazy("Subspecialties you read"), queryset=Subspecialty.objects.filter(active=True),
        required=False, widget=forms.CheckboxSelectMultiple,
    )


@requires(Permission.READ_EXAMS)
@require_http_methods(["GET", "POST"])
def my_subspecialties(request: HttpRequest) -> HttpResponse:
    """Show and change the subspecialties that the "My subspecialties" view of the user selects."""
    reader, _created = Reader.objects.get_or_create(user=request.user)
    if request.method == "POST":
        form = SubspecialtiesForm(request.POST)
        if form.is_valid():
            reader.subspecialties.set(form.cleaned_data["subspecialties"])
            messages.success(request, _("Your subspecialties are saved."))
            return HttpResponseRedirect(reverse("reading:worklist") + "?my_subspecialties=1", status=303)
    else:
        form = SubspecialtiesForm(initial={"subspecialties": reader.subspecialties.all()})
    return render(request, "reading/my_subspecialties.html", {"form": form})


@requires(Permission.READ_EXAMS)
@require_POST
def toggle_duty(request: HttpRequest) -> HttpResponse:
    """Put the user on duty, or off duty when the form posts on_duty=0."""
    reader, _created = Reader.objects.get_or_create(user=request.user)
    on_duty = request.POST.get("on_duty") == "1"
    duty.set_on_duty(reader, on_duty, changed_by=request.user.get_username())
    if on_duty:
        messages.success(request, _("You are on duty: questions on exams that nobody has read may come to you."))
    else:
        messages.success(request, _("You are off duty."))
    return HttpResponseRedirect(reverse("reading:worklist"), status=303)
