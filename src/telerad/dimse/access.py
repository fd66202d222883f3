"""Access rules for DICOM peers: who may open an association, and from where."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from functools import lru_cache

from telerad.dimse.models import RemoteAE


@dataclasses.dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    remote_ae: RemoteAE | None = None


def check_association(calling_ae_title: str, address: str, *, accept_any: bool) -> Decision:
    """Decide whether `calling_ae_title` connecting from `address` may open an association."""
    title = calling_ae_title.strip()
    remote_ae = RemoteAE.objects.filter(ae_title=title, enabled=True).first()
    if remote_ae is None:
        if accept_any:
            return Decision(True, "any calling AE title is accepted")
        return Decision(False, f"calling AE title {title!r} is not registered")
    if remote_ae.host and not _address_matches(address, remote_ae.host):
        return Decision(False, f"calling AE title {title!r} is registered for another address")
    return Decision(True, "registered", remote_ae)


def _address_matches(address: str, host: str) -> bool:
    try:
        peer = ipaddress.ip_address(address)
    except ValueError:
        return False
    return peer in _resolve(host)


@lru_cache(maxsize=256)
def _resolve(host: str) -> frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    # NOTE: cached for the life of the process; a changed DNS record needs a restart.
    try:
        return frozenset({ipaddress.ip_address(host)})
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return frozenset()
    return frozenset(ipaddress.ip_address(info[4][0]) for info in infos)
