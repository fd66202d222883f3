"""The Comparison section of a new report: the patient's prior exams of the same modality, else the template's text."""

from __future__ import annotations

import pytest

from telerad.archive.models import Study
from telerad.reading.models import Exam, ReportTemplate
from telerad.reading.priors import MAX_COMPARISON_PRIORS
from telerad.reading.reports import current_draft, save_draft

from tests.reading.exam_factory import make_exam
from tests.reading.reports_fixtures import claim, client_for

pytestmark = pytest.mark.django_db

PATIENT = "COMPARE-1"


def dated_exam(accession: str, study_date: str, *, modalities: str = "CT", description: str = "CT head", study_time: str = "") -> Exam:
    exam = make_exam(patient_id=PATIENT, accession=accession, modalities=modalities, description=description)
    Study.objects.filter(exam_link__exam=exam).update(study_date=study_date, study_time=study_time)
    return exam


def comparison_of(exam: Exam) -> str:
    return current_draft(exam).sections["comparison"]


def test_comparison_lists_priors_newest_first():
    current = dated_exam("CURRENT", "20260110")
    dated_exam("OLDER", "20230614")
    dated_exam("NEWER", "20250301")

    assert current_draft(current).template.name == "CT head"
    assert comparison_of(current) == "CT head 2025-03-01, CT head 2023-06-14"


def test_comparison_without_priors_keeps_template_text():
    current = dated_exam("CURRENT", "20260110")

    assert comparison_of(current) == "None."


def test_comparison_leaves_out_other_modalities():
    current = dated_exam("CURRENT", "20260110")
    dated_exam("MR-PRIOR", "20250301", modalities="MR", description="MR brain")
    dated_exam("CT-PRIOR", "20240301", modalities="CT\\SR", description="CT head")

    assert comparison_of(current) == "CT head 2024-03-01"


def test_comparison_leaves_out_later_and_undated_exams():
    current = dated_exam("CURRENT", "20250301", study_time="0930")
    dated_exam("SAME-DAY-EARLIER", "20250301", study_time="0815")
    dated_exam("SAME-DAY-LATER", "20250301", study_time="1400")
    dated_exam("FOLLOW-UP", "20260101")
    dated_exam("UNDATED", "")

    assert comparison_of(current) == "CT head 2025-03-01"


def test_undated_current_exam_compares_with_all_dated():
    current = dated_exam("CURRENT", "")
    dated_exam("PRIOR", "20240229")

    assert comparison_of(current) == "CT head 2024-02-29"


def test_comparison_names_modality_without_description():
    current = dated_exam("CURRENT", "20260110")
    dated_exam("PRIOR", "20240301", description="")

    assert comparison_of(current) == "CT 2024-03-01"


def test_comparison_names_newest_priors_only():
    current = dated_exam("CURRENT", "20260110")
    for year in range(2015, 2025):
        dated_exam(f"PRIOR-{year}", f"{year}0601")

    names = comparison_of(current).split(", ")

    assert len(names) == MAX_COMPARISON_PRIORS
    assert names[0] == "CT head 2024-06-01"
    assert names[-1] == f"CT head {2024 - MAX_COMPARISON_PRIORS + 1}-06-01"


def test_template_without_comparison_section_gets_none():
    ReportTemplate.objects.filter(name="CT head").update(sections=[{"key": "findings", "title": "Findings", "text": ""}])
    current = dated_exam("CURRENT", "20260110")
    dated_exam("PRIOR", "20250301")

    assert "comparison" not in current_draft(current).sections


def test_editor_shows_comparison_and_first_save_keeps_it(make_user):
    radiologist = make_user("attending", "radiologist")
    current = dated_exam("CURRENT", "20260110")
    dated_exam("PRIOR", "20250301")
    claim(current, radiologist)

    page = client_for(radiologist).get(f"/reports/exams/{current.pk}/").content.decode()
    save_draft(current.pk, radiologist, 0, {"section-findings": "No change."})

    assert f'name="section-comparison" rows="4">CT head 2025-03-01</textarea>' in page
    assert current.report.sections["comparison"] == "CT head 2025-03-01"


def test_saved_draft_keeps_its_comparison(make_user):
    radiologist = make_user("attending", "radiologist")
    current = dated_exam("CURRENT", "20260110")
    claim(current, radiologist)
    save_draft(current.pk, radiologist, 0, {"section-comparison": "Outside CT 2024."})

    dated_exam("PRIOR", "20250301")

    assert comparison_of(current) == "Outside CT 2024."
