"""Prior exams on the exam page: dated and ordered by their studies' study date."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.utils import timezone

from telerad.archive.models import Study
from telerad.reading.models import Exam

from tests.reading.exam_factory import make_exam

pytestmark = pytest.mark.django_db


def make_prior(accession: str, study_date: str, waiting_minutes: float) -> Exam:
    exam = make_exam(patient_id="PRIORS", accession=accession, waiting_minutes=waiting_minutes)
    Study.objects.filter(exam_link__exam=exam).update(study_date=study_date)
    return exam


def priors_section(make_user, exam: Exam) -> str:
    client = Client()
    client.force_login(make_user("attending", "radiologist"))
    page = client.get(f"/worklist/{exam.pk}/").content.decode()
    return page[page.index('id="priors-heading"'):]


def test_priors_ordered_by_study_date(make_user):
    current = make_exam(patient_id="PRIORS", accession="CURRENT", waiting_minutes=1)
    make_prior("IMPORTED-OLD-SCAN", "20190305", waiting_minutes=10)
    make_prior("RECENT-SCAN", "20240110", waiting_minutes=100_000)
    undated = make_prior("UNDATED", "", waiting_minutes=5)

    section = priors_section(make_user, current)

    assert section.index("RECENT-SCAN") < section.index("IMPORTED-OLD-SCAN") < section.index("UNDATED")
    assert "2024-01-10" in section
    assert "2019-03-05" in section
    assert timezone.localtime(undated.study_received_at).strftime("%Y-%m-%d") not in section


def test_undated_prior_shows_date_unknown(make_user):
    current = make_exam(patient_id="PRIORS", accession="CURRENT", waiting_minutes=1)
    make_prior("PRIOR-2025", "20250301", waiting_minutes=10)
    make_prior("UNDATED", "", waiting_minutes=0)

    section = priors_section(make_user, current)

    assert "<strong>date unknown</strong>" in section
    assert section.index("PRIOR-2025") < section.index("date unknown") < section.index("UNDATED")


def test_priors_of_one_day_ordered_by_time(make_user):
    current = make_exam(patient_id="PRIORS", accession="CURRENT", waiting_minutes=1)
    morning = make_prior("MORNING", "20250301", waiting_minutes=10)
    evening = make_prior("EVENING", "20250301", waiting_minutes=20)
    Study.objects.filter(exam_link__exam=morning).update(study_time="0815")
    Study.objects.filter(exam_link__exam=evening).update(study_time="193000.5")

    section = priors_section(make_user, current)

    assert section.index("EVENING") < section.index("MORNING")


def test_prior_header_leaves_out_empty_fields(make_user):
    current = make_exam(patient_id="PRIORS", accession="CURRENT", waiting_minutes=1)
    prior = make_prior("", "20250301", waiting_minutes=10)
    Exam.objects.filter(pk=prior.pk).update(modalities="CT", description="")

    section = priors_section(make_user, current)

    assert "CT · ·" not in section
    assert re.search(r"<strong>2025-03-01</strong>\s+CT\s+· <a ", section)


def test_prior_shows_study_date_not_arrival(make_user):
    current = make_exam(patient_id="PRIORS", accession="CURRENT", waiting_minutes=1)
    prior = make_prior("IMPORTED", "20190305", waiting_minutes=10)

    section = priors_section(make_user, current)

    assert "2019-03-05" in section
    assert timezone.localtime(prior.study_received_at).strftime("%Y-%m-%d") not in section
