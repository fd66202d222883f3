"""Access rules for DICOM peers: who may open an association, from where, over which transport, and for which services."""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import logging
import socket
from functools import lru_cache

from telerad.audit import events as audit
from telerad.dimse.models import RemoteAE

logger = logging.getLogger(__name__)


class Rejection(enum.Enum):
    """The reason an association request is rejected."""

    UNKNOWN_AE = "unknown-ae"
    DISABLED_AE = "disabled-ae"
    WRONG_ADDRESS = "wrong-address"
    TLS_REQUIRED = "tls-required"


class Service(enum.Enum):
    """A DIMSE service a remote AE may be allowed to use, with the RemoteAE field that allows it."""

    STORE = ("C-STORE", "allow_store")
    FIND = ("C-FIND", "allow_find")
    MOVE = ("C-MOVE", "allow_move")
    GET = ("C-GET", "allow_get")

    def __init__(self, command: str, permission: str):
        self.command = command
        self.permission = permission


@dataclasses.dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    remote_ae: RemoteAE | None = None
    rejection: Rejection | None = None


def check_association(calling_ae_title: str, address: str, *, accept_any: bool, tls: bool = False) -> Decision:
    """Decide whether `calling_ae_title` connecting from `address`, over TLS or not, may open an association."""
    title = calling_ae_title.strip()
    remote_ae = RemoteAE.objects.filter(ae_title=title).first()
    if remote_ae is None:
        if accept_any:
            return Decision(True, "any calling AE title is accepted")
        return Decision(False, f"calling AE title {title!r} is not registered", rejection=Rejection.UNKNOWN_AE)
    # A disabled AE stays out even when any calling AE title is accepted.
    if not remote_ae.enabled:
        return Decision(False, f"calling AE title {title!r} is disabled", rejection=Rejection.DISABLED_AE)
    if remote_ae.host and not _address_matches(address, remote_ae.host):
        return Decision(False, f"calling AE title {title!r} is registered for another address", rejection=Rejection.WRONG_ADDRESS)
    if remote_ae.tls_required and not tls:
        return Decision(False, f"calling AE title {title!r} requires TLS but called the plain DICOM port", rejection=Rejection.TLS_REQUIRED)
    return Decision(True, "registered", remote_ae)


def record_refused_service(service: Service, calling_ae_title: str, address: str, comment: str, status: int) -> None:
    """Log and audit a request refused because the calling AE may not use `service`."""
    logger.warning(
        "%s refused calling_ae=%s address=%s status=0x%04X reason=%s",
        service.command, calling_ae_title, address, status, comment,
    )
    audit.record_event(
        action=audit.Action.SERVICE_REFUSED,
        outcome=audit.Outcome.MINOR_FAILURE,
        user=calling_ae_title,
        address=address,
        detail=f"{service.command} refused with status 0x{status:04X}: {comment}",
    )


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
