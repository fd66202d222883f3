"""Crash test: SIGKILL ``telerad serve`` in the middle of a storescu run, restart it and check what survived.

An instance is acknowledged only after its file is durably written and its
index rows are committed, so every instance that storescu saw succeed before
the kill must be in the index after the restart, with its file intact.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from .conftest import Index, ServerFactory
from .part10 import dataset_bytes, dcmtk_encoded_copy, replace_uid_element, sample_path, write_part10
from .peers import DCMTK_TIMEOUT, StorescuProgress, storescu, storescu_command

pytestmark = pytest.mark.e2e

CALLING_AE = "E2E_CRASH"
INSTANCE_COUNT = 1000
STUDY_COUNT = 4
KILL_AFTER_ACKNOWLEDGED = 300
ACKNOWLEDGE_TIMEOUT = 120.0  # seconds until storescu has the responses it waits for before the kill

STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
SOP_INSTANCE_UID = 0x00080018


@dataclasses.dataclass(frozen=True)
class CrashRun:
    sent: dict[Path, str]  # file -> SOP Instance UID
    acknowledged: list[Path]
    storescu_log: str
    index_after_restart: Index
    remaining_runs: list[subprocess.CompletedProcess[str]]
    index_after_remaining: Index


def build_instances(folder: Path, count: int) -> dict[Path, str]:
    """Write `count` copies of a real CT image, each with a new SOP Instance UID, spread over a few studies.

    The copies are made by changing UID values in DCMTK's encoding of the
    sample, so that storescu sends each file's dataset byte for byte.
    """
    template = dcmtk_encoded_copy(sample_path("CT_small.dcm"), folder / "template.dcm")
    header = dcmread(template, stop_before_pixels=True)
    assert not any(element.tag.element == 0 for element in header), "group length elements would need new values too"
    dataset = dataset_bytes(template)
    studies = [(generate_uid(), generate_uid()) for _ in range(STUDY_COUNT)]

    sent = {}
    for number in range(count):
        study_instance_uid, series_instance_uid = studies[number % STUDY_COUNT]
        sop_instance_uid = generate_uid()
        data = replace_uid_element(dataset, STUDY_INSTANCE_UID, header.StudyInstanceUID, study_instance_uid)
        data = replace_uid_element(data, SERIES_INSTANCE_UID, header.SeriesInstanceUID, series_instance_uid)
        data = replace_uid_element(data, SOP_INSTANCE_UID, header.SOPInstanceUID, sop_instance_uid)
        path = write_part10(
            folder / f"instance-{number:04d}.dcm", data,
            sop_class_uid=header.SOPClassUID, sop_instance_uid=sop_instance_uid, transfer_syntax=ExplicitVRLittleEndian,
        )
        sent[path] = sop_instance_uid
    return sent


@pytest.fixture(scope="module")
def crash_run(module_server_factory: ServerFactory, tmp_path_factory: pytest.TempPathFactory) -> CrashRun:
    sent = build_instances(tmp_path_factory.mktemp("instances"), INSTANCE_COUNT)
    server = module_server_factory.start(calling_ae_titles=[CALLING_AE])

    # One association for all files, killed once a few hundred are acknowledged.
    sender = StorescuProgress(storescu_command(server, CALLING_AE, ExplicitVRLittleEndian, sent))
    try:
        sender.wait_for_acknowledged(KILL_AFTER_ACKNOWLEDGED, timeout=ACKNOWLEDGE_TIMEOUT)
        server.kill()
        sender.wait(timeout=DCMTK_TIMEOUT)
    finally:
        sender.stop()

    server.start()
    index_after_restart = server.index()
    acknowledged = set(sender.acknowledged)
    remaining_runs = storescu(server, CALLING_AE, [path for path in sent if path not in acknowledged])
    return CrashRun(sent, sender.acknowledged, sender.log_tail(), index_after_restart, remaining_runs, server.index())


def test_server_killed_mid_run(crash_run):
    count = len(crash_run.acknowledged)

    assert KILL_AFTER_ACKNOWLEDGED <= count < INSTANCE_COUNT, f"{count} acknowledged:\n{crash_run.storescu_log}"


def test_acknowledged_instances_indexed_after_restart(crash_run):
    indexed = crash_run.index_after_restart.instances

    missing = [path.name for path in crash_run.acknowledged if crash_run.sent[path] not in indexed]

    assert missing == []


def test_acknowledged_files_intact_after_restart(crash_run):
    indexed = crash_run.index_after_restart.instances

    changed = [
        path.name for path in crash_run.acknowledged
        if crash_run.sent[path] in indexed and dataset_bytes(indexed[crash_run.sent[path]].path) != dataset_bytes(path)
    ]

    assert changed == []


def test_restarted_server_accepts_remaining(crash_run):
    failed = [run.stderr for run in crash_run.remaining_runs if run.returncode != 0]
    indexed = crash_run.index_after_remaining.instances

    missing = [path.name for path, sop_instance_uid in crash_run.sent.items() if sop_instance_uid not in indexed]

    assert failed == []
    assert missing == []


def test_sigterm_stops_listeners_and_workers(server_factory: ServerFactory):
    server = server_factory.start()

    server.stop()

    assert server.process is not None
    assert server.process.returncode == 0, server.output_tail()
    log = server.log()
    assert "DICOM listener stopped" in log
    assert "worklist background work stopped" in log
    assert "Traceback" not in log
