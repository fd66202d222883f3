"""Image-quality pages link the issue's exam and study by accession number and description."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from telerad.archive.models import Study
from telerad.reading.quality_models import QualityIssue, QualityReason
from tests.reading.exam_factory import make_exam

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader(make_user):
    return make_user("ada", "radiologist")


@pytest.fixture
def technologist(make_user):
    return make_user("tess", "technologist")


@pytest.fixture
def issue(reader):
    exam = make_exam(accession="QA-7", patient_id="PID-QA7", description="CT head without contrast")
    study = exam.studies.get()
    Study.objects.filter(pk=study.pk).update(study_description="CT HEAD", study_date="20260301")
    return QualityIssue.objects.create(
        exam=exam, study_instance_uid=study.study_instance_uid, reason=QualityReason.MOTION, comment="Motion.", raised_by=reader,
    )


def page_for(user, url: str) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def test_issue_page_links_exam_for_reader(reader, issue):
    page = page_for(reader, reverse("quality:issue", args=[issue.pk]))

    exam_url = reverse("reading:exam", args=[issue.exam_id])
    assert f'<a href="{exam_url}">accession number QA-7 · CT head without contrast</a>' in page


def test_issue_page_links_study(technologist, issue):
    study = Study.objects.get(study_instance_uid=issue.study_instance_uid)

    page = page_for(technologist, reverse("quality:issue", args=[issue.pk]))

    study_url = reverse("archive:study-detail", args=[study.pk])
    assert f'<a href="{study_url}">CT HEAD · 2026-03-01</a>' in page
    assert f"<small>{study.study_instance_uid}</small>" in page


def test_issue_page_links_exam_details_for_technologist(technologist, issue):
    page = page_for(technologist, reverse("quality:issue", args=[issue.pk]))

    details_url = reverse("reading:exam-details", args=[issue.exam_id])
    assert f'<a href="{details_url}">accession number QA-7 · CT head without contrast</a>' in page
    assert reverse("reading:exam", args=[issue.exam_id]) + '"' not in page


def test_issue_page_names_study_left_archive(technologist, issue):
    QualityIssue.objects.filter(pk=issue.pk).update(study_instance_uid="1.2.826.0.1.3680043.10.543.999999")

    page = page_for(technologist, reverse("quality:issue", args=[issue.pk]))

    assert "<small>1.2.826.0.1.3680043.10.543.999999</small> (no longer in the archive)" in page


def test_queue_links_exam(reader, issue):
    page = page_for(reader, reverse("quality:queue"))

    exam_url = reverse("reading:exam", args=[issue.exam_id])
    assert f'<td><a href="{exam_url}">accession number QA-7 · CT head without contrast</a></td>' in page
