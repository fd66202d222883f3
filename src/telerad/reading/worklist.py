"""The worklist's query: open exams narrowed by filters, in a chosen order, with turnaround colours and open questions.

Filters travel in the page's query string (priority, modality, subspecialty,
status, mine, sort). They name no patient, so they may appear in addresses.
A search by accession number or patient ID is posted and kept in the session
(see core.searches).
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Iterable

from django import forms
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet
from django.utils import formats, timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from telerad.clinicians.questions import open_question_summary
from telerad.reading.claims import OPEN_STATUSES, active_holder_id, lapse_cutoff
from telerad.reading.models import Exam, ExamStatus, Priority, Reader, Subspecialty

EXAMS_PER_PAGE = 50
# Orders of the list. Every one ends with the primary key, so that pages do
# not overlap. "priority" is served by the exam_worklist index.
SORTS: dict[str, tuple[str, ...]] = {
    "priority": ("priority", "study_received_at", "id"),
    "waiting": ("study_received_at", "id"),
    "newest": ("-study_received_at", "-id"),
}
SORT_LABELS = {
    "priority": _("Most urgent first, then longest waiting"),
    "waiting": _("Longest waiting first"),
    "newest": _("Newest first"),
}
DEFAULT_SORT = "priority"
SHORT_STRING_MAX_LENGTH = 16
LONG_STRING_MAX_LENGTH = 64


class WorklistFilterForm(forms.Form):
    """The worklist's filters, read from the query string."""

    priority = forms.TypedMultipleChoiceField(
        label=_("Priority"), choices=Priority.choices, coerce=int, required=False, widget=forms.CheckboxSelectMultiple,
    )
    status = forms.MultipleChoiceField(
        label=_("Status"), choices=[(status.value, status.label) for status in OPEN_STATUSES], required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    modality = forms.CharField(label=_("Modality"), max_length=SHORT_STRING_MAX_LENGTH, required=False, help_text=_("For example CT or MR."))
    subspecialty = forms.MultipleChoiceField(label=_("Subspecialty"), required=False, widget=forms.CheckboxSelectMultiple)
    my_subspecialties = forms.BooleanField(label=_("My subspecialties"), required=False)
    mine = forms.BooleanField(label=_("Mine: claimed by me or drafted by me"), required=False)
    sort = forms.ChoiceField(label=_("Order"), choices=list(SORT_LABELS.items()), required=False)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["subspecialty"].choices = list(Subspecialty.objects.filter(active=True).values_list("code", "name"))

    def query_parameters(self) -> dict[str, Any]:
        """Return the cleaned filters as query parameters, without empty ones. Call it only on a valid form."""
        parameters: dict[str, Any] = {}
        for name, value in self.cleaned_data.items():
            if value in (None, "", [], False):
                continue
            parameters[name] = "1" if value is True else value
        return parameters


# The built-in views: (key, label, query parameters).
PRESET_VIEWS: tuple[tuple[str, Any, dict[str, Any]], ...] = (
    ("my-subspecialties", _("My subspecialties"), {"my_subspecialties": "1"}),
    ("stat-first", _("STAT first"), {"priority": [Priority.STAT.value, Priority.URGENT.value], "sort": "priority"}),
    ("mine", _("Mine"), {"mine": "1"}),
    ("drafts", _("Drafts to finish"), {"mine": "1", "status": [ExamStatus.DRAFT.value, ExamStatus.PRELIMINARY.value]}),
)


def user_subspecialty_ids(user: AbstractBaseUser) -> list[int]:
    return list(Reader.objects.filter(user=user).values_list("subspecialties__id", flat=True).exclude(subspecialties__id=None))


def _modality_condition(modality: str) -> Q:
    """Match one modality inside the backslash-separated list of the exam."""
    value = modality.strip().upper()
    return Q(modalities=value) | Q(modalities__startswith=value + "\\") | Q(modalities__endswith="\\" + value) | Q(modalities__contains="\\" + value + "\\")


def filtered_exams(
    data: dict[str, Any], user: AbstractBaseUser, *, accession_number: str = "", patient_id: str = "",
) -> QuerySet[Exam]:
    """Return the open exams that match the cleaned filters `data` and the search, in the chosen order."""
    # The condition of the exam_open_worklist index, and any narrower status filter beside it.
    exams = Exam.objects.filter(status__in_literals=OPEN_STATUSES)
    if data.get("status"):
        exams = exams.filter(status__in=data["status"])
    if data.get("priority"):
        exams = exams.filter(priority__in=data["priority"])
    if data.get("modality"):
        exams = exams.filter(_modality_condition(data["modality"]))
    if data.get("subspecialty"):
        exams = exams.filter(subspecialty__code__in=data["subspecialty"])
    if data.get("my_subspecialties"):
        exams = exams.filter(subspecialty_id__in=user_subspecialty_ids(user))
    if data.get("mine"):
        exams = exams.filter(Q(claimed_by=user) | Q(report__author=user))
    if accession_number:
        exams = exams.filter(accession_number=accession_number)
    if patient_id:
        exams = exams.filter(patient__patient_id=patient_id)
    order = SORTS.get(data.get("sort") or DEFAULT_SORT, SORTS[DEFAULT_SORT])
    return exams.select_related("patient", "subspecialty", "claimed_by").order_by(*order)


@dataclasses.dataclass(frozen=True)
class Row:
    """One exam as the worklist shows it."""

    exam: Exam
    waiting: datetime.timedelta
    # "normal", "warning" (amber) or "overdue" (red).
    turnaround: str
    # The user whose claim is active, or None.
    reader_name: str | None
    mine: bool
    open_questions: int = 0
    # How long the oldest open question on the exam has waited, or None without one.
    oldest_question_age: datetime.timedelta | None = None


def turnaround_level(priority: int, waiting: datetime.timedelta) -> str:
    config = settings.TELERAD
    index = max(0, min(2, priority - 1))
    minutes = waiting.total_seconds() / 60
    if minutes >= config.tat_overdue_minutes[index]:
        return "overdue"
    if minutes >= config.tat_warning_minutes[index]:
        return "warning"
    return "normal"


def rows(exams: Iterable[Exam], user: AbstractBaseUser, now: datetime.datetime | None = None) -> list[Row]:
    """Describe each exam for the table, without a query per row."""
    now = now or timezone.now()
    cutoff = lapse_cutoff(now)
    exams = list(exams)
    # Counted for the page's exams only, after the sort and the page's LIMIT.
    open_questions = open_question_summary(exam.pk for exam in exams) if exams else {}
    result = []
    for exam in exams:
        waiting = max(now - exam.study_received_at, datetime.timedelta(0))
        holder_id = active_holder_id(exam, cutoff)
        question_count, oldest_question = open_questions.get(exam.pk, (0, None))
        result.append(Row(
            exam=exam,
            waiting=waiting,
            turnaround=turnaround_level(exam.priority, waiting),
            reader_name=exam.claimed_by.get_username() if holder_id is not None else None,
            mine=holder_id == user.pk,
            open_questions=question_count,
            oldest_question_age=max(now - oldest_question, datetime.timedelta(0)) if oldest_question is not None else None,
        ))
    return result


def format_waiting(waiting: datetime.timedelta) -> str:
    """Format a waiting time as minutes, hours and minutes, or days and hours."""
    minutes = int(waiting.total_seconds() // 60)
    if minutes < 60:
        return ngettext("%(minutes)d min", "%(minutes)d min", minutes) % {"minutes": minutes}
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return ngettext("%(hours)d h %(minutes)02d min", "%(hours)d h %(minutes)02d min", hours) % {"hours": hours, "minutes": minutes}
    days, hours = divmod(hours, 24)
    return ngettext("%(days)d day %(hours)d h", "%(days)d days %(hours)d h", days) % {"days": days, "hours": hours}


def exam_reference(exam: Exam) -> str:
    """Name the exam for pages and messages: by its accession number, else by the arrival time of its images.

    The exam's primary key is left out because readers would take it for an accession number.
    """
    if exam.accession_number:
        return _("accession number %(accession)s") % {"accession": exam.accession_number}
    received = formats.date_format(timezone.localtime(exam.study_received_at), "Y-m-d H:i")
    return _("no accession number, received %(received)s") % {"received": received}


class WorklistSearchForm(forms.Form):
    accession_number = forms.CharField(label=_("Accession number"), required=False, max_length=SHORT_STRING_MAX_LENGTH)
    patient_id = forms.CharField(label=_("Patient ID"), required=False, max_length=LONG_STRING_MAX_LENGTH)

    def has_criteria(self) -> bool:
        return any(self.cleaned_data.values())
