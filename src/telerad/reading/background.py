"""The servers' background thread for the worklist: make exams of new studies, clear lapsed claims and escalate critical results.

It runs every ``exam_sync_seconds`` in ``telerad serve``, ``telerad web``
and ``telerad worker`` (see :mod:`telerad.core.background`). Its state
lives in the database, so a process that stops loses nothing and several
nodes may each run one.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import DatabaseError, connection

from telerad.clinicians import critical
from telerad.reading import claims, exams

logger = logging.getLogger(__name__)

# While a run keeps failing, one log line per this many seconds reports it.
FAILURE_REPORT_SECONDS = 300.0


class WorklistWorker:
    def __init__(self, interval_seconds: float):
        self.interval_seconds = interval_seconds
        self.failures = 0
        self._last_report = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="telerad-worklist", daemon=True)

    def start(self) -> None:
        logger.info("worklist background work started, every %gs", self.interval_seconds)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def run_once(self) -> None:
        try:
            exams.sync_exams()
            claims.expire_lapsed_claims()
            critical.check_escalations()
        except DatabaseError as exc:
            # A broken connection is opened again on the next run.
            connection.close()
            self._report_failure(exc)
        except Exception as exc:  # noqa: BLE001 - the thread must survive any error and log it
            self._report_failure(exc)
        else:
            if self.failures:
                logger.info("worklist background work succeeded again after %d failed runs", self.failures)
                self.failures = 0

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.run_once()
                self._stop.wait(self.interval_seconds)
        finally:
            connection.close()
            logger.info("worklist background work stopped")

    def _report_failure(self, exc: Exception) -> None:
        self.failures += 1
        now = time.monotonic()
        if self.failures == 1 or now - self._last_report >= FAILURE_REPORT_SECONDS:
            logger.error("worklist background work failed (%d runs in a row): %s", self.failures, exc, exc_info=exc)
            self._last_report = now


_worker: WorklistWorker | None = None
_lock = threading.Lock()


def start() -> WorklistWorker:
    """Start this process's worker, once."""
    global _worker
    with _lock:
        if _worker is None:
            _worker = WorklistWorker(settings.TELERAD.exam_sync_seconds)
            _worker.start()
        return _worker


def stop() -> None:
    global _worker
    with _lock:
        if _worker is not None:
            _worker.stop()
            _worker = None
