"""Report templates: matching an exam, the management pages, and import and export as JSON files."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from telerad.audit.models import AuditEvent
from telerad.reading.models import Phrase, ReportTemplate
from telerad.reading.reports_templates import FILE_FORMAT, best_template

from tests.reading.reports_fixtures import client_for, create_exam

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager(make_user):
    return make_user("lead", "lead-radiologist")


def template_file(templates, **extra) -> SimpleUploadedFile:
    document = {"format": FILE_FORMAT, "version": 1, "templates": templates, **extra}
    return SimpleUploadedFile("templates.json", json.dumps(document).encode("utf-8"), content_type="application/json")


def section(key: str, title: str = "Title", text: str = "") -> dict:
    return {"key": key, "title": title, "text": text}


@pytest.mark.parametrize(("modalities", "description", "expected"), [
    ("CT", "CT head without contrast", "CT head"),
    ("DX", "Chest PA and lateral", "Chest X-ray"),
    ("CR", "CHEST 1 VIEW", "Chest X-ray"),
    ("MR", "MR knee left", "MR knee"),
    ("MR", "MR brain", "Generic"),
    ("US", "Abdomen", "Generic"),
])
def test_best_template_for_seeded_templates(modalities, description, expected):
    exam = create_exam(modalities=modalities, description=description)

    assert best_template(exam).name == expected


def test_best_template_skips_inactive():
    ReportTemplate.objects.filter(name="CT head").update(active=False)
    exam = create_exam(modalities="CT", description="CT head")

    assert best_template(exam).name == "Generic"


def test_best_template_prefers_exam_type_over_modality():
    ReportTemplate.objects.create(name="Any CT", modality="CT", sections=[section("findings")])
    ReportTemplate.objects.create(name="Any head", exam_type="head", sections=[section("findings")])
    exam = create_exam(modalities="CT", description="CT head")

    assert best_template(exam).name == "CT head"
    ReportTemplate.objects.filter(name="CT head").update(active=False)
    assert best_template(exam).name == "Any head"


def test_template_list_shows_seeded_templates(manager):
    response = client_for(manager).get("/reports/templates/")

    assert response.status_code == 200
    for name in ("CT head", "Chest X-ray", "MR knee", "Generic"):
        assert name in response.content.decode()


def test_template_pages_reject_radiologist(make_user):
    client = client_for(make_user("reader", "radiologist"))

    assert client.get("/reports/templates/").status_code == 403
    assert client.post("/reports/templates/new/", {}).status_code == 403


def formset_data(sections, phrases=(), name="CT sinus", template: ReportTemplate | None = None) -> dict:
    data = {
        "name": name, "modality": "ct", "exam_type": "sinus", "active": "on",
        "sections-TOTAL_FORMS": str(len(sections)), "sections-INITIAL_FORMS": "0",
        "sections-MIN_NUM_FORMS": "0", "sections-MAX_NUM_FORMS": "1000",
        "phrases-TOTAL_FORMS": str(len(phrases)), "phrases-INITIAL_FORMS": "0",
        "phrases-MIN_NUM_FORMS": "0", "phrases-MAX_NUM_FORMS": "1000",
    }
    for index, (key, title, text) in enumerate(sections):
        data.update({f"sections-{index}-key": key, f"sections-{index}-title": title, f"sections-{index}-text": text})
    for index, (section_key, label, text) in enumerate(phrases):
        data.update({f"phrases-{index}-section_key": section_key, f"phrases-{index}-label": label, f"phrases-{index}-text": text})
    return data


def test_create_template_with_sections_and_phrases(manager):
    data = formset_data(
        [("technique", "Technique", "Axial CT."), ("findings", "Findings", ""), ("impression", "Impression", "")],
        [("findings", "Clear sinuses", "The paranasal sinuses are clear.")],
    )

    response = client_for(manager).post("/reports/templates/new/", data)

    assert response.status_code == 302
    template = ReportTemplate.objects.get(name="CT sinus")
    assert template.modality == "CT"
    assert [s["key"] for s in template.sections] == ["technique", "findings", "impression"]
    assert template.sections[0]["text"] == "Axial CT."
    assert list(template.phrases.values_list("label", flat=True)) == ["Clear sinuses"]
    event = AuditEvent.objects.get(action="report-template-changed")
    assert event.user == "lead"
    assert "CT sinus" in event.detail


def test_create_template_rejects_duplicate_section_keys(manager):
    data = formset_data([("findings", "Findings", ""), ("findings", "Again", "")])

    response = client_for(manager).post("/reports/templates/new/", data)

    assert response.status_code == 400
    assert "used twice" in response.content.decode()
    assert not ReportTemplate.objects.filter(name="CT sinus").exists()


def test_create_template_rejects_phrase_of_unknown_section(manager):
    data = formset_data([("findings", "Findings", "")], [("impression", "Normal", "Normal.")])

    response = client_for(manager).post("/reports/templates/new/", data)

    assert response.status_code == 400
    assert "impression" in response.content.decode()
    assert not ReportTemplate.objects.filter(name="CT sinus").exists()


def test_edit_template_changes_sections(manager):
    template = ReportTemplate.objects.get(name="Generic")
    data = formset_data([("findings", "Findings", "No change."), ("impression", "Conclusion", "")], name="Generic")
    data.update({"modality": "", "exam_type": ""})

    response = client_for(manager).post(f"/reports/templates/{template.pk}/", data)

    assert response.status_code == 302
    template.refresh_from_db()
    assert template.sections == [
        {"key": "findings", "title": "Findings", "text": "No change."},
        {"key": "impression", "title": "Conclusion", "text": ""},
    ]


def test_deactivate_and_activate_template(manager):
    template = ReportTemplate.objects.get(name="MR knee")
    client = client_for(manager)

    client.post(f"/reports/templates/{template.pk}/active/", {"active": "0"})
    template.refresh_from_db()
    assert template.active is False
    client.post(f"/reports/templates/{template.pk}/active/", {"active": "1"})
    template.refresh_from_db()
    assert template.active is True
    details = list(AuditEvent.objects.filter(action="report-template-changed").values_list("detail", flat=True))
    assert [detail.split()[0] for detail in details] == ["deactivated", "activated"]


def test_export_one_template(manager):
    template = ReportTemplate.objects.get(name="CT head")

    response = client_for(manager).get(f"/reports/templates/{template.pk}/export.json")

    assert response.status_code == 200
    assert "attachment" in response["Content-Disposition"]
    document = json.loads(response.content)
    assert document["format"] == FILE_FORMAT
    assert document["version"] == 1
    assert [item["name"] for item in document["templates"]] == ["CT head"]
    assert "phrases" not in document
    assert len(document["templates"][0]["phrases"]) == template.phrases.count()


def test_export_all_then_import_restores(manager):
    client = client_for(manager)
    exported = client.get("/reports/templates/export.json").content
    document = json.loads(exported)
    assert {item["name"] for item in document["templates"]} == {"CT head", "Chest X-ray", "MR knee", "Generic"}
    assert len(document["phrases"]) == Phrase.objects.filter(template=None).count()
    ReportTemplate.objects.get(name="CT head").phrases.all().delete()
    ReportTemplate.objects.filter(name="MR knee").delete()

    response = client.post("/reports/templates/import/", {"file": SimpleUploadedFile("all.json", exported)})

    assert response.status_code == 302
    assert ReportTemplate.objects.get(name="CT head").phrases.count() == 3
    assert ReportTemplate.objects.get(name="MR knee").phrases.count() == 4
    event = AuditEvent.objects.get(action="report-templates-imported")
    assert "created 1, updated 3" in event.detail


def test_import_new_template(manager):
    upload = template_file([{
        "name": "US abdomen", "modality": "us", "exam_type": "abdomen",
        "sections": [section("findings", "Findings"), section("impression", "Impression")],
        "phrases": [{"section_key": "findings", "label": "Normal liver", "text": "The liver is normal in size and echotexture."}],
    }])

    response = client_for(manager).post("/reports/templates/import/", {"file": upload})

    assert response.status_code == 302
    template = ReportTemplate.objects.get(name="US abdomen")
    assert template.modality == "US"
    assert template.phrases.get().label == "Normal liver"


@pytest.mark.parametrize(("content", "expected"), [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe\x00", "not UTF-8"),
    (b"[]", "must contain a JSON object"),
    (json.dumps({"format": "other", "version": 1, "templates": []}).encode(), "not a telerad template file"),
    (json.dumps({"format": FILE_FORMAT, "version": 2, "templates": []}).encode(), "Version 2 of the template file is not supported"),
    (json.dumps({"format": FILE_FORMAT, "version": 1, "templates": []}).encode(), "contains no templates"),
])
def test_import_rejects_unreadable_file(manager, content, expected):
    before = ReportTemplate.objects.count()

    response = client_for(manager).post("/reports/templates/import/", {"file": SimpleUploadedFile("bad.json", content)})

    assert response.status_code == 400
    assert expected in response.content.decode()
    assert ReportTemplate.objects.count() == before
    assert not AuditEvent.objects.filter(action="report-templates-imported").exists()


def test_import_lists_every_problem_and_changes_nothing(manager):
    upload = template_file([
        {"name": "Good one", "sections": [section("findings")]},
        {"name": "", "sections": []},
        {"name": "Bad keys", "sections": [section("Findings"), section("impression"), section("impression")]},
        {"name": "Bad phrase", "sections": [section("findings")], "phrases": [{"section_key": "technique", "label": "", "text": "x"}]},
        "not an object",
    ])

    response = client_for(manager).post("/reports/templates/import/", {"file": upload})

    page = response.content.decode()
    assert response.status_code == 400
    assert "Template 2: “name” is missing or empty." in page
    assert "Template 2: “sections” must be a list with at least one section." in page
    assert "the key “Findings” must start with a lower-case letter" in page
    assert "the key “impression” is used twice" in page
    assert "section “technique” is not a section of this template" in page
    assert "“label” is missing or empty" in page
    assert "Template 5 must be an object." in page
    assert not ReportTemplate.objects.filter(name="Good one").exists()
