"""Syslog messages (RFC 5424) carrying audit messages, sent over TLS (RFC 5425) to an audit repository.

The header fields follow IHE ITI-20 (Record Audit Event). The facility is 10
(security/authorization), the severity 5 (notice) for successful events and 4
(warning) for failures, and the MSGID ``IHE+RFC-3881``. There is no
structured data, and the MSG is the XML audit message in UTF-8 after a byte
order mark.
"""

from __future__ import annotations

import os
import re
import select
import socket
import ssl
import time
from pathlib import Path
from typing import Iterable

from telerad.audit import atna
from telerad.audit.models import AuditEvent

FACILITY_SECURITY = 10
SEVERITY_WARNING = 4
SEVERITY_NOTICE = 5
APP_NAME = "telerad"
MSGID = "IHE+RFC-3881"
NILVALUE = "-"
BOM = b"\xef\xbb\xbf"
# Reads that a liveness check makes at most; a syslog receiver sends no data.
MAX_DRAIN_READS = 16
# RFC 5424 6.2.4: HOSTNAME is 1 to 255 printable US-ASCII characters.
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x21-\x7e]")


def _header_field(text: str, max_length: int) -> str:
    cleaned = _NOT_PRINTABLE_ASCII.sub("", text)[:max_length]
    return cleaned or NILVALUE


def format_message(event: AuditEvent, source: atna.AuditSource) -> bytes:
    """Build the RFC 5424 syslog message of `event`, without the RFC 5425 length prefix."""
    severity = SEVERITY_WARNING if atna.is_failure(event) else SEVERITY_NOTICE
    priority = FACILITY_SECURITY * 8 + severity
    header = " ".join([
        f"<{priority}>1",
        # The time of the event, not of sending: a message sent late still dates the event.
        atna.format_datetime(event.occurred_at),
        _header_field(source.machine_name, 255),
        APP_NAME,
        str(os.getpid()),
        MSGID,
        NILVALUE,
    ])
    return header.encode("ascii") + b" " + BOM + atna.build_message(event, source)


def frame(message: bytes) -> bytes:
    """Prefix `message` with its length in octets and a space (RFC 5425 4.3, octet counting)."""
    return str(len(message)).encode("ascii") + b" " + message


class SyslogTlsSender:
    """A TLS connection to an audit repository, opened on the first send and opened again after a failure.

    The server's certificate must chain to `ca_file` and name `host`. TLS 1.0
    and 1.1 are refused. RFC 5425 has no acknowledgement, so a send counts as
    done once the operating system accepted every octet.
    """

    def __init__(
        self,
        host: str,
        port: int,
        ca_file: Path,
        *,
        certificate: Path | None = None,
        private_key: Path | None = None,
        timeout: float = 10.0,
        close_seconds: float = 2.0,
    ):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.close_seconds = close_seconds
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_verify_locations(cafile=str(ca_file))
        if certificate is not None and private_key is not None:
            context.load_cert_chain(str(certificate), str(private_key))
        self.context = context
        self._socket: ssl.SSLSocket | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def send(self, messages: Iterable[bytes]) -> None:
        """Send each message as one frame; raise OSError (ssl.SSLError included) when any is not sent."""
        connection = self._connection()
        try:
            for message in messages:
                connection.sendall(frame(message))
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection as RFC 5425 4.4 requires: close_notify first, then TCP.

        The close waits up to `close_seconds` for the repository to close its
        side, reading what it sent, because closing with unread data makes the
        kernel reset the connection, and a reset can discard frames that the
        repository had received but not yet read.
        """
        if self._socket is None:
            return
        connection: socket.socket = self._socket
        self._socket = None
        try:
            connection.settimeout(self.close_seconds)
            try:
                connection = connection.unwrap()
            except (OSError, ValueError):
                # The repository closed without its own close_notify, or its reply timed out.
                pass
            connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + self.close_seconds
            while time.monotonic() < deadline and connection.recv(4096):
                pass
        except OSError:
            pass
        finally:
            connection.close()

    def _connection(self) -> ssl.SSLSocket:
        if self._socket is not None and self._peer_closed(self._socket):
            self.close()
        if self._socket is None:
            raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
            try:
                self._socket = self.context.wrap_socket(raw, server_hostname=self.host)
            except OSError:
                raw.close()
                raise
        return self._socket

    def _peer_closed(self, connection: ssl.SSLSocket) -> bool:
        """Return whether the repository closed the connection since the last send.

        A syslog receiver sends no application data, but a TLS 1.3 server
        sends session tickets after the handshake. Reading without blocking
        consumes those and returns EOF only when the repository closed, so
        that the next frames do not go into a connection the repository no longer reads.
        """
        try:
            readable, _, _ = select.select([connection], [], [], 0)
        except (OSError, ValueError):
            return True
        if not readable and not connection.pending():
            return False
        connection.setblocking(False)
        try:
            for _ in range(MAX_DRAIN_READS):
                if not connection.recv(4096):
                    return True
            return False
        except ssl.SSLWantReadError:
            return False
        except OSError:
            return True
        finally:
            try:
                connection.settimeout(self.timeout)
            except OSError:
                pass
