"""Configuration checks, reported by ``telerad check`` and before every server starts."""

from __future__ import annotations

import dataclasses
import os
import ssl
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.db import DatabaseError, connection

from telerad.config import Config
from telerad.dimse import tls
from telerad.dimse.models import RemoteAE


@register("telerad")
def check_configuration(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    config = settings.TELERAD
    messages: list[CheckMessage] = [Error(str(problem), id="telerad.E001") for problem in config.problems]
    messages += _check_data_dir(config.data_dir)
    if not config.problems:
        messages += _check_dicom_tls(config)
        database_errors = _check_database()
        messages += database_errors
        if not database_errors:
            messages += _check_tls_remote_aes(config)
    return messages


def _check_dicom_tls(config: Config) -> list[CheckMessage]:
    """Load the DICOM TLS certificate, key and CA file as the listener and C-MOVE will, and report what fails."""
    errors: list[CheckMessage] = []
    if config.dicom_tls_ca_file is not None:
        try:
            ssl.create_default_context(cafile=config.dicom_tls_ca_file)
        except (OSError, ValueError) as exc:
            errors.append(Error(f"TELERAD_DICOM_TLS_CA_FILE: cannot load the CA certificates of {config.dicom_tls_ca_file}: {_ssl_reason(exc)}; give a PEM file of one or more CA certificates", id="telerad.E004"))
    # The self-signed default is created when the listener starts, so until then there is nothing to load.
    configured = config.dicom_tls_certificate is not None or config.tls_certificate is not None
    if config.dicom_tls_port is None or not (configured or config.dicom_certificate_path.exists()):
        return errors
    try:
        tls.server_context(dataclasses.replace(config, dicom_tls_ca_file=None))
    except OSError as exc:
        setting = "TELERAD_DICOM_TLS_CERTIFICATE" if config.dicom_tls_certificate is not None else "TELERAD_TLS_CERTIFICATE"
        errors.append(Error(
            f"{setting}: cannot load the certificate {config.dicom_certificate_path} with the private key {config.dicom_private_key_path}: {_ssl_reason(exc)}; give PEM files of a certificate and its matching unencrypted key",
            id="telerad.E004",
        ))
    return errors


def _ssl_reason(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason.replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _check_tls_remote_aes(config: Config) -> list[CheckMessage]:
    """Warn of remote AEs that require TLS while telerad has no DICOM TLS port, so that they cannot call in."""
    if config.dicom_tls_port is not None:
        return []
    try:
        titles = list(RemoteAE.objects.filter(tls_required=True, enabled=True).values_list("ae_title", flat=True))
    except DatabaseError:
        # The tables do not exist before the first migration.
        return []
    finally:
        if not connection.in_atomic_block:
            connection.close()
    if not titles:
        return []
    return [Warning(
        f"TELERAD_DICOM_TLS_PORT: the remote AEs {', '.join(titles)} require TLS, but no DICOM TLS port is set, so telerad rejects their associations; set TELERAD_DICOM_TLS_PORT",
        id="telerad.W001",
    )]


def _check_data_dir(data_dir: Any) -> list[Error]:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return [Error(f"TELERAD_DATA_DIR: cannot create {data_dir}: {exc.strerror}", id="telerad.E002")]
    if not os.access(data_dir, os.W_OK):
        return [Error(f"TELERAD_DATA_DIR: {data_dir} is not writable by this user", id="telerad.E002")]
    return []


def _check_database() -> list[Error]:
    try:
        connection.ensure_connection()
    except DatabaseError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [Error(f"TELERAD_DATABASE_URL: cannot connect to the database: {first_line}", id="telerad.E003")]
    finally:
        # Inside a transaction (tests, management commands) the connection stays.
        if not connection.in_atomic_block:
            connection.close()
    return []
