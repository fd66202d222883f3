"""The listener's associations wait on events: they serve requests, end on release, abort and idle timeout, and do not poll."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from telerad.dimse import reactor, server

TIMEOUT = 10  # seconds for one network step, and for a server-side association to end


@pytest.fixture
def ended() -> list[str]:
    return []


@pytest.fixture
def listener(ended) -> Iterator[Any]:
    """A tuned pynetdicom server for C-ECHO whose associations record how they ended."""
    ae = AE(ae_title="TELERAD")
    ae.add_supported_context(Verification)
    ae.network_timeout = 60
    handlers = [(evt.EVT_RELEASED, lambda event: ended.append("released")), (evt.EVT_ABORTED, lambda event: ended.append("aborted"))]
    running = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    server.tune(running)
    try:
        yield running
    finally:
        running.shutdown()


@pytest.fixture
def requestor() -> Iterator[AE]:
    ae = AE(ae_title="ECHOSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT
    ae.add_requested_context(Verification)
    try:
        yield ae
    finally:
        ae.shutdown()


def wait_until(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_associations_are_event_driven(listener, requestor):
    assoc = requestor.associate("127.0.0.1", listener.server_address[1], ae_title="TELERAD")
    try:
        assert wait_until(lambda: len(listener.active_associations) == 1)
        [accepted] = listener.active_associations
        assert isinstance(accepted, reactor.EventDrivenAssociation)
        assert isinstance(accepted.dul, reactor.EventDrivenDUL)
    finally:
        assoc.release()


def test_many_requests_over_one_association(listener, requestor):
    assoc = requestor.associate("127.0.0.1", listener.server_address[1], ae_title="TELERAD")
    try:
        statuses = [int(assoc.send_c_echo().Status) for _ in range(200)]
    finally:
        assoc.release()

    assert statuses == [0x0000] * 200


def test_idle_association_does_not_poll(listener, requestor, monkeypatch):
    checks = []
    check = reactor.EventDrivenDUL._is_transport_event

    def counted(self: reactor.EventDrivenDUL) -> bool:
        checks.append(time.monotonic())
        return check(self)

    monkeypatch.setattr(reactor.EventDrivenDUL, "_is_transport_event", counted)
    assoc = requestor.associate("127.0.0.1", listener.server_address[1], ae_title="TELERAD")
    try:
        assert int(assoc.send_c_echo().Status) == 0x0000
        checks.clear()
        time.sleep(1.0)
        idle_checks = len(checks)
        assert int(assoc.send_c_echo().Status) == 0x0000
    finally:
        assoc.release()

    # One check per idle wait of 20 ms is about 50 in a second. Polling every millisecond would be about 1,000.
    assert 0 < idle_checks <= 1.0 / reactor.IDLE_WAIT_SECONDS * 2


def test_release_ends_both_threads(listener, requestor, ended):
    assoc = requestor.associate("127.0.0.1", listener.server_address[1], ae_title="TELERAD")
    assert wait_until(lambda: len(listener.active_associations) == 1)
    [accepted] = listener.active_associations
    assoc.release()

    assert assoc.is_released
    assert wait_until(lambda: not accepted.is_alive())
    assert wait_until(lambda: not accepted.dul.is_alive())
    assert ended == ["released"]


def test_peer_abort_ends_association(listener, requestor, ended):
    assoc = requestor.associate("127.0.0.1", listener.server_address[1], ae_title="TELERAD")
    assert wait_until(lambda: len(listener.active_associations) == 1)
    [accepted] = listener.active_associations
    assoc.abort()

    assert wait_until(lambda: not accepted.is_alive())
    assert wait_until(lambda: not accepted.dul.is_alive())
    assert ended == ["aborted"]


def test_idle_association_ends_at_network_timeout(listener, requestor, ended):
    listener.ae.network_timeout = 0.5
    assoc = requestor.associate("127.0.0.1", listener.server_address[1], ae_title="TELERAD")
    assert wait_until(lambda: len(listener.active_associations) == 1)
    [accepted] = listener.active_associations

    assert wait_until(lambda: not accepted.is_alive())
    assert wait_until(lambda: not assoc.is_established)
    assert assoc.is_released or assoc.is_aborted
