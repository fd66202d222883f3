"""C-FIND SCP for the Patient Root and Study Root Query/Retrieve information models.

:func:`handle_find` reads the request identifier into keyword and value pairs,
matches them with :mod:`telerad.archive.query`, and yields one pending
response per match that contains exactly the requested keys.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Iterator

from django.conf import settings
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelFind

from telerad.archive.query import CompiledQuery, InvalidQuery, Level, Root, compile_query
from telerad.audit import events as audit
from telerad.dimse.access import Service, record_refused_service
from telerad.dimse.find_responses import PendingResponder
from telerad.dimse.status import RequestFailure

logger = logging.getLogger(__name__)

FIND_SOP_CLASSES: dict[str, Root] = {
    str(PatientRootQueryRetrieveInformationModelFind): Root.PATIENT,
    str(StudyRootQueryRetrieveInformationModelFind): Root.STUDY,
}

# PS3.4 C.4.1.1.4: C-FIND statuses, and the general statuses 0x0122 and 0x0124 of PS3.7 Annex C.
STATUS_SUCCESS = 0x0000
STATUS_PENDING = 0xFF00
# Pending, with a warning that one or more optional keys were not supported for matching.
STATUS_PENDING_KEYS_NOT_MATCHED = 0xFF01
STATUS_CANCEL = 0xFE00
STATUS_SOP_CLASS_NOT_SUPPORTED = 0x0122
STATUS_NOT_AUTHORIZED = 0x0124
STATUS_IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
STATUS_UNABLE_TO_PROCESS = 0xC000
# Status of an association that was released or aborted before the last response.
STATUS_INTERRUPTED = -1

# The audit trail's action for a query.
AUDIT_QUERY_LENGTH = 1000

QUERY_RETRIEVE_LEVEL = Tag("QueryRetrieveLevel")
SPECIFIC_CHARACTER_SET = Tag("SpecificCharacterSet")
RETRIEVE_AE_TITLE = Tag("RetrieveAETitle")
INSTANCE_AVAILABILITY = Tag("InstanceAvailability")
# Elements the handler fills in itself instead of passing them to the matching engine.
HANDLER_TAGS = frozenset({QUERY_RETRIEVE_LEVEL, SPECIFIC_CHARACTER_SET, RETRIEVE_AE_TITLE, INSTANCE_AVAILABILITY})
# Elements the handler sets itself, whatever the request contains: QueryRetrieveLevel and
# RetrieveAETitle in every response, SpecificCharacterSet when a value is not ASCII.
RESPONSE_TAGS = frozenset({QUERY_RETRIEVE_LEVEL, SPECIFIC_CHARACTER_SET, RETRIEVE_AE_TITLE})
# Every stored instance is on the archive's own storage.
ONLINE = "ONLINE"
UTF8_CHARACTER_SET = "ISO_IR 192"
SINGLE_VALUED_VRS = frozenset({"LT", "ST", "UT", "UR"})
# Transfer syntaxes in which PendingResponder writes responses; pynetdicom encodes the others.
DIRECT_TRANSFER_SYNTAXES = frozenset({str(ImplicitVRLittleEndian), str(ExplicitVRLittleEndian)})

# PS3.4 C.5.1.1: the Service Class Application Information of the C-FIND
# extended negotiation is one byte per option: relational queries, combined
# date time matching, fuzzy semantic matching of person names, timezone query
# adjustment, enhanced multi-frame image conversion. telerad supports the
# first three.
SUPPORTED_FIND_OPTIONS = (True, True, True)

FindResponse = tuple[int | Dataset, Dataset | None]


def add_find_contexts(ae: AE) -> None:
    """Add the Patient Root and Study Root FIND presentation contexts, in pynetdicom's default transfer syntaxes."""
    # pynetdicom logs C-FIND identifiers at INFO, which would write patient names to the log.
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    for sop_class_uid in FIND_SOP_CLASSES:
        ae.add_supported_context(sop_class_uid)


def negotiate_find_options(event: Any) -> dict[str, bytes]:
    """Accept the requested C-FIND options that telerad supports (EVT_SOP_EXTENDED handler)."""
    replies = {}
    for sop_class_uid, requested in event.app_info.items():
        if str(sop_class_uid) not in FIND_SOP_CLASSES:
            continue
        replies[sop_class_uid] = bytes(
            int(index < len(SUPPORTED_FIND_OPTIONS) and SUPPORTED_FIND_OPTIONS[index] and value == 1)
            for index, value in enumerate(requested)
        )
    return replies


@dataclasses.dataclass
class _Summary:
    """The outcome of one C-FIND, for its log line and audit event."""

    calling_ae_title: str
    address: str
    started: float = dataclasses.field(default_factory=time.monotonic)
    root: Root | None = None
    level: str = ""
    keys: dict[str, object] = dataclasses.field(default_factory=dict)
    matches: int = 0
    # The patients of the matches, for the audit event.
    # NOTE: known only when the query returns PatientID; other queries name their patients through their query keys alone.
    patient_ids: dict[str, None] = dataclasses.field(default_factory=dict)
    recorded: bool = False


@dataclasses.dataclass(frozen=True)
class _FindRequest:
    root: Root
    level: str
    keys: dict[str, object]
    # (tag, VR) of every requested element, for building responses.
    elements: tuple[tuple[BaseTag, str], ...]
    relational: bool
    combined_datetime: bool
    fuzzy_names: bool


def handle_find(event: Any) -> Iterator[FindResponse]:
    """Run a C-FIND request (EVT_C_FIND handler): yield one pending response per match, then a cancel or failure status.

    pynetdicom sends the final success response when the generator ends.
    """
    summary = _summary_of(event)
    if not _may_query(event):
        yield _refused(summary)
        return
    try:
        try:
            request = _read_request(event, summary)
            compiled = _compile(request)
        except RequestFailure as failure:
            yield _failed(summary, failure)
            return
        except Exception:
            yield _failed(summary, _internal_error(summary))
            return
        yield from _responses(event, request, compiled, summary)
    finally:
        if not summary.recorded:
            _finish(summary, STATUS_INTERRUPTED, "association released or aborted before the last response")


def _refused(summary: _Summary) -> FindResponse:
    """Return the failure for an AE that may not query, with its log line and audit event."""
    failure = RequestFailure(STATUS_NOT_AUTHORIZED, f"AE {summary.calling_ae_title} is not allowed to query")
    record_refused_service(Service.FIND, summary.calling_ae_title, summary.address, failure.comment, failure.status)
    summary.recorded = True
    return failure.response(), None


def _failed(summary: _Summary, failure: RequestFailure) -> FindResponse:
    _finish(summary, failure.status, failure.comment)
    return failure.response(), None


def _internal_error(summary: _Summary) -> RequestFailure:
    """Log the exception being handled and return the failure the SCU gets for it."""
    logger.exception("C-FIND failed calling_ae=%s level=%s", summary.calling_ae_title, summary.level or "-")
    return RequestFailure(STATUS_UNABLE_TO_PROCESS, "internal error; see the server log")


def _summary_of(event: Any) -> _Summary:
    stats = getattr(event.assoc, "telerad_stats", None)
    if stats is not None:
        return _Summary(stats.calling_ae_title, stats.address)
    requestor = event.assoc.requestor
    return _Summary(str(requestor.ae_title).strip(), str(requestor.address))


def _read_request(event: Any, summary: _Summary) -> _FindRequest:
    sop_class_uid = str(event.request.AffectedSOPClassUID)
    root = FIND_SOP_CLASSES.get(sop_class_uid)
    if root is None:
        raise RequestFailure(STATUS_SOP_CLASS_NOT_SUPPORTED, f"SOP Class {sop_class_uid} not supported")
    summary.root = root

    identifier = _decoded_identifier(event)
    summary.level = _query_retrieve_level(identifier)
    keys = _identifier_keys(identifier)
    summary.keys = keys
    relational, combined_datetime, fuzzy_names = _negotiated_options(event, sop_class_uid)
    return _FindRequest(
        root=root,
        level=summary.level,
        keys=keys,
        elements=_requested_elements(identifier),
        relational=relational,
        combined_datetime=combined_datetime,
        fuzzy_names=fuzzy_names,
    )


def _may_query(event: Any) -> bool:
    # Associations that did not pass the listener's EVT_REQUESTED check are not served.
    stats = getattr(event.assoc, "telerad_stats", None)
    return stats is not None and stats.allow_find


def _decoded_identifier(event: Any) -> Dataset:
    try:
        return event.identifier
    except Exception as exc:
        logger.warning("C-FIND identifier cannot be decoded error=%s", type(exc).__name__)
        raise RequestFailure(STATUS_IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, "the identifier cannot be decoded") from None


def _query_retrieve_level(identifier: Dataset) -> str:
    # PS3.4 C.4.1.1.3: the request identifier names its Query/Retrieve Level.
    try:
        value = identifier[QUERY_RETRIEVE_LEVEL].value if QUERY_RETRIEVE_LEVEL in identifier else None
    except Exception:
        value = None
    if not isinstance(value, str) or not value.strip():
        raise RequestFailure(STATUS_IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, "QueryRetrieveLevel: missing", QUERY_RETRIEVE_LEVEL)
    return value.strip()


def _identifier_keys(identifier: Dataset) -> dict[str, object]:
    """Return the query value of each requested key that has a keyword, as text; sequences as lists of items."""
    keys: dict[str, object] = {}
    for tag in identifier.keys():
        keyword = keyword_for_tag(tag)
        if tag.element == 0 or tag in HANDLER_TAGS or tag.is_private or not keyword:
            continue
        try:
            element = identifier[tag]
        except Exception:
            # pydicom rejects some malformed values while converting them, such as an IS that is not a number.
            raise RequestFailure(
                STATUS_IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, f"{keyword}: invalid {dictionary_VR(tag)} value", tag
            ) from None
        keys[keyword] = _query_value(element)
    return keys


def _query_value(element: DataElement) -> object:
    value = element.value
    if element.VR == "SQ":
        return list(value or [])
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value
    if isinstance(value, MultiValue):
        return "\\".join(str(item) for item in value)
    return str(value)


def _requested_elements(identifier: Dataset) -> tuple[tuple[BaseTag, str], ...]:
    elements = []
    for tag in identifier.keys():
        if tag.element == 0 or tag in RESPONSE_TAGS:
            continue
        elements.append((tag, _response_vr(identifier, tag)))
    return tuple(elements)


def _response_vr(identifier: Dataset, tag: BaseTag) -> str:
    vr = dictionary_VR(tag) if keyword_for_tag(tag) else ""
    if vr and " or " not in vr:
        return vr
    # Private and ambiguous elements keep the VR the request gave them.
    request_vr = identifier.get_item(tag).VR
    return request_vr if request_vr and " or " not in request_vr else "UN"


def _negotiated_options(event: Any, sop_class_uid: str) -> tuple[bool, bool, bool]:
    """Return the relational, combined datetime and fuzzy name options this association accepted."""
    accepted = event.assoc.acceptor.sop_class_extended.get(sop_class_uid, b"")
    relational, combined_datetime, fuzzy_names = (index < len(accepted) and accepted[index] == 1 for index in range(3))
    return relational, combined_datetime, fuzzy_names


def _compile(request: _FindRequest) -> CompiledQuery:
    try:
        return compile_query(
            request.level,
            request.keys,
            root=request.root,
            relational=request.relational,
            fuzzy_names=request.fuzzy_names,
            combined_datetime=request.combined_datetime,
        )
    except InvalidQuery as exc:
        raise RequestFailure(STATUS_IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, str(exc), exc.tag) from None


def _responses(event: Any, request: _FindRequest, compiled: CompiledQuery, summary: _Summary) -> Iterator[FindResponse]:
    status = STATUS_PENDING_KEYS_NOT_MATCHED if compiled.unmatched_keys else STATUS_PENDING
    try:
        responder = _pending_responder(event, request, compiled)
        for row in compiled.rows():
            # pynetdicom queues a C-CANCEL that arrives while the handler runs; it is seen here, between matches.
            if event.is_cancelled:
                _finish(summary, STATUS_CANCEL, "cancelled by the SCU")
                yield STATUS_CANCEL, None
                return
            if not event.assoc.is_established:
                # Released or aborted meanwhile: the summary records an interrupted query.
                return
            encoded = responder.encode(row) if responder is not None else None
            if encoded is None:
                yield status, _response_identifier(request, row, compiled.level)
            else:
                responder.send(status, encoded)
            summary.matches += 1
            patient_id = row.get("PatientID")
            if isinstance(patient_id, str) and patient_id:
                summary.patient_ids.setdefault(patient_id, None)
    except Exception:
        yield _failed(summary, _internal_error(summary))
        return

    _finish(summary, STATUS_SUCCESS, "")


def _pending_responder(event: Any, request: _FindRequest, compiled: CompiledQuery) -> PendingResponder | None:
    """Return the direct encoder of pending responses, when the negotiated transfer syntax is one it writes."""
    transfer_syntax = str(event.context.transfer_syntax)
    if transfer_syntax not in DIRECT_TRANSFER_SYNTAXES:
        return None
    return PendingResponder(
        event.assoc,
        context_id=event.context.context_id,
        implicit_vr=transfer_syntax == ImplicitVRLittleEndian,
        sop_class_uid=str(event.request.AffectedSOPClassUID),
        message_id=int(event.request.MessageID),
        elements=request.elements,
        returned=compiled.return_paths.keys(),
        level=str(compiled.level),
        ae_title=settings.TELERAD.ae_title,
        instance_availability=ONLINE,
    )


def _response_identifier(request: _FindRequest, row: dict[str, object], level: Level) -> Dataset:
    """Build a response with every requested element: the matched values, and zero length where the index has none."""
    response = Dataset()
    for tag, vr in request.elements:
        keyword = keyword_for_tag(tag)
        response.add(DataElement(tag, vr, _element_value(row.get(keyword), vr) if keyword in row else _empty(vr)))
    response.QueryRetrieveLevel = str(level)
    response.RetrieveAETitle = settings.TELERAD.ae_title
    if INSTANCE_AVAILABILITY in response:
        response.InstanceAvailability = ONLINE
    if any(isinstance(value, str) and not value.isascii() for value in row.values()):
        response.SpecificCharacterSet = UTF8_CHARACTER_SET
    return response


def _element_value(value: object, vr: str) -> object:
    if value is None or value == "":
        return _empty(vr)
    if isinstance(value, str) and "\\" in value and vr not in SINGLE_VALUED_VRS:
        return value.split("\\")
    return value


def _empty(vr: str) -> object:
    return [] if vr == "SQ" else None


def _finish(summary: _Summary, status: int, comment: str) -> None:
    """Log the outcome of one C-FIND with identifiers only, and record its audit event."""
    summary.recorded = True
    duration = time.monotonic() - summary.started
    status_text = "interrupted" if status == STATUS_INTERRUPTED else f"0x{status:04X}"
    if status in {STATUS_SUCCESS, STATUS_CANCEL}:
        logger.info(
            "C-FIND finished calling_ae=%s model=%s level=%s status=%s matches=%d duration=%.3fs",
            summary.calling_ae_title, summary.root or "-", summary.level or "-", status_text, summary.matches, duration,
        )
    else:
        logger.warning(
            "C-FIND failed calling_ae=%s model=%s level=%s status=%s matches=%d reason=%s",
            summary.calling_ae_title, summary.root or "-", summary.level or "-", status_text, summary.matches, comment,
        )
    audit.record_event(
        action=audit.Action.QUERY,
        outcome=audit.Outcome.SUCCESS if status in {STATUS_SUCCESS, STATUS_CANCEL} else audit.Outcome.MINOR_FAILURE,
        user=summary.calling_ae_title,
        address=summary.address,
        patient_id=_single_value(summary.keys.get("PatientID")),
        study_instance_uid=_single_value(summary.keys.get("StudyInstanceUID")),
        detail=_audit_detail(summary, status_text, comment),
        patient_ids=summary.patient_ids,
    )


def _single_value(value: object) -> str:
    """Return a query value that names exactly one entity, else an empty string."""
    if not isinstance(value, str) or not value or "\\" in value or "*" in value or "?" in value:
        return ""
    return value


def _audit_detail(summary: _Summary, status_text: str, comment: str) -> str:
    # The audit trail keeps what was searched for (as the DICOM audit message
    # for a query does); the operator log does not.
    query = "; ".join(f"{keyword}={value}" for keyword, value in summary.keys.items() if isinstance(value, str) and value)
    parts = [f"C-FIND {summary.root or '-'} {summary.level or '-'}", f"status {status_text}", f"{summary.matches} matches"]
    if comment:
        parts.append(comment)
    if query:
        parts.append(f"query {query[:AUDIT_QUERY_LENGTH]}")
    return "; ".join(parts)
