"""Attribute matching over the archive index, shared by C-FIND and QIDO-RS.

A query names a level (PATIENT, STUDY, SERIES, IMAGE) and maps DICOM keywords
to query values written as they arrive in a C-FIND identifier or a QIDO-RS
parameter. :func:`compile_query` checks it against the matching rules of
PS3.4 C.2.2.2 and returns a :class:`CompiledQuery`, whose queryset contains the
matching rows of the level and whose :meth:`~CompiledQuery.rows` yields them
as dicts keyed by keyword.

The index contains the attributes of :data:`~telerad.archive.record.INDEXED_ATTRIBUTES`
and the computed ones of :data:`QUERY_ONLY_ATTRIBUTES`. Any other requested key
is listed in :attr:`CompiledQuery.empty_keys`, for the caller to return with
zero length, which PS3.4 allows for optional keys.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime
import enum
import re
from typing import Any, Callable, Iterator, Mapping

from django.db.models import BooleanField, Count, F, Func, IntegerField, Lookup, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.expressions import OrderBy
from django.db.models.functions import Coalesce
from pydicom.datadict import dictionary_VR, tag_for_keyword

from telerad.archive.models import Instance, Patient, Series, Study
from telerad.archive.names import fold
from telerad.archive.record import INDEXED_ATTRIBUTES, TIME_PATTERN, UID_PATTERN, snake_case


# A date written as 2024-01-31. DICOM dates have no dashes, so the error names the
# DICOM form rather than reading the value as a range.
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class Level(enum.StrEnum):
    """Query/Retrieve Level (0008,0052) values."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


class Root(enum.StrEnum):
    """The Query/Retrieve information models (PS3.4 C.6.1 and C.6.2)."""

    PATIENT = "Patient Root"
    STUDY = "Study Root"


# The index tables, top down, as INDEXED_ATTRIBUTES names them. A child's
# foreign key to its parent carries the parent table's name.
TABLES = ("patient", "study", "series", "instance")
PARENT_TABLES = {"study": "patient", "series": "study", "instance": "series"}
MODELS: dict[str, Any] = {"patient": Patient, "study": Study, "series": Series, "instance": Instance}
LEVEL_TABLES = {Level.PATIENT: "patient", Level.STUDY: "study", Level.SERIES: "series", Level.IMAGE: "instance"}
UNIQUE_KEYS = {"patient": "PatientID", "study": "StudyInstanceUID", "series": "SeriesInstanceUID", "instance": "SOPInstanceUID"}
# In the Study Root model the study level contains the patient attributes.
ROOT_LEVELS = {
    Root.PATIENT: (Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE),
    Root.STUDY: (Level.STUDY, Level.SERIES, Level.IMAGE),
}

# Keys the index does not store as received but computes: study and series
# counters kept up to date on every stored instance, and patient totals
# aggregated over the patient's studies at query time.
QUERY_ONLY_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "patient": ("NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries", "NumberOfPatientRelatedInstances"),
    "study": ("ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"),
    "series": ("NumberOfSeriesRelatedInstances",),
}
PATIENT_AGGREGATES: dict[str, Callable[[], Any]] = {
    "NumberOfPatientRelatedStudies": lambda: Count("pk"),
    "NumberOfPatientRelatedSeries": lambda: Sum("number_of_study_related_series"),
    "NumberOfPatientRelatedInstances": lambda: Sum("number_of_study_related_instances"),
}
# Date and time keys that combined datetime matching reads as one DT value.
DATE_TIME_PAIRS = (("StudyDate", "StudyTime"), ("SeriesDate", "SeriesTime"))

# VRs whose values may hold a backslash as text rather than as a value delimiter (PS3.5 6.2).
SINGLE_VALUED_VRS = frozenset({"LT", "ST", "UT", "UR"})
# PS3.5 6.2: a PN value has at most five components, so at most four "^".
MAX_TRAILING_CARETS = 4
# Separators after which a word of a fuzzy name search may start, besides the
# start of the name: the component and group delimiters, a space and a hyphen.
NAME_WORD_SEPARATORS = ("^", "=", " ", "-")
INTEGER_PATTERN = re.compile(r"^[+-]?[0-9]{1,12}$")
# PS3.5 6.2: IS is a signed 32-bit integer, US an unsigned 16-bit one.
INTEGER_LIMITS = {"IS": (-(2**31), 2**31 - 1), "US": (0, 2**16 - 1)}
DATE_PATTERN = re.compile(r"^[0-9]{4}([0-9]{2}([0-9]{2})?)?$")
# The latest time a partial TM value stands for, read from the value's length on.
LATEST_TIME = "995959.999999"
# NOTE: a guessed bound that keeps one UID list within SQLite's default limit
# of 32766 bound parameters per statement, with room for the other keys.
MAX_LIST_OF_UIDS = 10_000
ROWS_PER_FETCH = 500

ORDERING: dict[str, tuple[str | OrderBy, ...]] = {
    "patient": ("pk",),
    # Newest first, served by the index study_newest_first.
    "study": ("-study_date", "-study_time", "-pk"),
    "series": (F("series_number").asc(nulls_last=True), "pk"),
    "instance": (F("instance_number").asc(nulls_last=True), "pk"),
}


class InvalidQuery(ValueError):
    """A query breaks a matching rule; the message names the keyword and the rule, never the value."""

    def __init__(self, keyword: str, rule: str):
        super().__init__(f"{keyword}: {rule}")
        self.keyword = keyword
        self.rule = rule

    @property
    def tag(self) -> int | None:
        return tag_for_keyword(self.keyword)


@dataclasses.dataclass(frozen=True)
class QueryKey:
    """A key the index can match and return: its keyword, VR, table and column."""

    keyword: str
    vr: str
    table: str
    # A column of the table's model, or the name of a computed patient total.
    column: str

    @property
    def is_patient_aggregate(self) -> bool:
        return self.keyword in PATIENT_AGGREGATES


def _query_keys() -> dict[str, QueryKey]:
    keys = {}
    for table in TABLES:
        for keyword in INDEXED_ATTRIBUTES[table] + QUERY_ONLY_ATTRIBUTES.get(table, ()):
            keys[keyword] = QueryKey(keyword, dictionary_VR(keyword), table, snake_case(keyword))
    return keys


QUERY_KEYS: dict[str, QueryKey] = _query_keys()


@dataclasses.dataclass(frozen=True)
class MatchingOptions:
    # Relational queries need no unique keys of the levels above and match keys of the levels below.
    relational: bool = False
    fuzzy_names: bool = False
    combined_datetime: bool = False


@dataclasses.dataclass(frozen=True)
class CompiledQuery:
    """The matching rows of one query, and which requested keys the index returns."""

    level: Level
    # Rows of the level's model, filtered and in a stable order.
    queryset: QuerySet[Any]
    # The values() path of each requested key the index holds, in request order.
    return_paths: dict[str, str]
    # Requested keys the index cannot return: the caller returns them with zero length.
    empty_keys: tuple[str, ...]
    # Keys that came with a value which was not used for matching.
    unmatched_keys: tuple[str, ...]

    def rows(self, *, limit: int | None = None, offset: int = 0) -> Iterator[dict[str, object]]:
        """Yield each matching row as {keyword: value}, with text as str and IS or US values as int or None."""
        keywords = list(self.return_paths)
        for values in self.value_rows(limit=limit, offset=offset):
            yield dict(zip(keywords, values))

    def value_rows(self, *, limit: int | None = None, offset: int = 0) -> Iterator[tuple[Any, ...]]:
        """Yield each matching row as a tuple of the values of :attr:`return_paths`, in their order."""
        if offset < 0 or (limit is not None and limit < 0):
            raise ValueError("limit and offset must not be negative")

        queryset = self.queryset
        if limit is not None or offset:
            queryset = queryset[offset : None if limit is None else offset + limit]
        rows = queryset.values_list(*self.return_paths.values()) if self.return_paths else queryset.values_list("pk")
        if limit is not None:
            # A page of bounded size is read in one go, because a chunked read
            # uses a server-side cursor on PostgreSQL, which costs extra round trips.
            yield from (tuple(values) if self.return_paths else () for values in rows)
            return
        # Most unbounded queries (C-FIND) match fewer rows than one fetch, so
        # they are read in one go too. Only a longer result is read again in
        # chunks, from the start, so that it comes from one consistent query.
        first = list(rows[: ROWS_PER_FETCH + 1])
        if len(first) <= ROWS_PER_FETCH:
            yield from (values if self.return_paths else () for values in first)
            return
        for values in rows.iterator(chunk_size=ROWS_PER_FETCH):
            yield values if self.return_paths else ()


def compile_query(
    level: str,
    identifier: Mapping[str, object],
    *,
    root: Root = Root.STUDY,
    relational: bool = False,
    fuzzy_names: bool = False,
    combined_datetime: bool = False,
    study_scope: QuerySet[Study] | None = None,
) -> CompiledQuery:
    """Validate a query and build its queryset; raise InvalidQuery naming the first key that breaks a rule.

    `identifier` maps DICOM keywords to query values as text: an empty value
    requests the key without matching on it. Values that are not text, such
    as sequences, are not matched and their keys are returned empty.
    `study_scope`, a subquery of study primary keys, limits the matches to
    those studies and what they contain, and the patient totals to them.
    """
    query_level = _check_level(level, root)
    table = LEVEL_TABLES[query_level]
    options = MatchingOptions(relational=relational, fuzzy_names=fuzzy_names, combined_datetime=combined_datetime)
    values = {keyword: _normalised(value) for keyword, value in identifier.items()}
    if not relational:
        _check_unique_keys(query_level, root, values)

    plan = _plan_keys(values, table, relational)
    queryset = _annotate_patient_aggregates(MODELS[table].objects.all(), table, plan.aggregates, study_scope)
    if study_scope is not None:
        queryset = queryset.filter(_scope_condition(table, study_scope))
    queryset = queryset.filter(_conditions(plan.upper, table, options))
    if plan.lower:
        queryset = queryset.filter(_lower_level_condition(plan.lower, table, options))
    return CompiledQuery(
        level=query_level,
        queryset=queryset.order_by(*ORDERING[table]),
        return_paths=plan.return_paths,
        empty_keys=tuple(plan.empty),
        unmatched_keys=tuple(plan.unmatched),
    )


def _check_level(level: str, root: Root) -> Level:
    try:
        query_level = Level(level.strip())
    except ValueError:
        raise InvalidQuery("QueryRetrieveLevel", "invalid; use PATIENT, STUDY, SERIES or IMAGE") from None
    if query_level not in ROOT_LEVELS[root]:
        raise InvalidQuery("QueryRetrieveLevel", f"invalid; {root} has no {query_level} level")
    return query_level


def _normalised(value: object) -> str | None:
    """Return a text query value without padding, or None for a value that is not text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip(" \x00")
    # A sequence with items, or another value that is not text, cannot be
    # matched here; an empty one only requests its key.
    return None if value else ""


def _check_unique_keys(level: Level, root: Root, values: Mapping[str, str | None]) -> None:
    # PS3.4 C.4.1: a hierarchical query gives the unique key of each level
    # above the query level with a single value. telerad also accepts a list
    # of UIDs there, which narrows the search the same way.
    levels = ROOT_LEVELS[root]
    for above in levels[: levels.index(level)]:
        keyword = UNIQUE_KEYS[LEVEL_TABLES[above]]
        value = values.get(keyword)
        if not value or _has_wildcard(value):
            raise InvalidQuery(keyword, f"required with one value in {level} queries")


@dataclasses.dataclass
class _KeyPlan:
    # Keys with a value to match, by keyword: at the query level or above, and below it.
    upper: dict[str, str] = dataclasses.field(default_factory=dict)
    lower: dict[str, str] = dataclasses.field(default_factory=dict)
    return_paths: dict[str, str] = dataclasses.field(default_factory=dict)
    aggregates: list[QueryKey] = dataclasses.field(default_factory=list)
    empty: list[str] = dataclasses.field(default_factory=list)
    unmatched: list[str] = dataclasses.field(default_factory=list)


def _plan_keys(values: Mapping[str, str | None], table: str, relational: bool) -> _KeyPlan:
    """Sort the requested keys into those to match, to return, and to return empty."""
    plan = _KeyPlan()
    for keyword, value in values.items():
        key = QUERY_KEYS.get(keyword)
        matching = value is not None and not _is_universal(value)
        if key is None or value is None:
            _require_keyword(keyword)
            plan.empty.append(keyword)
            if value is None or matching:
                plan.unmatched.append(keyword)
            continue

        if _is_below(key.table, table):
            # A lower level has many rows per result, so its keys have no single value to return.
            plan.empty.append(keyword)
            if matching and relational:
                plan.lower[keyword] = value
            elif matching:
                plan.unmatched.append(keyword)
            continue

        if key.is_patient_aggregate:
            plan.aggregates.append(key)
        plan.return_paths[keyword] = _key_path(key, table)
        if matching:
            plan.upper[keyword] = value
    return plan


def _require_keyword(keyword: str) -> None:
    if tag_for_keyword(keyword) is None:
        raise InvalidQuery(keyword, "unknown keyword; use a DICOM keyword")


def _is_universal(value: str) -> bool:
    # PS3.4 C.2.2.2.3: an empty value matches every entity. A value of only
    # "*" does the same (C.2.2.2.4), and telerad reads it so for every VR.
    return not value.strip("*")


def _has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


def _is_below(table: str, level_table: str) -> bool:
    return TABLES.index(table) > TABLES.index(level_table)


def _relation_path(table: str, ancestor: str) -> str:
    """Return the ORM path from rows of `table` to their `ancestor` row, empty for the table itself."""
    steps = []
    while table != ancestor:
        table = PARENT_TABLES[table]
        steps.append(table)
    return "__".join(steps)


def _joined(path: str, name: str) -> str:
    return f"{path}__{name}" if path else name


def _key_path(key: QueryKey, table: str) -> str:
    # Patient totals are annotations on the queried model itself.
    if key.is_patient_aggregate:
        return key.column
    return _joined(_relation_path(table, key.table), key.column)


def _scope_condition(table: str, study_scope: QuerySet[Study]) -> Q:
    """Keep rows of `table` that belong to a study of the scope; patients with at least one such study."""
    if table == "patient":
        return Q(pk__in=Study.objects.filter(pk__in=study_scope).values("patient"))
    study = _relation_path(table, "study")
    return Q(**{_joined(study, "in") if study else "pk__in": study_scope})


def _annotate_patient_aggregates(
    queryset: QuerySet[Any], table: str, keys: list[QueryKey], study_scope: QuerySet[Study] | None = None,
) -> QuerySet[Any]:
    patient = _relation_path(table, "patient") or "pk"
    for key in keys:
        studies = Study.objects.filter(patient=OuterRef(patient))
        if study_scope is not None:
            studies = studies.filter(pk__in=study_scope)
        studies = studies.order_by().values("patient")
        total = studies.annotate(total=PATIENT_AGGREGATES[key.keyword]()).values("total")
        queryset = queryset.annotate(**{key.column: Coalesce(Subquery(total, output_field=IntegerField()), 0)})
    return queryset


def _lower_level_condition(values: Mapping[str, str], table: str, options: MatchingOptions) -> Q:
    """Match keys of lower levels (relational queries): rows with at least one descendant that matches them all."""
    lowest = max((QUERY_KEYS[keyword].table for keyword in values), key=TABLES.index)
    descendants = MODELS[lowest].objects.filter(_conditions(values, lowest, options))
    return Q(pk__in=descendants.values(_relation_path(lowest, table)))


def _conditions(values: Mapping[str, str], table: str, options: MatchingOptions) -> Q:
    """Combine the conditions of `values`, with paths that start at rows of `table`."""
    remaining = dict(values)
    condition = _ancestor_conditions(remaining, table, options)
    if options.combined_datetime:
        for date_keyword, time_keyword in DATE_TIME_PAIRS:
            if date_keyword in remaining and time_keyword in remaining:
                date_path = _key_path(QUERY_KEYS[date_keyword], table)
                time_path = _key_path(QUERY_KEYS[time_keyword], table)
                date_range = _date_range(date_keyword, remaining.pop(date_keyword))
                time_range = _time_range(time_keyword, remaining.pop(time_keyword))
                condition &= _combined_date_time_condition(date_path, time_path, date_range, time_range)
    for keyword, value in remaining.items():
        condition &= _key_condition(QUERY_KEYS[keyword], table, value, options)
    return condition


def _ancestor_conditions(remaining: dict[str, str], table: str, options: MatchingOptions) -> Q:
    """Move the keys of tables above `table` out of `remaining` into one subquery per table.

    A subquery lets the database find the few matching parents first, by
    their own indexes, instead of testing the parent of every row it scans
    in result order. So "PatientName=DOE*" over all studies reads the
    patient table once rather than once per study.
    """
    by_table: dict[str, dict[str, str]] = {}
    for keyword in list(remaining):
        key = QUERY_KEYS[keyword]
        if key.is_patient_aggregate or key.table == table or _is_below(key.table, table):
            continue
        by_table.setdefault(key.table, {})[keyword] = remaining.pop(keyword)

    condition = Q()
    for ancestor, ancestor_values in by_table.items():
        parents = MODELS[ancestor].objects.filter(_conditions(ancestor_values, ancestor, options)).values("pk")
        condition &= Q(**{f"{_relation_path(table, ancestor)}__in": parents})
    return condition


def _key_condition(key: QueryKey, table: str, value: str, options: MatchingOptions) -> Q:
    path = _key_path(key, table)
    if key.keyword == "ModalitiesInStudy":
        return _modalities_in_study_condition(table, value)
    if key.vr == "UI":
        return Q(**{f"{path}__in": _list_of_uids(key.keyword, value)})
    if key.vr == "DA":
        return _range_condition(path, _date_range(key.keyword, value))
    if key.vr == "TM":
        return _range_condition(path, _time_range(key.keyword, value))
    if key.vr in {"IS", "US"}:
        return Q(**{path: _integer(key.keyword, key.vr, value)})
    if key.vr == "PN":
        # Only the patient table has the index of names with groups.
        indexed = key.keyword == "PatientName" and table == "patient"
        return _person_name_condition(f"{path}_folded", value, fuzzy=options.fuzzy_names, groups_indexed=indexed)
    return _text_condition(path, value, key.vr)


def _modalities_in_study_condition(table: str, value: str) -> Q:
    # ModalitiesInStudy matches a study with any series of one of the given modalities.
    series = Series.objects.filter(_text_condition("modality", value, "CS")).values("study")
    study = _relation_path(table, "study")
    return Q(**{_joined(study, "in") if study else "pk__in": series})


def _text_condition(path: str, value: str, vr: str) -> Q:
    """Single value matching (PS3.4 C.2.2.2.1), case-sensitive, or wild card matching (C.2.2.2.4).

    telerad reads a backslash-separated value as a list that matches any of its values.
    """
    items = [value] if vr in SINGLE_VALUED_VRS else value.split("\\")
    condition = Q()
    for item in items:
        condition |= _wildcard(path, item) if _has_wildcard(item) else Q(**{path: item})
    return condition


class WildcardMatch(Lookup):
    """Match text against a pattern in which ``*`` is any run of characters and ``?`` one character.

    PS3.4 C.2.2.2.4: wild card matching. Every other character matches itself,
    with case, on both databases.
    """

    lookup_name = "dicom_wildcard"

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs_sql, lhs_params = self.process_lhs(compiler, connection)
        rhs_sql, rhs_params = self.process_rhs(compiler, connection)
        params = [*lhs_params, *(_like_pattern(str(value)) for value in rhs_params)]
        return f"{lhs_sql} LIKE {rhs_sql} ESCAPE '\\'", params

    def as_sqlite(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        # SQLite's LIKE ignores the case of ASCII letters, GLOB does not.
        lhs_sql, lhs_params = self.process_lhs(compiler, connection)
        rhs_sql, rhs_params = self.process_rhs(compiler, connection)
        params = [*lhs_params, *(_glob_pattern(str(value)) for value in rhs_params)]
        return f"{lhs_sql} GLOB {rhs_sql}", params


def _like_pattern(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _glob_pattern(pattern: str) -> str:
    # In GLOB, "[" opens a character class; "[[]" is a literal "[".
    return pattern.replace("[", "[[]")


def _wildcard(path: str, pattern: str) -> Q:
    return Q(WildcardMatch(F(path), pattern))


def _person_name_condition(folded_path: str, value: str, *, fuzzy: bool, groups_indexed: bool = False) -> Q:
    """Match PN values on the folded column, ignoring case and accents, any of a backslash-separated list."""
    condition = Q()
    for name in value.split("\\"):
        folded = fold(name.strip())
        if fuzzy:
            condition |= _fuzzy_name_condition(folded_path, folded)
        else:
            condition |= _name_condition(folded_path, folded, groups_indexed=groups_indexed)
    return condition


class HasComponentGroups(Func):
    """True for a folded PN value with a second or third component group, that is with an "=".

    The SQL is the condition of the partial index patient_name_with_groups,
    written out as a literal: SQLite uses a partial index only for a query
    that repeats its condition with the same constant, not with a bound parameter.
    """

    output_field = BooleanField()
    conditional = True
    # "%%%%" is "%%" after the template is filled in, and "%" after the driver's parameter substitution.
    template = "%(expressions)s LIKE '%%%%=%%%%' ESCAPE '\\'"

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        return self.as_sql(compiler, connection, template="%(expressions)s::text LIKE '%%%%=%%%%'", **extra)


def _name_condition(path: str, name: str, *, groups_indexed: bool) -> Q:
    """Match a folded name against the whole stored name or, unless it names groups itself, any one component group.

    So "yamada^tarou" and "山田^太郎" both find "Yamada^Tarou=山田^太郎=やまだ^たろう".
    """
    if "=" in name:
        # An empty group in the query ("=山田^太郎") leaves that group of the stored name open.
        pattern = "=".join(group or "*" for group in name.split("="))
        return _wildcard(path, pattern) | _wildcard(path, f"{pattern}=*")

    if _has_wildcard(name):
        whole = _wildcard(path, name)
    else:
        # PS3.5 6.2: trailing empty components may be left out, so "OB" names "OB^^^^" too.
        stem = name.rstrip("^")
        whole = Q(**{f"{path}__in": [stem + "^" * count for count in range(MAX_TRAILING_CARETS + 1)]})
    # The first group, alone or followed by others: a prefix search on the index of the folded column.
    first_group = whole | _wildcard(path, f"{name}=*")
    later_groups = _wildcard(path, f"*={name}") | _wildcard(path, f"*={name}=*")
    if not groups_indexed:
        # NOTE: the later-group alternatives start with a wild card, so this
        # scans the table instead of using an index.
        return first_group | later_groups

    # A union of two queries, so that each can use its own index: a prefix
    # search for the first group, and a scan of only the names with groups
    # for the others.
    patients = Patient.objects.order_by().values("pk")
    with_groups = Q(HasComponentGroups(path)) & later_groups
    return Q(pk__in=patients.filter(first_group).union(patients.filter(with_groups)))


def name_search_condition(folded_path: str, text: str) -> Q:
    """Match a patient name typed in a search form by prefix on any word of the name, ignoring case and accents.

    A word matches at the start of the name or right after a separator of
    NAME_WORD_SEPARATORS, so that "jerome" finds "Buc^Jérôme" and "berg"
    finds "van den Berg^Jan". "Buc, Jérôme" is read as the PN form
    "Buc^Jérôme", so that the readable form shown in lists can be searched
    as it is.
    """
    folded = fold("^".join(part.strip() for part in text.split(",")))
    pattern = folded if folded.endswith("*") else folded + "*"
    condition = Q(WildcardMatch(F(folded_path), pattern))
    for separator in NAME_WORD_SEPARATORS:
        condition |= Q(WildcardMatch(F(folded_path), f"*{separator}{pattern}"))
    return condition


def _fuzzy_name_condition(path: str, name: str) -> Q:
    """Match names in which each word of the query starts a word, in any order ("jerome buc" finds "Buc^Jérôme")."""
    condition = Q()
    for word in re.split(r"[\^=,\s-]+", name):
        if not word:
            continue
        prefix = word.rstrip("*") + "*"
        word_condition = _wildcard(path, prefix)
        for separator in NAME_WORD_SEPARATORS:
            word_condition |= _wildcard(path, f"*{separator}{prefix}")
        condition &= word_condition
    return condition


def _list_of_uids(keyword: str, value: str) -> list[str]:
    # PS3.4 C.2.2.2.2: list of UID matching; wild cards are not allowed in UIDs.
    uids = [uid.strip(" \x00") for uid in value.split("\\")]
    if len(uids) > MAX_LIST_OF_UIDS:
        raise InvalidQuery(keyword, f"too many UIDs; send at most {MAX_LIST_OF_UIDS}")
    for uid in uids:
        if len(uid) > 64 or not UID_PATTERN.match(uid):
            raise InvalidQuery(keyword, "invalid UID or list of UIDs")
    return uids


def _integer(keyword: str, vr: str, value: str) -> int:
    # PS3.4 C.2.2.2.1: single value matching; telerad compares IS values as numbers, so "007" matches 7.
    if not INTEGER_PATTERN.match(value):
        raise InvalidQuery(keyword, f"invalid {vr} value; use an integer")
    number = int(value)
    low, high = INTEGER_LIMITS[vr]
    if not low <= number <= high:
        raise InvalidQuery(keyword, f"{vr} value out of range")
    return number


Range = tuple[str | None, str | None]


def _split_range(keyword: str, value: str) -> tuple[str, str] | None:
    """Return the two ends of a range value, either may be empty, or None for a single value."""
    if "-" not in value:
        return None
    parts = value.split("-")
    if len(parts) == 3 and ISO_DATE.match(value.strip()):
        raise InvalidQuery(keyword, "invalid date; write dates as YYYYMMDD, without dashes, which mark a range")
    if len(parts) != 2 or not (parts[0].strip() or parts[1].strip()):
        raise InvalidQuery(keyword, "invalid range; use a-b, a- or -b")
    return parts[0].strip(), parts[1].strip()


def _date_range(keyword: str, value: str) -> Range:
    """PS3.4 C.2.2.2.5: range matching of dates; a single date is the range of that one day."""
    ends = _split_range(keyword, value)
    start_text, end_text = (value, value) if ends is None else ends
    start = _date_bound(keyword, start_text, latest=False) if start_text else None
    end = _date_bound(keyword, end_text, latest=True) if end_text else None
    if start and end and start > end:
        raise InvalidQuery(keyword, "invalid range; the start is after the end")
    return start, end


def _date_bound(keyword: str, text: str, *, latest: bool) -> str:
    """Return a YYYYMMDD bound; YYYY and YYYYMM stand for the first or last day of that year or month.

    The short forms are a telerad extension: PS3.5 DA values are YYYYMMDD.
    """
    if not DATE_PATTERN.match(text):
        raise InvalidQuery(keyword, "invalid date; use YYYYMMDD or a range")
    year, month, day = int(text[:4]), int(text[4:6] or (12 if latest else 1)), int(text[6:8] or 0)
    if not 1 <= month <= 12:
        raise InvalidQuery(keyword, "invalid date; use YYYYMMDD or a range")
    if not day:
        day = calendar.monthrange(year, month)[1] if latest else 1
    try:
        return datetime.date(year, month, day).strftime("%Y%m%d")
    except ValueError:
        raise InvalidQuery(keyword, "invalid date; use YYYYMMDD or a range") from None


def _time_range(keyword: str, value: str) -> Range:
    """PS3.4 C.2.2.2.5: range matching of times; a partial time such as "10" stands for 10:00:00 to 10:59:59.999999."""
    ends = _split_range(keyword, value)
    start_text, end_text = (value, value) if ends is None else ends
    start = _time_bound(keyword, start_text, latest=False) if start_text else None
    end = _time_bound(keyword, end_text, latest=True) if end_text else None
    if start and end and start > end:
        raise InvalidQuery(keyword, "invalid range; the start is after the end")
    return start, end


def _time_bound(keyword: str, text: str, *, latest: bool) -> str:
    # ACR-NEMA 2.0 wrote times as HH:MM:SS.
    compact = text.replace(":", "")
    if not TIME_PATTERN.match(compact):
        raise InvalidQuery(keyword, "invalid time; use HHMMSS.FFFFFF or a range")
    return compact + LATEST_TIME[len(compact):] if latest else compact


def _range_condition(path: str, bounds: Range) -> Q:
    start, end = bounds
    # An empty stored value is unknown, so it is in no range.
    condition = Q(**{f"{path}__gte": start}) if start else Q(**{f"{path}__gt": ""})
    if end:
        condition &= Q(**{f"{path}__lte": end})
    return condition


def _combined_date_time_condition(date_path: str, time_path: str, dates: Range, times: Range) -> Q:
    """Match a date range and a time range as one datetime range from (start date, start time) to (end date, end time).

    PS3.4 C.2.2.2.5: with combined datetime matching, StudyDate
    "20060705-20060707" and StudyTime "1000-1800" span from July 5, 10:00 to
    July 7, 18:00. A time without a date at the same end leaves that end open.
    """
    (start_date, end_date), (start_time, end_time) = dates, times
    condition = Q(**{f"{date_path}__gt": ""})
    if start_date:
        first_day = Q(**{date_path: start_date, f"{time_path}__gte": start_time}) if start_time else Q(**{date_path: start_date})
        condition &= Q(**{f"{date_path}__gt": start_date}) | first_day
    if end_date:
        last_day = Q(**{date_path: end_date, f"{time_path}__lte": end_time}) if end_time else Q(**{date_path: end_date})
        condition &= Q(**{f"{date_path}__lt": end_date}) | last_day
    return condition
