"""Certificates and TLS peers for the DICOM TLS tests: a test CA, DCMTK's TLS options and a TLS Storage SCP."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, Verification

from .conftest import TeleradServer
from .peers import DCMTK_NETWORK_OPTIONS, DCMTK_TIMEOUT, dcmtk_environment, dcmtk_tool

CERTIFICATE_DAYS = 2
# Seconds to wait for the server to log or audit what happened on a connection the client has already left.
SERVER_RECORD_TIMEOUT = 15.0


@dataclasses.dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its unencrypted PEM private key."""

    certificate: Path
    private_key: Path


class CertificateAuthority:
    """A CA that issues certificates for 127.0.0.1 into a folder."""

    def __init__(self, folder: Path, name: str):
        self.folder = folder
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
        self.subject = subject
        self.certificate = (
            self._builder(subject, self.key.public_key())
            .issuer_name(subject)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.certificate_path = folder / f"{name}-ca.crt"
        self.certificate_path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    @staticmethod
    def _builder(subject: x509.Name, public_key: Any) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.timezone.utc)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CERTIFICATE_DAYS))
        )

    def issue(self, common_name: str) -> KeyPair:
        """Issue a certificate for `common_name` and 127.0.0.1, good for both TLS servers and clients."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        certificate = (
            self._builder(subject, key.public_key())
            .issuer_name(self.subject)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        pair = KeyPair(self.folder / f"{common_name}.crt", self.folder / f"{common_name}.key")
        pair.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        pair.private_key.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption(),
        ))
        return pair


def dcmtk_tls_options(*, client: KeyPair | None, trusted: Path | None) -> list[str]:
    """Return DCMTK's TLS options: a client certificate or anonymous TLS, and the CA file that verifies the server.

    Without a trusted CA file, DCMTK still verifies the server's certificate
    (``--require-peer-cert`` is its default), against no CA at all.
    """
    options = ["+tls", str(client.private_key), str(client.certificate), "--null-passwd"] if client else ["+tla"]
    if trusted is not None:
        options += ["+cf", str(trusted)]
    return options


def dcmtk_over_tls(
    tool: str, server: TeleradServer, calling_ae_title: str, tls_options: list[str], *arguments: str, files: tuple[Path, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK SCU against the server's TLS port, with `files` after the address as storescu expects them."""
    command = [
        dcmtk_tool(tool), "--verbose", *DCMTK_NETWORK_OPTIONS, *tls_options,
        "--aetitle", calling_ae_title, "--call", server.ae_title, *arguments, "127.0.0.1", str(server.dicom_tls_port),
        *(str(path) for path in files),
    ]
    return subprocess.run(command, env=dcmtk_environment(), capture_output=True, text=True, timeout=DCMTK_TIMEOUT)


def wait_for_log(server: TeleradServer, text: str) -> str:
    """Wait until the server's log contains `text`; return the log."""
    deadline = time.monotonic() + SERVER_RECORD_TIMEOUT
    while text not in (log := server.log()):
        if time.monotonic() > deadline:
            return log
        time.sleep(0.1)
    return log


def wait_for_events(server: TeleradServer, action: str, matches: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Wait until the server has audited an event of `action` that `matches`; return all such events."""
    deadline = time.monotonic() + SERVER_RECORD_TIMEOUT
    while True:
        events = [event for event in server.index().events(action) if matches(event)]
        if events or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


@dataclasses.dataclass(frozen=True)
class ReceivedOverTLS:
    """What a TLS Storage SCP saw of one C-STORE: the instance, the TLS version and the client certificate's common name."""

    sop_instance_uid: str
    tls_version: str
    client_common_name: str


class TLSStorageSCP:
    """A pynetdicom Storage SCP on 127.0.0.1 that accepts only TLS associations with a client certificate its CA signed.

    DCMTK 3.6.7's storescp has no option to listen on one address only, so the
    C-MOVE destination is this SCP instead.
    """

    def __init__(self, ae_title: str, server_pair: KeyPair, ca_file: Path):
        self.received: list[ReceivedOverTLS] = []
        self.lock = threading.Lock()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(server_pair.certificate, server_pair.private_key)
        context.load_verify_locations(cafile=ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
        self.ae = AE(ae_title=ae_title)
        self.ae.add_supported_context(Verification)
        for sop_class in (CTImageStorage, MRImageStorage):
            self.ae.add_supported_context(sop_class)
        self.server = self.ae.start_server(
            ("127.0.0.1", 0), block=False, ssl_context=context, evt_handlers=[(evt.EVT_C_STORE, self._store)],
        )
        self.port = self.server.server_address[1]

    def _store(self, event: Any) -> int:
        sock = event.assoc.dul.socket.socket
        assert isinstance(sock, ssl.SSLSocket), "a C-STORE arrived without TLS"
        subject = dict(item for rdn in sock.getpeercert()["subject"] for item in rdn)
        with self.lock:
            self.received.append(ReceivedOverTLS(
                str(event.request.AffectedSOPInstanceUID), str(sock.version()), str(subject.get("commonName", ""))
            ))
        return 0x0000

    def stop(self) -> None:
        self.server.shutdown()
