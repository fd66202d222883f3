"""Turnaround figures: how long exams waited from the arrival of their images to claim, preliminary and signed report.

Counts are computed in the database with one grouped query per dimension
(radiologist, modality, priority). Medians and 90th percentiles use
PostgreSQL's ``percentile_cont`` in the same query. SQLite has no
percentile aggregate, so there each group's durations are fetched sorted and
interpolated in Python the same way as ``percentile_cont`` (linear between
the two nearest ranks).

An exam's radiologist is the signer of its final report, else of its
preliminary report, else the reader who holds its claim. A reader's own
figures also include the exams whose preliminary report they signed and
someone else finalised (see exams_read_by).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from typing import Any, Iterable, Iterator

from django.contrib.auth import get_user_model
from django.db import connection
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Aggregate, Count, DurationField, F, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from telerad.reading.models import Exam, Priority, SignedKind, SignedReport

MEDIAN = 0.5
NINETIETH = 0.9


@dataclasses.dataclass(frozen=True)
class Metric:
    key: str
    field: str
    label: Any


METRICS = (
    Metric("claimed", "first_claimed_at", _("Received → claimed")),
    Metric("preliminary", "preliminary_at", _("Received → preliminary")),
    Metric("signed", "signed_at", _("Received → signed")),
)


@dataclasses.dataclass(frozen=True)
class Dimension:
    key: str
    # The annotation or field the exams are grouped by.
    field: str
    label: Any


DIMENSIONS = (
    Dimension("radiologist", "radiologist_id", _("Per radiologist")),
    Dimension("modality", "modalities", _("Per modality")),
    Dimension("priority", "priority", _("Per priority")),
)


@dataclasses.dataclass(frozen=True)
class MetricFigures:
    """Figures of one metric in one group; durations in minutes, None when no exam has reached that step."""

    count: int
    median: float | None
    p90: float | None


@dataclasses.dataclass(frozen=True)
class GroupFigures:
    key: Any
    label: str
    count: int
    metrics: dict[str, MetricFigures]


class PercentileCont(Aggregate):
    """PostgreSQL's ordered-set aggregate ``percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)``."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = DurationField()

    def __init__(self, expression, fraction: float, **extra):
        if not 0 <= fraction <= 1:
            raise ValueError(f"percentile fraction {fraction} is outside 0..1")
        super().__init__(expression, fraction=float(fraction), **extra)


def database_has_percentiles() -> bool:
    return connection.vendor == "postgresql"


def _signer(kind: str) -> Subquery:
    first = SignedReport.objects.filter(exam=OuterRef("pk"), kind=kind).order_by("signed_at", "id").values("signer_id")[:1]
    return Subquery(first)


def exams_in_range(start: datetime.date, end: datetime.date) -> QuerySet[Exam]:
    """Return the exams whose images arrived from `start` to `end`, both included, with their radiologist and durations."""
    tz = timezone.get_current_timezone()
    since = datetime.datetime.combine(start, datetime.time.min, tzinfo=tz)
    until = datetime.datetime.combine(end + datetime.timedelta(days=1), datetime.time.min, tzinfo=tz)
    durations = {f"{metric.key}_duration": F(metric.field) - F("study_received_at") for metric in METRICS}
    return (
        Exam.objects.filter(study_received_at__gte=since, study_received_at__lt=until)
        .annotate(
            radiologist_id=Coalesce(_signer(SignedKind.FINAL), _signer(SignedKind.PRELIMINARY), F("claimed_by_id"), output_field=IntegerField()),
            **durations,
        )
    )


def exams_read_by(exams: QuerySet[Exam], user: AbstractBaseUser) -> QuerySet[Exam]:
    """Keep the exams of `exams_in_range` that count for `user`, and those whose preliminary report `user` signed.

    A resident's preliminary reports count for the radiologist who signs the
    final report, so without the second condition a resident would see none
    of the exams they reported once the final report is signed.
    """
    preliminary = SignedReport.objects.filter(signer=user, kind=SignedKind.PRELIMINARY).values("exam_id")
    return exams.filter(Q(radiologist_id=user.pk) | Q(pk__in=preliminary))


def interpolated_percentile(ordered: list[datetime.timedelta], fraction: float) -> datetime.timedelta | None:
    """Return the percentile of sorted durations by linear interpolation between the nearest ranks, as ``percentile_cont`` does."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * fraction
    lower = math.floor(position)
    upper = math.ceil(position)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def _minutes(value: datetime.timedelta | None) -> float | None:
    return None if value is None else round(value.total_seconds() / 60, 1)


def _group_filter(dimension: Dimension, key: Any) -> dict[str, Any]:
    return {f"{dimension.field}__isnull": True} if key is None else {dimension.field: key}


def _sorted_durations(exams: QuerySet[Exam], dimension: Dimension, key: Any, metric: Metric) -> list[datetime.timedelta]:
    column = f"{metric.key}_duration"
    rows = exams.filter(**_group_filter(dimension, key), **{f"{metric.field}__isnull": False}).order_by(column)
    return list(rows.values_list(column, flat=True))


def group_figures(exams: QuerySet[Exam], dimension: Dimension) -> list[dict[str, Any]]:
    """Return one row per group: its key, exam count, and per metric the count, median and 90th percentile (timedelta)."""
    aggregates: dict[str, Any] = {"exam_count": Count("pk")}
    with_percentiles = database_has_percentiles()
    for metric in METRICS:
        aggregates[f"{metric.key}_count"] = Count(metric.field)
        if with_percentiles:
            aggregates[f"{metric.key}_median"] = PercentileCont(F(f"{metric.key}_duration"), MEDIAN)
            aggregates[f"{metric.key}_p90"] = PercentileCont(F(f"{metric.key}_duration"), NINETIETH)
    rows = list(exams.order_by().values(dimension.field).annotate(**aggregates).order_by(dimension.field))
    if not with_percentiles:
        # NOTE: one query per group and metric, each returning only that group's sorted durations.
        for row in rows:
            for metric in METRICS:
                ordered = _sorted_durations(exams, dimension, row[dimension.field], metric) if row[f"{metric.key}_count"] else []
                row[f"{metric.key}_median"] = interpolated_percentile(ordered, MEDIAN)
                row[f"{metric.key}_p90"] = interpolated_percentile(ordered, NINETIETH)
    return rows


def _labels(dimension: Dimension, keys: Iterable[Any]) -> dict[Any, str]:
    if dimension.key == "radiologist":
        names = dict(get_user_model().objects.filter(pk__in=[key for key in keys if key is not None]).values_list("pk", "username"))
        return {key: names.get(key, str(_("(not claimed)"))) if key is not None else str(_("(not claimed)")) for key in keys}
    if dimension.key == "priority":
        return {key: str(Priority(key).label) for key in keys}
    return {key: ", ".join(part for part in key.split("\\") if part) or str(_("(none)")) for key in keys}


def figures(exams: QuerySet[Exam], dimension: Dimension) -> list[GroupFigures]:
    rows = group_figures(exams, dimension)
    labels = _labels(dimension, [row[dimension.field] for row in rows])
    result = [
        GroupFigures(
            key=row[dimension.field], label=labels[row[dimension.field]], count=row["exam_count"],
            metrics={
                metric.key: MetricFigures(row[f"{metric.key}_count"], _minutes(row[f"{metric.key}_median"]), _minutes(row[f"{metric.key}_p90"]))
                for metric in METRICS
            },
        )
        for row in rows
    ]
    result.sort(key=lambda group: group.label.casefold() if dimension.key != "priority" else group.key)
    return result


CSV_HEADER = (
    "exam_id", "accession_number", "modalities", "priority", "radiologist", "images_received", "first_claimed",
    "preliminary", "signed", "minutes_to_claimed", "minutes_to_preliminary", "minutes_to_signed",
)
CSV_CHUNK_SIZE = 2000


def _timestamp(value: datetime.datetime | None) -> str:
    return "" if value is None else value.isoformat()


def _duration_minutes(value: datetime.timedelta | None) -> str:
    return "" if value is None else f"{value.total_seconds() / 60:.1f}"


def csv_rows(exams: QuerySet[Exam]) -> Iterator[tuple[str, ...]]:
    """Yield the header, then one row per exam, oldest first, read from the database in chunks."""
    usernames = dict(get_user_model().objects.values_list("pk", "username"))
    yield CSV_HEADER
    columns = (
        "pk", "accession_number", "modalities", "priority", "radiologist_id", "study_received_at", "first_claimed_at",
        "preliminary_at", "signed_at", "claimed_duration", "preliminary_duration", "signed_duration",
    )
    for row in exams.order_by("study_received_at", "pk").values_list(*columns).iterator(chunk_size=CSV_CHUNK_SIZE):
        pk, accession, modalities, priority, radiologist, received, claimed, preliminary, signed, *durations = row
        yield (
            str(pk), accession, modalities, Priority(priority).name, usernames.get(radiologist, ""),
            _timestamp(received), _timestamp(claimed), _timestamp(preliminary), _timestamp(signed),
            *(_duration_minutes(duration) for duration in durations),
        )


@dataclasses.dataclass(frozen=True)
class Bar:
    label: str
    value: float
    # Coordinates in the chart's viewBox units.
    y: float
    width: float
    label_y: float


@dataclasses.dataclass(frozen=True)
class BarChart:
    title: str
    bars: list[Bar]
    width: int
    height: int
    plot_x: int
    maximum: float


CHART_WIDTH = 640
CHART_LABEL_WIDTH = 160
CHART_VALUE_WIDTH = 70
CHART_BAR_HEIGHT = 18
CHART_BAR_GAP = 8


def bar_chart(title: str, values: list[tuple[str, float | None]]) -> BarChart | None:
    """Lay out a horizontal bar chart of the values that exist; None when none does."""
    present = [(label, value) for label, value in values if value is not None]
    if not present:
        return None
    maximum = max(value for _label, value in present) or 1.0
    plot_width = CHART_WIDTH - CHART_LABEL_WIDTH - CHART_VALUE_WIDTH
    bars = []
    for index, (label, value) in enumerate(present):
        y = CHART_BAR_GAP + index * (CHART_BAR_HEIGHT + CHART_BAR_GAP)
        bars.append(Bar(label=label, value=value, y=y, width=round(plot_width * value / maximum, 1), label_y=y + CHART_BAR_HEIGHT * 0.75))
    height = CHART_BAR_GAP + len(bars) * (CHART_BAR_HEIGHT + CHART_BAR_GAP)
    return BarChart(title=title, bars=bars, width=CHART_WIDTH, height=height, plot_x=CHART_LABEL_WIDTH, maximum=maximum)
