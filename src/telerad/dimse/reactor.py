"""Event-driven waiting for pynetdicom's association threads.

pynetdicom runs two threads per association: the DUL thread, which reads
PDUs from the socket and sends the PDUs queued for it, and the association
thread, which runs the DIMSE service handlers. Both poll: each sleeps 1 ms
whenever it finds nothing to do. A C-STORE waits on three such polls: the
first PDU of a request, the assembled request and the queued response. On a
2-core machine a C-ECHO round trip over one association took 2.5 ms with
polling and 1 ms without.

Here the DUL thread waits in ``select`` on its socket and on a wake-up
socket, which is written whenever a PDU is queued for sending. The
association thread waits on an event, which is set whenever the DUL thread
delivers a DIMSE message or an A-RELEASE or A-ABORT. Timeouts bound every wait, so the checks
that pynetdicom makes between events (timers, a killed thread) still run.
"""

from __future__ import annotations

import queue
import select
import socket
import ssl
import logging
import threading
from typing import Any

from django.db import connection
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import RequestHandler

logger = logging.getLogger(__name__)

# The maximum wait of a thread without an event, after which it runs
# pynetdicom's periodic checks: the ARTIM and network timers, a killed association.
IDLE_WAIT_SECONDS = 0.02


class _SignallingQueue(queue.Queue):  # type: ignore[type-arg]
    """A queue that calls `signal` after each item put on it."""

    def __init__(self, signal: Any):
        super().__init__()
        self._signal = signal

    def _put(self, item: Any) -> None:
        super()._put(item)
        self._signal()


class _WakeUp:
    """A socket pair on which one thread wakes another out of ``select``.

    Writing to a socket releases the GIL, and taking it back can wait for a
    busy thread's whole switch interval, so `set` writes only while the other
    thread is between `arm` and `disarm`.
    """

    def __init__(self) -> None:
        self.reader, self._writer = socket.socketpair()
        self.reader.setblocking(False)
        self._writer.setblocking(False)
        self._armed = False

    def arm(self) -> None:
        """Announce a wait. The waiter checks its queues after this call and before it waits."""
        self._armed = True

    def disarm(self) -> None:
        self._armed = False

    def set(self) -> None:
        if not self._armed:
            return
        self._armed = False
        try:
            self._writer.send(b"\x00")
        except OSError:
            # A full buffer already contains a wake-up, and a closed pair belongs to a finished thread.
            pass

    def clear(self) -> None:
        try:
            while self.reader.recv(4096):
                pass
        except OSError:
            pass

    def close(self) -> None:
        self.reader.close()
        self._writer.close()


class EventDrivenDUL(DULServiceProvider):
    """pynetdicom's DUL thread, waiting in ``select`` instead of sleeping between polls.

    pynetdicom's loop sleeps for ``_run_loop_delay`` and then calls
    ``_is_transport_event`` to check the socket for data. With the delay at
    zero, the wait moves into ``_is_transport_event``, which blocks until the
    socket has data, a PDU is queued for sending or the idle wait ends.
    """

    _wake: _WakeUp

    def adopt(self, inbox: threading.Event) -> None:
        """Take over a DUL that pynetdicom built, before its thread starts."""
        self._wake = _WakeUp()
        self._run_loop_delay = 0
        self.to_provider_queue = _SignallingQueue(self._wake.set)
        self.to_user_queue = _SignallingQueue(inbox.set)

    def run_reactor(self) -> None:
        try:
            super().run_reactor()
        finally:
            self._wake.close()

    def _is_transport_event(self) -> bool:
        self._wake.arm()
        try:
            if not self._must_not_wait():
                self._wait()
        finally:
            self._wake.disarm()
        return super()._is_transport_event()

    def _must_not_wait(self) -> bool:
        if self._kill_thread or not self.to_provider_queue.empty() or not self.event_queue.empty():
            return True
        # Sta13: the association has ended and pynetdicom drains and closes the socket.
        if self.state_machine.current_state == "Sta13":
            return True
        transport = self.socket
        sock = transport.socket if transport is not None else None
        # An SSL socket may hold decrypted data that select() does not see.
        return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0

    def _wait(self) -> None:
        """Wait until the socket has data, a PDU is queued for sending, or the idle wait ends."""
        transport = self.socket
        sock = transport.socket if transport is not None else None
        watched = [self._wake.reader]
        if sock is not None and transport._is_connected:  # type: ignore[union-attr]
            watched.append(sock)
        try:
            ready, _, _ = select.select(watched, [], [], IDLE_WAIT_SECONDS)
        except (OSError, ValueError):
            # The socket was closed meanwhile, and pynetdicom's own check reports the end of the transport.
            return
        if self._wake.reader in ready:
            self._wake.clear()

    def stop_dul(self) -> bool:
        if self.state_machine.current_state != "Sta1":
            return False
        self._kill_thread = True
        self._wake.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join()
        return True


class EventDrivenAssociation(Association):
    """An acceptor association whose thread waits for DIMSE messages on an event instead of polling."""

    _inbox: threading.Event

    def adopt(self) -> None:
        """Take over an association that pynetdicom built, before its threads start."""
        self._inbox = threading.Event()
        self.dul.__class__ = EventDrivenDUL
        self.dul.adopt(self._inbox)
        self.dimse.msg_queue = _SignallingQueue(self._inbox.set)

    def run(self) -> None:
        try:
            super().run()
        finally:
            # Django keeps a connection per thread, and this thread ends here.
            # The release and abort handlers return it too, and this covers
            # any ending without those events.
            connection.close()

    def _run_reactor(self) -> None:
        """Serve DIMSE requests until the association is released, aborted or times out.

        The checks after each request follow pynetdicom's acceptor loop, in the same order.
        """
        self._is_paused = False
        while not self._kill:
            self._inbox.wait(IDLE_WAIT_SECONDS)
            self._inbox.clear()

            # pynetdicom pauses the loop while a handler's own DIMSE exchange
            # (C-GET's C-STORE sub-operations) takes messages off the queue.
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False

            context_id, message = self.dimse.get_msg(block=False)
            if message:
                self._serve_request(message, context_id)
                # More requests may be queued behind this one.
                self._inbox.set()

            if self.is_established and self.acse.is_release_requested():
                self.acse.send_release(is_response=True)
                self.is_released = True
                self.is_established = False
                evt.trigger(self, evt.EVT_RELEASED, {})
                self.kill()
                return

            if self.acse.is_aborted():
                # pynetdicom takes the abort off the queue, so that its ACSE receive event fires.
                self.dul.receive_pdu(wait=False)
                self.is_aborted = True
                self.is_established = False
                evt.trigger(self, evt.EVT_ABORTED, {})
                self.kill()
                return

            if not self.dul.is_alive():
                self.kill()
                return

            if self.dul.idle_timer_expired():
                self._end_idle()
                return

    def _end_idle(self) -> None:
        logger.warning("association idle past the network timeout, ended calling_ae=%s", self.requestor.ae_title)
        if self.network_timeout_response == "A-RELEASE":
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self.release()
            self._is_paused = False
        else:
            self.abort()
        self.kill()


class EventDrivenRequestHandler(RequestHandler):
    """pynetdicom's connection handler, building associations that wait on events."""

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        assoc.__class__ = EventDrivenAssociation
        assoc.adopt()  # type: ignore[attr-defined]
        return assoc
