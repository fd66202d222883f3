"""Switching a draft's template: the new template's text replaces untouched starting text, written text stays and the editor names it."""

from __future__ import annotations

import pytest

from telerad.reading.models import Report, ReportTemplate
from telerad.reading.reports import current_draft
from tests.reading.reports_fixtures import claim, create_exam, htmx_client_for
from tests.reading.reports_fixtures import exam, radiologist  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

CT_TECHNIQUE = "Axial CT of the head without intravenous contrast, with multiplanar reconstructions."
CHEST_TECHNIQUE = "Frontal chest radiograph."


def template(name: str) -> ReportTemplate:
    return ReportTemplate.objects.get(name=name)


def editor_fields(exam) -> dict[str, str]:
    """Return the section fields as the editor shows them, as a browser posts them back unchanged."""
    draft = current_draft(exam)
    return {f"section-{key}": text for key, text in draft.sections.items()}


def switch(user, exam, name: str, revision: int, fields: dict[str, str]):
    data = {"template": str(template(name).pk), "revision": str(revision), **fields}
    return htmx_client_for(user).post(f"/reports/exams/{exam.pk}/template/", data)


def test_untouched_draft_takes_new_template_text(exam, radiologist):
    assert current_draft(exam).template == template("CT head")

    response = switch(radiologist, exam, "Chest X-ray", 0, editor_fields(exam))

    page = response.content.decode()
    report = Report.objects.get(exam=exam)
    assert response.status_code == 200
    assert report.template == template("Chest X-ray")
    assert report.sections["technique"] == CHEST_TECHNIQUE
    assert report.sections["comparison"] == "None."
    assert report.section_order == ["clinical_information", "technique", "comparison", "findings", "impression"]
    assert CHEST_TECHNIQUE in page
    assert CT_TECHNIQUE not in page
    assert "starting text replaced the previous template" in page


def test_saved_untouched_draft_takes_new_text(exam, radiologist):
    client = htmx_client_for(radiologist)
    fields = editor_fields(exam)
    client.post(f"/reports/exams/{exam.pk}/", {"revision": "0", **fields})
    assert Report.objects.get(exam=exam).sections["technique"] == CT_TECHNIQUE

    switch(radiologist, exam, "MR knee", 1, fields)

    report = Report.objects.get(exam=exam)
    assert report.template == template("MR knee")
    assert report.sections["technique"] == "Multiplanar, multisequence MR imaging of the knee without intravenous contrast."


def test_written_text_stays_and_is_named(exam, radiologist):
    fields = editor_fields(exam)
    fields["section-findings"] = "Chronic small vessel change."
    fields["section-technique"] = CT_TECHNIQUE + " Thin slices through the posterior fossa."

    response = switch(radiologist, exam, "Chest X-ray", 0, fields)

    page = response.content.decode()
    report = Report.objects.get(exam=exam)
    assert report.sections["findings"] == "Chronic small vessel change."
    assert report.sections["technique"] == CT_TECHNIQUE + " Thin slices through the posterior fossa."
    assert report.sections["comparison"] == "None."
    assert "Your own text was kept, not replaced by the template&#x27;s, in: Technique, Findings." in page


def test_written_extra_section_moves_to_end(exam, radiologist):
    short = ReportTemplate.objects.create(name="Impression only", sections=[{"key": "impression", "title": "Conclusion", "text": "Start."}])
    fields = editor_fields(exam)
    fields["section-findings"] = "Old infarct in the left MCA territory."

    switch(radiologist, exam, short.name, 0, fields)

    report = Report.objects.get(exam=exam)
    assert report.section_order == ["impression", "findings"]
    assert report.sections == {"impression": "Start.", "findings": "Old infarct in the left MCA territory."}


def test_clinical_information_follows_new_template(radiologist):
    exam = create_exam(accession="ACC-CLIN")
    exam.reason_for_study = "Fall from standing height."
    exam.clinical_history = "On anticoagulants."
    exam.save(update_fields=["reason_for_study", "clinical_history"])
    claim(exam, radiologist)
    fields = editor_fields(exam)
    assert fields["section-clinical_information"] == "Fall from standing height.\nOn anticoagulants."

    response = switch(radiologist, exam, "Generic", 0, fields)

    report = Report.objects.get(exam=exam)
    assert report.sections["clinical_information"] == "Fall from standing height.\nOn anticoagulants."
    assert report.sections["technique"] == ""
    assert "starting text replaced the previous template" in response.content.decode()


def test_switch_without_htmx_reports_on_page(exam, radiologist):
    from tests.reading.reports_fixtures import client_for

    client = client_for(radiologist)
    data = {"template": str(template("Chest X-ray").pk), "revision": "0", **editor_fields(exam)}

    response = client.post(f"/reports/exams/{exam.pk}/template/", data, follow=True)

    assert response.status_code == 200
    assert "The report now uses the template “Chest X-ray”." in response.content.decode()
