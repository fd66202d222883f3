"""TLS for DICOM: the listener's and the C-MOVE client's SSL contexts, and the TLS association server.

Both sides accept TLS 1.2 and newer only. The listener presents the DICOM
certificate and, when a CA file is configured, requires a client certificate
signed by one of its CAs (mutual TLS). Associations telerad opens to a remote
AE that requires TLS present the same certificate and verify the peer's
certificate and host name against the CA file, or against the system's
trusted CAs when there is none.
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Any

from django.db import connection
from pynetdicom.transport import ThreadedAssociationServer

from telerad.audit import events as audit
from telerad.config import Config
from telerad.core.tls import ensure_self_signed

logger = logging.getLogger(__name__)

# Seconds a caller has to finish the TLS handshake after its TCP connection is accepted.
HANDSHAKE_TIMEOUT = 30


def ensure_certificate(config: Config) -> None:
    """Create the self-signed default certificate when no DICOM or web certificate is configured and none exists yet."""
    if config.dicom_tls_certificate is None and config.tls_certificate is None:
        ensure_self_signed(config.certificate_path, config.private_key_path, config.host)


def server_context(config: Config) -> ssl.SSLContext:
    """Build the listener's SSL context; raises OSError or ssl.SSLError when a file cannot be loaded."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.dicom_certificate_path, config.dicom_private_key_path, password=_no_password)
    if config.dicom_tls_ca_file is not None:
        context.load_verify_locations(cafile=config.dicom_tls_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(config: Config) -> ssl.SSLContext:
    """Build the SSL context of associations to remote AEs; raises OSError or ssl.SSLError when a file cannot be loaded."""
    # PROTOCOL_TLS_CLIENT verifies the peer's certificate and host name.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    ensure_certificate(config)
    context.load_cert_chain(config.dicom_certificate_path, config.dicom_private_key_path, password=_no_password)
    if config.dicom_tls_ca_file is not None:
        context.load_verify_locations(cafile=config.dicom_tls_ca_file)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return context


def _no_password() -> bytes:
    # An encrypted key then fails to load instead of OpenSSL prompting on the terminal.
    return b""


def is_tls(assoc: Any) -> bool:
    """Return True when the association runs over TLS."""
    return isinstance(assoc.dul.socket.socket, ssl.SSLSocket)


class TLSAssociationServer(ThreadedAssociationServer):
    """A pynetdicom association server that runs each TLS handshake in the connection's own thread.

    pynetdicom's own server runs the handshake in its accept loop, so one
    caller that stalls there delays every other caller, and a failed
    handshake leaves no trace. Here the accept loop only accepts, and the
    connection's thread runs the handshake with a timeout and logs and
    audits a failure.
    """

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        return self.socket.accept()

    def finish_request(self, request: Any, client_address: Any) -> None:
        assert self.ssl_context is not None
        address = str(client_address[0])
        timeout = request.gettimeout()
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            if not request.recv(1, socket.MSG_PEEK):
                # Closed before sending anything, as TCP health checks of load balancers do.
                logger.debug("connection closed before the TLS handshake address=%s", address)
                self.shutdown_request(request)
                return
            tls_socket = self.ssl_context.wrap_socket(request, server_side=True)
        except OSError as exc:
            _handshake_failed(address, exc)
            self.shutdown_request(request)
            return
        tls_socket.settimeout(timeout)
        super().finish_request(tls_socket, client_address)


def _handshake_failed(address: str, exc: OSError) -> None:
    reason = _handshake_failure_reason(exc)
    logger.warning("TLS handshake failed address=%s reason=%s", address, reason)
    try:
        audit.record_event(
            action=audit.Action.TLS_HANDSHAKE_FAILED,
            outcome=audit.Outcome.MINOR_FAILURE,
            address=address,
            detail=f"TLS handshake on the DICOM TLS port failed: {reason}",
        )
    finally:
        # This thread ends here and would keep its database connection open.
        connection.close()


def _handshake_failure_reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or "certificate verification failed"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        # OpenSSL's reason codes, such as PEER_DID_NOT_RETURN_A_CERTIFICATE, read as words.
        return exc.reason.replace("_", " ").lower()
    if isinstance(exc, TimeoutError):
        return f"no handshake within {HANDSHAKE_TIMEOUT} s"
    return exc.strerror or type(exc).__name__
