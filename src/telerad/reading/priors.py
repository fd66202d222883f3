"""Prior exams of a patient: their study dates, and the Comparison text that a new report starts with.

An exam is dated by its newest study's Study Date and Time, because imported
images can arrive years after the scan. Exams whose studies have no Study
Date have no date.
"""

from __future__ import annotations

from django.db.models import CharField, Max, Q, QuerySet
from django.db.models.functions import Concat

from telerad.reading.exams import NON_IMAGE_SERIES_MODALITIES
from telerad.reading.models import Exam
from telerad.reading.reports_templates import modality_set

# The number of newest priors that a Comparison section names. An estimate: older ones rarely change a report.
MAX_COMPARISON_PRIORS = 5


def with_study_dates(exams: QuerySet[Exam]) -> QuerySet[Exam]:
    """Annotate each exam with `study_date` (DA text) and `study_datetime` (DA and TM text) of its newest dated study, or None."""
    dated_study = ~Q(exam_studies__study__study_date="")
    # A DA value has 8 digits and a TM value starts with the hour, so a date followed by its time sorts in time order.
    study_datetime = Concat("exam_studies__study__study_date", "exam_studies__study__study_time", output_field=CharField())
    return exams.annotate(
        study_date=Max("exam_studies__study__study_date", filter=dated_study),
        study_datetime=Max(study_datetime, filter=dated_study),
    )


def _image_modalities(exam: Exam) -> set[str]:
    return modality_set(exam.modalities) - NON_IMAGE_SERIES_MODALITIES


def comparison_priors(exam: Exam) -> list[Exam]:
    """Return the dated exams of the patient before `exam` that share an image modality with it, newest first, at most MAX_COMPARISON_PRIORS.

    An undated `exam` counts as the newest, because it is the one being reported now.
    """
    modalities = _image_modalities(exam)
    if not modalities:
        return []

    current = with_study_dates(Exam.objects.filter(pk=exam.pk)).values_list("study_datetime", flat=True).first()
    candidates = with_study_dates(Exam.objects.filter(patient_id=exam.patient_id).exclude(pk=exam.pk)).filter(study_datetime__isnull=False)
    if current is not None:
        candidates = candidates.filter(study_datetime__lt=current)

    priors = []
    for prior in candidates.order_by("-study_datetime", "-id").only("id", "modalities", "description", "accession_number"):
        if _image_modalities(prior) & modalities:
            priors.append(prior)
        if len(priors) == MAX_COMPARISON_PRIORS:
            break
    return priors


def _iso_date(study_date: str) -> str:
    return f"{study_date[:4]}-{study_date[4:6]}-{study_date[6:8]}"


def comparison_text(exam: Exam, template_text: str) -> str:
    """Return the Comparison text of a new report: its priors of the same modality as "CT head 2025-03-01, ...", else `template_text`."""
    names = []
    for prior in comparison_priors(exam):
        description = prior.description or ", ".join(sorted(_image_modalities(prior)))
        names.append(f"{description} {_iso_date(prior.study_date)}")
    return ", ".join(names) or template_text
