"""Access decisions for DICOM peers, and the rejections, statuses and audit events telerad's listener gives for them."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Iterator

import pytest
from django.db import connection
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification

from telerad.audit.models import AuditEvent
from telerad.dimse import server
from telerad.dimse.access import Rejection, Service, check_association, record_refused_service
from telerad.dimse.models import RemoteAE

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 30  # seconds for one network step


def test_unknown_ae_rejected():
    decision = check_association("NOBODY", "127.0.0.1", accept_any=False)

    assert not decision.allowed
    assert decision.rejection is Rejection.UNKNOWN_AE
    assert decision.reason == "calling AE title 'NOBODY' is not registered"


def test_unknown_ae_accepted_under_accept_any():
    decision = check_association("NOBODY", "127.0.0.1", accept_any=True)

    assert decision.allowed
    assert decision.remote_ae is None


def test_disabled_ae_rejected_even_under_accept_any():
    RemoteAE.objects.create(ae_title="RETIRED", enabled=False)

    decision = check_association("RETIRED", "127.0.0.1", accept_any=True)

    assert not decision.allowed
    assert decision.rejection is Rejection.DISABLED_AE


def test_ae_from_other_address_rejected():
    RemoteAE.objects.create(ae_title="CT1", host="127.0.0.2")

    decision = check_association("CT1", "127.0.0.1", accept_any=True)

    assert not decision.allowed
    assert decision.rejection is Rejection.WRONG_ADDRESS


def test_ae_from_its_address_accepted():
    remote_ae = RemoteAE.objects.create(ae_title="CT1", host="127.0.0.1")

    decision = check_association(" CT1 ", "127.0.0.1", accept_any=False)

    assert decision.allowed
    assert decision.remote_ae == remote_ae


@pytest.mark.parametrize(("tls", "allowed"), [(False, False), (True, True)])
def test_tls_required_ae_needs_tls(tls, allowed):
    RemoteAE.objects.create(ae_title="SECURE", host="127.0.0.1", tls_required=True)

    decision = check_association("SECURE", "127.0.0.1", accept_any=False, tls=tls)

    assert decision.allowed is allowed
    assert decision.rejection is (None if allowed else Rejection.TLS_REQUIRED)


def test_ae_without_tls_requirement_accepted_over_tls():
    RemoteAE.objects.create(ae_title="PLAIN")

    assert check_association("PLAIN", "127.0.0.1", accept_any=False, tls=True).allowed


def test_refused_service_logged_and_audited(caplog):
    with caplog.at_level(logging.WARNING, logger="telerad.dimse.access"):
        record_refused_service(Service.MOVE, "CT1", "127.0.0.1", "AE CT1 is not allowed to use C-MOVE", 0x0124)

    event = AuditEvent.objects.get()
    assert event.action == "service-refused"
    assert (event.user, event.address, event.outcome) == ("CT1", "127.0.0.1", 4)
    assert event.detail == "C-MOVE refused with status 0x0124: AE CT1 is not allowed to use C-MOVE"
    assert caplog.messages == ["C-MOVE refused calling_ae=CT1 address=127.0.0.1 status=0x0124 reason=AE CT1 is not allowed to use C-MOVE"]


@pytest.fixture(scope="module")
def listener() -> Iterator[Any]:
    """Run telerad's plain listener in this process, for every test of the module."""
    ae = server.build_application_entity()
    running = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=server.event_handlers())
    server.tune(running)
    try:
        yield running
    finally:
        running.shutdown()


@contextlib.contextmanager
def association(port: int, calling_ae_title: str, *, sop_class: str | None = None) -> Iterator[Any]:
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT
    if sop_class is None:
        ae.add_requested_context(Verification)
        ae.add_requested_context(CTImageStorage, ImplicitVRLittleEndian)
    else:
        ae.add_requested_context(sop_class)
    assoc = ae.associate("127.0.0.1", port, ae_title="TELERAD")
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


def rejection_of(assoc: Any) -> tuple[int, int, int]:
    """Return the (result, source, reason) of the A-ASSOCIATE-RJ that `assoc` received."""
    primitive = assoc.acceptor.primitive
    return int(primitive.result), int(primitive.result_source), int(primitive.diagnostic)


def test_tls_required_ae_rejected_on_plain_listener(listener, caplog):
    RemoteAE.objects.create(ae_title="SECURE", host="127.0.0.1", tls_required=True)
    with caplog.at_level(logging.WARNING, logger="telerad.dimse"), association(listener.server_address[1], "SECURE") as assoc:
        rejected = assoc.is_rejected

    assert rejected
    # Rejected permanently by the service user, with no reason given (PS3.8 9.3.4).
    assert rejection_of(assoc) == (0x01, 0x01, 0x01)
    event = AuditEvent.objects.get(action="association-rejected")
    assert (event.user, event.address, event.outcome) == ("SECURE", "127.0.0.1", 4)
    assert event.detail == "calling AE title 'SECURE' requires TLS but called the plain DICOM port"
    assert [message for message in caplog.messages if "association rejected" in message] == [
        "association rejected calling_ae=SECURE address=127.0.0.1 reason=calling AE title 'SECURE' requires TLS but called the plain DICOM port"
    ]


def test_unknown_ae_rejected_as_not_recognised(listener):
    with association(listener.server_address[1], "NOBODY") as assoc:
        rejected = assoc.is_rejected

    assert rejected
    # Calling AE title not recognised (PS3.8 9.3.4).
    assert rejection_of(assoc) == (0x01, 0x01, 0x03)
    assert AuditEvent.objects.get(action="association-rejected").user == "NOBODY"


def test_refused_store_audited_once_per_association(listener, caplog):
    RemoteAE.objects.create(ae_title="VIEWER", host="127.0.0.1", allow_store=False)
    dataset = Dataset()
    dataset.SOPClassUID = CTImageStorage
    dataset.SOPInstanceUID = "1.2.3.4"
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian

    with caplog.at_level(logging.INFO, logger="telerad.dimse"), association(listener.server_address[1], "VIEWER") as assoc:
        statuses = [assoc.send_c_store(dataset) for _ in range(3)]

    assert [status.Status for status in statuses] == [0x0124, 0x0124, 0x0124]
    assert statuses[0].ErrorComment == "AE VIEWER is not allowed to store"
    event = AuditEvent.objects.get(action="service-refused")
    assert (event.user, event.outcome) == ("VIEWER", 4)
    assert event.detail == "C-STORE refused with status 0x0124: AE VIEWER is not allowed to store"
    assert len([message for message in caplog.messages if message.startswith("C-STORE refused calling_ae=VIEWER ")]) == 1


def test_association_log_tells_release_from_abort(listener, caplog):
    RemoteAE.objects.create(ae_title="CT1", host="127.0.0.1")
    port = listener.server_address[1]

    with caplog.at_level(logging.INFO, logger="telerad.dimse.server"):
        with association(port, "CT1") as assoc:
            assert assoc.is_established
        with association(port, "CT1") as assoc:
            assoc.abort()
        deadline = time.monotonic() + TIMEOUT
        while len(ended_lines(caplog)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)

    endings = sorted(line.rsplit(" end=", 1)[1] for line in ended_lines(caplog))
    assert endings == ["aborted", "released"]


def ended_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [message for message in caplog.messages if message.startswith("association ended calling_ae=CT1 ")]


def test_stop_aborts_idle_association_after_grace(caplog):
    RemoteAE.objects.create(ae_title="CT1", host="127.0.0.1")
    ae = server.build_application_entity()
    running = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=server.event_handlers())
    server.tune(running)

    with caplog.at_level(logging.INFO, logger="telerad.dimse.server"), association(running.server_address[1], "CT1") as assoc:
        assert assoc.send_c_echo().Status == 0x0000
        started = time.monotonic()
        server.stop([running], grace_seconds=0.5)
        stopped_after = time.monotonic() - started
        deadline = time.monotonic() + TIMEOUT
        while assoc.is_established and time.monotonic() < deadline:
            time.sleep(0.05)

        assert assoc.is_aborted
    assert 0.5 <= stopped_after < TIMEOUT
    assert "association aborted at stop calling_ae=CT1 address=127.0.0.1" in caplog.messages
    assert any(message.startswith("DICOM listener stopped ") for message in caplog.messages)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the pool is PostgreSQL's")
def test_ended_associations_return_their_connections(listener):
    RemoteAE.objects.create(ae_title="CT1", host="127.0.0.1")
    port = listener.server_address[1]
    with association(port, "CT1") as assoc:
        assert assoc.is_established
    with association(port, "CT1") as assoc:
        assoc.abort()
    with association(port, "NOBODY") as assoc:
        assert assoc.is_rejected
    # Accepted by telerad's checks, then ended by pynetdicom for want of a context it supports.
    with association(port, "CT1", sop_class="1.2.826.0.1.3680043.8.498.1") as assoc:
        assert not assoc.is_established

    def all_returned() -> bool:
        stats = connection.pool.get_stats()
        return not listener.active_associations and stats["pool_available"] == stats["pool_size"] - in_use_here()

    deadline = time.monotonic() + TIMEOUT
    while not all_returned() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all_returned()


def in_use_here() -> int:
    """Return the pooled connections that this test's own thread holds."""
    return 1 if connection.connection is not None else 0
