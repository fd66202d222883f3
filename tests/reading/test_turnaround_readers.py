"""The turnaround page of a reader who is not a lead: the exams they reported, preliminary reports included."""

from __future__ import annotations

import csv
import datetime
import io

import pytest
from django.test import Client
from django.urls import reverse

from telerad.reading.models import Exam, SignedKind, SignedReport
from tests.reading.exam_factory import make_exam

pytestmark = pytest.mark.django_db

RECEIVED = datetime.datetime(2026, 3, 10, 8, 0, tzinfo=datetime.UTC)
RANGE = {"date_from": "2026-03-01", "date_to": "2026-03-31"}


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def minutes(value: float) -> datetime.timedelta:
    return datetime.timedelta(minutes=value)


def sign_report(exam: Exam, signer, kind: str, after_minutes: float) -> None:
    SignedReport.objects.create(
        exam=exam, kind=kind, text="Normal.", signer=signer, signed_at=RECEIVED + minutes(after_minutes), content_hash="0" * 64,
    )


def reported_exam(resident, attending, *, preliminary: float, signed: float | None) -> Exam:
    """Create an exam whose preliminary report `resident` signed and, when `signed` is given, whose final report `attending` signed."""
    exam = make_exam(modalities="CT")
    Exam.objects.filter(pk=exam.pk).update(
        study_received_at=RECEIVED, first_claimed_at=RECEIVED + minutes(1), preliminary_at=RECEIVED + minutes(preliminary),
        signed_at=None if signed is None else RECEIVED + minutes(signed), claimed_by=None,
    )
    sign_report(exam, resident, SignedKind.PRELIMINARY, preliminary)
    if signed is not None:
        sign_report(exam, attending, SignedKind.FINAL, signed)
    return exam


@pytest.fixture
def resident(make_user):
    return make_user("rhea", "resident")


@pytest.fixture
def attending(make_user):
    return make_user("atticus", "radiologist")


def test_resident_sees_finalised_preliminary(resident, attending):
    reported_exam(resident, attending, preliminary=20, signed=50)
    reported_exam(resident, attending, preliminary=40, signed=None)

    response = client_for(resident).get(reverse("turnaround:figures"), RANGE)

    groups = {group.label: group for group in response.context["tables"][0]["groups"]}
    assert set(groups) == {"atticus", "rhea"}
    assert groups["atticus"].metrics["preliminary"].median == 20.0
    assert groups["rhea"].metrics["preliminary"].median == 40.0
    assert "You read no exam" not in response.content.decode()


def test_resident_csv_has_finalised_preliminary(resident, attending):
    exam = reported_exam(resident, attending, preliminary=20, signed=50)

    response = client_for(resident).get(reverse("turnaround:csv"), RANGE)

    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["exam_id"] for row in rows] == [str(exam.pk)]
    assert rows[0]["radiologist"] == "atticus"
    assert rows[0]["minutes_to_preliminary"] == "20.0"


def test_resident_misses_other_residents_exams(resident, attending, make_user):
    reported_exam(make_user("other", "resident"), attending, preliminary=20, signed=50)

    response = client_for(resident).get(reverse("turnaround:figures"), RANGE)

    assert response.context["tables"][0]["groups"] == []
    page = response.content.decode()
    assert "You read no exam whose images arrived in this range." in page
    assert "No exam received its images in this range." not in page


def test_attending_keeps_finalised_exam(resident, attending):
    reported_exam(resident, attending, preliminary=20, signed=50)

    response = client_for(attending).get(reverse("turnaround:figures"), RANGE)

    [group] = response.context["tables"][0]["groups"]
    assert group.label == "atticus"
    assert group.metrics["signed"].median == 50.0


def test_lead_sees_empty_range_message(make_user):
    response = client_for(make_user("lea", "lead-radiologist")).get(reverse("turnaround:figures"), RANGE)

    assert "No exam received its images in this range." in response.content.decode()


def test_percentile_note_describes_method(resident):
    page = client_for(resident).get(reverse("turnaround:figures"), RANGE).content.decode()

    assert "interpolated linearly between the two nearest durations" in page
    assert "no percentile function" not in page
