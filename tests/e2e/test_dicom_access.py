"""DICOM access control against a real ``telerad serve``: unknown AEs, wrong addresses and services an AE may not use."""

from __future__ import annotations

import pytest
from pydicom import dcmread

from .conftest import ServerFactory, TeleradServer
from .part10 import sample_path
from .peers import echoscu, run_scu, storescu
from .tls_peers import wait_for_log

SAMPLES = ("CT_small.dcm", "MR_small.dcm")
FULL = "FULL_ACCESS"
DESTINATION = "ACCESS_DEST"
# An AE that may not store, with an association of its own for the summary line.
COUNTED = "COUNTED_STORE"
STUDY_KEYS = ("--study", "--key", "QueryRetrieveLevel=STUDY")
# (calling AE title, services it may use, DCMTK tool, service name, tool arguments)
REFUSALS = [
    ("NO_STORE", "find,move,get", "storescu", "C-STORE", ("--required", "--propose-little", "--no-halt")),
    ("NO_FIND", "store,move,get", "findscu", "C-FIND", (*STUDY_KEYS, "--key", "StudyInstanceUID")),
    ("NO_MOVE", "store,find,get", "movescu", "C-MOVE", ("--move", DESTINATION, *STUDY_KEYS)),
    ("NO_GET", "store,find,move", "getscu", "C-GET", STUDY_KEYS),
]


@pytest.fixture(scope="module")
def server(module_server_factory: ServerFactory) -> TeleradServer:
    """A server that stores the samples, with one AE per refused service and a move destination that listens nowhere."""
    server = module_server_factory.start(calling_ae_titles=(FULL,))
    for title, services, *_ in REFUSALS:
        server.register_ae(title, options=("--services", services))
    server.register_ae(COUNTED, options=("--services", "find"))
    server.register_ae("ELSEWHERE", host="127.0.0.2")
    server.run("ae", "add", DESTINATION, "--host", "127.0.0.1", "--port", "9")
    for run in storescu(server, FULL, [sample_path(name) for name in SAMPLES]):
        assert run.returncode == 0, run.stderr
    return server


def study_uid() -> str:
    return str(dcmread(sample_path(SAMPLES[0]), stop_before_pixels=True).StudyInstanceUID)


@pytest.mark.parametrize(("title", "reason"), [("UNKNOWN_AE", "is not registered"), ("ELSEWHERE", "registered for another address")])
def test_association_rejected_and_audited(server, title, reason):
    run = echoscu(server, title)

    assert run.returncode != 0
    assert "Association Rejected" in run.stderr
    assert "Calling AE Title Not Recognized" in run.stderr
    [event] = [event for event in server.index().events("association-rejected") if event["user"] == title]
    assert event["outcome"] == 4
    assert reason in event["detail"]
    log_lines = [line for line in server.log().splitlines() if f"association rejected calling_ae={title} " in line]
    assert len(log_lines) == 1


@pytest.mark.parametrize(("title", "services", "tool", "service", "arguments"), REFUSALS, ids=[row[3] for row in REFUSALS])
def test_refused_service_gets_0124(server, title, services, tool, service, arguments):
    if tool == "storescu":
        # Two instances on one association, so that the one log line and audit event per association shows.
        run = run_scu(tool, server, title, *arguments, files=[sample_path(name) for name in SAMPLES])
    else:
        run = run_scu(tool, server, title, *arguments, "--key", f"StudyInstanceUID={study_uid()}")

    # DCMTK 3.6.7 names no 0124 status and prints it as "Unknown Status: 0x124".
    assert "Status: 0x124)" in run.stderr, run.stderr
    log_line = f"{service} refused calling_ae={title} address=127.0.0.1 status=0x0124"
    log = wait_for_log(server, log_line)
    assert log.count(log_line) == 1
    events = [event for event in server.index().events("service-refused") if event["user"] == title]
    assert len(events) == 1
    assert events[0]["outcome"] == 4
    assert events[0]["detail"].startswith(f"{service} refused with status 0x0124: AE {title} is not allowed to ")


def test_refused_stores_counted_in_summary(server):
    summary = f"association ended calling_ae={COUNTED} "
    run = run_scu("storescu", server, COUNTED, *REFUSALS[0][4], files=[sample_path(name) for name in SAMPLES])

    assert run.stderr.count("Status: 0x124)") == 2, run.stderr
    lines = [line for line in wait_for_log(server, summary).splitlines() if summary in line]
    assert len(lines) == 1, "\n".join(lines)
    assert "refused=2 failures=2" in lines[0]
    assert len([event for event in server.index().events("service-refused") if event["user"] == COUNTED]) == 1
