"""C-MOVE and C-GET against a real ``telerad serve``, with DCMTK's movescu and getscu.

The move destination is a pynetdicom Storage SCP in the test process, bound
to 127.0.0.1, because DCMTK 3.6.7's storescp has no option to listen on one
address and would listen on every interface.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    EnhancedMRImageStorage,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from .conftest import ServerFactory, TeleradServer
from .part10 import dataset_bytes, sample_path
from .peers import DCMTK_NETWORK_OPTIONS, DCMTK_TIMEOUT, association, dcmtk_environment, dcmtk_tool, send_file

REQUESTER = "RETRIEVER"
DESTINATION = "E2E_DEST"
# CT, MR, JPEG Baseline and multi-frame samples.
SAMPLES = ("CT_small.dcm", "MR_small.dcm", "SC_rgb_jpeg_dcmtk.dcm", "emri_small.dcm")
STORAGE_CLASSES = (CTImageStorage, MRImageStorage, SecondaryCaptureImageStorage, EnhancedMRImageStorage)
SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit)
MOVE = StudyRootQueryRetrieveInformationModelMove


class Destination:
    """A pynetdicom Storage SCP on 127.0.0.1 that keeps the encoded dataset of each C-STORE it receives."""

    def __init__(self) -> None:
        self.received: dict[str, bytes] = {}
        # Seconds each C-STORE waits before its response.
        self.delay = 0.0
        self.lock = threading.Lock()
        self.ae = AE(ae_title=DESTINATION)
        self.ae.add_supported_context(Verification)
        for sop_class in STORAGE_CLASSES:
            for syntax in SYNTAXES:
                self.ae.add_supported_context(sop_class, syntax)
        self.server = self.ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])
        self.port = self.server.server_address[1]

    def _store(self, event: Any) -> int:
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            self.received[str(event.request.AffectedSOPInstanceUID)] = event.request.DataSet.getvalue()
        return 0x0000

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def destination() -> Iterator[Destination]:
    running = Destination()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def server(module_server_factory: ServerFactory, destination: Destination) -> TeleradServer:
    """A server that stores the samples, sent byte for byte, and has the destination registered."""
    server = module_server_factory.start(calling_ae_titles=(REQUESTER,))
    server.run("ae", "add", DESTINATION, "--host", "127.0.0.1", "--port", str(destination.port))
    with association(server, REQUESTER, STORAGE_CLASSES, SYNTAXES) as assoc:
        for name in SAMPLES:
            status = send_file(assoc, sample_path(name))
            assert status.Status == 0x0000, f"{name} was not stored"
    return server


@pytest.fixture
def stored(server: TeleradServer) -> dict[str, bytes]:
    """Return the dataset bytes of each stored instance, read from the server's files."""
    return {row.sop_instance_uid: dataset_bytes(row.path) for row in server.index().rows}


def study_uids() -> list[str]:
    return sorted({str(dcmread(sample_path(name), stop_before_pixels=True).StudyInstanceUID) for name in SAMPLES})


def run_dcmtk(tool: str, server: TeleradServer, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [
        dcmtk_tool(tool), "--verbose", *DCMTK_NETWORK_OPTIONS, "--aetitle", REQUESTER, "--call", server.ae_title,
        *arguments, "127.0.0.1", str(server.dicom_port),
    ]
    return subprocess.run(command, env=dcmtk_environment(), capture_output=True, text=True, timeout=DCMTK_TIMEOUT)


def study_keys(study_instance_uid: str) -> list[str]:
    return ["--study", "--key", "QueryRetrieveLevel=STUDY", "--key", f"StudyInstanceUID={study_instance_uid}"]


def test_movescu_moves_every_study_byte_identical(server, destination, stored):
    for study_instance_uid in study_uids():
        run = run_dcmtk("movescu", server, "--move", DESTINATION, *study_keys(study_instance_uid))
        assert run.returncode == 0, run.stderr
        assert "Received Final Move Response (Success)" in run.stderr, run.stderr

    assert sorted(destination.received) == sorted(stored)
    for uid, dataset in stored.items():
        assert destination.received[uid] == dataset, f"{uid} changed on the way"
    events = [event for event in server.index().events("retrieve") if event["detail"].startswith("C-MOVE")]
    assert {event["study_instance_uid"] for event in events} == set(study_uids())
    assert all(event["user"] == REQUESTER for event in events)


def test_movescu_unknown_destination(server, destination):
    before = dict(destination.received)

    run = run_dcmtk("movescu", server, "--move", "NOWHERE", *study_keys(study_uids()[0]))

    assert "Received Final Move Response (Refused: MoveDestinationUnknown)" in run.stderr, run.stderr
    assert destination.received == before


def test_getscu_receives_every_study_byte_identical(server, stored, tmp_path):
    for study_instance_uid in study_uids():
        # getscu proposes the SCP role for the storage classes it receives; +B writes each dataset as received.
        run = run_dcmtk("getscu", server, "--output-directory", str(tmp_path), "--bit-preserving", *study_keys(study_instance_uid))
        assert run.returncode == 0, run.stderr
        assert "Received C-GET Response (Success)" in run.stderr, run.stderr
        assert "Number of Failed Suboperations    : 0" in run.stderr, run.stderr

    received = {str(dcmread(path, stop_before_pixels=True).SOPInstanceUID): dataset_bytes(path) for path in tmp_path.iterdir()}
    # The JPEG sample arrives decompressed (see test_getscu_receives_jpeg_decompressed).
    jpeg_uid = str(dcmread(sample_path("SC_rgb_jpeg_dcmtk.dcm"), stop_before_pixels=True).SOPInstanceUID)
    assert sorted(received) == sorted(stored)
    for uid, dataset in stored.items():
        if uid != jpeg_uid:
            assert received[uid] == dataset, f"{uid} changed on the way"


def test_getscu_receives_jpeg_decompressed(server, tmp_path):
    path = sample_path("SC_rgb_jpeg_dcmtk.dcm")
    study_instance_uid = str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)

    # getscu proposes each storage class in one context of the uncompressed
    # syntaxes, and telerad accepts Explicit VR Little Endian from it.
    run = run_dcmtk("getscu", server, "--output-directory", str(tmp_path), *study_keys(study_instance_uid))

    assert run.returncode == 0, run.stderr
    [received] = [dcmread(file) for file in tmp_path.iterdir()]
    assert received.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert received.SOPInstanceUID == dcmread(path).SOPInstanceUID
    assert numpy.array_equal(received.pixel_array, dcmread(path).pixel_array)


def test_getscu_invalid_identifier_fails_cleanly(server, tmp_path):
    # Patient root at study level needs PatientID as well.
    keys = ["--patient", "--key", "QueryRetrieveLevel=STUDY", "--key", f"StudyInstanceUID={study_uids()[0]}"]

    run = run_dcmtk("getscu", server, "--output-directory", str(tmp_path), *keys)

    assert "Received C-GET Response (Error: DataSetDoesNotMatchSOPClass)" in run.stderr, run.stderr
    assert "Releasing Association" in run.stderr, run.stderr
    assert "DUL" not in run.stderr, run.stderr
    # DCMTK prints 0 for the counts that the response leaves out.
    assert "Number of Failed Suboperations    : 0" in run.stderr, run.stderr
    assert list(tmp_path.iterdir()) == []


def test_move_cancel_with_pynetdicom(server, destination):
    uids = study_uids()
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = uids
    # A slow destination makes sure the C-CANCEL arrives while sub-operations remain.
    destination.delay = 0.5
    try:
        with association(server, REQUESTER, [MOVE]) as assoc:
            context_id = next(cx.context_id for cx in assoc.accepted_contexts if cx.abstract_syntax == MOVE)
            statuses = []
            for status, _ in assoc.send_c_move(identifier, DESTINATION, MOVE):
                if status.Status == 0xFF00 and len(statuses) == 0:
                    assoc.send_c_cancel(1, context_id)
                statuses.append(status)
    finally:
        destination.delay = 0.0

    final = statuses[-1]
    assert final.Status == 0xFE00
    assert final.NumberOfCompletedSuboperations < len(uids)
    assert final.NumberOfRemainingSuboperations + final.NumberOfCompletedSuboperations == len(uids)
    events = [event for event in server.index().events("retrieve") if "status 0xFE00" in event["detail"]]
    assert {event["study_instance_uid"] for event in events} == set(uids)
