"""DICOM TLS against a real ``telerad serve``: DCMTK's echoscu, storescu and movescu, and a TLS move destination."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Iterator

import pytest
from pydicom import dcmread

from .conftest import ServerFactory, TeleradServer, free_port
from .part10 import sample_path
from .peers import echoscu, run_scu, storescu
from .tls_peers import (
    CertificateAuthority,
    KeyPair,
    TLSStorageSCP,
    dcmtk_over_tls,
    dcmtk_tls_options,
    wait_for_events,
    wait_for_log,
)

CALLER = "TLS_SCU"
TLS_ONLY_CALLER = "TLS_ONLY_SCU"
DESTINATION = "TLS_DEST"
SAMPLE = "CT_small.dcm"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A hospital CA with telerad's, a modality's and the destination's certificates, and an unrelated CA."""
    folder = tmp_path_factory.mktemp("pki")
    hospital = CertificateAuthority(folder, "hospital")
    other = CertificateAuthority(folder, "other")
    return {
        "ca": hospital.certificate_path,
        "telerad": hospital.issue("telerad"),
        "modality": hospital.issue("modality"),
        "destination": hospital.issue("destination"),
        "other_ca": other.certificate_path,
        "stranger": other.issue("stranger"),
    }


@pytest.fixture(scope="module")
def destination(pki) -> Iterator[TLSStorageSCP]:
    scp = TLSStorageSCP(DESTINATION, pki["destination"], pki["ca"])
    try:
        yield scp
    finally:
        scp.stop()


@pytest.fixture(scope="module")
def server(module_server_factory: ServerFactory, pki, destination) -> TeleradServer:
    """A server with plain and TLS ports that requires client certificates of the hospital CA."""
    telerad: KeyPair = pki["telerad"]
    server = module_server_factory.start(
        calling_ae_titles=("E2E_PROBE",),
        dicom_tls_port=str(free_port()),
        dicom_tls_certificate=str(telerad.certificate),
        dicom_tls_private_key=str(telerad.private_key),
        dicom_tls_ca_file=str(pki["ca"]),
    )
    server.register_ae(CALLER)
    server.register_ae(TLS_ONLY_CALLER, options=("--tls",))
    server.run("ae", "add", DESTINATION, "--host", "127.0.0.1", "--port", str(destination.port), "--tls")
    return server


def test_banner_names_tls_listener(server):
    stdout = "".join(path.read_text() for path in server.output_files if path.suffix == ".stdout")

    assert f"DICOM: 127.0.0.1:{server.dicom_port}, AE title TELERAD" in stdout
    assert f"DICOM: 127.0.0.1:{server.dicom_tls_port} (TLS, client certificates required), AE title TELERAD" in stdout


def test_echo_with_client_certificate_succeeds(server, pki):
    run = dcmtk_over_tls("echoscu", server, CALLER, dcmtk_tls_options(client=pki["modality"], trusted=pki["ca"]))

    assert run.returncode == 0, run.stderr
    assert "Received Echo Response (Success)" in run.stderr


def test_echo_without_trusted_ca_fails(server, pki):
    run = dcmtk_over_tls("echoscu", server, CALLER, dcmtk_tls_options(client=pki["modality"], trusted=None))

    assert run.returncode != 0
    assert "Received Echo Response" not in run.stderr


def test_echo_trusting_other_ca_fails(server, pki):
    run = dcmtk_over_tls("echoscu", server, CALLER, dcmtk_tls_options(client=pki["modality"], trusted=pki["other_ca"]))

    assert run.returncode != 0
    assert "Received Echo Response" not in run.stderr


def test_echo_without_client_certificate_fails(server, pki):
    run = dcmtk_over_tls("echoscu", server, CALLER, dcmtk_tls_options(client=None, trusted=pki["ca"]))

    assert run.returncode != 0
    assert "Received Echo Response" not in run.stderr
    events = wait_for_events(server, "tls-handshake-failed", lambda event: "certificate" in event["detail"].lower())
    assert events, "no tls-handshake-failed audit event names the missing certificate"
    assert events[-1]["outcome"] == 4
    assert "TLS handshake failed address=127.0.0.1" in wait_for_log(server, "TLS handshake failed")


def test_echo_with_foreign_client_certificate_fails(server, pki):
    run = dcmtk_over_tls("echoscu", server, CALLER, dcmtk_tls_options(client=pki["stranger"], trusted=pki["ca"]))

    assert run.returncode != 0
    assert "Received Echo Response" not in run.stderr
    failures = wait_for_events(server, "tls-handshake-failed", lambda event: "issuer" in event["detail"])
    assert failures, "no tls-handshake-failed audit event names the unknown issuer"


def test_storescu_over_tls_stores_instance(server, pki):
    path = sample_path(SAMPLE)
    tls_options = dcmtk_tls_options(client=pki["modality"], trusted=pki["ca"])

    run = dcmtk_over_tls("storescu", server, CALLER, tls_options, "--required", files=(path,))

    assert run.returncode == 0, run.stderr
    assert "Received Store Response (Success)" in run.stderr
    sop_instance_uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    assert server.index().instances[sop_instance_uid].source_ae_title == CALLER
    summary = f"calling_ae={CALLER} called_ae=TELERAD address=127.0.0.1 tls=yes received=1"
    assert summary in wait_for_log(server, summary)


def test_tls_required_ae_rejected_on_plain_port(server):
    run = echoscu(server, TLS_ONLY_CALLER)

    assert run.returncode != 0
    assert "Association Rejected" in run.stderr
    [event] = [event for event in server.index().events("association-rejected") if event["user"] == TLS_ONLY_CALLER]
    assert event["outcome"] == 4
    assert "requires TLS" in event["detail"]
    assert f"association rejected calling_ae={TLS_ONLY_CALLER} address=127.0.0.1 reason=" in server.log()


def test_tls_required_ae_accepted_on_tls_port(server, pki):
    run = dcmtk_over_tls("echoscu", server, TLS_ONLY_CALLER, dcmtk_tls_options(client=pki["modality"], trusted=pki["ca"]))

    assert run.returncode == 0, run.stderr
    assert "Received Echo Response (Success)" in run.stderr


def test_move_to_tls_destination_goes_over_tls(server, pki, destination):
    path = sample_path(SAMPLE)
    dataset = dcmread(path, stop_before_pixels=True)
    stored = dcmtk_over_tls(
        "storescu", server, CALLER, dcmtk_tls_options(client=pki["modality"], trusted=pki["ca"]), "--required", files=(path,),
    )
    assert stored.returncode == 0, stored.stderr

    run = run_scu(
        "movescu", server, CALLER, "--move", DESTINATION, "--study",
        "--key", "QueryRetrieveLevel=STUDY", "--key", f"StudyInstanceUID={dataset.StudyInstanceUID}",
    )

    assert run.returncode == 0, run.stderr
    assert "Received Final Move Response (Success)" in run.stderr
    received = [item for item in destination.received if item.sop_instance_uid == str(dataset.SOPInstanceUID)]
    assert len(received) == 1
    assert received[0].tls_version in {"TLSv1.2", "TLSv1.3"}
    assert received[0].client_common_name == "telerad"


def test_tls_only_server_has_no_plain_port(server_factory):
    server = server_factory.start(calling_ae_titles=(CALLER,), dicom_tls_port=str(free_port()), dicom_tls_only=True)
    certificate = server.data_dir / "tls" / "telerad.crt"

    run = dcmtk_over_tls("echoscu", server, CALLER, dcmtk_tls_options(client=None, trusted=certificate))

    assert run.returncode == 0, run.stderr
    assert "Received Echo Response (Success)" in run.stderr
    stdout = "".join(path.read_text() for path in server.output_files if path.suffix == ".stdout")
    assert f"DICOM: 127.0.0.1:{server.dicom_tls_port} (TLS), AE title TELERAD" in stdout
    assert f":{server.dicom_port}," not in stdout
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.dicom_port), timeout=2):
        pass


def test_self_signed_certificate_verifies_with_itself(server_factory):
    server = server_factory.start(calling_ae_titles=(CALLER,), dicom_tls_port=str(free_port()))
    certificate: Path = server.data_dir / "tls" / "telerad.crt"

    run = dcmtk_over_tls("echoscu", server, CALLER, dcmtk_tls_options(client=None, trusted=certificate))

    assert certificate.is_file()
    assert run.returncode == 0, run.stderr
    assert "Received Echo Response (Success)" in run.stderr


def test_move_to_untrusted_destination_sends_nothing(server_factory, destination):
    # Without a CA file telerad trusts the system's CAs only, which did not sign the destination's certificate.
    server = server_factory.start(calling_ae_titles=(CALLER,))
    server.run("ae", "add", DESTINATION, "--host", "127.0.0.1", "--port", str(destination.port), "--tls")
    path = sample_path(SAMPLE)
    study_instance_uid = str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)
    [stored] = storescu(server, CALLER, [path])
    assert stored.returncode == 0, stored.stderr
    received_before = len(destination.received)

    run = run_scu(
        "movescu", server, CALLER, "--move", DESTINATION, "--study",
        "--key", "QueryRetrieveLevel=STUDY", "--key", f"StudyInstanceUID={study_instance_uid}",
    )

    assert "Received Final Move Response (Success)" not in run.stderr
    assert "Received Final Move Response (Refused: MoveDestinationUnknown)" in run.stderr, run.stderr
    assert len(destination.received) == received_before
