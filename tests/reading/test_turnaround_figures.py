"""Turnaround figures per radiologist, modality and priority, the CSV export, and who may see them."""

from __future__ import annotations

import csv
import datetime
import io

import pytest
from django.test import Client
from django.urls import reverse

from telerad.audit.events import Action
from telerad.audit.models import AuditEvent
from telerad.reading import turnaround
from telerad.reading.models import Exam, Priority, SignedKind, SignedReport
from tests.reading.exam_factory import make_exam

pytestmark = pytest.mark.django_db

RECEIVED = datetime.datetime(2026, 3, 10, 8, 0, tzinfo=datetime.UTC)
RANGE = {"date_from": "2026-03-01", "date_to": "2026-03-31"}


def minutes(value: float) -> datetime.timedelta:
    return datetime.timedelta(minutes=value)


@pytest.fixture
def ada(make_user):
    return make_user("ada", "radiologist")


@pytest.fixture
def ben(make_user):
    return make_user("ben", "radiologist")


@pytest.fixture
def lead(make_user):
    return make_user("lea", "lead-radiologist")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make_read_exam(reader, *, claimed: float, signed: float | None, preliminary: float | None = None, modalities="CT", priority=Priority.ROUTINE, received=RECEIVED):
    exam = make_exam(modalities=modalities, priority=priority, claimed_by=reader)
    Exam.objects.filter(pk=exam.pk).update(
        study_received_at=received,
        first_claimed_at=received + minutes(claimed),
        preliminary_at=None if preliminary is None else received + minutes(preliminary),
        signed_at=None if signed is None else received + minutes(signed),
    )
    exam.refresh_from_db()
    return exam


@pytest.fixture
def exams(ada, ben):
    """Five CT exams of ada (signed after 10..50 min), two urgent MR exams of ben, one exam outside the range."""
    for index, signed in enumerate([10, 20, 30, 40, 50], start=1):
        make_read_exam(ada, claimed=index, signed=signed, preliminary=signed - 5 if index <= 2 else None)
    make_read_exam(ben, claimed=2, signed=60, modalities="MR", priority=Priority.URGENT)
    make_read_exam(ben, claimed=4, signed=None, modalities="MR", priority=Priority.URGENT)
    make_read_exam(ben, claimed=1, signed=5, received=RECEIVED - datetime.timedelta(days=30))


def groups_by_label(dimension_key: str) -> dict[str, turnaround.GroupFigures]:
    dimension = next(dimension for dimension in turnaround.DIMENSIONS if dimension.key == dimension_key)
    exams = turnaround.exams_in_range(datetime.date(2026, 3, 1), datetime.date(2026, 3, 31))
    return {group.label: group for group in turnaround.figures(exams, dimension)}


def test_figures_per_radiologist(exams):
    groups = groups_by_label("radiologist")

    assert set(groups) == {"ada", "ben"}
    ada = groups["ada"]
    assert ada.count == 5
    assert ada.metrics["signed"] == turnaround.MetricFigures(count=5, median=30.0, p90=46.0)
    assert ada.metrics["claimed"] == turnaround.MetricFigures(count=5, median=3.0, p90=4.6)
    assert ada.metrics["preliminary"] == turnaround.MetricFigures(count=2, median=10.0, p90=14.0)
    ben = groups["ben"]
    assert ben.count == 2
    assert ben.metrics["signed"] == turnaround.MetricFigures(count=1, median=60.0, p90=60.0)
    assert ben.metrics["claimed"] == turnaround.MetricFigures(count=2, median=3.0, p90=3.8)
    assert ben.metrics["preliminary"] == turnaround.MetricFigures(count=0, median=None, p90=None)


def test_figures_per_modality_and_priority(exams):
    modalities = groups_by_label("modality")
    priorities = groups_by_label("priority")

    assert modalities["CT"].count == 5
    assert modalities["MR"].count == 2
    assert priorities["Routine"].metrics["signed"].median == 30.0
    assert priorities["Urgent"].metrics["signed"].count == 1


def test_final_signer_counts_over_claim(ada, ben):
    exam = make_read_exam(ada, claimed=1, signed=10)
    SignedReport.objects.create(
        exam=exam, kind=SignedKind.FINAL, text="Normal.", signer=ben, signed_at=exam.signed_at, content_hash="0" * 64,
    )

    assert set(groups_by_label("radiologist")) == {"ben"}


def test_interpolated_percentile_matches_percentile_cont():
    values = [minutes(value) for value in (1, 2, 4, 8)]

    assert turnaround.interpolated_percentile(values, 0.5) == minutes(3)
    assert turnaround.interpolated_percentile(values, 0.9) == minutes(6.8)
    assert turnaround.interpolated_percentile([minutes(7)], 0.9) == minutes(7)
    assert turnaround.interpolated_percentile([], 0.5) is None


def test_page_shows_tables_and_chart(exams, lead):
    response = client_for(lead).get(reverse("turnaround:figures"), RANGE)

    assert response.status_code == 200
    page = response.content.decode()
    assert "<svg" in page
    assert "style=" not in page
    assert "46.0" in page
    assert [table["dimension"].key for table in response.context["tables"]] == ["radiologist", "modality", "priority"]
    assert [group.label for group in response.context["tables"][0]["groups"]] == ["ada", "ben"]


def test_radiologist_sees_own_figures_only(exams, ben):
    response = client_for(ben).get(reverse("turnaround:figures"), RANGE)

    groups = response.context["tables"][0]["groups"]
    assert [group.label for group in groups] == ["ben"]
    assert groups[0].count == 2


def test_invalid_range_is_rejected(lead):
    response = client_for(lead).get(reverse("turnaround:figures"), {"date_from": "2026-03-31", "date_to": "2026-03-01"})

    assert response.status_code == 400
    assert "is after the end date" in response.content.decode()


@pytest.mark.parametrize("role", ["technologist", "administrator", "clinician"])
def test_page_refused_to_non_readers(make_user, role):
    client = client_for(make_user("someone", role))

    assert client.get(reverse("turnaround:figures")).status_code == 403
    assert client.get(reverse("turnaround:csv")).status_code == 403


def read_csv(response) -> list[dict[str, str]]:
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_lists_exams_of_range(exams, lead):
    response = client_for(lead).get(reverse("turnaround:csv"), RANGE)

    assert response.status_code == 200
    assert response.streaming
    assert 'filename="turnaround-2026-03-01-2026-03-31.csv"' in response["Content-Disposition"]
    rows = read_csv(response)
    assert len(rows) == 7
    first = rows[0]
    assert first["radiologist"] == "ada"
    assert first["modalities"] == "CT"
    assert first["priority"] == "ROUTINE"
    assert first["images_received"] == "2026-03-10T08:00:00+00:00"
    assert first["minutes_to_claimed"] == "1.0"
    assert first["minutes_to_preliminary"] == "5.0"
    assert first["minutes_to_signed"] == "10.0"
    unsigned = [row for row in rows if row["signed"] == ""]
    assert len(unsigned) == 1
    assert unsigned[0]["minutes_to_signed"] == ""
    event = AuditEvent.objects.get(action=Action.TURNAROUND_EXPORTED)
    assert event.user == "lea"
    assert "from=2026-03-01; to=2026-03-31" in event.detail


def test_csv_of_radiologist_has_own_exams(exams, ada):
    rows = read_csv(client_for(ada).get(reverse("turnaround:csv"), RANGE))

    assert {row["radiologist"] for row in rows} == {"ada"}
    assert len(rows) == 5


def test_bar_chart_scales_to_largest_value():
    chart = turnaround.bar_chart("Median", [("ada", 30.0), ("ben", 60.0), ("cy", None)])

    assert [bar.label for bar in chart.bars] == ["ada", "ben"]
    assert chart.bars[1].width == chart.width - turnaround.CHART_LABEL_WIDTH - turnaround.CHART_VALUE_WIDTH
    assert chart.bars[0].width == chart.bars[1].width / 2
    assert turnaround.bar_chart("Median", [("ada", None)]) is None


def test_first_preliminary_signer_counts(ada, ben, make_user):
    carol = make_user("carol", "resident")
    dan = make_user("dan", "resident")
    exam = make_read_exam(ada, claimed=1, signed=None, preliminary=20)
    for signer, minutes_after in ((carol, 20), (dan, 35)):
        SignedReport.objects.create(
            exam=exam, kind=SignedKind.PRELIMINARY, text="Preliminary.", signer=signer, signed_at=RECEIVED + minutes(minutes_after),
            content_hash="0" * 64,
        )

    groups = groups_by_label("radiologist")

    assert set(groups) == {"carol"}
    assert groups["carol"].metrics["preliminary"] == turnaround.MetricFigures(count=1, median=20.0, p90=20.0)


def test_exam_without_claim_or_report_is_unclaimed(ada):
    make_read_exam(None, claimed=5, signed=None)

    groups = groups_by_label("radiologist")

    assert set(groups) == {"(not claimed)"}
    assert groups["(not claimed)"].count == 1


def test_minutes_between_timestamps():
    exam = make_read_exam(None, claimed=0.5, signed=None, preliminary=90.25)
    Exam.objects.filter(pk=exam.pk).update(study_received_at=RECEIVED + datetime.timedelta(microseconds=250_000))

    row = turnaround.exams_in_range(datetime.date(2026, 3, 1), datetime.date(2026, 3, 31)).values(
        "claimed_minutes", "preliminary_minutes", "signed_minutes",
    ).get()

    assert row["claimed_minutes"] == pytest.approx(0.5 - 0.25 / 60, abs=1e-6)
    assert row["preliminary_minutes"] == pytest.approx(90.25 - 0.25 / 60, abs=1e-6)
    assert row["signed_minutes"] is None


def test_utc_timestamp_drops_fraction_and_zone():
    exam = make_read_exam(None, claimed=1, signed=None)
    local = datetime.datetime(2026, 3, 10, 9, 30, 15, 987654, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    Exam.objects.filter(pk=exam.pk).update(first_claimed_at=local)

    texts = Exam.objects.filter(pk=exam.pk).annotate(
        claimed_text=turnaround.UtcTimestamp("first_claimed_at"), signed_text=turnaround.UtcTimestamp("signed_at"),
    ).values("claimed_text", "signed_text").get()

    assert texts["claimed_text"] == "2026-03-10T07:30:15+00:00"
    assert texts["signed_text"] is None


def test_figures_by_dimension_match_single_dimension(exams):
    exams_in_range = turnaround.exams_in_range(datetime.date(2026, 3, 1), datetime.date(2026, 3, 31))

    together = turnaround.figures_by_dimension(exams_in_range)

    for dimension in turnaround.DIMENSIONS:
        assert together[dimension.key] == turnaround.figures(exams_in_range, dimension)


def test_csv_streams_rows_in_chunks(ada, lead):
    from telerad.reading.turnaround_views import CSV_ROWS_PER_CHUNK

    for index in range(CSV_ROWS_PER_CHUNK + 10):
        make_read_exam(ada, claimed=1, signed=index + 2)

    response = client_for(lead).get(reverse("turnaround:csv"), RANGE)
    chunks = list(response.streaming_content)

    assert len(chunks) == 2
    rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))
    assert len(rows) == CSV_ROWS_PER_CHUNK + 10
    assert rows[-1]["minutes_to_signed"] == f"{CSV_ROWS_PER_CHUNK + 11:.1f}"
