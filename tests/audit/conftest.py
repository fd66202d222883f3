"""Fixtures of the audit tests: users with roles, enforced permissions, a test CA and a TLS syslog receiver."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import socketserver
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PERMISSION_MIDDLEWARE = "telerad.accounts.middleware.PermissionMiddleware"


@pytest.fixture
def enforced_permissions(settings):
    """Check that requests run through the permission middleware, as on the servers."""
    assert PERMISSION_MIDDLEWARE in settings.MIDDLEWARE


@pytest.fixture
def make_user(django_user_model):
    from telerad.accounts.roles import set_roles

    def make(username: str, *roles):
        user = django_user_model.objects.create_user(username=username, password="a long test password")
        set_roles(user, roles)
        return user

    return make


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


class CertificateAuthority:
    """A certificate authority made for one test, and the server certificate it signs for 127.0.0.1."""

    def __init__(self, folder: Path):
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_certificate = (
            x509.CertificateBuilder()
            .subject_name(_name("telerad test CA"))
            .issuer_name(_name("telerad test CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        server_key = ec.generate_private_key(ec.SECP256R1())
        server_certificate = (
            x509.CertificateBuilder()
            .subject_name(_name("audit repository"))
            .issuer_name(ca_certificate.subject)
            .public_key(server_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_file = folder / "ca.pem"
        self.ca_file.write_bytes(ca_certificate.public_bytes(serialization.Encoding.PEM))
        self.server_certificate = folder / "server.pem"
        self.server_certificate.write_bytes(server_certificate.public_bytes(serialization.Encoding.PEM))
        self.server_key = folder / "server.key"
        _write_key(server_key, self.server_key)


class _SyslogHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(10)
        try:
            with self.server.tls.wrap_socket(self.request, server_side=True) as connection:
                while True:
                    data = connection.recv(65536)
                    if not data:
                        return
                    with self.server.lock:
                        self.server.received.extend(data)
                        self.server.connections.add(self.client_address)
        except (OSError, ssl.SSLError) as exc:
            self.server.errors.append(exc)


class SyslogReceiver(socketserver.ThreadingTCPServer):
    """An audit repository on 127.0.0.1 that keeps every octet received over TLS."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, ca: CertificateAuthority, port: int = 0):
        super().__init__(("127.0.0.1", port), _SyslogHandler)
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.minimum_version = ssl.TLSVersion.TLSv1_2
        self.tls.load_cert_chain(str(ca.server_certificate), str(ca.server_key))
        self.lock = threading.Lock()
        self.received = bytearray()
        self.connections: set[tuple[str, int]] = set()
        self.errors: list[Exception] = []
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> "SyslogReceiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)

    def frames(self) -> list[bytes]:
        """Split what was received by RFC 5425 octet counting; fail on any octet that does not fit the framing."""
        with self.lock:
            data = bytes(self.received)
        frames = []
        position = 0
        while position < len(data):
            space = data.index(b" ", position)
            length_text = data[position:space]
            assert length_text.isdigit(), f"invalid MSG-LEN {length_text!r} at octet {position}"
            assert not length_text.startswith(b"0"), f"MSG-LEN {length_text!r} at octet {position} has a leading zero"
            length = int(length_text)
            frame = data[space + 1 : space + 1 + length]
            assert len(frame) == length, f"frame at octet {position} is cut: {len(frame)} of {length} octets"
            frames.append(frame)
            position = space + 1 + length
        return frames


@pytest.fixture
def test_ca(tmp_path):
    return CertificateAuthority(tmp_path)


@pytest.fixture
def syslog_receiver(test_ca):
    receiver = SyslogReceiver(test_ca).start()
    yield receiver
    receiver.stop()


@pytest.fixture
def free_port():
    """Return a port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
