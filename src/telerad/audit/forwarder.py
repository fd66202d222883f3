"""Send audit events to the configured audit repository, in sequence order, without losing any.

The database row :class:`~telerad.audit.models.AuditForwardCursor` stores the
last sequence the repository received. A forwarder sends the events after it
and moves the cursor only after a batch was sent, so an event is never skipped.
It may be sent twice, when a process stops between sending and moving the
cursor. Requests never wait for the repository: :func:`start` runs the
forwarder in a background thread of the server process.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import threading
import time
import uuid

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection
from django.db.models import Max, Q
from django.utils import timezone

from telerad.audit import atna, syslog
from telerad.audit.models import AuditEvent, AuditForwardCursor
from telerad.config import Config

logger = logging.getLogger(__name__)

BATCH_SIZE = 200
# A forwarder renews its lease with every batch; a lease older than this
# belongs to a process that stopped, and another one takes over.
LEASE_SECONDS = 120
POLL_SECONDS = 2.0
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 300.0
# While the repository stays unreachable, one log line per this many seconds
# reports the count of failed attempts.
FAILURE_REPORT_SECONDS = 300.0


def sender_from_config(config: Config) -> syslog.SyslogTlsSender:
    assert config.audit_syslog_ca_file is not None, "the configuration check requires a CA file with a host"
    return syslog.SyslogTlsSender(
        config.audit_syslog_host,
        config.audit_syslog_port,
        config.audit_syslog_ca_file,
        certificate=config.audit_syslog_certificate,
        private_key=config.audit_syslog_private_key,
    )


def new_owner() -> str:
    """Return a name for one forwarder, unique across processes and machines."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _cursor() -> AuditForwardCursor:
    try:
        cursor, _ = AuditForwardCursor.objects.get_or_create(pk=1)
    except IntegrityError:
        # Another process created the row at the same moment.
        cursor = AuditForwardCursor.objects.get(pk=1)
    return cursor


def _take_lease(owner: str) -> bool:
    _cursor()
    now = timezone.now()
    free = Q(lease_owner="") | Q(lease_owner=owner) | Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True)
    taken = AuditForwardCursor.objects.filter(Q(pk=1) & free).update(
        lease_owner=owner, lease_expires_at=now + datetime.timedelta(seconds=LEASE_SECONDS)
    )
    return taken == 1


def release_lease(owner: str) -> None:
    AuditForwardCursor.objects.filter(pk=1, lease_owner=owner).update(lease_owner="", lease_expires_at=None)


def _advance(owner: str, sequence: int) -> None:
    now = timezone.now()
    moved = AuditForwardCursor.objects.filter(pk=1, lease_owner=owner).update(
        last_sequence=sequence, forwarded_at=now, lease_expires_at=now + datetime.timedelta(seconds=LEASE_SECONDS)
    )
    if moved != 1:
        # The lease expired during the send and another forwarder took it;
        # it sends this batch again rather than skip it.
        logger.warning("audit forwarding lease lost by %s after sending up to event %d; the new holder may send those events again", owner, sequence)


def pending_count() -> int:
    cursor = AuditForwardCursor.objects.filter(pk=1).first()
    after = cursor.last_sequence if cursor is not None else 0
    return AuditEvent.objects.filter(sequence__gt=after).count()


class ForwardingBusy(Exception):
    """Another forwarder holds the lease; the message names it."""


def forward_pending(sender: syslog.SyslogTlsSender, source: atna.AuditSource, owner: str) -> int:
    """Send the events recorded so far that the repository has not received; return how many were sent.

    Raises ForwardingBusy while another forwarder holds the lease, OSError
    when the repository cannot be reached or the connection breaks, and
    DatabaseError when the database fails. After a failure the cursor stays
    after the last batch that was sent whole.
    """
    # Events recorded while this call runs wait for the next call, so that it ends.
    last = AuditEvent.objects.aggregate(last=Max("sequence"))["last"] or 0
    if last <= _cursor().last_sequence:
        return 0
    if not _take_lease(owner):
        holder = AuditForwardCursor.objects.values_list("lease_owner", flat=True).get(pk=1)
        raise ForwardingBusy(f"the forwarder {holder} is sending audit events")

    sent = 0
    after = _cursor().last_sequence
    while after < last:
        batch = list(AuditEvent.objects.filter(sequence__gt=after, sequence__lte=last).order_by("sequence")[:BATCH_SIZE])
        if not batch:
            break
        sender.send(syslog.format_message(event, source) for event in batch)
        after = batch[-1].sequence
        _advance(owner, after)
        sent += len(batch)
    return sent


class Forwarder:
    """A background thread that forwards new events, retrying with a capped backoff while the repository is down."""

    def __init__(self, config: Config, *, poll_seconds: float = POLL_SECONDS, max_retry_seconds: float = MAX_RETRY_SECONDS):
        self.sender = sender_from_config(config)
        self.source = atna.AuditSource.from_config(config)
        self.owner = new_owner()
        self.poll_seconds = poll_seconds
        self.max_retry_seconds = max_retry_seconds
        self.failures = 0
        self._stop = threading.Event()
        self._last_report = 0.0
        self._thread = threading.Thread(target=self._run, name="telerad-audit-forwarder", daemon=True)

    def start(self) -> None:
        logger.info("audit forwarding to %s started", self.sender.address)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def retry_delay(self) -> float:
        """Return the wait before the next attempt after `failures` failed attempts in a row."""
        return min(self.max_retry_seconds, FIRST_RETRY_SECONDS * 2 ** min(self.failures - 1, 20))

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._stop.wait(self._run_once())
        finally:
            self.sender.close()
            try:
                release_lease(self.owner)
            except DatabaseError:
                pass
            connection.close()
            logger.info("audit forwarding to %s stopped", self.sender.address)

    def _run_once(self) -> float:
        """Forward what is pending; return the seconds to wait before the next attempt."""
        try:
            sent = forward_pending(self.sender, self.source, self.owner)
        except ForwardingBusy:
            return self.poll_seconds
        except (OSError, DatabaseError) as exc:
            if isinstance(exc, DatabaseError):
                # A broken connection is opened again on the next attempt.
                connection.close()
            self.failures += 1
            self._report_failure(exc)
            return self.retry_delay()
        if self.failures:
            logger.info("audit repository %s reachable again after %d failed attempts; sent %d events", self.sender.address, self.failures, sent)
            self.failures = 0
        elif sent:
            logger.debug("sent %d audit events to %s", sent, self.sender.address)
        return self.poll_seconds

    def _report_failure(self, exc: Exception) -> None:
        now = time.monotonic()
        if self.failures == 1:
            logger.warning("audit forwarding to %s failed; retrying with backoff up to %gs: %s", self.sender.address, self.max_retry_seconds, exc)
            self._last_report = now
        elif now - self._last_report >= FAILURE_REPORT_SECONDS:
            logger.warning("audit forwarding to %s still failing after %d attempts: %s", self.sender.address, self.failures, exc)
            self._last_report = now


_forwarder: Forwarder | None = None
_lock = threading.Lock()


def start() -> Forwarder | None:
    """Start this process's forwarder when an audit repository is configured; return it, or None."""
    global _forwarder
    config = settings.TELERAD
    if not config.audit_forwarding:
        return None
    with _lock:
        if _forwarder is None:
            _forwarder = Forwarder(config)
            _forwarder.start()
    return _forwarder


def stop() -> None:
    global _forwarder
    with _lock:
        if _forwarder is not None:
            _forwarder.stop()
            _forwarder = None
