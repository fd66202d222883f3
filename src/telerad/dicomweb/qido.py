"""QIDO-RS: search for studies, series and instances (PS3.18 10.6).

A search reads its query parameters into a C-FIND style identifier and
matches it with :mod:`telerad.archive.query`, the engine C-FIND uses, with
relational matching, so that ``/studies?Modality=CT`` finds studies with a CT
series. The matching rows become DICOM JSON (PS3.18 Annex F) straight from
the index values, without building a pydicom Dataset per result.

A search without matches returns 200 with an empty array. PS3.18 2025e still
names 204 No Content for it, but a 204 response carries no content (RFC 9110
15.3.5), and Change Proposal 2473 (2025) moves the search transaction to 200.
dicomweb-client reads both as no results.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from json.encoder import encode_basestring as encode_json_string
from typing import Any, Callable

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict
from django.urls import reverse
from django.utils.translation import gettext as _
from pydicom.datadict import keyword_for_tag, tag_for_keyword

from telerad.accounts.roles import Permission, requires
from telerad.archive.models import Study
from telerad.archive.query import (
    LEVEL_TABLES,
    QUERY_KEYS,
    TABLES,
    CompiledQuery,
    InvalidQuery,
    Level,
    compile_query,
)
from telerad.audit import events as audit
from telerad.clinicians.access import visible_study_ids
from telerad.dicomweb.accept import Offer, choose, not_acceptable
from telerad.dicomweb.http import DicomwebError, endpoint, record_access

logger = logging.getLogger(__name__)

DICOM_JSON = Offer("application/dicom+json")
PLAIN_JSON = Offer("application/json")
# DICOM JSON first: it is the default of PS3.18 8.7.3 for search results.
OFFERS = (DICOM_JSON, PLAIN_JSON)

# PS3.18 8.3.4.4 and 10.6.3.3: the warning sent with a page of results when
# more matches remain.
MORE_RESULTS_WARNING = "The number of results exceeded the maximum supported by the server. Additional results can be requested."
UNSUPPORTED_KEYS_WARNING = "The following attributes are not supported for matching and were ignored: {tags}"
# The audit trail keeps the query text up to this length.
AUDIT_QUERY_LENGTH = 1000
# Patients and studies of the results named in a search's audit event, at most.
AUDIT_LISTED = 100

# Query parameters of PS3.18 Table 8.3.4-1 besides the matching keys.
INCLUDE_FIELD = "includefield"
FUZZY_MATCHING = "fuzzymatching"
LIMIT = "limit"
OFFSET = "offset"
# PS3.18 8.3.3.1: the accept and charset query parameters stand in for the headers.
ACCEPT = "accept"
CHARSET = "charset"
CONTROL_PARAMETERS = frozenset({INCLUDE_FIELD, FUZZY_MATCHING, LIMIT, OFFSET, ACCEPT, CHARSET})
TAG_PATTERN = re.compile(r"^[0-9A-Fa-f]{8}$")
BOOLEAN_VALUES = {"true": True, "false": False}

# PS3.18 Tables 10.6.3-3, 10.6.3-4 and 10.6.3-5: the attributes returned for
# each match, besides Retrieve URL and Instance Availability, which the
# response computes. The parent levels' unique keys are added, so that each
# result names the resource it belongs to.
# NOTE: the index does not store Timezone Offset From UTC, Performed Procedure
# Step Start Date and Time, Request Attribute Sequence or Bits Allocated. So
# results leave them out until the index stores them.
DEFAULT_KEYS: dict[Level, tuple[str, ...]] = {
    Level.STUDY: (
        "StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "ReferringPhysicianName",
        "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID",
        "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
    ),
    Level.SERIES: (
        "StudyInstanceUID", "Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber",
        "NumberOfSeriesRelatedInstances",
    ),
    Level.IMAGE: (
        "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID", "InstanceNumber",
        "Rows", "Columns", "NumberOfFrames",
    ),
}
RETRIEVE_URL_TAG = "00081190"
INSTANCE_AVAILABILITY_TAG = "00080056"
# Every stored instance is on the archive's own storage.
ONLINE = "ONLINE"
# Values of these VRs may contain a backslash as text rather than as a value delimiter (PS3.5 6.2).
SINGLE_VALUED_VRS = frozenset({"LT", "ST", "UT", "UR"})
NUMBER_VRS = frozenset({"IS", "DS", "US", "UL", "SS", "SL", "FL", "FD", "SV", "UV"})
# PS3.18 F.2.2: the three component groups of a PN value, in order.
NAME_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")


@dataclasses.dataclass(frozen=True)
class Resource:
    """The target resource of a search: its level and the study and series its path names."""

    level: Level
    study: str = ""
    series: str = ""

    @property
    def fixed_tables(self) -> tuple[str, ...]:
        """The index tables whose row the path fixes, so that their keys cannot be query keys."""
        if self.series:
            return ("patient", "study", "series")
        if self.study:
            return ("patient", "study")
        return ()

    @property
    def returned_levels(self) -> tuple[Level, ...]:
        """The levels whose default attributes each result carries (PS3.18 10.6.3.3.2 and 10.6.3.3.3)."""
        levels = (Level.STUDY, Level.SERIES, Level.IMAGE)
        levels = levels[: levels.index(self.level) + 1]
        if self.series:
            return levels[2:]
        if self.study:
            return levels[1:]
        return levels


@dataclasses.dataclass(frozen=True)
class SearchRequest:
    """A search's query parameters, checked: the identifier for the engine and the paging."""

    resource: Resource
    identifier: dict[str, str]
    # Query keys with a value that telerad cannot match, as 8-digit tags.
    unsupported_tags: tuple[str, ...]
    fuzzy_names: bool
    limit: int
    offset: int
    # Whether the server's maximum set the page size, rather than the client's limit.
    capped_by_server: bool


@endpoint
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def search_studies(request: HttpRequest, **resource: Any) -> HttpResponse:
    return _search(request, Resource(Level.STUDY))


@endpoint
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def search_series(request: HttpRequest, *, study: str = "", **resource: Any) -> HttpResponse:
    return _search(request, Resource(Level.SERIES, study=study))


@endpoint
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def search_instances(request: HttpRequest, *, study: str = "", series: str = "", **resource: Any) -> HttpResponse:
    return _search(request, Resource(Level.IMAGE, study=study, series=series))


def _search(request: HttpRequest, resource: Resource) -> HttpResponse:
    """Run one search and write its audit event, whether it succeeds or fails."""
    started = time.monotonic()
    try:
        offer = _negotiate(request)
        search = _read_parameters(request.GET, resource)
        # A clinician's search matches only their own studies, so the results,
        # their paging, their counts and the Warning header come from those alone.
        compiled = _compile(search, study_scope=visible_study_ids(request.user))
        results, more, returned = _results(request, search, compiled)
    except DicomwebError as error:
        _record(request, resource, started, outcome=audit.Outcome.MINOR_FAILURE, detail=f"status {error.status}: {error.message}", status=error.status)
        raise

    _record(request, resource, started, outcome=audit.Outcome.SUCCESS, detail=_returned_detail(len(results), returned), count=len(results), returned=returned)
    response = HttpResponse(_encode(results), content_type=offer.media_type)
    warnings = _warnings(request, search, more)
    if warnings:
        response["Warning"] = ", ".join(warnings)
    return response


def _negotiate(request: HttpRequest) -> Offer:
    # PS3.18 8.3.3.1: an accept query parameter takes the place of the header.
    header = request.GET.get(ACCEPT) or request.headers.get("Accept", "")
    chosen = choose(header, OFFERS)
    if chosen is None:
        raise not_acceptable(header, OFFERS)

    charset = request.GET.get(CHARSET, "").strip().lower()
    if charset and charset not in {"utf-8", "utf8"}:
        raise DicomwebError(406, _("charset: %(charset)s is not available; search results are sent in utf-8.") % {"charset": charset})
    return chosen[0]


def _read_parameters(parameters: QueryDict, resource: Resource) -> SearchRequest:
    """Check the query parameters; raise DicomwebError 400 naming the first one that is wrong."""
    identifier: dict[str, str] = {keyword: "" for keyword in _default_keys(resource)}
    unsupported: list[str] = []
    for name, values in parameters.lists():
        if name.lower() in CONTROL_PARAMETERS:
            continue
        if len(values) > 1:
            raise DicomwebError(400, _("%(name)s: given %(count)d times; give it once, with several values separated by commas.") % {"name": name, "count": len(values)})
        keyword = _matching_keyword(name, resource)
        if keyword is None:
            unsupported.append(_tag_text(name))
            continue
        if identifier.get(keyword):
            raise DicomwebError(400, _("%(name)s: %(keyword)s is given twice, as a keyword and as a tag; give it once.") % {"name": name, "keyword": keyword})
        identifier[keyword] = _query_value(keyword, values[0])

    for keyword in _include_fields(parameters, resource):
        identifier.setdefault(keyword, "")
    if resource.study:
        identifier["StudyInstanceUID"] = resource.study
    if resource.series:
        identifier["SeriesInstanceUID"] = resource.series

    limit, offset, capped_by_server = _paging(parameters)
    return SearchRequest(
        resource=resource,
        identifier=identifier,
        unsupported_tags=tuple(unsupported),
        fuzzy_names=_fuzzy_matching(parameters),
        limit=limit,
        offset=offset,
        capped_by_server=capped_by_server,
    )


def _default_keys(resource: Resource) -> list[str]:
    keys: list[str] = []
    for level in resource.returned_levels:
        keys += [keyword for keyword in DEFAULT_KEYS[level] if keyword not in keys]
    return keys


def _attribute_keyword(name: str, parameter: str) -> str:
    """Return the keyword of an attribute given as a keyword or as an 8-digit tag, or "" for a tag without one.

    Raise DicomwebError 400 when `name` is neither.
    """
    if TAG_PATTERN.match(name):
        return keyword_for_tag(int(name, 16))
    if tag_for_keyword(name) is not None:
        return name
    raise DicomwebError(400, _("%(parameter)s: %(name)s is not a DICOM keyword or tag; use a keyword such as PatientID or a tag such as 00100020.") % {"parameter": parameter, "name": name})


def _matching_keyword(name: str, resource: Resource) -> str | None:
    """Return the keyword of a query key that the index can match, or None for one it cannot."""
    # An attribute in a sequence is named by a dotted path of tags or keywords (PS3.18 8.3.4.1).
    path = name.split(".")
    keywords = [_attribute_keyword(part, name) for part in path]
    if len(path) > 1:
        return None

    keyword = keywords[0]
    key = QUERY_KEYS.get(keyword)
    if key is None:
        return None
    if key.table in resource.fixed_tables:
        raise DicomwebError(400, _("%(name)s: not allowed as a query key here, because the path already names the study or series; search /dicom-web/%(level)s instead.") % {"name": name, "level": _root_resource_name(resource.level)})
    return keyword


def _tag_text(name: str) -> str:
    """Return a query key as an 8-digit tag, or as its dotted path of tags."""
    parts = []
    for part in name.split("."):
        tag = int(part, 16) if TAG_PATTERN.match(part) else tag_for_keyword(part)
        parts.append(f"{tag:08X}" if tag is not None else part)
    return ".".join(parts)


def _root_resource_name(level: Level) -> str:
    return {Level.STUDY: "studies", Level.SERIES: "series", Level.IMAGE: "instances"}[level]


def _query_value(keyword: str, value: str) -> str:
    # PS3.18 8.3.4.1: a list of UIDs may be separated by commas as well as by backslashes.
    if QUERY_KEYS[keyword].vr == "UI":
        return value.replace(",", "\\")
    return value


def _include_fields(parameters: QueryDict, resource: Resource) -> list[str]:
    """Return the keywords named by includefield that results of this resource may carry."""
    keywords: list[str] = []
    for value in parameters.getlist(INCLUDE_FIELD):
        for name in (part.strip() for part in value.split(",")):
            if not name:
                raise DicomwebError(400, _("includefield: empty attribute name; give keywords or tags separated by commas, or all."))
            if name.lower() == "all":
                keywords += _all_keys(resource)
                continue
            keyword = _attribute_keyword(name.split(".")[0], INCLUDE_FIELD)
            # Attributes of lower levels, and those the index does not hold, are not returned (PS3.18 10.6.3.3).
            if keyword in QUERY_KEYS and _may_return(QUERY_KEYS[keyword].table, resource.level):
                keywords.append(keyword)
    return keywords


def _all_keys(resource: Resource) -> list[str]:
    tables = {LEVEL_TABLES[level] for level in resource.returned_levels}
    if Level.STUDY in resource.returned_levels:
        tables.add("patient")
    return [keyword for keyword, key in QUERY_KEYS.items() if key.table in tables]


def _may_return(table: str, level: Level) -> bool:
    return TABLES.index(table) <= TABLES.index(LEVEL_TABLES[level])


def _fuzzy_matching(parameters: QueryDict) -> bool:
    value = parameters.get(FUZZY_MATCHING)
    if value is None:
        return False
    if value.strip().lower() not in BOOLEAN_VALUES:
        raise DicomwebError(400, _("fuzzymatching: %(value)r is invalid; use true or false.") % {"value": value[:20]})
    return BOOLEAN_VALUES[value.strip().lower()]


def _paging(parameters: QueryDict) -> tuple[int, int, bool]:
    """Return the page size, the offset, and whether the server's maximum set the page size."""
    maximum = _max_results()
    limit = _integer_parameter(parameters, LIMIT, minimum=1)
    offset = _integer_parameter(parameters, OFFSET, minimum=0)
    capped_by_server = limit is None or limit > maximum
    return min(limit or maximum, maximum), offset or 0, capped_by_server


def _max_results() -> int:
    """Return the maximum results of one response: the page size without a limit, and the cap on a larger limit."""
    return settings.TELERAD.qido_max_results


def _integer_parameter(parameters: QueryDict, name: str, *, minimum: int) -> int | None:
    values = parameters.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise DicomwebError(400, _("%(name)s: given %(count)d times; give it once.") % {"name": name, "count": len(values)})
    text = values[0].strip()
    if not text.isdigit() or int(text) < minimum:
        raise DicomwebError(400, _("%(name)s: %(value)r is invalid; use a whole number of at least %(minimum)d.") % {"name": name, "value": values[0][:20], "minimum": minimum})
    return int(text)


def _compile(search: SearchRequest, *, study_scope: QuerySet[Study] | None) -> CompiledQuery:
    try:
        return compile_query(
            str(search.resource.level), search.identifier, relational=True, fuzzy_names=search.fuzzy_names, study_scope=study_scope,
        )
    except InvalidQuery as exc:
        raise DicomwebError(400, str(exc)) from None


# A function that writes one index value as the DICOM JSON text of its
# attribute, "tag": {...}. The text is written directly, because building a
# dict per attribute and encoding it with json.dumps took most of the time of
# a search with hundreds of results (measured with bench/qido_local.py).
Encoder = Callable[[Any], str]


@dataclasses.dataclass
class Returned:
    """The patients and studies a search returned, for its audit event."""

    patient_ids: dict[str, None] = dataclasses.field(default_factory=dict)
    study_instance_uids: dict[str, None] = dataclasses.field(default_factory=dict)

    def note(self, values: tuple[Any, ...], patient_position: int | None, study_position: int | None) -> None:
        if patient_position is not None and values[patient_position]:
            self.patient_ids.setdefault(str(values[patient_position]), None)
        if study_position is not None and values[study_position]:
            self.study_instance_uids.setdefault(str(values[study_position]), None)


def _results(request: HttpRequest, search: SearchRequest, compiled: CompiledQuery) -> tuple[list[str], bool, Returned]:
    """Return the DICOM JSON text of each match of the requested page, whether more matches remain, and whom they concern."""
    keywords = list(compiled.return_paths)
    patient_position = keywords.index("PatientID") if "PatientID" in keywords else None
    study_position = keywords.index("StudyInstanceUID") if "StudyInstanceUID" in keywords else None
    returned = Returned()
    encoders: list[tuple[str, Callable[[tuple[Any, ...]], str]]] = [
        (_tag_of(keyword), _column_encoder(position, _encoder(_tag_of(keyword), QUERY_KEYS[keyword].vr)))
        for position, keyword in enumerate(keywords)
    ]
    encoders.append((RETRIEVE_URL_TAG, _retrieve_url_encoder(request, compiled.level, keywords)))
    if compiled.level in {Level.STUDY, Level.IMAGE}:
        online = f'"{INSTANCE_AVAILABILITY_TAG}":{{"vr":"CS","Value":["{ONLINE}"]}}'
        encoders.append((INSTANCE_AVAILABILITY_TAG, lambda values: online))
    # PS3.18 F.2: attributes in ascending tag order, as in a dataset.
    ordered = [encode for _tag, encode in sorted(encoders, key=lambda pair: pair[0])]

    results = []
    # One row beyond the page shows whether more matches remain, without counting them all.
    for values in compiled.value_rows(limit=search.limit + 1, offset=search.offset):
        if len(results) == search.limit:
            return results, True, returned
        results.append("{" + ",".join([encode(values) for encode in ordered]) + "}")
        returned.note(values, patient_position, study_position)
    return results, False, returned


def _column_encoder(position: int, encode: Encoder) -> Callable[[tuple[Any, ...]], str]:
    return lambda values: encode(values[position])


def _tag_of(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return f"{tag:08X}"


def _retrieve_url_encoder(request: HttpRequest, level: Level, keywords: list[str]) -> Callable[[tuple[Any, ...]], str]:
    """Return a function that writes a result's Retrieve URL (0008,1190) from its row of values."""
    studies = request.build_absolute_uri(reverse("dicomweb:studies"))
    prefix = f'"{RETRIEVE_URL_TAG}":{{"vr":"UR","Value":[' + encode_json_string(studies)[:-1]
    study = keywords.index("StudyInstanceUID")
    if level is Level.STUDY:
        return lambda values: f'{prefix}/{values[study]}"]}}'
    series = keywords.index("SeriesInstanceUID")
    if level is Level.SERIES:
        return lambda values: f'{prefix}/{values[study]}/series/{values[series]}"]}}'
    instance = keywords.index("SOPInstanceUID")
    return lambda values: f'{prefix}/{values[study]}/series/{values[series]}/instances/{values[instance]}"]}}'


def _encoder(tag: str, vr: str) -> Encoder:
    """Return the DICOM JSON writer of index values of one attribute (PS3.18 F.2)."""
    # PS3.18 F.2.5: an empty value is written without "Value".
    empty = f'"{tag}":{{"vr":"{vr}"}}'
    prefix = f'"{tag}":{{"vr":"{vr}","Value":'
    if vr == "PN":
        return lambda value: prefix + _person_names(value) + "}" if value else empty
    if vr in NUMBER_VRS:
        return lambda value: prefix + _numbers(value) + "}" if value is not None and value != "" else empty
    if vr in SINGLE_VALUED_VRS:
        return lambda value: prefix + "[" + encode_json_string(value) + "]}" if value else empty
    return lambda value: prefix + _strings(value) + "}" if value else empty


def _strings(value: str) -> str:
    # An empty item of a multi-valued attribute is null (PS3.18 F.2.5).
    return "[" + ",".join([encode_json_string(item) if item else "null" for item in value.split("\\")]) + "]"


def _numbers(value: object) -> str:
    # PS3.18 F.2.3: IS and DS values are JSON numbers.
    if isinstance(value, int):
        return f"[{value}]"
    return "[" + ",".join([json.dumps(_number(item)) for item in str(value).split("\\")]) + "]"


def _number(text: str) -> int | float | None:
    text = text.strip()
    if not text:
        return None
    number = float(text)
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def _person_names(value: str) -> str:
    """Write PN values as objects of their Alphabetic, Ideographic and Phonetic groups (PS3.18 F.2.2)."""
    names = []
    for name in value.split("\\"):
        groups = [f'"{label}":{encode_json_string(group)}' for label, group in zip(NAME_GROUPS, name.split("=")) if group]
        names.append("{" + ",".join(groups) + "}" if groups else "null")
    return "[" + ",".join(names) + "]"


def _encode(results: list[str]) -> bytes:
    return ("[" + ",".join(results) + "]").encode("utf-8")


def _warnings(request: HttpRequest, search: SearchRequest, more: bool) -> list[str]:
    """Return the Warning header values of a response, in the form PS3.18 8.3.4.4 gives: 299 {+service}: "text"."""
    # {+service} is the service's base URL.
    agent = request.build_absolute_uri(reverse("dicomweb:studies")).rsplit("/", 1)[0]
    texts = []
    if search.unsupported_tags:
        texts.append(UNSUPPORTED_KEYS_WARNING.format(tags=", ".join(search.unsupported_tags)))
    # PS3.18 8.3.4.4: the warning is for results cut by the server's
    # maximum; a client that set its own limit pages on by itself.
    if more and search.capped_by_server:
        texts.append(MORE_RESULTS_WARNING)
    return [f'299 {agent}: "{text}"' for text in texts]


def _returned_detail(count: int, returned: Returned) -> str:
    """Name what a search disclosed: the patients and studies of its results, up to AUDIT_LISTED of each."""
    detail = f"{count} results"
    patients = list(returned.patient_ids)
    studies = list(returned.study_instance_uids)
    if patients:
        detail += f"; patients {' '.join(patients[:AUDIT_LISTED])}" + (f" and {len(patients) - AUDIT_LISTED} more" if len(patients) > AUDIT_LISTED else "")
    if studies:
        detail += f"; studies {' '.join(studies[:AUDIT_LISTED])}" + (f" and {len(studies) - AUDIT_LISTED} more" if len(studies) > AUDIT_LISTED else "")
    return detail


def _record(
    request: HttpRequest, resource: Resource, started: float, *, outcome: audit.Outcome, detail: str, count: int = 0, status: int = 200,
    returned: Returned | None = None,
) -> None:
    """Log one search with identifiers and counts only, and write its audit event with the query text."""
    duration = time.monotonic() - started
    user = request.user.get_username()
    if outcome is audit.Outcome.SUCCESS:
        logger.info("QIDO-RS search user=%s path=%s results=%d duration=%.3fs", user, request.path, count, duration)
    else:
        # The message may quote a query value, so the log keeps only the status.
        logger.info("QIDO-RS search failed user=%s path=%s status=%d duration=%.3fs", user, request.path, status, duration)

    query = request.GET.urlencode()[:AUDIT_QUERY_LENGTH]
    patient_id = _single_value(request.GET, "PatientID", "00100020")
    study_instance_uid = resource.study or _single_value(request.GET, "StudyInstanceUID", "0020000D")
    if returned is not None:
        # Results of one patient or one study name them in the event's own fields.
        if not patient_id and len(returned.patient_ids) == 1:
            patient_id = next(iter(returned.patient_ids))
        if not study_instance_uid and len(returned.study_instance_uids) == 1:
            study_instance_uid = next(iter(returned.study_instance_uids))
    if study_instance_uid and not patient_id:
        patient_id = Study.objects.filter(study_instance_uid=study_instance_uid).values_list("patient__patient_id", flat=True).first() or ""
    record_access(
        request,
        audit.Action.QUERY,
        patient_id=patient_id,
        study_instance_uid=study_instance_uid,
        detail=f"{detail}; query {query}" if query else detail,
        outcome=outcome,
        patient_ids=returned.patient_ids if returned is not None else (),
    )


def _single_value(parameters: QueryDict, *names: str) -> str:
    """Return the value of a query key when it names exactly one entity, else an empty string."""
    for name in parameters:
        if name not in names and name.upper() not in names:
            continue
        value = parameters.get(name, "").strip()
        if value and not any(character in value for character in "*?\\,"):
            return value
    return ""
