"""telerad's DICOM listeners: Verification, Storage, Query (C-FIND) and Retrieve (C-MOVE, C-GET) SCP on pynetdicom.

telerad listens on the plain DICOM port, the DICOM TLS port, or both. Both
serve the same services under the same access rules, except that a remote AE
that requires TLS is accepted on the TLS port only.

Each association runs in its own pynetdicom thread. pynetdicom collects each
received dataset in memory, and the C-STORE handler passes a view of those
bytes to :mod:`telerad.archive.ingest`, which returns only once the file is
durable and the index committed.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import ssl
import threading
import time
from collections import Counter
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection
from pydicom import config as pydicom_config
from pydicom.dataset import Dataset
from pydicom.uid import AllTransferSyntaxes, ExplicitVRLittleEndian
from pynetdicom import AE, _config, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification, _STORAGE_CLASSES
from pynetdicom.transport import ThreadedAssociationServer

from telerad.archive import ingest
from telerad.audit import events as audit
from telerad.dicomweb import prebuild
from telerad.dimse import find, reactor, retrieve, tls
from telerad.dimse.access import Rejection, Service, check_association, record_refused_service
from telerad.dimse.status import ERROR_COMMENT_LENGTH

logger = logging.getLogger(__name__)

# PS3.7 C.4.2 and PS3.4 B.2.3 statuses used by the Storage SCP.
STATUS_SUCCESS = 0x0000
STATUS_DUPLICATE_SOP_INSTANCE = 0x0111
STATUS_NOT_AUTHORIZED = 0x0124
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_UNABLE_TO_PROCESS = 0xC211

# PS3.8 9.3.4: A-ASSOCIATE-RJ result, source and reason.
REJECT_PERMANENT = 0x01
REJECT_SOURCE_SERVICE_USER = 0x01
REJECT_NO_REASON_GIVEN = 0x01
# At a stop, open associations get this long to end before they are aborted,
# as long as the web server gives requests in progress.
STOP_GRACE_SECONDS = 10.0
STOP_POLL_SECONDS = 0.1
REJECT_CALLING_AE_NOT_RECOGNISED = 0x03
REJECT_CALLED_AE_NOT_RECOGNISED = 0x07


@dataclasses.dataclass
class AssociationStats:
    calling_ae_title: str
    address: str
    started: float = dataclasses.field(default_factory=time.monotonic)
    received: int = 0
    duplicates: int = 0
    failures: int = 0
    allow_store: bool = True
    allow_find: bool = True
    allow_move: bool = True
    allow_get: bool = True
    tls: bool = False
    # C-STORE requests refused because the AE may not store; the first one is logged and audited.
    refused: int = 0
    # Instances stored per (patient ID, study UID), for one audit event per study.
    studies: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)


def build_application_entity() -> AE:
    config = settings.TELERAD
    # Datasets are received into memory. pynetdicom's alternative, a
    # temporary file per dataset, cost about 3 ms more CPU per instance (it
    # builds file meta with pydicom) on a 2-core machine.
    # NOTE: each association keeps its largest instance in memory once, so
    # multi-gigabyte instances (whole-slide images) will need the file mode.
    _config.STORE_RECV_CHUNKED_DATASET = False
    # pynetdicom builds pydicom UIDs and datasets for every DIMSE message, and
    # pydicom's value validation of those costs more CPU than telerad's whole
    # ingest of an instance. telerad validates what it indexes itself.
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE

    ae = AE(ae_title=config.ae_title)
    ae.implementation_class_uid = ingest.IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = ingest.IMPLEMENTATION_VERSION_NAME
    ae.maximum_pdu_size = config.dicom_max_pdu
    ae.maximum_associations = config.dicom_max_associations
    ae.require_called_aet = True
    ae.network_timeout = 60
    ae.acse_timeout = 30
    ae.dimse_timeout = 60
    # pynetdicom accepts, from each proposed context, the first syntax of this
    # list that the context contains. Explicit VR Little Endian comes first
    # because most stored instances are in it, so that a C-GET SCU proposing
    # all uncompressed syntaxes in one context receives them unchanged.
    transfer_syntaxes = [str(ExplicitVRLittleEndian), *(str(uid) for uid in AllTransferSyntaxes if uid != ExplicitVRLittleEndian)]
    ae.add_supported_context(Verification, transfer_syntaxes)
    for sop_class_uid in _STORAGE_CLASSES.values():
        # PS3.7 D.3.3.4: a C-GET SCU proposes the SCP role for the storage
        # classes it receives, and telerad accepts it to send them back.
        ae.add_supported_context(sop_class_uid, transfer_syntaxes, scu_role=True, scp_role=True)
    find.add_find_contexts(ae)
    retrieve.add_retrieve_contexts(ae)
    return ae


class _QuickCopyContext(PresentationContext):
    """A supported presentation context that copies cheaply.

    pynetdicom deep-copies every supported context for each new association.
    With about 170 storage SOP classes and 39 transfer syntaxes that took
    60-100 ms per association, because each UID is validated again on copy.
    The attributes are immutable strings and lists of them, so copying the
    lists is enough.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> PresentationContext:
        # Filled in directly: copy.copy() through __reduce_ex__ cost about 2 ms per association.
        clone = object.__new__(type(self))
        clone.__dict__ = {name: list(value) if isinstance(value, list) else value for name, value in vars(self).items()}
        return clone


def event_handlers() -> list[tuple[Any, Any]]:
    return [
        (evt.EVT_REQUESTED, _on_requested),
        (evt.EVT_C_STORE, _on_c_store),
        (evt.EVT_C_FIND, find.handle_find),
        (evt.EVT_SOP_EXTENDED, find.negotiate_find_options),
        (evt.EVT_C_MOVE, retrieve.handle_move),
        (evt.EVT_C_GET, retrieve.handle_get),
        (evt.EVT_RELEASED, _on_finished),
        (evt.EVT_ABORTED, _on_finished),
    ]


def start(*, block: bool) -> list[ThreadedAssociationServer]:
    """Start the plain and the TLS listener, as configured; return them when `block` is False.

    Raises OSError or ssl.SSLError when the TLS certificate, key or CA file cannot be loaded.
    """
    config = settings.TELERAD
    removed = ingest.default_storage().remove_unfinished()
    if removed:
        logger.info("removed unfinished files of earlier runs count=%d", removed)
    ae = build_application_entity()
    servers = []
    try:
        if config.dicom_plain_listener:
            servers.append(_start_server(ae, config.dicom_port, None))
        if config.dicom_tls_port is not None:
            tls.ensure_certificate(config)
            servers.append(_start_server(ae, config.dicom_tls_port, tls.server_context(config)))
    except BaseException:
        stop(servers)
        raise
    if block:
        try:
            threading.Event().wait()
        finally:
            stop(servers)
    return servers


def _start_server(ae: AE, port: int, ssl_context: ssl.SSLContext | None) -> ThreadedAssociationServer:
    config = settings.TELERAD
    if ssl_context is None:
        server = ae.start_server((config.host, port), block=False, evt_handlers=event_handlers())
    else:
        # ae.start_server with an SSL context would run each TLS handshake in the accept loop.
        server = ae.make_server(
            (config.host, port), ssl_context=ssl_context, evt_handlers=event_handlers(), server_class=tls.TLSAssociationServer,
        )
        thread = threading.Thread(target=server.serve_forever, name=f"DICOM TLS listener {port}", daemon=True)
        thread.start()
        # pynetdicom's AE tracks its servers there, and server.shutdown() removes them again.
        ae._servers.append(server)
    tune(server)
    server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    logger.info(
        "DICOM listener started ae_title=%s address=%s:%s tls=%s client_certificates=%s",
        config.ae_title, config.host, port, "yes" if ssl_context else "no",
        "required" if ssl_context and ssl_context.verify_mode == ssl.CERT_REQUIRED else "no",
    )
    return server


def tune(server: ThreadedAssociationServer) -> None:
    """Make a pynetdicom server copy its contexts cheaply and build associations that wait on events."""
    for context in server.contexts:
        context.__class__ = _QuickCopyContext
    server.RequestHandlerClass = reactor.EventDrivenRequestHandler


def stop(servers: list[ThreadedAssociationServer], *, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
    """Stop accepting associations, let open ones end for up to `grace_seconds`, then abort the rest.

    An association that a peer keeps open and idle would otherwise hold the
    process until its network timeout.
    """
    for server in servers:
        server.shutdown()
    deadline = time.monotonic() + grace_seconds
    open_associations = [assoc for server in servers for assoc in server.active_associations]
    while open_associations and time.monotonic() < deadline:
        time.sleep(STOP_POLL_SECONDS)
        open_associations = [assoc for assoc in open_associations if assoc.is_alive()]
    for assoc in open_associations:
        logger.warning("association aborted at stop calling_ae=%s address=%s", assoc.requestor.ae_title, assoc.requestor.address)
        assoc.abort()
    for server in servers:
        logger.info("DICOM listener stopped ae_title=%s port=%s", settings.TELERAD.ae_title, server.server_address[1])


def listener_addresses() -> list[str]:
    """Describe each configured listener's address for the start banner, such as ``127.0.0.1:2762 (TLS)``."""
    config = settings.TELERAD
    addresses = []
    if config.dicom_plain_listener:
        addresses.append(f"{config.host}:{config.dicom_port}")
    if config.dicom_tls_port is not None:
        kind = "TLS, client certificates required" if config.dicom_tls_ca_file else "TLS"
        addresses.append(f"{config.host}:{config.dicom_tls_port} ({kind})")
    return addresses


def _on_requested(event: Any) -> None:
    assoc = event.assoc
    calling = assoc.requestor.primitive.calling_ae_title.strip()
    called = assoc.requestor.primitive.called_ae_title.strip()
    address = assoc.requestor.address
    # Accepted sockets inherit TCP_NODELAY on Linux, but not on every platform.
    assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    if called != settings.TELERAD.ae_title:
        _reject(assoc, calling, address, f"called AE title {called!r} is not {settings.TELERAD.ae_title!r}", REJECT_CALLED_AE_NOT_RECOGNISED)
        return

    close_old_connections()
    over_tls = tls.is_tls(assoc)
    decision = check_association(calling, address, accept_any=settings.TELERAD.accept_any_ae, tls=over_tls)
    if not decision.allowed:
        # PS3.8 9.3.4 has no reason for a transport refused, so a TLS refusal gives none.
        diagnostic = REJECT_NO_REASON_GIVEN if decision.rejection is Rejection.TLS_REQUIRED else REJECT_CALLING_AE_NOT_RECOGNISED
        _reject(assoc, calling, address, decision.reason, diagnostic)
        return

    stats = AssociationStats(calling, address, tls=over_tls)
    # An AE accepted without a registration came in under accept_any_ae and may use every service.
    if decision.remote_ae is not None:
        stats.allow_store = decision.remote_ae.allow_store
        stats.allow_find = decision.remote_ae.allow_find
        stats.allow_move = decision.remote_ae.allow_move
        stats.allow_get = decision.remote_ae.allow_get
    assoc.telerad_stats = stats


def _reject(assoc: Any, calling: str, address: str, reason: str, diagnostic: int) -> None:
    logger.warning("association rejected calling_ae=%s address=%s reason=%s", calling, address, reason)
    audit.record_event(
        action=audit.Action.ASSOCIATION_REJECTED,
        outcome=audit.Outcome.MINOR_FAILURE,
        user=calling,
        address=address,
        detail=reason,
    )
    connection.close()
    # PS3.8 9.3.4: a permanent rejection by the service user.
    assoc.acse.send_reject(REJECT_PERMANENT, REJECT_SOURCE_SERVICE_USER, diagnostic)
    assoc.is_rejected = True
    assoc.kill()


def _on_c_store(event: Any) -> Dataset | int:
    stats: AssociationStats = event.assoc.telerad_stats
    request = event.request
    if not stats.allow_store:
        stats.failures += 1
        stats.refused += 1
        comment = f"AE {stats.calling_ae_title} is not allowed to store"
        # The first refusal is logged and audited; the association's summary line counts them all.
        if stats.refused == 1:
            record_refused_service(Service.STORE, stats.calling_ae_title, stats.address, comment, STATUS_NOT_AUTHORIZED)
        return _status(STATUS_NOT_AUTHORIZED, comment)

    source = ingest.Source(kind="dimse", ae_title=stats.calling_ae_title, address=stats.address)
    try:
        result = _store_received(event, source)
    except OSError as exc:
        stats.failures += 1
        logger.error("storing failed sop_instance_uid=%s error=%s", request.AffectedSOPInstanceUID, exc)
        return _status(STATUS_OUT_OF_RESOURCES, f"storage error: {exc.strerror or exc}")
    except Exception:
        stats.failures += 1
        logger.exception("storing failed sop_instance_uid=%s", request.AffectedSOPInstanceUID)
        return _status(STATUS_UNABLE_TO_PROCESS, "internal error while storing; see the server log")

    return _store_response(result, stats)


def _store_received(event: Any, source: ingest.Source) -> ingest.StoreResult:
    request = event.request
    # A view of pynetdicom's receive buffer, so the dataset is not copied again.
    dataset = request.DataSet.getbuffer()
    try:
        return ingest.store_dataset(
            dataset,  # type: ignore[arg-type]
            dataset_offset=0,
            transfer_syntax=str(event.context.transfer_syntax),
            sop_class_uid=str(request.AffectedSOPClassUID),
            sop_instance_uid=str(request.AffectedSOPInstanceUID),
            source=source,
        )
    finally:
        dataset.release()


def _store_response(result: ingest.StoreResult, stats: AssociationStats) -> Dataset | int:
    if result.outcome is ingest.Outcome.REJECTED:
        stats.failures += 1
        logger.warning(
            "instance rejected calling_ae=%s sop_instance_uid=%s reason=%s",
            stats.calling_ae_title, result.sop_instance_uid or "-", result.reason,
        )
        code = STATUS_DATASET_DOES_NOT_MATCH_SOP_CLASS if result.sop_class_mismatch else STATUS_CANNOT_UNDERSTAND
        return _status(code, result.reason)
    if result.outcome is ingest.Outcome.CONFLICT:
        stats.failures += 1
        return _status(STATUS_DUPLICATE_SOP_INSTANCE, "different instance with this SOP Instance UID already stored")
    if result.outcome is ingest.Outcome.ALREADY_PRESENT:
        stats.duplicates += 1
    else:
        stats.received += 1
        stats.studies[(result.patient_id, result.study_instance_uid)] += 1
    return STATUS_SUCCESS


def _status(code: int, comment: str) -> Dataset:
    response = Dataset()
    response.Status = code
    response.ErrorComment = comment[:ERROR_COMMENT_LENGTH]
    return response


def _on_finished(event: Any) -> None:
    stats: AssociationStats | None = getattr(event.assoc, "telerad_stats", None)
    if stats is None:
        return
    event.assoc.telerad_stats = None
    duration = time.monotonic() - stats.started
    # An abort comes from either side or from a lost connection; a release always ends with the SCU's request.
    ending = "aborted" if event.event == evt.EVT_ABORTED else "released"
    logger.info(
        "association ended calling_ae=%s called_ae=%s address=%s tls=%s received=%d duplicates=%d refused=%d failures=%d duration=%.2fs end=%s",
        stats.calling_ae_title, settings.TELERAD.ae_title, stats.address, "yes" if stats.tls else "no",
        stats.received, stats.duplicates, stats.refused, stats.failures, duration, ending,
    )
    prebuild.schedule(study_instance_uid for _patient_id, study_instance_uid in stats.studies)
    try:
        for (patient_id, study_instance_uid), count in stats.studies.items():
            audit.record_event(
                action=audit.Action.INSTANCES_STORED,
                user=stats.calling_ae_title,
                address=stats.address,
                patient_id=patient_id,
                study_instance_uid=study_instance_uid,
                detail=f"{count} instances received over DIMSE",
            )
    finally:
        connection.close()
