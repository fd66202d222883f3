"""C-MOVE and C-GET SCP for the Patient Root and Study Root Query/Retrieve information models.

pynetdicom's Query/Retrieve service class runs the protocol of each retrieve
(PS3.4 C.4.2 and C.4.3): it opens the association to a C-MOVE destination,
sends one C-STORE sub-operation per instance the handler yields, a pending
response after each, and the final response with the sub-operation counts and
the Failed SOP Instance UID List.

telerad's handlers match the identifier's unique keys against the index and
yield a :class:`StoredInstance` for each matching instance. The association
that carries the sub-operations gets :func:`send_stored_instance` in place of
its ``send_c_store``: it sends the stored dataset bytes as they are in the
file, without decoding them, when the peer accepted the stored transfer
syntax. Otherwise it decodes the instance with pydicom, decompressing it when
needed, and sends it in an uncompressed syntax the peer accepted.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import socket
import time
from pathlib import Path
from typing import Any, Iterator

from django.conf import settings
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, _config, build_context, evt
from pynetdicom.dimse_primitives import C_GET
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.status import code_to_category

from telerad.archive import ingest
from telerad.archive.models import Instance
from telerad.archive.query import MAX_LIST_OF_UIDS, Level, Root
from telerad.archive.record import UID_PATTERN
from telerad.audit import events as audit
from telerad.dimse.models import RemoteAE
from telerad.dimse import tls
from telerad.dimse.access import Service, record_refused_service
from telerad.dimse.status import ERROR_COMMENT_LENGTH, RequestFailure

logger = logging.getLogger(__name__)

MOVE_SOP_CLASSES: dict[str, Root] = {
    str(PatientRootQueryRetrieveInformationModelMove): Root.PATIENT,
    str(StudyRootQueryRetrieveInformationModelMove): Root.STUDY,
}
GET_SOP_CLASSES: dict[str, Root] = {
    str(PatientRootQueryRetrieveInformationModelGet): Root.PATIENT,
    str(StudyRootQueryRetrieveInformationModelGet): Root.STUDY,
}

# PS3.4 C.4.2.1.5 and C.4.3.1.4: C-MOVE and C-GET statuses, and the general
# status 0x0124 of PS3.7 Annex C.
STATUS_SUCCESS = 0x0000
STATUS_PENDING = 0xFF00
STATUS_CANCEL = 0xFE00
STATUS_SUB_OPERATIONS_FAILED_OR_WARNING = 0xB000
STATUS_NOT_AUTHORIZED = 0x0124
STATUS_UNABLE_TO_PERFORM_SUB_OPERATIONS = 0xA702
STATUS_MOVE_DESTINATION_UNKNOWN = 0xA801
STATUS_IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
STATUS_UNABLE_TO_PROCESS = 0xC000
# Status of a retrieve whose association was released or aborted before the last response.
STATUS_INTERRUPTED = -1
# The sub-operation counts are US (PS3.7 C.4.2), so one retrieve sends at most 65535 instances.
MAX_SUB_OPERATIONS = 65535
# PS3.8 9.3.2.2: presentation context IDs are the odd numbers 1 to 255.
MAX_PRESENTATION_CONTEXTS = 128

QUERY_RETRIEVE_LEVEL = Tag("QueryRetrieveLevel")
UNCOMPRESSED_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)

# PS3.4 C.4.2.2.1 and C.6.1.1, C.6.2.1: the unique key of each level, and the
# levels each model has. The unique keys of the levels above the requested one
# are single values; the key of the requested level may be a list of UIDs.
UNIQUE_KEYS = {
    Level.PATIENT: "PatientID",
    Level.STUDY: "StudyInstanceUID",
    Level.SERIES: "SeriesInstanceUID",
    Level.IMAGE: "SOPInstanceUID",
}
MODEL_LEVELS = {
    Root.PATIENT: (Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE),
    Root.STUDY: (Level.STUDY, Level.SERIES, Level.IMAGE),
}
# The Instance lookup that each unique key filters on.
INSTANCE_LOOKUPS = {
    "PatientID": "series__study__patient__patient_id",
    "StudyInstanceUID": "series__study__study_instance_uid",
    "SeriesInstanceUID": "series__series_instance_uid",
    "SOPInstanceUID": "sop_instance_uid",
}
INSTANCE_COLUMNS = (
    "sop_class_uid", "sop_instance_uid", "transfer_syntax_uid", "storage_key", "file_size",
    "series__study__patient__patient_id", "series__study__study_instance_uid",
)
INSTANCE_ORDER = ("series__study__pk", "series__series_number", "series__pk", "instance_number", "pk")

RetrieveResponse = tuple[int | Dataset, Dataset | None]


def add_retrieve_contexts(ae: AE) -> None:
    """Add the Patient Root and Study Root MOVE and GET presentation contexts, in pynetdicom's default transfer syntaxes."""
    # pynetdicom logs C-MOVE and C-GET identifiers at INFO, which could write patient IDs to the log.
    _config.LOG_REQUEST_IDENTIFIERS = False
    # A C-STORE request given a file path then sends the file's dataset bytes
    # as they are, read in chunks, instead of decoding and encoding it again.
    _config.STORE_SEND_CHUNKED_DATASET = True
    for sop_class_uid in (*MOVE_SOP_CLASSES, *GET_SOP_CLASSES):
        ae.add_supported_context(sop_class_uid)


class SubOperationFailed(Exception):
    """An instance that cannot be sent on the association; pynetdicom counts it as a failed sub-operation."""


class StoredInstance(Dataset):
    """A reference to one stored instance, yielded to pynetdicom as the dataset of a C-STORE sub-operation.

    It contains only the SOP Class and Instance UIDs, which pynetdicom reads
    for the Failed SOP Instance UID List. It has no file meta information, so
    an association without :func:`send_stored_instance` raises instead of
    sending these two elements as if they were the instance.
    """

    def __init__(self, *, sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str, path: Path, study_key: tuple[str, str]):
        super().__init__()
        self.SOPClassUID = sop_class_uid
        self.SOPInstanceUID = sop_instance_uid
        # Lower-case attributes are plain Python attributes, not DICOM elements.
        self.stored_transfer_syntax = UID(transfer_syntax_uid)
        self.stored_path = path
        self.study_key = study_key


@dataclasses.dataclass
class Retrieval:
    """The progress and outcome of one C-MOVE or C-GET, for its log line and audit events."""

    operation: str  # "C-MOVE" or "C-GET"
    calling_ae_title: str
    address: str
    started: float = dataclasses.field(default_factory=time.monotonic)
    root: Root | None = None
    level: str = ""
    destination: str = ""
    matched: int = 0
    completed: int = 0
    warnings: int = 0
    failed: int = 0
    sent_bytes: int = 0
    # (patient ID, Study Instance UID) of the matched instances, with their number.
    studies: collections.Counter[tuple[str, str]] = dataclasses.field(default_factory=collections.Counter)
    sent_per_study: collections.Counter[tuple[str, str]] = dataclasses.field(default_factory=collections.Counter)
    recorded: bool = False

    @property
    def remaining(self) -> int:
        return self.matched - self.completed - self.warnings - self.failed

    def final_status(self) -> int:
        """Return the status pynetdicom sends once every sub-operation ran (PS3.4 C.4.2.1.5)."""
        if not self.failed and not self.warnings:
            return STATUS_SUCCESS
        if self.failed == self.matched:
            return STATUS_UNABLE_TO_PERFORM_SUB_OPERATIONS
        return STATUS_SUB_OPERATIONS_FAILED_OR_WARNING


@dataclasses.dataclass(frozen=True)
class RetrieveRequest:
    root: Root
    level: Level
    # Unique key keyword to its values: one value for the levels above, one or more at the requested level.
    keys: dict[str, list[str]]


@dataclasses.dataclass(frozen=True)
class Destination:
    ae_title: str
    host: str
    port: int
    tls: bool = False


def handle_move(event: Any) -> Iterator[Any]:
    """Run a C-MOVE request (EVT_C_MOVE handler).

    Yield the destination's (host, port, association options), then the
    number of sub-operations, then one pending status and StoredInstance
    per matching instance, as pynetdicom's Move SCP expects.
    """
    retrieval = _start(event, "C-MOVE")
    try:
        yield from _move(event, retrieval)
    finally:
        if not retrieval.recorded:
            _finish(retrieval, STATUS_INTERRUPTED, "association released or aborted before the last response")


def handle_get(event: Any) -> Iterator[Any]:
    """Run a C-GET request (EVT_C_GET handler).

    Yield the number of sub-operations, then one pending status and
    StoredInstance per matching instance, which pynetdicom sends back on the
    requesting association as C-STORE sub-operations.
    """
    retrieval = _start(event, "C-GET")
    try:
        yield from _get(event, retrieval)
    finally:
        vars(event.assoc).pop("send_c_store", None)
        if not retrieval.recorded:
            _finish(retrieval, STATUS_INTERRUPTED, "association released or aborted before the last response")


def _move(event: Any, retrieval: Retrieval) -> Iterator[Any]:
    destination = _move_destination(event, retrieval)
    if not _may_use(event, Service.MOVE):
        yield _refused_move(event, retrieval)
        return
    if destination is None:
        yield _unknown_destination(retrieval, f"move destination {retrieval.destination!r} is not a registered AE with host and port")
        return

    try:
        request = _read_request(event, retrieval, MOVE_SOP_CLASSES)
        instances = _matching_instances(request, retrieval)
        failure = None
    except RequestFailure as exc:
        instances, failure = [], exc
    except Exception:
        instances, failure = [], _internal_error(retrieval)

    options: dict[str, Any] = {
        "contexts": _proposed_contexts(instances),
        "max_pdu": settings.TELERAD.dicom_max_pdu,
        "evt_handlers": [(evt.EVT_CONN_OPEN, _prepare_store_association, [retrieval])],
    }
    if destination.tls:
        try:
            # The peer's certificate must name destination.host, as a DNS name or IP address.
            options["tls_args"] = (tls.client_context(settings.TELERAD), destination.host)
        except OSError as exc:
            logger.error("cannot load the DICOM TLS certificate, key or CA file error=%s", exc)
            yield _unknown_destination(retrieval, f"TLS to move destination {destination.ae_title} is not available: {exc}")
            return
    if failure is not None:
        # NOTE: pynetdicom's Move SCP reads a status only after it has
        # associated with the destination, so a failed request opens one
        # empty association (Verification only) with the registered
        # destination, and the one sub-operation announced here counts as
        # failed. A destination that rejects Verification turns the response
        # into 0xA801, while the log and audit keep the real failure.
        response = _failed(retrieval, failure)
        yield destination.host, destination.port, options
        yield 1
        yield response
        return
    yield destination.host, destination.port, options
    if not instances:
        # pynetdicom responds to zero sub-operations with Success, without associating or resuming the handler.
        _finish(retrieval, STATUS_SUCCESS, "")
    yield len(instances)
    yield from _sub_operations(event, retrieval, instances)


def _refused_move(event: Any, retrieval: Retrieval) -> tuple[None, None]:
    """Log and audit a C-MOVE of an AE that may not move; return the destination that ends the request.

    Nothing goes out on behalf of such an AE, not even an empty association.
    pynetdicom 3.0 responds to the returned destination with 0xA801 Move
    Destination Unknown without an Error Comment, before it would associate,
    so that one response is rewritten into 0x0124 Refused: Not Authorized
    with the reason as it is sent.
    """
    failure = RequestFailure(STATUS_NOT_AUTHORIZED, f"AE {retrieval.calling_ae_title} is not allowed to use C-MOVE")
    record_refused_service(Service.MOVE, retrieval.calling_ae_title, retrieval.address, failure.comment, failure.status)
    retrieval.recorded = True
    _rewrite_next_response(event, STATUS_MOVE_DESTINATION_UNKNOWN, failure)
    return None, None


def _rewrite_next_response(event: Any, expected_status: int, failure: RequestFailure) -> None:
    """Give the next response to this request, when it has `expected_status`, the status and Error Comment of `failure`."""
    dimse = event.assoc.dimse
    message_id = event.request.MessageID

    def send_msg(primitive: Any, context_id: int) -> None:
        if primitive.MessageIDBeingRespondedTo == message_id:
            vars(dimse).pop("send_msg", None)
            if primitive.Status == expected_status:
                primitive.Status = failure.status
                primitive.ErrorComment = failure.comment[:ERROR_COMMENT_LENGTH]
        type(dimse).send_msg(dimse, primitive, context_id)

    dimse.send_msg = send_msg


def _unknown_destination(retrieval: Retrieval, reason: str) -> tuple[None, None]:
    """Return the destination pynetdicom answers with 0xA801 Move Destination Unknown.

    NOTE: pynetdicom 3.0 sends that response itself, without an Error
    Comment, so the reason goes to the log line and audit event only.
    """
    _finish(retrieval, STATUS_MOVE_DESTINATION_UNKNOWN, reason)
    return None, None


def _get(event: Any, retrieval: Retrieval) -> Iterator[Any]:
    # pynetdicom's Get SCP reads a status only after the number of
    # sub-operations, so each failure below announces one that never starts.
    if not _may_use(event, Service.GET):
        yield 1
        _send_next_get_failure_bare(event.assoc)
        yield _refused_get(retrieval)
        return
    try:
        request = _read_request(event, retrieval, GET_SOP_CLASSES)
        instances = _matching_instances(request, retrieval)
    except RequestFailure as failure:
        yield 1
        _send_next_get_failure_bare(event.assoc)
        yield _failed(retrieval, failure)
        return
    except Exception:
        yield 1
        _send_next_get_failure_bare(event.assoc)
        yield _failed(retrieval, _internal_error(retrieval))
        return

    if not instances:
        # pynetdicom answers zero sub-operations with Success and does not resume the handler.
        _finish(retrieval, STATUS_SUCCESS, "")
    event.assoc.send_c_store = functools.partial(send_stored_instance, event.assoc, retrieval)
    yield len(instances)
    yield from _sub_operations(event, retrieval, instances)


def _send_next_get_failure_bare(assoc: Any) -> None:
    """Send the next C-GET failure response without an identifier and without sub-operation counts.

    pynetdicom 3.0 adds a Failed SOP Instance UID List to every failure
    response, and counts the sub-operation announced before the failure as
    failed. For a request that failed before any sub-operation, neither is
    true. DCMTK 3.6.7 getscu does not read that identifier either, so the
    identifier arrived during its release, which then failed.
    """
    dimse = assoc.dimse

    def send_msg(primitive: Any, context_id: int) -> None:
        if isinstance(primitive, C_GET) and primitive.Status is not None and code_to_category(primitive.Status) == "Failure":
            primitive.Identifier = None
            primitive.NumberOfRemainingSuboperations = None
            primitive.NumberOfCompletedSuboperations = None
            primitive.NumberOfFailedSuboperations = None
            primitive.NumberOfWarningSuboperations = None
            del dimse.send_msg
        type(dimse).send_msg(dimse, primitive, context_id)

    dimse.send_msg = send_msg


def _refused_get(retrieval: Retrieval) -> RetrieveResponse:
    """Return the failure for an AE that may not use C-GET, with its log line and audit event."""
    failure = RequestFailure(STATUS_NOT_AUTHORIZED, f"AE {retrieval.calling_ae_title} is not allowed to use C-GET")
    record_refused_service(Service.GET, retrieval.calling_ae_title, retrieval.address, failure.comment, failure.status)
    retrieval.recorded = True
    return failure.response(), None


def _sub_operations(event: Any, retrieval: Retrieval, instances: list[StoredInstance]) -> Iterator[RetrieveResponse]:
    """Yield a pending status and each instance, after the number of sub-operations was yielded."""
    for instance in instances:
        # pynetdicom queues a C-CANCEL that arrives during a sub-operation; it is seen here, between them.
        if event.is_cancelled:
            _finish(retrieval, STATUS_CANCEL, "cancelled by the SCU")
            yield STATUS_CANCEL, None
            return
        yield STATUS_PENDING, instance
    # pynetdicom resumes the handler after the last sub-operation, so the counts are final here.
    status = retrieval.final_status()
    _finish(retrieval, status, "" if status == STATUS_SUCCESS else f"{retrieval.failed} sub-operations failed")


def _start(event: Any, operation: str) -> Retrieval:
    stats = getattr(event.assoc, "telerad_stats", None)
    if stats is not None:
        return Retrieval(operation, stats.calling_ae_title, stats.address)
    requestor = event.assoc.requestor
    return Retrieval(operation, str(requestor.ae_title).strip(), str(requestor.address))


def _failed(retrieval: Retrieval, failure: RequestFailure) -> RetrieveResponse:
    _finish(retrieval, failure.status, failure.comment)
    return failure.response(), None


def _internal_error(retrieval: Retrieval) -> RequestFailure:
    """Log the exception being handled and return the failure the SCU gets for it."""
    logger.exception("%s failed calling_ae=%s level=%s", retrieval.operation, retrieval.calling_ae_title, retrieval.level or "-")
    return RequestFailure(STATUS_UNABLE_TO_PROCESS, "internal error; see the server log")


# --- The request -----------------------------------------------------------------


def _may_use(event: Any, service: Service) -> bool:
    # Associations that did not pass the listener's EVT_REQUESTED check are not served.
    stats = getattr(event.assoc, "telerad_stats", None)
    return stats is not None and bool(getattr(stats, service.permission))


def _read_request(event: Any, retrieval: Retrieval, sop_classes: dict[str, Root]) -> RetrieveRequest:
    sop_class_uid = str(event.request.AffectedSOPClassUID)
    root = sop_classes.get(sop_class_uid)
    if root is None:
        raise RequestFailure(STATUS_IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, f"SOP Class {sop_class_uid} not supported")
    retrieval.root = root

    identifier = _decoded_identifier(event)
    level = _retrieve_level(identifier, root, retrieval)
    return RetrieveRequest(root=root, level=level, keys=_unique_keys(identifier, root, level))


def _decoded_identifier(event: Any) -> Dataset:
    try:
        identifier = event.identifier
        # Decode every element now, so that a malformed one fails here and not while matching.
        for _ in identifier:
            pass
        return identifier
    except Exception as exc:
        logger.warning("retrieve identifier cannot be decoded error=%s", type(exc).__name__)
        raise RequestFailure(STATUS_IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, "the identifier cannot be decoded") from None


def _retrieve_level(identifier: Dataset, root: Root, retrieval: Retrieval) -> Level:
    # PS3.4 C.4.2.1.4.1: the identifier names its Query/Retrieve Level.
    value = identifier[QUERY_RETRIEVE_LEVEL].value if QUERY_RETRIEVE_LEVEL in identifier else None
    if not isinstance(value, str) or not value.strip():
        raise RequestFailure(STATUS_IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, "QueryRetrieveLevel: missing", QUERY_RETRIEVE_LEVEL)
    retrieval.level = value.strip()
    levels = MODEL_LEVELS[root]
    if retrieval.level not in levels:
        allowed = ", ".join(levels)
        raise RequestFailure(
            STATUS_IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, f"QueryRetrieveLevel: use {allowed}", QUERY_RETRIEVE_LEVEL
        )
    return Level(retrieval.level)


def _unique_keys(identifier: Dataset, root: Root, level: Level) -> dict[str, list[str]]:
    """Return the unique key values of the requested level and the levels above it in the model.

    Other keys in the identifier are ignored: PS3.4 C.4.2.2.1 lets a retrieve match on unique keys only.
    """
    levels = MODEL_LEVELS[root]
    keys: dict[str, list[str]] = {}
    for key_level in levels[: levels.index(level) + 1]:
        keyword = UNIQUE_KEYS[key_level]
        values = _key_values(identifier, keyword)
        if key_level is not level and len(values) > 1:
            raise RequestFailure(STATUS_IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, f"{keyword}: must be a single value", Tag(keyword))
        keys[keyword] = values
    return keys


def _key_values(identifier: Dataset, keyword: str) -> list[str]:
    tag = Tag(keyword)
    value = identifier[tag].value if tag in identifier else None
    values = [str(item).strip() for item in value] if isinstance(value, MultiValue) else [str(value or "").strip()]
    values = [item for item in values if item]
    if not values:
        raise RequestFailure(STATUS_IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, f"{keyword}: missing unique key", tag)
    if keyword == "PatientID":
        if len(values) > 1:
            raise RequestFailure(STATUS_IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, "PatientID: must be a single value", tag)
        if any(character in values[0] for character in "*?"):
            raise RequestFailure(STATUS_IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, "PatientID: wildcards not allowed", tag)
        return values
    if len(values) > MAX_LIST_OF_UIDS:
        raise RequestFailure(STATUS_IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, f"{keyword}: at most {MAX_LIST_OF_UIDS} UIDs", tag)
    if not all(len(uid) <= 64 and UID_PATTERN.match(uid) for uid in values):
        raise RequestFailure(STATUS_IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, f"{keyword}: invalid UID", tag)
    return values


def _matching_instances(request: RetrieveRequest, retrieval: Retrieval) -> list[StoredInstance]:
    queryset = Instance.objects.all()
    for keyword, values in request.keys.items():
        lookup = INSTANCE_LOOKUPS[keyword]
        queryset = queryset.filter(**{lookup: values[0]} if len(values) == 1 else {f"{lookup}__in": values})
    rows = list(queryset.order_by(*INSTANCE_ORDER).values_list(*INSTANCE_COLUMNS)[: MAX_SUB_OPERATIONS + 1])
    if len(rows) > MAX_SUB_OPERATIONS:
        raise RequestFailure(STATUS_UNABLE_TO_PROCESS, f"more than {MAX_SUB_OPERATIONS} instances match; retrieve by series")

    storage = ingest.default_storage()
    instances = []
    for sop_class_uid, sop_instance_uid, transfer_syntax_uid, storage_key, _file_size, patient_id, study_uid in rows:
        instances.append(StoredInstance(
            sop_class_uid=sop_class_uid,
            sop_instance_uid=sop_instance_uid,
            transfer_syntax_uid=transfer_syntax_uid,
            path=storage.path(storage_key),
            study_key=(patient_id, study_uid),
        ))
        retrieval.studies[(patient_id, study_uid)] += 1
    retrieval.matched = len(instances)
    return instances


# --- The C-MOVE destination ----------------------------------------------------------------


def _move_destination(event: Any, retrieval: Retrieval) -> Destination | None:
    title = str(event.move_destination or "").strip()
    retrieval.destination = title
    remote_ae = RemoteAE.objects.filter(ae_title=title, enabled=True).first() if title else None
    if remote_ae is None or not remote_ae.host or not remote_ae.port:
        return None
    return Destination(title, remote_ae.host, remote_ae.port, tls=remote_ae.tls_required)


def _proposed_contexts(instances: list[StoredInstance]) -> list[PresentationContext]:
    """Propose each SOP class in each stored transfer syntax, then in the uncompressed ones as a fallback.

    Each stored syntax gets a context of its own, because the destination
    accepts one transfer syntax per context.
    """
    pairs: dict[tuple[str, str], None] = {}
    for instance in instances:
        pairs[(str(instance.SOPClassUID), instance.stored_transfer_syntax)] = None
    contexts = [build_context(sop_class_uid, [transfer_syntax]) for sop_class_uid, transfer_syntax in pairs]
    for sop_class_uid in dict.fromkeys(sop_class_uid for sop_class_uid, _ in pairs):
        contexts.append(build_context(sop_class_uid, list(UNCOMPRESSED_SYNTAXES)))
    if not contexts:
        # A request that failed or matched nothing still needs one context to associate.
        contexts.append(build_context(Verification))
    if len(contexts) > MAX_PRESENTATION_CONTEXTS:
        # NOTE: instances whose SOP class and syntax did not fit fail as sub-operations, named in the log.
        logger.warning("C-MOVE needs %d presentation contexts; proposing the first %d", len(contexts), MAX_PRESENTATION_CONTEXTS)
        contexts = contexts[:MAX_PRESENTATION_CONTEXTS]
    return contexts


def _prepare_store_association(event: Any, retrieval: Retrieval) -> None:
    """Set up the association to a C-MOVE destination once its connection is open (EVT_CONN_OPEN handler)."""
    assoc = event.assoc
    # Without TCP_NODELAY each C-STORE waits for the peer's delayed acknowledgement (about 40 ms on Linux).
    assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assoc.send_c_store = functools.partial(send_stored_instance, assoc, retrieval)


# --- Sending one instance ----------------------------------------------------------------


def send_stored_instance(assoc: Any, retrieval: Retrieval, dataset: Dataset, *args: Any, **kwargs: Any) -> Dataset:
    """Send one C-STORE on `assoc`, in place of its ``send_c_store``, and count its outcome in `retrieval`.

    A StoredInstance is sent as stored when the peer accepted its transfer
    syntax, or decoded into an accepted uncompressed one; any other dataset
    is sent by pynetdicom as usual. Returns the peer's response status.
    """
    send = type(assoc).send_c_store.__get__(assoc)
    if not isinstance(dataset, StoredInstance):
        return send(dataset, *args, **kwargs)

    try:
        payload = _payload(assoc, dataset)
        status = send(payload, *args, **kwargs)
    except Exception as exc:
        retrieval.failed += 1
        logger.warning(
            "%s sub-operation failed sop_instance_uid=%s reason=%s", retrieval.operation, dataset.SOPInstanceUID, exc,
        )
        raise
    _count(retrieval, dataset, status)
    return status


def _payload(assoc: Any, instance: StoredInstance) -> Path | Dataset:
    """Return what to send for `instance`: its file path when the stored syntax was accepted, else a decoded dataset."""
    accepted = _accepted_syntaxes(assoc, str(instance.SOPClassUID))
    if instance.stored_transfer_syntax in accepted:
        return instance.stored_path

    fallback = next((syntax for syntax in UNCOMPRESSED_SYNTAXES if syntax in accepted), None)
    if fallback is None or not instance.stored_transfer_syntax.is_little_endian:
        offered = ", ".join(accepted) or "none"
        raise SubOperationFailed(
            f"the peer accepted no usable transfer syntax for SOP class {instance.SOPClassUID} "
            f"stored in {instance.stored_transfer_syntax} (accepted: {offered})"
        )
    ds = dcmread(instance.stored_path)
    if instance.stored_transfer_syntax.is_compressed:
        # Decompressing sets the transfer syntax to Explicit VR Little Endian,
        # and pynetdicom converts to Implicit VR Little Endian when only that
        # was accepted. It is the same instance, so it keeps its UID.
        ds.decompress(generate_instance_uid=False)
    return ds


def _accepted_syntaxes(assoc: Any, sop_class_uid: str) -> list[UID]:
    """Return the transfer syntaxes the peer accepted for `sop_class_uid` with telerad as SCU."""
    return [
        context.transfer_syntax[0]
        for context in assoc.accepted_contexts
        if context.abstract_syntax == sop_class_uid and context.as_scu
    ]


def _count(retrieval: Retrieval, instance: StoredInstance, status: Dataset) -> None:
    code = status.get("Status")
    category = code_to_category(code) if code is not None else "Failure"
    if category == "Success":
        retrieval.completed += 1
    elif category == "Warning":
        retrieval.warnings += 1
    else:
        retrieval.failed += 1
        logger.warning(
            "%s sub-operation failed sop_instance_uid=%s status=%s",
            retrieval.operation, instance.SOPInstanceUID, "none" if code is None else f"0x{code:04X}",
        )
        return
    retrieval.sent_per_study[instance.study_key] += 1
    retrieval.sent_bytes += _file_size(instance.stored_path)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# --- Log and audit --------------------------------------------------------------------


def _finish(retrieval: Retrieval, status: int, comment: str) -> None:
    """Log the outcome of one retrieve with identifiers and counts only, and record its audit events."""
    retrieval.recorded = True
    duration = time.monotonic() - retrieval.started
    status_text = "interrupted" if status == STATUS_INTERRUPTED else f"0x{status:04X}"
    log = logger.info if status in {STATUS_SUCCESS, STATUS_CANCEL} else logger.warning
    log(
        "%s finished calling_ae=%s destination=%s model=%s level=%s status=%s studies=%d instances=%d "
        "completed=%d warnings=%d failed=%d megabytes=%.1f duration=%.3fs%s",
        retrieval.operation, retrieval.calling_ae_title, retrieval.destination or "-", retrieval.root or "-",
        retrieval.level or "-", status_text, len(retrieval.studies), retrieval.matched, retrieval.completed,
        retrieval.warnings, retrieval.failed, retrieval.sent_bytes / 1_000_000, duration,
        f" reason={comment}" if comment else "",
    )
    _record_audit_events(retrieval, status, status_text, comment)


def _record_audit_events(retrieval: Retrieval, status: int, status_text: str, comment: str) -> None:
    outcome = audit.Outcome.SUCCESS if status in {STATUS_SUCCESS, STATUS_CANCEL} else audit.Outcome.MINOR_FAILURE
    summary = f"{retrieval.operation} {retrieval.root or '-'} {retrieval.level or '-'}"
    if retrieval.operation == "C-MOVE":
        summary += f" to {retrieval.destination or '-'}"
    summary += f"; status {status_text}"
    if comment:
        summary += f"; {comment}"
    if not retrieval.studies:
        audit.record_event(
            action=audit.Action.RETRIEVE, outcome=outcome, user=retrieval.calling_ae_title,
            address=retrieval.address, detail=f"{summary}; no instances matched",
        )
        return
    for (patient_id, study_instance_uid), matched in retrieval.studies.items():
        sent = retrieval.sent_per_study[(patient_id, study_instance_uid)]
        audit.record_event(
            action=audit.Action.RETRIEVE, outcome=outcome, user=retrieval.calling_ae_title,
            address=retrieval.address, patient_id=patient_id, study_instance_uid=study_instance_uid,
            detail=f"{summary}; {sent} of {matched} instances sent",
        )

