"""The DICOM TLS contexts and the configuration checks that load their files."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from telerad.core.checks import check_configuration
from telerad.core.tls import ensure_self_signed
from telerad.dimse import tls
from telerad.dimse.models import RemoteAE


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
