"""Background threads that work through a database outbox: report deliveries, e-mails.

State lives in the outbox rows, so several processes may run a worker each,
and the owner name tells their leases apart.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Callable

from django.db import DatabaseError, connection

logger = logging.getLogger(__name__)


def new_owner() -> str:
    """Return a name for one worker, unique across processes and machines."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class OutboxWorker:
    """A thread that runs `process_due` until stopped, again at once after a pass that did work.

    Subclasses set `description` (for log lines) and `thread_name`, and
    implement `process_due`, which returns how many items it attempted.
    """

    description = "outbox worker"
    thread_name = "telerad-outbox"

    def __init__(self, *, poll_seconds: float, owner: str | None = None):
        self.poll_seconds = poll_seconds
        self.owner = owner or new_owner()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)

    def process_due(self, owner: str) -> int:
        raise NotImplementedError

    def start(self) -> None:
        logger.info("%s %s started", self.description, self.owner)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def wake(self) -> None:
        self._wake.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                delay = self.run_once()
                self._wake.wait(delay)
                self._wake.clear()
        finally:
            connection.close()
            logger.info("%s %s stopped", self.description, self.owner)

    def run_once(self) -> float:
        """Process the due items; return the seconds to wait before the next pass."""
        try:
            attempted = self.process_due(self.owner)
        except DatabaseError as exc:
            # A broken connection is opened again on the next pass.
            connection.close()
            logger.warning("%s %s cannot read the outbox, retrying in %gs: %s", self.description, self.owner, self.poll_seconds, exc)
            return self.poll_seconds
        return 0.0 if attempted else self.poll_seconds


class WorkerSlot:
    """The one worker of a kind that this process runs: started once on demand, woken after commits, stopped at exit."""

    def __init__(self, factory: Callable[[], OutboxWorker]):
        self._factory = factory
        self._worker: OutboxWorker | None = None
        self._lock = threading.Lock()

    def start(self) -> OutboxWorker:
        """Start this process's worker unless it runs already; return it."""
        with self._lock:
            if self._worker is None:
                self._worker = self._factory()
                self._worker.start()
            return self._worker

    def stop(self) -> None:
        with self._lock:
            if self._worker is not None:
                self._worker.stop()
                self._worker = None

    def wake(self) -> None:
        """Make this process's worker look for due items now, when it runs one."""
        worker = self._worker
        if worker is not None:
            worker.wake()
