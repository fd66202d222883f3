"""The reading pages' layout: navigation by role, one dark theme, one heading per part, no empty separators, keyboard order."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from telerad.reading.models import Report
from tests.reading.exam_factory import make_exam
from tests.reading.reports_fixtures import claim, htmx_client_for

pytestmark = pytest.mark.django_db

NAVIGATION = {
    "Worklist": "/worklist/",
    "Image quality": "/quality/",
    "Turnaround": "/turnaround/",
    "Critical results": "/critical/",
    "Report templates": "/reports/templates/",
}
# The navigation links each role gets, among NAVIGATION.
LINKS_BY_ROLE = {
    "radiologist": {"Worklist", "Image quality", "Turnaround"},
    "resident": {"Worklist", "Image quality", "Turnaround"},
    "lead-radiologist": {"Worklist", "Image quality", "Turnaround", "Critical results", "Report templates"},
    "technologist": {"Image quality"},
    "administrator": {"Report templates"},
    "it": set(),
    "clinician": set(),
    "auditor": set(),
}


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def main_navigation(page: str) -> str:
    match = re.search(r'<nav aria-label="Main">.*?</nav>', page, re.S)
    assert match is not None, "the page has no main navigation"
    return match.group(0)


def navigation_links(page: str) -> set[str]:
    navigation = main_navigation(page)
    return {label for label, url in NAVIGATION.items() if f'href="{url}"' in navigation}


@pytest.mark.parametrize(("role", "expected"), LINKS_BY_ROLE.items(), ids=LINKS_BY_ROLE.keys())
def test_navigation_links_by_role(make_user, role, expected):
    client = client_for(make_user("walker", role))

    page = client.get(reverse("account:home")).content.decode()

    assert navigation_links(page) == expected


@pytest.mark.parametrize("label", ["Image quality", "Turnaround", "Critical results", "Report templates"])
def test_navigation_links_open_for_lead(make_user, label):
    client = client_for(make_user("lead", "lead-radiologist"))

    response = client.get(NAVIGATION[label])

    assert response.status_code == 200
    assert f'href="{NAVIGATION[label]}" aria-current="page"' in main_navigation(response.content.decode())


@pytest.fixture
def reader(make_user):
    return make_user("ada", "radiologist")


@pytest.mark.parametrize("page_name", ["worklist", "exam"])
def test_reading_pages_are_dark_throughout(reader, page_name):
    exam = make_exam(accession="DARK-1")
    url = reverse("reading:worklist") if page_name == "worklist" else reverse("reading:exam", args=[exam.pk])

    page = client_for(reader).get(url).content.decode()

    assert re.search(r'<html lang="[^"]+" data-theme="dark">', page)
    assert '<meta name="color-scheme" content="dark">' in page
    assert page.count('data-theme="dark"') == 1


def test_office_pages_follow_system_theme(reader):
    page = client_for(reader).get(reverse("turnaround:figures")).content.decode()

    assert "data-theme" not in page
    assert '<meta name="color-scheme" content="light dark">' in page


def test_exam_header_without_birth_date_or_sex(reader):
    exam = make_exam(accession="HEAD-1", patient_id="PID-HEAD", patient_name="Doe^Jane")

    page = client_for(reader).get(reverse("reading:exam", args=[exam.pk])).content.decode()

    subtitle = re.search(r"<h1>.*?<small>(.*?)</small>", page, re.S).group(1)
    assert subtitle == "PID-HEAD"


def test_prior_header_without_description(reader):
    exam = make_exam(accession="CUR-2", patient_id="PID-PRIOR")
    make_exam(accession="", patient_id="PID-PRIOR", modalities="", waiting_minutes=600)

    page = client_for(reader).get(reverse("reading:exam", args=[exam.pk])).content.decode()

    prior_header = re.search(r'<article class="prior-exam">\s*<header>(.*?)</header>', page, re.S).group(1)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", prior_header)).strip()
    assert text == "date unknown · View · Compare with the current exam"


def test_claimed_exam_has_one_report_heading(reader):
    exam = make_exam(accession="ONE-HEADING")
    claim(exam, reader)

    exam_page = client_for(reader).get(reverse("reading:exam", args=[exam.pk])).content.decode()
    editor = htmx_client_for(reader).get(reverse("reports:editor", args=[exam.pk])).content.decode()

    assert exam_page.count(">Report</h2>") == 1
    assert "<h2" not in editor
    assert "<h1" not in editor


def test_editor_page_has_its_own_heading(reader):
    exam = make_exam(accession="PAGE-1")
    claim(exam, reader)

    page = client_for(reader).get(reverse("reports:editor", args=[exam.pk])).content.decode()

    assert "<h1>Report of the exam (accession number PAGE-1)</h1>" in page
    assert f'href="{reverse("reading:exam", args=[exam.pk])}"' in page


def test_side_pane_precedes_viewer(reader):
    exam = make_exam(accession="ORDER-1")
    claim(exam, reader)

    page = client_for(reader).get(reverse("reading:exam", args=[exam.pk])).content.decode()

    assert 'class="reading-columns with-viewer"' in page
    assert page.index('class="side-pane"') < page.index('class="viewer-pane"')
    assert page.index('id="report-heading"') < page.index("<iframe")


def test_exam_without_studies_has_no_viewer_column(reader):
    exam = make_exam(accession="NO-STUDY")
    exam.studies.all().delete()

    page = client_for(reader).get(reverse("reading:exam", args=[exam.pk])).content.decode()

    assert 'class="reading-columns"' in page
    assert "<iframe" not in page


def test_signed_versions_listed_once_beside_editor(reader, make_user):
    from django.utils import timezone

    from telerad.reading.models import ExamStatus, SignedKind, SignedReport

    exam = make_exam(accession="PRELIM-1", status=ExamStatus.PRELIMINARY)
    SignedReport.objects.create(
        exam=exam, kind=SignedKind.PRELIMINARY, text="Preliminary: no bleed.", signer=make_user("res", "resident"),
        signed_at=timezone.now(), content_hash="0" * 64,
    )
    claim(exam, reader)

    exam_page = client_for(reader).get(reverse("reading:exam", args=[exam.pk])).content.decode()

    assert "Preliminary: no bleed." not in exam_page
    assert not Report.objects.filter(exam=exam).exists()
