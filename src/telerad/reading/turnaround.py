"""Turnaround figures: how long exams waited from the arrival of their images to claim, preliminary and signed report.

Durations are computed in the database as minutes. On PostgreSQL, counts,
medians and 90th percentiles of all dimensions (radiologist, modality,
priority) come from one query with GROUPING SETS and ``percentile_cont``.
SQLite has no percentile aggregate, so there one query fetches every exam's
group keys and durations, and the figures are computed from it in Python,
interpolated the same way as ``percentile_cont`` (linear between the two
nearest ranks).

An exam's radiologist is the signer of its final report, else of its first
preliminary report, else the reader who has it claimed. Both reports are
joined rather than looked up per exam: an exam has at most one final report
(the one_final_report_per_exam constraint), and its first preliminary report
is the one signed at its preliminary_at, which signing sets from it. A
reader's own figures also include the exams whose preliminary report they
signed and someone else finalised (see exams_read_by).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from typing import Any, Iterable, Iterator, TypeVar

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import NotSupportedError, connection
from django.db.models import CharField, F, FilteredRelation, FloatField, Func, IntegerField, Q, QuerySet
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

    @property
    def minutes(self) -> str:
        """The name of the annotation with this metric's duration in minutes."""
        return f"{self.key}_minutes"


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


class MinutesBetween(Func):
    """The minutes from the first timestamp to the second, as a float; NULL when either is NULL.

    Computed with the database's own date functions, because Django's
    duration arithmetic on SQLite calls a Python function for every row.
    """

    arity = 2
    output_field = FloatField()

    def as_sql(self, compiler, connection, **extra_context):
        raise NotSupportedError(f"MinutesBetween supports SQLite and PostgreSQL, not {connection.vendor}")

    def as_sqlite(self, compiler, connection, **extra_context):
        start, end = self.source_expressions
        return self._between(compiler, connection, start, end, "((julianday({end}) - julianday({start})) * 1440.0)")

    def as_postgresql(self, compiler, connection, **extra_context):
        start, end = self.source_expressions
        return self._between(compiler, connection, start, end, "(CAST(EXTRACT(EPOCH FROM ({end} - {start})) AS double precision) / 60.0)")

    @staticmethod
    def _between(compiler, connection, start, end, template: str) -> tuple[str, list[Any]]:
        start_sql, start_params = compiler.compile(start)
        end_sql, end_params = compiler.compile(end)
        return template.format(start=start_sql, end=end_sql), [*end_params, *start_params]


class UtcTimestamp(Func):
    """A timestamp as ISO 8601 text in UTC to the second (``2026-03-10T08:00:00+00:00``), formatted by the database.

    Formatting in SQL spares the CSV export the parsing of every timestamp
    into a Python datetime and back.
    """

    arity = 1
    output_field = CharField()

    def as_sql(self, compiler, connection, **extra_context):
        raise NotSupportedError(f"UtcTimestamp supports SQLite and PostgreSQL, not {connection.vendor}")

    def as_sqlite(self, compiler, connection, **extra_context):
        # Django stores SQLite timestamps as UTC text, "YYYY-MM-DD HH:MM:SS[.ffffff]".
        return super().as_sql(compiler, connection, template="strftime('%%Y-%%m-%%dT%%H:%%M:%%S+00:00', %(expressions)s)", **extra_context)

    def as_postgresql(self, compiler, connection, **extra_context):
        return super().as_sql(
            compiler, connection, template="to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"')", **extra_context,
        )


def database_has_percentiles() -> bool:
    return connection.vendor == "postgresql"


def exams_in_range(start: datetime.date, end: datetime.date) -> QuerySet[Exam]:
    """Return the exams whose images arrived from `start` to `end`, both included, with their radiologist and durations in minutes."""
    tz = timezone.get_current_timezone()
    since = datetime.datetime.combine(start, datetime.time.min, tzinfo=tz)
    until = datetime.datetime.combine(end + datetime.timedelta(days=1), datetime.time.min, tzinfo=tz)
    durations = {metric.minutes: MinutesBetween("study_received_at", metric.field) for metric in METRICS}
    return (
        Exam.objects.filter(study_received_at__gte=since, study_received_at__lt=until)
        .annotate(
            final_report=FilteredRelation("signed_reports", condition=Q(signed_reports__kind=SignedKind.FINAL)),
            first_preliminary=FilteredRelation(
                "signed_reports", condition=Q(signed_reports__kind=SignedKind.PRELIMINARY, signed_reports__signed_at=F("preliminary_at")),
            ),
        )
        .annotate(
            radiologist_id=Coalesce("final_report__signer_id", "first_preliminary__signer_id", "claimed_by_id", output_field=IntegerField()),
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


Duration = TypeVar("Duration", float, datetime.timedelta)


def interpolated_percentile(ordered: list[Duration], fraction: float) -> Duration | None:
    """Return the percentile of sorted durations by linear interpolation between the nearest ranks, as ``percentile_cont`` does."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * fraction
    lower = math.floor(position)
    upper = math.ceil(position)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def _rounded(minutes: float | None) -> float | None:
    return None if minutes is None else round(minutes, 1)


def _grouped_in_postgresql(exams: QuerySet[Exam]) -> dict[str, list[dict[str, Any]]]:
    """Return, per dimension key, one row per group: its key, exam count, and per metric the count, median and 90th percentile in minutes.

    One query with GROUPING SETS reads and joins the exams once for all
    three dimensions, which a grouped query per dimension would do three
    times. Django has no GROUPING SETS, so the query wraps the SQL of the
    exams' queryset.
    """
    quote = connection.ops.quote_name
    columns = [dimension.field for dimension in DIMENSIONS] + [metric.minutes for metric in METRICS]
    exams_sql, params = exams.order_by().values_list(*columns).query.sql_with_params()
    keys = [quote(dimension.field) for dimension in DIMENSIONS]
    selected = [*keys, *(f"GROUPING({key})" for key in keys), "count(*)"]
    for metric in METRICS:
        minutes = quote(metric.minutes)
        selected.append(f"count({minutes})")
        selected.extend(f"percentile_cont({fraction}) WITHIN GROUP (ORDER BY {minutes})" for fraction in (MEDIAN, NINETIETH))
    sets = ", ".join(f"({key})" for key in keys)
    sql = f"SELECT {', '.join(selected)} FROM ({exams_sql}) AS exams GROUP BY GROUPING SETS ({sets})"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()

    result: dict[str, list[dict[str, Any]]] = {dimension.key: [] for dimension in DIMENSIONS}
    width = len(DIMENSIONS)
    for row in rows:
        # GROUPING(key) is 0 for the key that this row's set groups by.
        position = list(row[width:2 * width]).index(0)
        dimension = DIMENSIONS[position]
        figures: dict[str, Any] = {dimension.field: row[position], "exam_count": row[2 * width]}
        values = row[2 * width + 1:]
        for index, metric in enumerate(METRICS):
            count, median, p90 = values[3 * index:3 * index + 3]
            figures.update({f"{metric.key}_count": count, f"{metric.key}_median": median, f"{metric.key}_p90": p90})
        result[dimension.key].append(figures)
    return result


def _grouped_in_python(exams: QuerySet[Exam]) -> dict[str, list[dict[str, Any]]]:
    """Return the rows of _grouped_in_postgresql, from one query of the exams' keys and durations."""
    columns = [dimension.field for dimension in DIMENSIONS] + [metric.minutes for metric in METRICS]
    sql, params = exams.order_by().values_list(*columns).query.sql_with_params()
    # Exams are first gathered per combination of all group keys, so that each
    # row costs one dictionary lookup; the dimensions then merge those lists.
    # The cursor is read directly because Django's per-value conversion of the
    # float columns would cost as much as the grouping.
    combined: dict[tuple[Any, ...], list[list[float]]] = {}
    counts: dict[tuple[Any, ...], int] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(CSV_CHUNK_SIZE):
            for row in rows:
                keys = row[:len(DIMENSIONS)]
                lists = combined.get(keys)
                if lists is None:
                    lists = combined[keys] = [[] for _metric in METRICS]
                    counts[keys] = 0
                counts[keys] += 1
                for values, value in zip(lists, row[len(DIMENSIONS):]):
                    if value is not None:
                        values.append(value)

    result = {}
    for position, dimension in enumerate(DIMENSIONS):
        merged: dict[Any, list[list[float]]] = {}
        exam_counts: dict[Any, int] = {}
        for keys, lists in combined.items():
            key = keys[position]
            target = merged.setdefault(key, [[] for _metric in METRICS])
            for values, more in zip(target, lists):
                values.extend(more)
            exam_counts[key] = exam_counts.get(key, 0) + counts[keys]
        rows = []
        for key, lists in merged.items():
            row: dict[str, Any] = {dimension.field: key, "exam_count": exam_counts[key]}
            for metric, values in zip(METRICS, lists):
                values.sort()
                row[f"{metric.key}_count"] = len(values)
                row[f"{metric.key}_median"] = interpolated_percentile(values, MEDIAN)
                row[f"{metric.key}_p90"] = interpolated_percentile(values, NINETIETH)
            rows.append(row)
        result[dimension.key] = rows
    return result


def grouped_rows(exams: QuerySet[Exam]) -> dict[str, list[dict[str, Any]]]:
    """Return, per dimension key, one row per group: its key, exam count, and per metric the count, median and 90th percentile in minutes."""
    if database_has_percentiles():
        return _grouped_in_postgresql(exams)
    return _grouped_in_python(exams)


def _labels(dimension: Dimension, keys: Iterable[Any]) -> dict[Any, str]:
    if dimension.key == "radiologist":
        names = dict(get_user_model().objects.filter(pk__in=[key for key in keys if key is not None]).values_list("pk", "username"))
        return {key: names.get(key, str(_("(not claimed)"))) if key is not None else str(_("(not claimed)")) for key in keys}
    if dimension.key == "priority":
        return {key: str(Priority(key).label) for key in keys}
    return {key: ", ".join(part for part in key.split("\\") if part) or str(_("(none)")) for key in keys}


def _figures_of_rows(rows: list[dict[str, Any]], dimension: Dimension) -> list[GroupFigures]:
    labels = _labels(dimension, [row[dimension.field] for row in rows])
    result = [
        GroupFigures(
            key=row[dimension.field], label=labels[row[dimension.field]], count=row["exam_count"],
            metrics={
                metric.key: MetricFigures(row[f"{metric.key}_count"], _rounded(row[f"{metric.key}_median"]), _rounded(row[f"{metric.key}_p90"]))
                for metric in METRICS
            },
        )
        for row in rows
    ]
    result.sort(key=lambda group: group.label.casefold() if dimension.key != "priority" else group.key)
    return result


def figures(exams: QuerySet[Exam], dimension: Dimension) -> list[GroupFigures]:
    return figures_by_dimension(exams)[dimension.key]


def figures_by_dimension(exams: QuerySet[Exam]) -> dict[str, list[GroupFigures]]:
    """Return the figures of every dimension, by dimension key, from one query."""
    rows = grouped_rows(exams)
    return {dimension.key: _figures_of_rows(rows[dimension.key], dimension) for dimension in DIMENSIONS}


CSV_HEADER = (
    "exam_id", "accession_number", "modalities", "priority", "radiologist", "images_received", "first_claimed",
    "preliminary", "signed", "minutes_to_claimed", "minutes_to_preliminary", "minutes_to_signed",
)
CSV_CHUNK_SIZE = 2000
TIMESTAMP_FIELDS = ("study_received_at", "first_claimed_at", "preliminary_at", "signed_at")


def _minutes_text(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def csv_rows(exams: QuerySet[Exam]) -> Iterator[tuple[str, ...]]:
    """Yield the header, then one row per exam, oldest first, read from the database in chunks.

    Timestamps are in UTC to the second, as the database formats them.
    """
    usernames = dict(get_user_model().objects.values_list("pk", "username"))
    priority_names = {priority.value: priority.name for priority in Priority}
    yield CSV_HEADER
    exams = exams.annotate(**{f"{field}_text": UtcTimestamp(field) for field in TIMESTAMP_FIELDS})
    columns = (
        "pk", "accession_number", "modalities", "priority", "radiologist_id",
        *(f"{field}_text" for field in TIMESTAMP_FIELDS), *(metric.minutes for metric in METRICS),
    )
    for row in exams.order_by("study_received_at", "pk").values_list(*columns).iterator(chunk_size=CSV_CHUNK_SIZE):
        pk, accession, modalities, priority, radiologist, *timestamps = row[:5 + len(TIMESTAMP_FIELDS)]
        minutes = row[5 + len(TIMESTAMP_FIELDS):]
        yield (
            str(pk), accession, modalities, priority_names[priority], usernames.get(radiologist, ""),
            *(timestamp or "" for timestamp in timestamps), *(_minutes_text(value) for value in minutes),
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
