"""The C-FIND SCP, queried by DCMTK's findscu and by a pynetdicom SCU."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom.dsutils import encode
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation
from pynetdicom.sop_class import (
    ModalityWorklistInformationFind,
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)

from telerad.archive import ingest
from telerad.archive.query import QUERY_ONLY_ATTRIBUTES, Root, compile_query
from telerad.archive.record import INDEXED_ATTRIBUTES
from telerad.audit.models import AuditEvent
from telerad.dimse import find as find_scp
from telerad.dimse import server
from telerad.dimse.find import add_find_contexts, handle_find, negotiate_find_options
from telerad.dimse.find_responses import PendingResponder
from telerad.dimse.models import RemoteAE

pytestmark = pytest.mark.django_db(transaction=True)

IMPORT = ingest.Source(kind="import", user="tester")
SAMPLES = ("CT_small.dcm", "MR_small.dcm", "SC_rgb.dcm", "chrFren.dcm", "chrX1.dcm")
QUERIER = "FINDSCU"  # findscu's default calling AE title
OUTSIDER = "NOQUERY"
TIMEOUT = 30  # seconds for one network step or one DCMTK command
DCMTK_NETWORK_OPTIONS = ("--timeout", "10", "--acse-timeout", "10", "--dimse-timeout", "30")
STUDY_ROOT = StudyRootQueryRetrieveInformationModelFind
PATIENT_ROOT = PatientRootQueryRetrieveInformationModelFind
FIND_ROOTS = {STUDY_ROOT: Root.STUDY, PATIENT_ROOT: Root.PATIENT}
# The patients of SAMPLES, one study each.
EXPECTED_PATIENT_IDS = ("1CT1", "4MR1", "ID1", "SCSFREN", "X1EXAMPLE")


@pytest.fixture
def stored(sample_file, storage) -> None:
    for name in SAMPLES:
        result = ingest.store_file(sample_file(name).read_bytes(), source=IMPORT, storage=storage)
        assert result.outcome is ingest.Outcome.STORED, f"{name}: {result.reason}"


@pytest.fixture
def remote_aes() -> None:
    RemoteAE.objects.create(ae_title=QUERIER, allow_find=True)
    RemoteAE.objects.create(ae_title=OUTSIDER, allow_find=False)


def start_scp(handlers: list[tuple[Any, Any]], extra_contexts: tuple[str, ...] = ()) -> Any:
    ae = server.build_application_entity()
    add_find_contexts(ae)
    for sop_class_uid in extra_contexts:
        ae.add_supported_context(sop_class_uid)
    running = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    server.tune(running)
    return running


def find_handlers(find_handler: Any = handle_find) -> list[tuple[Any, Any]]:
    return [*server.event_handlers(), (evt.EVT_C_FIND, find_handler), (evt.EVT_SOP_EXTENDED, negotiate_find_options)]


@pytest.fixture(scope="module")
def listener() -> Iterator[Any]:
    """Run telerad's listener with the C-FIND SCP in this process, for every test of the module."""
    running = start_scp(find_handlers())
    try:
        yield running
    finally:
        running.shutdown()


@pytest.fixture
def scp(listener, remote_aes) -> int:
    """Return the port of the listener, with the remote AEs registered."""
    return listener.server_address[1]


@contextlib.contextmanager
def association(
    port: int, *, calling_ae_title: str = QUERIER, sop_classes: tuple[str, ...] = (STUDY_ROOT, PATIENT_ROOT), options: bytes = b""
) -> Iterator[Association]:
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT
    for sop_class_uid in sop_classes:
        ae.add_requested_context(sop_class_uid)
    negotiation = []
    for sop_class_uid in sop_classes if options else ():
        item = SOPClassExtendedNegotiation()
        item.sop_class_uid = sop_class_uid
        item.service_class_application_information = options
        negotiation.append(item)
    assoc = ae.associate("127.0.0.1", port, ae_title="TELERAD", ext_neg=negotiation or None)
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


def query(**keys: str) -> Dataset:
    identifier = Dataset()
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    return identifier


def find(assoc: Association, identifier: Dataset, model: str = STUDY_ROOT) -> list[tuple[int, Dataset | None]]:
    assert assoc.is_established, "association was not established"
    return [(int(status.Status), response) for status, response in assoc.send_c_find(identifier, model)]


def findscu(port: int, output_dir: Path, *arguments: str, calling_ae_title: str = QUERIER) -> tuple[subprocess.CompletedProcess[str], list[Dataset]]:
    """Run findscu with `arguments`; return its run and the responses it extracted, in order."""
    executable = shutil.which("findscu")
    if executable is None:
        pytest.fail("findscu not found; install DCMTK (Debian package dcmtk)")
    command = [
        executable, "--verbose", *DCMTK_NETWORK_OPTIONS, "--aetitle", calling_ae_title, "--call", "TELERAD",
        "--extract", "--output-directory", str(output_dir), *arguments, "127.0.0.1", str(port),
    ]
    # Without TCP_NODELAY, DCMTK waits for the peer's delayed ACK on every DIMSE message.
    run = subprocess.run(command, env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, text=True, timeout=TIMEOUT)
    return run, [dcmread(path) for path in sorted(output_dir.glob("rsp*.dcm"))]


def test_findscu_study_root_query(stored, scp, tmp_path):
    run, responses = findscu(
        scp, tmp_path, "--study", "--key", "QueryRetrieveLevel=STUDY", "--key", "PatientName=compressed*",
        "--key", "StudyDate=2004-", "--key", "PatientID", "--key", "StudyInstanceUID",
    )

    assert run.returncode == 0, run.stderr
    assert "Received Final Find Response (Success)" in run.stderr
    assert sorted(response.PatientID for response in responses) == ["1CT1", "4MR1"]
    assert {str(response.PatientName) for response in responses} == {"CompressedSamples^CT1", "CompressedSamples^MR1"}


def test_findscu_returns_names_in_utf8(stored, scp, tmp_path):
    run, responses = findscu(scp, tmp_path, "--study", "--key", "QueryRetrieveLevel=STUDY", "--key", "PatientName=buc*")

    assert run.returncode == 0, run.stderr
    [response] = responses
    assert response.SpecificCharacterSet == "ISO_IR 192"
    assert str(response.PatientName) == "Buc^Jérôme"


def test_findscu_patient_root_counts_studies(stored, scp, tmp_path):
    run, responses = findscu(
        scp, tmp_path, "--patient", "--key", "QueryRetrieveLevel=PATIENT", "--key", "PatientID=1CT1",
        "--key", "NumberOfPatientRelatedStudies", "--key", "NumberOfPatientRelatedInstances",
    )

    assert run.returncode == 0, run.stderr
    [response] = responses
    assert response.NumberOfPatientRelatedStudies == 1
    assert response.NumberOfPatientRelatedInstances == 1


def test_findscu_worklist_context_is_rejected(scp, tmp_path):
    run, responses = findscu(scp, tmp_path, "--worklist", "--key", "PatientName")

    assert run.returncode != 0
    assert "No Acceptable Presentation Contexts" in run.stderr
    assert responses == []


def test_response_contains_exactly_requested_keys(stored, scp):
    identifier = query(
        QueryRetrieveLevel="STUDY", PatientID="1CT1", PatientName="", StudyDate="", StudyInstanceUID="",
        ModalitiesInStudy="", NumberOfStudyRelatedInstances="", OtherPatientIDs="", InstanceAvailability="",
    )

    with association(scp) as assoc:
        responses = find(assoc, identifier)

    [(status, response), (final_status, final)] = responses
    assert status == 0xFF00
    assert {element.keyword for element in response} == {element.keyword for element in identifier} | {"RetrieveAETitle"}
    assert response.PatientName == "CompressedSamples^CT1"
    assert response.ModalitiesInStudy == "CT"
    assert response.NumberOfStudyRelatedInstances == 1
    assert response.OtherPatientIDs == ""
    assert response.InstanceAvailability == "ONLINE"
    assert response.RetrieveAETitle == "TELERAD"
    assert "SpecificCharacterSet" not in response
    assert (final_status, final) == (0x0000, None)


def test_multi_valued_modalities_are_returned(stored, scp, sample_file, storage, tmp_path):
    # A second series of another modality makes ModalitiesInStudy multi-valued.
    ds = dcmread(sample_file("MR_small.dcm"))
    ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.Modality = generate_uid(), generate_uid(), "CT"
    ds.save_as(tmp_path / "ct.dcm", enforce_file_format=True)
    ingest.store_file((tmp_path / "ct.dcm").read_bytes(), source=IMPORT, storage=storage)

    with association(scp) as assoc:
        [(status, response), _] = find(assoc, query(QueryRetrieveLevel="STUDY", PatientID="4MR1", ModalitiesInStudy="CT"))

    assert status == 0xFF00
    assert list(response.ModalitiesInStudy) == ["CT", "MR"]


def test_unmatched_key_gives_warning_pending(stored, scp):
    identifier = query(QueryRetrieveLevel="STUDY", PatientID="1CT1", OtherPatientIDs="X*")

    with association(scp) as assoc:
        statuses = [status for status, _ in find(assoc, identifier)]

    assert statuses == [0xFF01, 0x0000]


def test_bad_date_fails_naming_the_key(stored, scp):
    with association(scp) as assoc:
        [(status, response)] = assoc.send_c_find(query(QueryRetrieveLevel="STUDY", StudyDate="2020-13-01"), STUDY_ROOT)

    assert status.Status == 0xA900
    assert status.ErrorComment.startswith("StudyDate: ")
    assert len(status.ErrorComment) <= 64
    assert status.OffendingElement == 0x00080020
    assert response is None


def test_missing_level_fails(stored, scp):
    with association(scp) as assoc:
        [(status, response)] = find(assoc, query(PatientName=""))

    assert status == 0xA900
    assert response is None


def test_patient_level_in_study_root_fails(stored, scp):
    with association(scp) as assoc:
        [(status, _)] = find(assoc, query(QueryRetrieveLevel="PATIENT", PatientName=""))

    assert status == 0xA900


def test_series_query_needs_study_uid(stored, scp):
    with association(scp) as assoc:
        [(status, _)] = find(assoc, query(QueryRetrieveLevel="SERIES", Modality="CT", SeriesInstanceUID=""))

    assert status == 0xA900


def test_relational_option_allows_series_query(stored, scp):
    # PS3.4 C.5.1.1: the first byte of the extended negotiation requests relational queries.
    with association(scp, options=b"\x01") as assoc:
        responses = find(assoc, query(QueryRetrieveLevel="SERIES", Modality="CT", SeriesInstanceUID=""))

    assert [status for status, _ in responses] == [0xFF00, 0x0000]
    assert responses[0][1].Modality == "CT"


def test_fuzzy_option_matches_word_starts(stored, scp):
    with association(scp, options=b"\x00\x00\x01") as assoc:
        responses = find(assoc, query(QueryRetrieveLevel="STUDY", PatientName="jerome"))

    assert [status for status, _ in responses] == [0xFF00, 0x0000]
    assert str(responses[0][1].PatientName) == "Buc^Jérôme"


def test_ae_without_find_permission_is_refused(stored, scp):
    with association(scp, calling_ae_title=OUTSIDER) as assoc:
        [(status, _)] = find(assoc, query(QueryRetrieveLevel="STUDY", PatientName=""))

    assert status == 0x0124


def test_other_find_sop_class_is_not_supported(stored, remote_aes):
    listener = start_scp(find_handlers(), extra_contexts=(ModalityWorklistInformationFind,))
    try:
        with association(listener.server_address[1], sop_classes=(ModalityWorklistInformationFind,)) as assoc:
            [(status, _)] = find(assoc, query(PatientName=""), ModalityWorklistInformationFind)
    finally:
        listener.shutdown()

    assert status == 0x0122


@pytest.fixture
def responses_wait_for_cancel(monkeypatch) -> None:
    """Make the SCP wait, after sending its first pending response, until it has received a C-CANCEL.

    Without the wait, the SCP could send every match before the SCU's
    C-CANCEL arrives. It reads pynetdicom's queue of received C-CANCEL requests.
    """
    send = PendingResponder.send

    def send_then_wait(self: PendingResponder, status: int, identifier: bytes) -> None:
        send(self, status, identifier)
        deadline = time.monotonic() + TIMEOUT
        while not self._assoc.dimse.cancel_req and time.monotonic() < deadline:
            time.sleep(0.01)

    monkeypatch.setattr(PendingResponder, "send", send_then_wait)


def test_cancel_stops_matches(stored, remote_aes, responses_wait_for_cancel, scp):
    with association(scp) as assoc:
        statuses = []
        for status, _ in assoc.send_c_find(query(QueryRetrieveLevel="STUDY", PatientName=""), STUDY_ROOT, msg_id=7):
            statuses.append(int(status.Status))
            if len(statuses) == 1:
                context = next(cx for cx in assoc.accepted_contexts if cx.abstract_syntax == STUDY_ROOT)
                assoc.send_c_cancel(7, context.context_id)

    assert statuses == [0xFF00, 0xFE00]
    assert AuditEvent.objects.get(action="query").detail.startswith("C-FIND Study Root STUDY; status 0xFE00; 1 matches")


def test_each_find_writes_one_audit_event(stored, scp):
    with association(scp) as assoc:
        find(assoc, query(QueryRetrieveLevel="STUDY", PatientID="1CT1", PatientName=""))
        find(assoc, query(QueryRetrieveLevel="STUDY", StudyDate="2020-13-01"))

    success, failure = AuditEvent.objects.filter(action="query").order_by("sequence")
    assert (success.user, success.outcome, success.patient_id) == (QUERIER, 0, "1CT1")
    assert "1 matches" in success.detail
    assert failure.outcome == 4
    assert "status 0xA900" in failure.detail


def test_refused_find_is_audited(stored, scp):
    with association(scp, calling_ae_title=OUTSIDER) as assoc:
        [(status, _)] = find(assoc, query(QueryRetrieveLevel="STUDY", PatientName=""))

    assert status == 0x0124
    event = AuditEvent.objects.get(action="service-refused")
    assert (event.user, event.address, event.outcome) == (OUTSIDER, "127.0.0.1", 4)
    assert event.detail == f"C-FIND refused with status 0x0124: AE {OUTSIDER} is not allowed to query"
    assert not AuditEvent.objects.filter(action="query").exists()


def test_refused_find_has_error_comment(stored, scp, caplog):
    with association(scp, calling_ae_title=OUTSIDER) as assoc, caplog.at_level("INFO", logger="telerad.dimse"):
        [response] = list(assoc.send_c_find(query(QueryRetrieveLevel="STUDY", PatientName=""), STUDY_ROOT))

    status, identifier = response
    assert status.Status == 0x0124
    assert status.ErrorComment == f"AE {OUTSIDER} is not allowed to query"
    assert identifier is None
    refusals = [record for record in caplog.records if "C-FIND refused" in record.getMessage()]
    assert len(refusals) == 1
    assert f"calling_ae={OUTSIDER}" in refusals[0].getMessage()


def test_log_leaves_out_query_values(stored, scp, caplog):
    with association(scp) as assoc, caplog.at_level("DEBUG"):
        find(assoc, query(QueryRetrieveLevel="STUDY", PatientName="compressed*", PatientBirthDate="19000101-"))

    assert "C-FIND finished" in caplog.text
    assert "compressed" not in caplog.text.lower()
    assert "19000101" not in caplog.text


# Every indexed key of each level, a key the index does not hold, a private
# element and a sequence, as a C-FIND identifier requests them.
LEVEL_KEYS = {
    ("PATIENT", PATIENT_ROOT): INDEXED_ATTRIBUTES["patient"] + QUERY_ONLY_ATTRIBUTES["patient"],
    ("STUDY", STUDY_ROOT): INDEXED_ATTRIBUTES["patient"] + INDEXED_ATTRIBUTES["study"] + QUERY_ONLY_ATTRIBUTES["study"],
    ("SERIES", STUDY_ROOT): INDEXED_ATTRIBUTES["series"] + QUERY_ONLY_ATTRIBUTES["series"] + ("StudyInstanceUID",),
    ("IMAGE", STUDY_ROOT): INDEXED_ATTRIBUTES["instance"] + ("StudyInstanceUID", "SeriesInstanceUID"),
}


def every_key_identifier(level: str, keywords: tuple[str, ...]) -> Dataset:
    identifier = query(QueryRetrieveLevel=level, **{keyword: "" for keyword in keywords})
    identifier.InstitutionName = ""
    identifier.InstanceAvailability = ""
    identifier.ReferencedStudySequence = []
    identifier.add_new(0x00091010, "LO", None)
    return identifier


@pytest.mark.parametrize("transfer_syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
@pytest.mark.parametrize(("level", "root"), list(LEVEL_KEYS))
def test_direct_responses_are_what_pydicom_encodes(stored, level, root, transfer_syntax):
    identifier = every_key_identifier(level, LEVEL_KEYS[(level, root)])
    keys = find_scp._identifier_keys(identifier)
    parent_keys = {"StudyInstanceUID": "", "SeriesInstanceUID": ""} if level in {"SERIES", "IMAGE"} else {}
    compiled = compile_query(level, keys | parent_keys, root=FIND_ROOTS[root], relational=True)
    request = find_scp._FindRequest(
        root=FIND_ROOTS[root], level=level, keys=keys, elements=find_scp._requested_elements(identifier),
        relational=True, combined_datetime=False, fuzzy_names=False,
    )
    responder = PendingResponder(
        None, context_id=1, implicit_vr=transfer_syntax == ImplicitVRLittleEndian, sop_class_uid=str(root),
        message_id=1, elements=request.elements, returned=compiled.return_paths.keys(), level=level,
        ae_title="TELERAD", instance_availability="ONLINE",
    )

    rows = list(compiled.rows())
    assert rows
    for row in rows:
        expected = encode(find_scp._response_identifier(request, row, compiled.level), transfer_syntax.is_implicit_VR, True)
        assert responder.encode(row) == expected


def test_non_ascii_names_are_sent_in_utf8(stored, scp):
    with association(scp) as assoc:
        responses = find_identifiers(assoc, query(QueryRetrieveLevel="STUDY", PatientName="Wang^XiaoDong*", PatientID=""))

    [identifier] = responses
    assert identifier.SpecificCharacterSet == "ISO_IR 192"
    assert str(identifier.PatientName) == "Wang^XiaoDong=王^小東"


def test_identifiers_longer_than_the_peer_pdu_are_fragmented(stored, scp):
    ae = AE(ae_title=QUERIER)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT
    ae.add_requested_context(STUDY_ROOT)
    lengths = []

    def record_length(event: Any) -> None:
        if isinstance(event.pdu, P_DATA_TF):
            lengths.append(event.pdu.pdu_length)

    # PS3.8 D.1 sets no lower bound on the maximum length a peer announces,
    # so announce one shorter than a command set or a response identifier.
    assoc = ae.associate("127.0.0.1", scp, ae_title="TELERAD", max_pdu=64, evt_handlers=[(evt.EVT_PDU_RECV, record_length)])
    try:
        wide = every_key_identifier("STUDY", LEVEL_KEYS[("STUDY", STUDY_ROOT)])
        responses = find_identifiers(assoc, wide)
    finally:
        assoc.release()
        ae.shutdown()

    assert sorted(str(identifier.PatientID) for identifier in responses) == sorted(EXPECTED_PATIENT_IDS)
    assert len(lengths) > 2 * len(responses)
    assert max(lengths) <= 64
    assert all(identifier.NumberOfStudyRelatedInstances == 1 for identifier in responses)


def test_big_endian_association_gets_the_same_matches(stored, scp):
    ae = AE(ae_title=QUERIER)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT
    ae.add_requested_context(STUDY_ROOT, [ExplicitVRBigEndian])
    assoc = ae.associate("127.0.0.1", scp, ae_title="TELERAD")
    try:
        responses = find_identifiers(assoc, query(QueryRetrieveLevel="STUDY", PatientID="", StudyInstanceUID=""))
    finally:
        assoc.release()
        ae.shutdown()

    assert sorted(str(identifier.PatientID) for identifier in responses) == sorted(EXPECTED_PATIENT_IDS)


def find_identifiers(assoc: Association, identifier: Dataset) -> list[Dataset]:
    found = []
    statuses = []
    for status, response in assoc.send_c_find(identifier, STUDY_ROOT):
        statuses.append(int(status.Status))
        if response is not None and int(status.Status) in {0xFF00, 0xFF01}:
            found.append(response)
    assert statuses[-1] == 0x0000
    return found
