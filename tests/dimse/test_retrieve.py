"""The C-MOVE and C-GET SCP, driven by a pynetdicom SCU, with a pynetdicom Storage SCP as the move destination."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from io import BytesIO
from pathlib import Path
from typing import Any, Iterator

import numpy
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit
from pynetdicom import AE, build_role, evt
from pynetdicom.association import Association
from pynetdicom.dsutils import decode, split_dataset
from pynetdicom.sop_class import (
    CTImageStorage,
    EnhancedMRImageStorage,
    MRImageStorage,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from telerad.archive import ingest
from telerad.audit.models import AuditEvent
from telerad.dimse import server
from telerad.dimse.models import RemoteAE

pytestmark = pytest.mark.django_db(transaction=True)

IMPORT = ingest.Source(kind="import", user="tester")
SAMPLES = ("CT_small.dcm", "MR_small.dcm", "SC_rgb_jpeg_dcmtk.dcm", "emri_small.dcm")
STORAGE_CLASSES = (CTImageStorage, MRImageStorage, SecondaryCaptureImageStorage, EnhancedMRImageStorage)
REQUESTER = "MOVESCU"
DESTINATION = "DEST"
OUTSIDER = "NORETRIEVE"
TIMEOUT = 30  # seconds for one network step
STUDY_MOVE = StudyRootQueryRetrieveInformationModelMove
PATIENT_MOVE = PatientRootQueryRetrieveInformationModelMove
STUDY_GET = StudyRootQueryRetrieveInformationModelGet
PATIENT_GET = PatientRootQueryRetrieveInformationModelGet


@dataclasses.dataclass(frozen=True)
class Sample:
    path: Path
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str
    dataset: bytes


@pytest.fixture
def samples(sample_file) -> dict[str, Sample]:
    """Store the samples in the archive; return them by file name."""
    stored = {}
    for name in SAMPLES:
        path = sample_file(name)
        result = ingest.store_file(path.read_bytes(), source=IMPORT)
        assert result.outcome is ingest.Outcome.STORED, f"{name}: {result.reason}"
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        _, offset = split_dataset(path)
        stored[name] = Sample(
            path, ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID, path.read_bytes()[offset:]
        )
    return stored


@dataclasses.dataclass
class Destination:
    """A pynetdicom Storage SCP that keeps the encoded dataset and transfer syntax of each C-STORE it receives."""

    port: int = 0
    received: dict[str, tuple[bytes, str]] = dataclasses.field(default_factory=dict)
    # SOP Instance UIDs that get a failure status, to test failed sub-operations.
    refused: set[str] = dataclasses.field(default_factory=set)
    on_store: Any = None
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    # TCP connections accepted, whether or not an association followed.
    connections: int = 0

    def handle_connection(self, event: Any) -> None:
        with self.lock:
            self.connections += 1

    def handle_store(self, event: Any) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        if self.on_store is not None:
            self.on_store(event)
        if uid in self.refused:
            return 0xA700
        with self.lock:
            self.received[uid] = (event.request.DataSet.getvalue(), str(event.context.transfer_syntax))
        return 0x0000


@contextlib.contextmanager
def running_destination(transfer_syntaxes: list[str] | None = None) -> Iterator[Destination]:
    destination = Destination()
    ae = AE(ae_title=DESTINATION)
    ae.add_supported_context(Verification)
    for sop_class in STORAGE_CLASSES:
        if transfer_syntaxes is None:
            ae.add_supported_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit])
        else:
            ae.add_supported_context(sop_class, transfer_syntaxes)
    handlers = [(evt.EVT_C_STORE, destination.handle_store), (evt.EVT_CONN_OPEN, destination.handle_connection)]
    scp = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    destination.port = scp.server_address[1]
    try:
        yield destination
    finally:
        scp.shutdown()


@pytest.fixture(scope="module")
def listener() -> Iterator[Any]:
    """Run telerad's listener in this process, for every test of the module."""
    ae = server.build_application_entity()
    running = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=server.event_handlers())
    server.tune(running)
    try:
        yield running
    finally:
        running.shutdown()


@pytest.fixture
def destination() -> Iterator[Destination]:
    with running_destination() as running:
        yield running


@pytest.fixture
def scp(listener, destination) -> int:
    """Return the port of the listener, with the requester, the outsider and the destination registered."""
    RemoteAE.objects.create(ae_title=REQUESTER)
    RemoteAE.objects.create(ae_title=OUTSIDER, allow_move=False, allow_get=False)
    RemoteAE.objects.create(ae_title=DESTINATION, host="127.0.0.1", port=destination.port)
    return listener.server_address[1]


@contextlib.contextmanager
def association(port: int, *, calling_ae_title: str = REQUESTER, get: bool = False, handlers: list | None = None) -> Iterator[Association]:
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT
    roles = []
    if get:
        ae.add_requested_context(STUDY_GET)
        ae.add_requested_context(PATIENT_GET)
        for sop_class in STORAGE_CLASSES:
            # One context per transfer syntax, because the SCP accepts one syntax from each.
            ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
            ae.add_requested_context(sop_class, JPEGBaseline8Bit)
            roles.append(build_role(sop_class, scp_role=True))
    else:
        ae.add_requested_context(STUDY_MOVE)
        ae.add_requested_context(PATIENT_MOVE)
    assoc = ae.associate("127.0.0.1", port, ae_title="TELERAD", ext_neg=roles or None, evt_handlers=handlers)
    try:
        assert assoc.is_established, "association was not established"
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


def identifier(level: str, **keys: Any) -> Dataset:
    ds = Dataset()
    if level:
        ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def move(assoc: Association, query: Dataset, model: str = STUDY_MOVE, destination: str = DESTINATION) -> list[tuple[Dataset, Dataset | None]]:
    return list(assoc.send_c_move(query, destination, model))


def get(assoc: Association, query: Dataset, model: str = STUDY_GET) -> list[tuple[Dataset, Dataset | None]]:
    return list(assoc.send_c_get(query, model))


def retrieve_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="retrieve").order_by("sequence"))


def test_move_study_sends_stored_bytes(samples, scp, destination):
    ct = samples["CT_small.dcm"]

    with association(scp) as assoc:
        responses = move(assoc, identifier("STUDY", StudyInstanceUID=ct.study_instance_uid))

    *pending, (final, final_identifier) = responses
    assert final.Status == 0x0000
    assert final.NumberOfCompletedSuboperations == 1
    assert final.NumberOfFailedSuboperations == 0
    assert final_identifier is None
    assert [status.Status for status, _ in pending] == [0xFF00]
    assert pending[0][0].NumberOfRemainingSuboperations == 0
    assert destination.received == {ct.sop_instance_uid: (ct.dataset, ExplicitVRLittleEndian)}


def test_move_keeps_every_sample_byte_identical(samples, scp, destination):
    uids = [sample.sop_instance_uid for sample in samples.values()]
    studies = {sample.study_instance_uid: sample for sample in samples.values()}

    with association(scp) as assoc:
        for study_instance_uid in studies:
            *_, (final, _) = move(assoc, identifier("STUDY", StudyInstanceUID=study_instance_uid))
            assert final.Status == 0x0000

    assert sorted(destination.received) == sorted(uids)
    for name, sample in samples.items():
        dataset, _ = destination.received[sample.sop_instance_uid]
        assert dataset == sample.dataset, f"{name} changed on the way"
    assert destination.received[samples["SC_rgb_jpeg_dcmtk.dcm"].sop_instance_uid][1] == JPEGBaseline8Bit


def test_move_patient_root_patient_level(samples, scp, destination):
    mr = samples["MR_small.dcm"]

    with association(scp) as assoc:
        *_, (final, _) = move(assoc, identifier("PATIENT", PatientID=mr.patient_id), model=PATIENT_MOVE)

    assert final.Status == 0x0000
    assert set(destination.received) == {mr.sop_instance_uid}


def test_move_image_level_list_of_uids(samples, scp, destination):
    ct, mr = samples["CT_small.dcm"], samples["MR_small.dcm"]
    # A list of UIDs is allowed at the requested level only, here with the keys above it of one study.
    query = identifier(
        "IMAGE", PatientID=ct.patient_id, StudyInstanceUID=ct.study_instance_uid,
        SeriesInstanceUID=ct.series_instance_uid, SOPInstanceUID=[ct.sop_instance_uid, mr.sop_instance_uid],
    )

    with association(scp) as assoc:
        *_, (final, _) = move(assoc, query, model=PATIENT_MOVE)

    assert final.Status == 0x0000
    assert final.NumberOfCompletedSuboperations == 1
    assert set(destination.received) == {ct.sop_instance_uid}


def test_move_series_level_in_study_root(samples, scp, destination):
    ct = samples["CT_small.dcm"]
    query = identifier("SERIES", StudyInstanceUID=ct.study_instance_uid, SeriesInstanceUID=[ct.series_instance_uid, "1.2.3"])

    with association(scp) as assoc:
        *_, (final, _) = move(assoc, query)

    assert final.Status == 0x0000
    assert set(destination.received) == {ct.sop_instance_uid}


def test_move_without_matches_succeeds(samples, scp, destination):
    with association(scp) as assoc:
        [(final, _)] = move(assoc, identifier("STUDY", StudyInstanceUID="1.2.3.4"))

    assert final.Status == 0x0000
    assert final.NumberOfCompletedSuboperations == 0
    assert destination.received == {}
    [event] = retrieve_events()
    assert "no instances matched" in event.detail


def test_move_to_unknown_destination(samples, scp, destination):
    ct = samples["CT_small.dcm"]

    with association(scp) as assoc:
        [(final, _)] = move(assoc, identifier("STUDY", StudyInstanceUID=ct.study_instance_uid), destination="NOWHERE")

    assert final.Status == 0xA801
    assert destination.received == {}
    [event] = retrieve_events()
    assert event.outcome == 4
    assert "'NOWHERE' is not a registered AE" in event.detail


def test_move_refused_to_ae_without_permission(samples, scp, destination):
    ct = samples["CT_small.dcm"]

    with association(scp, calling_ae_title=OUTSIDER) as assoc:
        [(final, _)] = move(assoc, identifier("STUDY", StudyInstanceUID=ct.study_instance_uid))

    assert final.Status == 0x0124
    assert final.ErrorComment == f"AE {OUTSIDER} is not allowed to use C-MOVE"
    assert destination.received == {}
    assert destination.connections == 0
    assert retrieve_events() == []
    event = AuditEvent.objects.get(action="service-refused")
    assert (event.user, event.outcome) == (OUTSIDER, 4)
    assert event.detail == f"C-MOVE refused with status 0x0124: AE {OUTSIDER} is not allowed to use C-MOVE"


@pytest.mark.parametrize(
    ("query", "model", "comment"),
    [
        (identifier("STUDY"), STUDY_MOVE, "StudyInstanceUID: missing unique key"),
        (identifier("PATIENT", PatientID="1CT1"), STUDY_MOVE, "QueryRetrieveLevel: use STUDY, SERIES, IMAGE"),
        (identifier("STUDY", StudyInstanceUID="1.02.3"), STUDY_MOVE, "StudyInstanceUID: invalid UID"),
        (identifier("SERIES", StudyInstanceUID=["1.2", "1.3"], SeriesInstanceUID="1.2.3"), STUDY_MOVE, "StudyInstanceUID: must be a single value"),
        (identifier("STUDY", PatientID="1CT*", StudyInstanceUID="1.2"), PATIENT_MOVE, "PatientID: wildcards not allowed"),
        (identifier("", StudyInstanceUID="1.2"), STUDY_MOVE, "QueryRetrieveLevel: missing"),
    ],
)
def test_move_rejects_bad_identifier(samples, scp, destination, query, model, comment):
    with association(scp) as assoc:
        *_, (final, _) = move(assoc, query, model=model)

    assert final.Status == 0xA900
    assert final.ErrorComment == comment
    assert destination.received == {}


def test_move_counts_failed_sub_operations(samples, scp, destination):
    mr = samples["MR_small.dcm"]
    study = [sample for sample in samples.values() if sample.study_instance_uid == mr.study_instance_uid]
    destination.refused.add(mr.sop_instance_uid)

    with association(scp) as assoc:
        *_, (final, final_identifier) = move(assoc, identifier("PATIENT", PatientID=mr.patient_id), model=PATIENT_MOVE)

    assert len(study) == 1
    assert final.Status == 0xA702
    assert final.NumberOfFailedSuboperations == 1
    assert final_identifier.FailedSOPInstanceUIDList == mr.sop_instance_uid
    [event] = retrieve_events()
    assert event.outcome == 4
    assert "0 of 1 instances sent" in event.detail


def test_move_with_some_failures_warns(samples, scp, destination):
    ct, mr = samples["CT_small.dcm"], samples["MR_small.dcm"]
    destination.refused.add(mr.sop_instance_uid)
    query = identifier("STUDY", StudyInstanceUID=[ct.study_instance_uid, mr.study_instance_uid])

    with association(scp) as assoc:
        *_, (final, final_identifier) = move(assoc, query)

    assert final.Status == 0xB000
    assert final.NumberOfCompletedSuboperations == 1
    assert final.NumberOfFailedSuboperations == 1
    assert final_identifier.FailedSOPInstanceUIDList == mr.sop_instance_uid
    assert set(destination.received) == {ct.sop_instance_uid}


def test_move_writes_audit_event_per_study(samples, scp, destination):
    ct, mr = samples["CT_small.dcm"], samples["MR_small.dcm"]

    with association(scp) as assoc:
        move(assoc, identifier("STUDY", StudyInstanceUID=[ct.study_instance_uid, mr.study_instance_uid]))

    events = retrieve_events()
    assert {(event.patient_id, event.study_instance_uid) for event in events} == {
        (ct.patient_id, ct.study_instance_uid), (mr.patient_id, mr.study_instance_uid),
    }
    for event in events:
        assert event.user == REQUESTER
        assert event.address == "127.0.0.1"
        assert event.outcome == 0
        assert "C-MOVE Study Root STUDY to DEST; status 0x0000; 1 of 1 instances sent" == event.detail


def test_move_decompresses_for_uncompressed_destination(samples, listener):
    jpeg = samples["SC_rgb_jpeg_dcmtk.dcm"]
    with running_destination([ExplicitVRLittleEndian]) as uncompressed:
        RemoteAE.objects.create(ae_title=REQUESTER)
        RemoteAE.objects.create(ae_title=DESTINATION, host="127.0.0.1", port=uncompressed.port)
        with association(listener.server_address[1]) as assoc:
            *_, (final, _) = move(assoc, identifier("STUDY", StudyInstanceUID=jpeg.study_instance_uid))

    assert final.Status == 0x0000
    dataset, transfer_syntax = uncompressed.received[jpeg.sop_instance_uid]
    assert transfer_syntax == ExplicitVRLittleEndian
    received = decode(BytesIO(dataset), False, True)
    received.file_meta = FileMetaDataset()
    received.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    assert numpy.array_equal(received.pixel_array, pydicom.dcmread(jpeg.path).pixel_array)


def test_move_cancelled_between_sub_operations(samples, scp, destination):
    uids = [sample.study_instance_uid for sample in samples.values()]
    cancelled = threading.Event()

    with association(scp) as assoc:
        context_id = next(cx.context_id for cx in assoc.accepted_contexts if cx.abstract_syntax == STUDY_MOVE)

        def cancel_once(event: Any) -> None:
            if not cancelled.is_set():
                cancelled.set()
                assoc.send_c_cancel(1, context_id)
                # The C-CANCEL travels on another connection than the C-STORE response; let it arrive first.
                time.sleep(0.3)

        destination.on_store = cancel_once
        *_, (final, final_identifier) = move(assoc, identifier("STUDY", StudyInstanceUID=uids))

    assert final.Status == 0xFE00
    assert final.NumberOfCompletedSuboperations == 1
    assert final.NumberOfRemainingSuboperations == len(uids) - 1
    assert len(destination.received) == 1
    assert final_identifier.FailedSOPInstanceUIDList == ""


def test_get_sends_on_same_association(samples, scp):
    received: dict[str, tuple[bytes, str]] = {}

    def keep(event: Any) -> int:
        received[str(event.request.AffectedSOPInstanceUID)] = (event.request.DataSet.getvalue(), str(event.context.transfer_syntax))
        return 0x0000

    studies = sorted({sample.study_instance_uid for sample in samples.values()})
    with association(scp, get=True, handlers=[(evt.EVT_C_STORE, keep)]) as assoc:
        *pending, (final, _) = get(assoc, identifier("STUDY", StudyInstanceUID=studies))

    assert final.Status == 0x0000
    assert final.NumberOfCompletedSuboperations == len(samples)
    assert [status.NumberOfRemainingSuboperations for status, _ in pending] == list(range(len(samples) - 1, -1, -1))
    for name, sample in samples.items():
        assert received[sample.sop_instance_uid][0] == sample.dataset, f"{name} changed on the way"
    events = retrieve_events()
    assert len(events) == len(studies)
    assert all(event.detail.startswith("C-GET Study Root STUDY; status 0x0000") for event in events)


def test_get_without_scp_role_fails_sub_operation(samples, scp):
    ct = samples["CT_small.dcm"]
    ae = AE(ae_title=REQUESTER)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT
    ae.add_requested_context(STUDY_GET)
    # No storage context with the SCP role: telerad has no way to send the instance back.
    assoc = ae.associate("127.0.0.1", scp, ae_title="TELERAD")
    try:
        *_, (final, final_identifier) = get(assoc, identifier("STUDY", StudyInstanceUID=ct.study_instance_uid))
    finally:
        assoc.release()
        ae.shutdown()

    assert final.Status == 0xA702
    assert final.NumberOfFailedSuboperations == 1
    assert final_identifier.FailedSOPInstanceUIDList == ct.sop_instance_uid


def test_get_refused_to_ae_without_permission(samples, scp):
    ct = samples["CT_small.dcm"]

    with association(scp, calling_ae_title=OUTSIDER, get=True) as assoc:
        *_, (final, _) = get(assoc, identifier("STUDY", StudyInstanceUID=ct.study_instance_uid))

    assert final.Status == 0x0124
    assert final.ErrorComment == f"AE {OUTSIDER} is not allowed to use C-GET"
    assert "NumberOfCompletedSuboperations" not in final
    assert "NumberOfFailedSuboperations" not in final
    assert retrieve_events() == []
    event = AuditEvent.objects.get(action="service-refused")
    assert (event.user, event.outcome) == (OUTSIDER, 4)
    assert event.detail == f"C-GET refused with status 0x0124: AE {OUTSIDER} is not allowed to use C-GET"


def test_get_rejects_missing_unique_key(samples, scp):
    with association(scp, get=True) as assoc:
        *_, (final, final_identifier) = get(assoc, identifier("SERIES", SeriesInstanceUID="1.2.3"))

    assert final.Status == 0xA900
    assert final.ErrorComment == "StudyInstanceUID: missing unique key"
    assert final.OffendingElement == 0x0020000D
    # No sub-operation was announced to the SCU, so none is counted and none is listed.
    assert "NumberOfFailedSuboperations" not in final
    # pynetdicom's SCU decodes a missing identifier as an empty dataset.
    assert not final_identifier


def test_get_cancelled_between_sub_operations(samples, scp):
    studies = sorted({sample.study_instance_uid for sample in samples.values()})
    received: list[str] = []

    def cancel_after_first(event: Any) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        if len(received) == 1:
            context_id = next(cx.context_id for cx in event.assoc.accepted_contexts if cx.abstract_syntax == STUDY_GET)
            event.assoc.send_c_cancel(1, context_id)
        return 0x0000

    with association(scp, get=True, handlers=[(evt.EVT_C_STORE, cancel_after_first)]) as assoc:
        *_, (final, _) = get(assoc, identifier("STUDY", StudyInstanceUID=studies))

    assert final.Status == 0xFE00
    assert final.NumberOfCompletedSuboperations == 1
    assert final.NumberOfRemainingSuboperations == len(samples) - 1
    assert len(received) == 1
    [*events] = retrieve_events()
    assert all("status 0xFE00" in event.detail for event in events)
