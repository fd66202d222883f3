"""The DICOM TLS contexts and the configuration checks that load their files."""

from __future__ import annotations

import dataclasses
import logging
import socket
import ssl
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from django.conf import settings as django_settings
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from telerad.audit.models import AuditEvent
from telerad.core.checks import check_configuration
from telerad.core.tls import ensure_self_signed
from telerad.dimse import server, tls
from telerad.dimse.models import RemoteAE

WAIT_TIMEOUT = 15  # seconds for one network step or for the listener to record it


@pytest.fixture
def key_pair(tmp_path) -> tuple[Path, Path]:
    certificate, private_key = tmp_path / "dicom.crt", tmp_path / "dicom.key"
    ensure_self_signed(certificate, private_key, "127.0.0.1")
    return certificate, private_key


@pytest.fixture
def telerad_config(settings, key_pair):
    """Configure a DICOM TLS port with the generated certificate and key; return a function that changes the configuration."""
    certificate, private_key = key_pair

    def configure(**changes):
        settings.TELERAD = dataclasses.replace(django_settings.TELERAD, **changes)
        return settings.TELERAD

    configure(dicom_tls_port=2762, dicom_tls_certificate=certificate, dicom_tls_private_key=private_key, dicom_tls_ca_file=None)
    return configure


def telerad_messages() -> list[tuple[str, str]]:
    return [(message.id, message.msg) for message in check_configuration() if message.id != "telerad.E002"]


def test_server_context_without_ca_asks_no_client_certificate(telerad_config):
    context = tls.server_context(telerad_config())

    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE


def test_server_context_with_ca_requires_client_certificate(telerad_config, key_pair):
    context = tls.server_context(telerad_config(dicom_tls_ca_file=key_pair[0]))

    assert context.verify_mode == ssl.CERT_REQUIRED


def test_client_context_verifies_peer_and_host(telerad_config, key_pair):
    context = tls.client_context(telerad_config(dicom_tls_ca_file=key_pair[0]))

    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


@pytest.mark.django_db
def test_check_accepts_valid_files(telerad_config, key_pair):
    telerad_config(dicom_tls_ca_file=key_pair[0])

    assert telerad_messages() == []


@pytest.mark.django_db
def test_check_reports_unreadable_certificate(telerad_config, tmp_path):
    broken = tmp_path / "broken.crt"
    broken.write_text("not a certificate\n")
    telerad_config(dicom_tls_certificate=broken)

    [(message_id, message)] = telerad_messages()

    assert message_id == "telerad.E004"
    assert message.startswith(f"TELERAD_DICOM_TLS_CERTIFICATE: cannot load the certificate {broken} with the private key ")
    assert message.endswith("give PEM files of a certificate and its matching unencrypted key")


@pytest.mark.django_db
def test_check_reports_unreadable_ca_file(telerad_config, tmp_path):
    broken = tmp_path / "ca.pem"
    broken.write_text("no certificates here\n")
    telerad_config(dicom_tls_ca_file=broken)

    [(message_id, message)] = telerad_messages()

    assert message_id == "telerad.E004"
    assert message.startswith(f"TELERAD_DICOM_TLS_CA_FILE: cannot load the CA certificates of {broken}: ")


@pytest.mark.django_db
def test_check_skips_default_certificate_not_yet_created(telerad_config, tmp_path):
    telerad_config(dicom_tls_certificate=None, dicom_tls_private_key=None, tls_certificate=None, data_dir=tmp_path / "new")

    assert telerad_messages() == []


@pytest.mark.django_db
def test_check_warns_of_tls_aes_without_tls_port(telerad_config):
    RemoteAE.objects.create(ae_title="SECURE", tls_required=True)
    RemoteAE.objects.create(ae_title="RETIRED", tls_required=True, enabled=False)
    telerad_config(dicom_tls_port=None)

    assert telerad_messages() == [(
        "telerad.W001",
        "TELERAD_DICOM_TLS_PORT: the remote AEs SECURE require TLS, but no DICOM TLS port is set, "
        "so telerad rejects their associations; set TELERAD_DICOM_TLS_PORT",
    )]


@pytest.mark.django_db
def test_check_quiet_about_tls_aes_with_tls_port(telerad_config):
    RemoteAE.objects.create(ae_title="SECURE", tls_required=True)

    assert telerad_messages() == []


@pytest.fixture
def tls_listener(telerad_config) -> Iterator[int]:
    """Run telerad's TLS listener on a free port of 127.0.0.1 in this process; return the port."""
    config = telerad_config(host="127.0.0.1")
    ae = server.build_application_entity()
    running = server._start_server(ae, 0, tls.server_context(config))
    try:
        yield running.server_address[1]
    finally:
        server.stop([running])


def wait_until(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.django_db(transaction=True)
def test_connection_closed_before_handshake_not_audited(tls_listener, caplog):
    with caplog.at_level(logging.DEBUG, logger="telerad.dimse.tls"):
        socket.create_connection(("127.0.0.1", tls_listener), timeout=WAIT_TIMEOUT).close()
        logged = wait_until(lambda: "connection closed before the TLS handshake address=127.0.0.1" in caplog.messages)

    assert logged
    assert not AuditEvent.objects.filter(action="tls-handshake-failed").exists()


@pytest.mark.django_db(transaction=True)
def test_failed_handshake_logged_and_audited(tls_listener, caplog):
    with caplog.at_level(logging.WARNING, logger="telerad.dimse.tls"):
        with socket.create_connection(("127.0.0.1", tls_listener), timeout=WAIT_TIMEOUT) as connection:
            connection.sendall(b"A-ASSOCIATE-RQ without TLS\r\n")
            audited = wait_until(lambda: AuditEvent.objects.filter(action="tls-handshake-failed").exists())

    assert audited
    event = AuditEvent.objects.get(action="tls-handshake-failed")
    assert (event.address, event.outcome) == ("127.0.0.1", 4)
    assert event.detail.startswith("TLS handshake on the DICOM TLS port failed: ")
    assert [message for message in caplog.messages if message.startswith("TLS handshake failed address=127.0.0.1 reason=")]


@pytest.mark.django_db(transaction=True)
def test_tls_listener_accepts_echo(tls_listener, key_pair):
    RemoteAE.objects.create(ae_title="SECURE", host="127.0.0.1", tls_required=True)
    client = ssl.create_default_context(cafile=key_pair[0])
    ae = AE(ae_title="SECURE")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = WAIT_TIMEOUT
    ae.add_requested_context(Verification)

    assoc = ae.associate("127.0.0.1", tls_listener, ae_title="TELERAD", tls_args=(client, "127.0.0.1"))
    try:
        established = assoc.is_established
        status = assoc.send_c_echo() if established else None
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()

    assert established
    assert status is not None
    assert status.Status == 0x0000
