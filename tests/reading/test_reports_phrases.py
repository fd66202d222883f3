"""Phrases: the sections that offer them in the editor, and the pages that show and edit them."""

from __future__ import annotations

import importlib
import re

import pytest
from django.apps import apps

from telerad.audit.events import Action
from telerad.audit.models import AuditEvent
from telerad.reading.models import Phrase, ReportTemplate

from tests.reading.reports_fixtures import client_for, create_exam

pytestmark = pytest.mark.django_db

SEED_MIGRATION = "telerad.reading.migrations.0012_phrases_seed_sections"


@pytest.fixture
def manager(make_user):
    return make_user("lead", "lead-radiologist")


def offered_phrases(radiologist, exam) -> dict[str, set[str]]:
    """Return the labels of the phrase buttons of each section in the report editor."""
    page = client_for(radiologist).get(f"/reports/exams/{exam.pk}/").content.decode()
    offered: dict[str, set[str]] = {}
    pattern = rf'data-phrase-target="report-{exam.pk}-(\w+)"[^>]*>([^<]+)</button>'
    for section_key, label in re.findall(pattern, page):
        offered.setdefault(section_key, set()).add(label)
    return offered


def phrase_form_data(phrases: list[Phrase], rows: list[dict[str, str]]) -> dict[str, str]:
    """Return the POST data of the global phrases form: one row per existing phrase, then the new rows."""
    data = {"phrases-TOTAL_FORMS": str(len(rows)), "phrases-INITIAL_FORMS": str(len(phrases))}
    for index, row in enumerate(rows):
        if index < len(phrases):
            data[f"phrases-{index}-id"] = str(phrases[index].pk)
        for field, value in row.items():
            data[f"phrases-{index}-{field}"] = value
    return data


def test_seeded_global_phrases_have_sections():
    sections = dict(Phrase.objects.filter(template__isnull=True).values_list("label", "section_key"))

    assert sections["Clinical correlation"] == "impression"
    assert sections["No prior"] == "comparison"


def test_editor_offers_phrases_of_their_section(make_user):
    radiologist = make_user("attending", "radiologist")
    exam = create_exam(modalities="CT", description="CT head without contrast", claimed_by=radiologist)

    offered = offered_phrases(radiologist, exam)

    assert "clinical_information" not in offered
    assert "technique" not in offered
    assert offered["comparison"] == {"No prior"}
    assert "Clinical correlation" in offered["impression"]
    assert "No acute intracranial abnormality" in offered["impression"]
    assert "Clinical correlation" not in offered["findings"]


def test_editor_offers_phrase_without_section_everywhere(make_user):
    radiologist = make_user("attending", "radiologist")
    exam = create_exam(modalities="CT", description="CT head without contrast", claimed_by=radiologist)
    Phrase.objects.create(template=None, section_key="", label="Discussed", text="Discussed with the referring clinician.")

    offered = offered_phrases(radiologist, exam)

    for key in ("clinical_information", "technique", "comparison", "findings", "impression"):
        assert "Discussed" in offered[key], key


def test_template_list_shows_global_phrases(manager):
    Phrase.objects.create(template=None, section_key="", label="Discussed", text="Discussed with the referring clinician.")

    page = client_for(manager).get("/reports/templates/").content.decode()
    section = page[page.index('id="global-phrases-heading"'):]

    assert "Phrases for every template" in section
    assert re.search(r"<td>Impression</td>\s*<td>Clinical correlation</td>\s*<td>Clinical correlation is recommended.</td>", section)
    assert re.search(r"<td>Comparison</td>\s*<td>No prior</td>", section)
    assert re.search(r"<td>Every section</td>\s*<td>Discussed</td>", section)
    assert 'href="/reports/templates/phrases/"' in section


def test_template_page_shows_global_phrases(manager):
    generic = ReportTemplate.objects.get(name="Generic")

    page = client_for(manager).get(f"/reports/templates/{generic.pk}/").content.decode()
    section = page[page.index('id="global-phrases-heading"'):]

    assert "Clinical correlation" in section
    assert "No prior" in section


def test_global_phrases_page_saves_changes(manager):
    phrases = list(Phrase.objects.filter(template__isnull=True).order_by("section_key", "label", "pk"))
    assert [phrase.label for phrase in phrases] == ["No prior", "Clinical correlation"]
    rows = [
        {"section_key": "comparison", "label": "No prior", "text": "No prior imaging available for comparison.", "DELETE": "on"},
        {"section_key": "findings", "label": "Clinical correlation", "text": "Clinical correlation is recommended."},
        {"section_key": "", "label": "Discussed", "text": "Discussed with the referring clinician."},
        {"section_key": "", "label": "", "text": ""},
    ]

    response = client_for(manager).post("/reports/templates/phrases/", phrase_form_data(phrases, rows))

    assert response.status_code == 302
    saved = dict(Phrase.objects.filter(template__isnull=True).values_list("label", "section_key"))
    assert saved == {"Clinical correlation": "findings", "Discussed": ""}
    event = AuditEvent.objects.get(action=Action.REPORT_TEMPLATE_CHANGED)
    assert event.user == "lead"
    assert event.detail == "changed the global phrases: added 1, changed 1, deleted 1"


def test_global_phrases_page_rejects_invalid_key(manager):
    phrases = list(Phrase.objects.filter(template__isnull=True).order_by("section_key", "label", "pk"))
    rows = [
        {"section_key": "comparison", "label": "No prior", "text": "No prior imaging available for comparison."},
        {"section_key": "Impression!", "label": "Clinical correlation", "text": "Clinical correlation is recommended."},
    ]

    response = client_for(manager).post("/reports/templates/phrases/", phrase_form_data(phrases, rows))

    assert response.status_code == 400
    assert "Use lower-case letters, digits and underscores" in response.content.decode()
    assert Phrase.objects.get(template=None, label="Clinical correlation").section_key == "impression"
    assert not AuditEvent.objects.filter(action=Action.REPORT_TEMPLATE_CHANGED).exists()


def test_global_phrases_page_rejects_radiologist(make_user):
    client = client_for(make_user("reader", "radiologist"))

    assert client.get("/reports/templates/phrases/").status_code == 403


def test_seed_migration_moves_unchanged_phrase_only():
    migration = importlib.import_module(SEED_MIGRATION)
    Phrase.objects.filter(template=None, label="Clinical correlation").update(section_key="")
    edited = Phrase.objects.create(template=None, section_key="", label="Clinical correlation", text="Correlate with the examination.")

    migration.move_to_impression(apps, None)

    assert Phrase.objects.get(template=None, label="Clinical correlation", text="Clinical correlation is recommended.").section_key == "impression"
    edited.refresh_from_db()
    assert edited.section_key == ""


def test_seed_migration_reverses():
    migration = importlib.import_module(SEED_MIGRATION)

    migration.offer_in_every_section(apps, None)

    assert Phrase.objects.get(template=None, label="Clinical correlation").section_key == ""
