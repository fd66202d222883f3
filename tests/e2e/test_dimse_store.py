"""C-ECHO and C-STORE against a real ``telerad serve``, from DCMTK and pynetdicom peers."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.sop_class import CTImageStorage, MRImageStorage

from .conftest import Index, ServerFactory, TeleradServer
from .part10 import (
    dataset_bytes,
    dcmtk_encoded_copy,
    encoded,
    replace_once,
    sample_path,
    sha256_of,
    transfer_syntax_of,
    with_new_uids,
    write_part10,
)
from .peers import association, echoscu, send_file, storescu

pytestmark = pytest.mark.e2e

STORESCU_AE = "E2E_STORESCU"
PYNETDICOM_AE = "E2E_PYNETDICOM"
# Used only by the log test, so that its association summaries can be counted.
LOGGED_AE = "E2E_LOGGED"
UNREGISTERED_AE = "E2E_STRANGER"
STORAGE_CLASSES = (CTImageStorage, MRImageStorage)

SUCCESS = 0x0000
DUPLICATE_SOP_INSTANCE = 0x0111
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = range(0xC000, 0xD000)
SUMMARY_TIMEOUT = 10.0  # seconds for the server to log an association's summary

# Real samples, each with its own SOP Instance UID, covering the encodings
# telerad must store exactly as received.
SAMPLES = {
    "CT_small.dcm": "CT, explicit VR little endian, private tags",
    "MR_small_implicit.dcm": "MR, implicit VR little endian",
    "OBXXXX1A_2frame.dcm": "US multi-frame",
    "rtdose.dcm": "RT dose, multi-frame, implicit VR little endian",
    "SC_rgb_jpeg_dcmtk.dcm": "JPEG baseline",
    "JPGExtended.dcm": "JPEG extended",
    "JPEG-LL.dcm": "JPEG lossless",
    "emri_small_jpeg_ls_lossless.dcm": "JPEG-LS lossless, enhanced MR",
    "US1_J2KR.dcm": "JPEG 2000 lossless",
    "693_J2KI.dcm": "JPEG 2000",
    "SC_rgb_rle.dcm": "RLE lossless",
    "ExplVR_BigEnd.dcm": "explicit VR big endian",
    "image_dfl.dcm": "deflated explicit VR little endian",
}
# pydicom's character set samples. chrX2 is the GB18030 one.
CHARSET_SAMPLES = (
    "chrFren.dcm", "chrGerm.dcm", "chrRuss.dcm", "chrGreek.dcm", "chrArab.dcm", "chrHbrw.dcm",
    "chrJapMulti.dcm", "chrKoreanMulti.dcm", "chrX1.dcm", "chrX2.dcm", "chrH31.dcm", "chrI2.dcm",
)
SUMMARY = re.compile(r"association ended calling_ae=(?P<calling_ae>\S+) .*\breceived=(?P<received>\d+) .*\bfailures=(?P<failures>\d+) duration=(?P<duration>\d+\.\d+)s")


@dataclasses.dataclass(frozen=True)
class SentFiles:
    files: list[Path]
    runs: list[subprocess.CompletedProcess[str]]
    index: Index

    def output(self) -> str:
        return "\n".join(run.stdout + run.stderr for run in self.runs)


@pytest.fixture(scope="module")
def server(module_server_factory: ServerFactory) -> TeleradServer:
    return module_server_factory.start(calling_ae_titles=(STORESCU_AE, PYNETDICOM_AE, LOGGED_AE))


@pytest.fixture(scope="module")
def sent_samples(server: TeleradServer, tmp_path_factory: pytest.TempPathFactory) -> SentFiles:
    folder = tmp_path_factory.mktemp("samples")
    files = [dcmtk_encoded_copy(sample_path(name), folder / name) for name in SAMPLES]
    runs = storescu(server, STORESCU_AE, files)
    return SentFiles(files, runs, server.index())


@pytest.fixture(scope="module")
def sent_charset_samples(server: TeleradServer) -> SentFiles:
    files = [sample_path(name) for name in CHARSET_SAMPLES]
    runs = storescu(server, STORESCU_AE, files)
    return SentFiles(files, runs, server.index())


def ct_dataset() -> Dataset:
    return with_new_uids(sample_path("CT_small.dcm"))


def changed_copy(original: Dataset) -> Dataset:
    """Return a dataset with the UIDs of `original` and one attribute changed."""
    changed = ct_dataset()
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        setattr(changed, keyword, original.data_element(keyword).value)
    changed.SeriesDescription = "changed after the first copy was stored"
    return changed


# --- Association control


def test_echo_from_registered_ae(server):
    completed = echoscu(server, STORESCU_AE)

    assert completed.returncode == 0, completed.stderr


def test_echo_from_unregistered_ae_rejected(server):
    completed = echoscu(server, UNREGISTERED_AE)

    assert completed.returncode != 0
    assert "Calling AE Title Not Recognized" in completed.stderr


def test_echo_from_other_address_rejected(server):
    server.register_ae("E2E_ELSEWHERE", host="127.0.0.2")

    completed = echoscu(server, "E2E_ELSEWHERE")

    assert completed.returncode != 0
    assert "Calling AE Title Not Recognized" in completed.stderr


def test_accept_any_ae_accepts_unknown_title(server_factory):
    open_server = server_factory.start(accept_any_ae=True)

    completed = echoscu(open_server, UNREGISTERED_AE)

    assert completed.returncode == 0, completed.stderr


# --- Storing real samples with storescu


def test_storescu_reports_success(sent_samples):
    failed = [run.stderr for run in sent_samples.runs if run.returncode != 0]

    assert failed == []


@pytest.mark.parametrize("name", SAMPLES)
def test_storescu_sample_stored_as_sent(sent_samples, name):
    path = next(path for path in sent_samples.files if path.name == name)
    sop_instance_uid = dcmread(path, stop_before_pixels=True).SOPInstanceUID

    stored = sent_samples.index.instances.get(sop_instance_uid)

    assert stored is not None, f"{name} is not in the index; storescu output:\n{sent_samples.output()}"
    assert stored.transfer_syntax_uid == transfer_syntax_of(path)
    assert dataset_bytes(stored.path) == dataset_bytes(path)


def test_stored_meta_names_telerad_as_source(server, sent_samples):
    sop_instance_uid = dcmread(sent_samples.files[0], stop_before_pixels=True).SOPInstanceUID
    stored = sent_samples.index.instances[sop_instance_uid]

    meta = read_file_meta_info(stored.path)

    assert meta.get("SourceApplicationEntityTitle", "").strip() == server.ae_title
    assert meta.get("SendingApplicationEntityTitle", "").strip() == STORESCU_AE
    assert meta.get("ReceivingApplicationEntityTitle", "").strip() == server.ae_title


# --- Storing datasets with pynetdicom


@pytest.mark.parametrize(
    "name, transfer_syntax",
    [("MR_small_implicit.dcm", ImplicitVRLittleEndian), ("CT_small.dcm", ExplicitVRLittleEndian)],
    ids=["implicit-vr", "explicit-vr"],
)
def test_pynetdicom_dataset_stored_as_sent(server, name, transfer_syntax):
    ds = with_new_uids(sample_path(name))
    assert ds.file_meta.TransferSyntaxUID == transfer_syntax, "the sample is not in the expected encoding"

    with association(server, PYNETDICOM_AE, [ds.SOPClassUID], [transfer_syntax]) as assoc:
        status = assoc.send_c_store(ds)
    stored = server.index().instances.get(ds.SOPInstanceUID)

    assert status.Status == SUCCESS
    assert stored is not None
    assert stored.transfer_syntax_uid == transfer_syntax
    assert dataset_bytes(stored.path) == encoded(ds)


# --- Bad input


@dataclasses.dataclass(frozen=True)
class BadInstance:
    path: Path
    sop_instance_uid: str


def _write(tmp_path: Path, ds: Dataset, data: bytes, *, sop_instance_uid: str, sop_class_uid: str = CTImageStorage) -> BadInstance:
    path = write_part10(
        tmp_path / "bad.dcm", data,
        sop_class_uid=sop_class_uid, sop_instance_uid=sop_instance_uid, transfer_syntax=ds.file_meta.TransferSyntaxUID,
    )
    return BadInstance(path, sop_instance_uid)


def without_sop_instance_uid(tmp_path: Path) -> BadInstance:
    ds = ct_dataset()
    sop_instance_uid = ds.SOPInstanceUID
    del ds.SOPInstanceUID
    return _write(tmp_path, ds, encoded(ds), sop_instance_uid=sop_instance_uid)


def without_study_instance_uid(tmp_path: Path) -> BadInstance:
    ds = ct_dataset()
    del ds.StudyInstanceUID
    return _write(tmp_path, ds, encoded(ds), sop_instance_uid=ds.SOPInstanceUID)


def with_letters_in_uid(tmp_path: Path) -> BadInstance:
    ds = ct_dataset()
    uid = ds.StudyInstanceUID.encode()
    data = replace_once(encoded(ds), uid, uid[:-3] + b"abc")
    return _write(tmp_path, ds, data, sop_instance_uid=ds.SOPInstanceUID)


def with_undecodable_name(tmp_path: Path) -> BadInstance:
    ds = ct_dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    placeholder = "PLACEHOLDER^NAME"
    ds.PatientName = placeholder
    # 0xC3 0x28 is a lead byte with an invalid continuation, 0xFF never occurs in UTF-8.
    invalid_utf8 = b"\xc3\x28\xff\xfe" + b"x" * (len(placeholder) - 4)
    data = replace_once(encoded(ds), placeholder.encode(), invalid_utf8)
    return _write(tmp_path, ds, data, sop_instance_uid=ds.SOPInstanceUID)


def with_invalid_date(tmp_path: Path) -> BadInstance:
    ds = ct_dataset()
    ds.StudyDate = "19991231"
    data = replace_once(encoded(ds), b"19991231", b"19991341")
    return _write(tmp_path, ds, data, sop_instance_uid=ds.SOPInstanceUID)


def truncated(tmp_path: Path) -> BadInstance:
    ds = ct_dataset()
    # Without trailing padding, Pixel Data is the last element and claims 1000 bytes more than follow.
    if "DataSetTrailingPadding" in ds:
        del ds.DataSetTrailingPadding
    return _write(tmp_path, ds, encoded(ds)[:-1000], sop_instance_uid=ds.SOPInstanceUID)


def with_other_sop_class(tmp_path: Path) -> BadInstance:
    ds = ct_dataset()
    return _write(tmp_path, ds, encoded(ds), sop_instance_uid=ds.SOPInstanceUID, sop_class_uid=MRImageStorage)


# Each bad instance, the statuses expected in response and the word its Error Comment must contain.
BAD_INSTANCES: dict[str, tuple[Callable[[Path], BadInstance], range, str]] = {
    "missing-sop-instance-uid": (without_sop_instance_uid, CANNOT_UNDERSTAND, "SOPInstanceUID"),
    "missing-study-instance-uid": (without_study_instance_uid, CANNOT_UNDERSTAND, "StudyInstanceUID"),
    "letters-in-uid": (with_letters_in_uid, CANNOT_UNDERSTAND, "StudyInstanceUID"),
    "undecodable-name": (with_undecodable_name, CANNOT_UNDERSTAND, "PatientName"),
    "invalid-date": (with_invalid_date, CANNOT_UNDERSTAND, "StudyDate"),
    "truncated": (truncated, CANNOT_UNDERSTAND, "truncated"),
    "sop-class-mismatch": (with_other_sop_class, range(DATASET_DOES_NOT_MATCH_SOP_CLASS, DATASET_DOES_NOT_MATCH_SOP_CLASS + 1), "SOPClassUID"),
}


@dataclasses.dataclass(frozen=True)
class BadInstanceResult:
    bad: BadInstance
    bad_status: Dataset
    next_status: Dataset
    server_running: bool


@dataclasses.dataclass(frozen=True)
class BadInstanceRun:
    results: dict[str, BadInstanceResult]
    before: Index
    files_before: dict[str, str]
    after: Index


@pytest.fixture(scope="module")
def bad_instance_run(server: TeleradServer, tmp_path_factory: pytest.TempPathFactory) -> BadInstanceRun:
    """Send each bad instance, followed by a good one, on an association of its own."""
    before = server.index()
    files_before = {row.sop_instance_uid: sha256_of(row.path) for row in before.rows}
    results = {}
    for case, (build, _, _) in BAD_INSTANCES.items():
        bad = build(tmp_path_factory.mktemp(case))
        with association(server, PYNETDICOM_AE, STORAGE_CLASSES) as assoc:
            bad_status = send_file(assoc, bad.path)
            next_status = assoc.send_c_store(ct_dataset())
        results[case] = BadInstanceResult(bad, bad_status, next_status, server.is_running())
    return BadInstanceRun(results, before, files_before, server.index())


@pytest.mark.parametrize("case", BAD_INSTANCES)
def test_bad_instance_fails_with_reason(bad_instance_run, case):
    _, statuses, error_keyword = BAD_INSTANCES[case]
    result = bad_instance_run.results[case]

    assert result.bad_status.Status in statuses, f"status 0x{result.bad_status.Status:04X}"
    assert error_keyword in result.bad_status.get("ErrorComment", "")
    assert result.bad.sop_instance_uid not in bad_instance_run.after.instances


@pytest.mark.parametrize("case", BAD_INSTANCES)
def test_association_usable_after_bad_instance(bad_instance_run, case):
    result = bad_instance_run.results[case]

    assert result.next_status.Status == SUCCESS
    assert result.server_running


def test_bad_instances_change_nothing_stored(bad_instance_run):
    before, after = bad_instance_run.before, bad_instance_run.after
    files_before = bad_instance_run.files_before

    assert [row for row in after.rows if row.sop_instance_uid in files_before] == before.rows
    assert {uid: sha256_of(after.instances[uid].path) for uid in files_before} == files_before


# --- Duplicates


def test_same_instance_twice_stores_one_file(server):
    ds = ct_dataset()
    files_before = len(server.index().stored_files())

    with association(server, PYNETDICOM_AE, STORAGE_CLASSES) as assoc:
        statuses = [assoc.send_c_store(ds).Status, assoc.send_c_store(ds).Status]
    index = server.index()

    assert statuses == [SUCCESS, SUCCESS]
    assert len(index.rows_for(ds.SOPInstanceUID)) == 1
    assert len(index.stored_files()) == files_before + 1


def test_changed_duplicate_rejected_under_keep_first(server):
    original = ct_dataset()
    changed = changed_copy(original)

    with association(server, PYNETDICOM_AE, STORAGE_CLASSES) as assoc:
        first_status = assoc.send_c_store(original)
        before = server.index()
        stored = before.instances[original.SOPInstanceUID]
        file_before = sha256_of(stored.path)
        second_status = assoc.send_c_store(changed)
    after = server.index()

    assert first_status.Status == SUCCESS
    assert second_status.Status == DUPLICATE_SOP_INSTANCE
    assert after.rows_for(original.SOPInstanceUID) == [stored]
    assert sha256_of(stored.path) == file_before
    assert dataset_bytes(stored.path) == encoded(original)
    assert len(after.stored_files()) == len(before.stored_files())
    assert any(original.SOPInstanceUID in event["detail"] for event in after.events("duplicate-rejected"))


def test_changed_duplicate_replaces_under_overwrite(server_factory):
    overwriting_server = server_factory.start(calling_ae_titles=[PYNETDICOM_AE], duplicate_policy="overwrite")
    original = ct_dataset()
    changed = changed_copy(original)

    with association(overwriting_server, PYNETDICOM_AE, STORAGE_CLASSES) as assoc:
        first_status = assoc.send_c_store(original)
        old_path = overwriting_server.index().instances[original.SOPInstanceUID].path
        second_status = assoc.send_c_store(changed)
    index = overwriting_server.index()
    rows = index.rows_for(original.SOPInstanceUID)

    assert first_status.Status == SUCCESS
    assert second_status.Status == SUCCESS
    assert len(rows) == 1
    assert dataset_bytes(rows[0].path) == encoded(changed)
    assert not old_path.exists()
    assert any(original.SOPInstanceUID in event["detail"] for event in index.events("duplicate-replaced"))


# --- Character sets


@pytest.mark.parametrize("name", CHARSET_SAMPLES)
def test_patient_name_decoded_per_charset(sent_charset_samples, name):
    ds = dcmread(sample_path(name))

    stored = sent_charset_samples.index.instances.get(ds.SOPInstanceUID)

    assert stored is not None, f"{name} is not in the index; storescu output:\n{sent_charset_samples.output()}"
    assert stored.patient_name == str(ds.PatientName)


# --- Server log


def association_summaries(server: TeleradServer, calling_ae_title: str, count: int) -> list[str]:
    """Wait until the server has logged `count` association summaries for `calling_ae_title`; return them all."""
    deadline = time.monotonic() + SUMMARY_TIMEOUT
    while True:
        lines = [line for line in server.log().splitlines() if f"association ended calling_ae={calling_ae_title} " in line]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def test_log_has_one_summary_per_association(server, tmp_path):
    bad = truncated(tmp_path)

    echo = echoscu(server, LOGGED_AE)
    with association(server, LOGGED_AE, STORAGE_CLASSES) as assoc:
        statuses = [assoc.send_c_store(ct_dataset()).Status, assoc.send_c_store(ct_dataset()).Status, send_file(assoc, bad.path).Status]
    lines = association_summaries(server, LOGGED_AE, 2)
    summaries = [SUMMARY.search(line) for line in lines]

    assert echo.returncode == 0, echo.stderr
    assert statuses[:2] == [SUCCESS, SUCCESS]
    assert len(lines) == 2, "\n".join(lines)
    assert None not in summaries, "\n".join(lines)
    assert [(match["received"], match["failures"]) for match in summaries] == [("0", "0"), ("2", "1")]


def name_parts(path: Path) -> set[str]:
    """Return a patient's name and its parts long enough not to occur in a log by chance."""
    name = str(dcmread(path, stop_before_pixels=True).get("PatientName", ""))
    parts = {part for part in re.split(r"[\^=]", name) if len(part) >= 4 or (len(part) >= 2 and not part.isascii())}
    # A name of empty components ("^^^^") is only delimiters.
    if any(character.isalnum() for character in name):
        parts.add(name)
    return parts


def test_log_contains_no_patient_names(server, sent_samples, sent_charset_samples):
    names = set().union(*(name_parts(path) for path in sent_samples.files + sent_charset_samples.files))
    assert names, "the samples carry no patient names to look for"

    output = server.output()
    leaked = sorted(name for name in names if name in output)

    assert leaked == []
