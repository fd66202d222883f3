"""A new draft starts with the exam's reason for study and clinical history in its clinical information section."""

from __future__ import annotations

import pytest

from telerad.reading.models import Exam, Report, ReportTemplate

from tests.reading.reports_fixtures import htmx_client_for
from tests.reading.reports_fixtures import exam, radiologist  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

REASON = "Sudden severe headache."
HISTORY = "Hypertension, on anticoagulants."


@pytest.fixture
def exam_with_history(exam):
    Exam.objects.filter(pk=exam.pk).update(reason_for_study=REASON, clinical_history=HISTORY)
    exam.refresh_from_db()
    return exam


def test_editor_prefills_clinical_information(exam_with_history, radiologist):
    page = htmx_client_for(radiologist).get(f"/reports/exams/{exam_with_history.pk}/").content.decode()

    textarea = page[page.index('name="section-clinical_information"'):]
    textarea = textarea[:textarea.index("</textarea>")]
    assert REASON in textarea
    assert HISTORY in textarea


def test_first_save_keeps_clinical_information(exam_with_history, radiologist):
    htmx_client_for(radiologist).post(f"/reports/exams/{exam_with_history.pk}/", {"revision": "0", "section-findings": "A bleed."})

    report = Report.objects.get(exam=exam_with_history)
    assert report.sections["clinical_information"] == f"{REASON}\n{HISTORY}"
    assert report.sections["findings"] == "A bleed."


def test_saved_draft_is_not_prefilled_again(exam_with_history, radiologist):
    client = htmx_client_for(radiologist)
    client.post(f"/reports/exams/{exam_with_history.pk}/", {"revision": "0", "section-clinical_information": ""})

    page = client.get(f"/reports/exams/{exam_with_history.pk}/").content.decode()

    assert Report.objects.get(exam=exam_with_history).sections["clinical_information"] == ""
    assert REASON not in page


def test_template_without_section_gets_no_prefill(exam_with_history, radiologist):
    ReportTemplate.objects.update(active=False)
    ReportTemplate.objects.create(name="Findings only", sections=[{"key": "findings", "title": "Findings", "text": ""}])

    htmx_client_for(radiologist).post(f"/reports/exams/{exam_with_history.pk}/", {"revision": "0", "section-findings": "A bleed."})

    report = Report.objects.get(exam=exam_with_history)
    assert report.section_order == ["findings"]
    assert "clinical_information" not in report.sections
