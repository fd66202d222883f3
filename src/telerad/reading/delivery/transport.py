"""Sending a report to one endpoint: HL7 v2 over MLLP, or FHIR over HTTP(S).

Each function returns on success and raises DeliveryError otherwise, telling
whether a later attempt could succeed.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

from telerad.reading.delivery import hl7
from telerad.reading.delivery.fhir import FHIR_JSON
from telerad.reading.delivery.models import DeliveryEndpoint

# MLLP framing (HL7 v2 Implementation Guide, Appendix C): start block, message, end block and carriage return.
START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
# An ACK is a few hundred bytes; a longer reply is not one.
MAX_ACK_BYTES = 1024 * 1024
# Characters of a FHIR server's error body kept in the job's error.
MAX_ERROR_BODY = 500


class DeliveryError(Exception):
    """A failed delivery; `permanent` is set when sending the same content again cannot succeed."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def _tls_context(endpoint: DeliveryEndpoint) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=endpoint.ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise DeliveryError(f"cannot load the CA file {endpoint.ca_file!r} of endpoint {endpoint.name}: {exc}") from exc


def send_mllp(endpoint: DeliveryEndpoint, message: hl7.OruMessage, *, timeout: float) -> hl7.Acknowledgement:
    """Send `message` framed for MLLP and wait for the receiver's ACK, for at most `timeout` seconds in all."""
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as raw:
            connection = _tls_context(endpoint).wrap_socket(raw, server_hostname=endpoint.host) if endpoint.use_tls else raw
            try:
                connection.sendall(START_BLOCK + message.text.encode("utf-8") + END_BLOCK)
                reply = _read_frame(connection, deadline)
            finally:
                if connection is not raw:
                    connection.close()
    except TimeoutError as exc:
        raise DeliveryError(f"no ACK from {endpoint.address} within {timeout:g} s") from exc
    except (OSError, ssl.SSLError) as exc:
        raise DeliveryError(f"connection to {endpoint.address} failed: {exc}") from exc

    try:
        acknowledgement = hl7.parse_acknowledgement(reply.decode("utf-8", errors="replace"))
    except hl7.InvalidAcknowledgement as exc:
        raise DeliveryError(f"invalid reply from {endpoint.address}: {exc}") from exc
    if acknowledgement.control_id and acknowledgement.control_id != message.control_id:
        raise DeliveryError(f"the ACK from {endpoint.address} names message {acknowledgement.control_id}, not {message.control_id}")
    if not acknowledgement.accepted:
        text = acknowledgement.text or "no error text"
        raise DeliveryError(f"{endpoint.address} acknowledged with {acknowledgement.code}: {text}", permanent=acknowledgement.rejected)
    return acknowledgement


def _read_frame(connection: socket.socket, deadline: float) -> bytes:
    """Read one MLLP frame and return its content without the framing bytes."""
    received = bytearray()
    while END_BLOCK not in received:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        connection.settimeout(remaining)
        chunk = connection.recv(65536)
        if not chunk:
            raise DeliveryError("the receiver closed the connection before sending a complete ACK")
        received += chunk
        if len(received) > MAX_ACK_BYTES:
            raise DeliveryError(f"the reply is longer than {MAX_ACK_BYTES} bytes without an MLLP end block")
    start = received.find(START_BLOCK)
    end = received.find(END_BLOCK)
    if start < 0 or start > end:
        raise DeliveryError("the reply has no MLLP start block")
    return bytes(received[start + 1:end])


def send_fhir(endpoint: DeliveryEndpoint, resource: dict, *, accession_system: str, timeout: float) -> int:
    """Store `resource` on the FHIR server and return the HTTP status.

    A report with an accession number is sent as a conditional update (PUT
    with an identifier search), so that an addendum replaces the earlier
    version. A report without one is created with POST. The resource goes
    without telerad's id and meta, because the server assigns those.
    """
    body = {key: value for key, value in resource.items() if key not in {"id", "meta"}}
    base = endpoint.url.rstrip("/") + "/DiagnosticReport"
    accession = next((identifier["value"] for identifier in resource.get("identifier", []) if identifier.get("value")), "")
    if accession:
        url = base + "?" + urllib.parse.urlencode({"identifier": f"{accession_system}|{accession}"})
        method = "PUT"
    else:
        url, method = base, "POST"
    request = urllib.request.Request(
        url, data=json.dumps(body, ensure_ascii=False).encode("utf-8"), method=method,
        headers={"Content-Type": f"{FHIR_JSON}; charset=utf-8", "Accept": FHIR_JSON},
    )
    context = _tls_context(endpoint) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        detail = exc.read(MAX_ERROR_BODY).decode("utf-8", errors="replace").strip()
        # 408 and 429 ask to come back later, as do server errors; other client errors repeat.
        permanent = 400 <= exc.code < 500 and exc.code not in {408, 429}
        raise DeliveryError(f"{method} {url} failed with HTTP {exc.code}: {detail}", permanent=permanent) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise DeliveryError(f"{method} {url} failed: {reason}") from exc
