"""Build the metadata documents of newly stored studies in the background.

A viewer's first request for a series waits while its metadata documents
are built (see metadata.documents), about 5 ms per instance. Building them
on the receive path would slow ingest, so the servers hand each study that
received instances to one worker thread, which builds what is missing once
the sender has finished. The documents are a cache: a study the worker has
not reached yet is built on request as before, and a job lost when the
process stops costs nothing but that wait.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Iterable

from django.db import connection

logger = logging.getLogger(__name__)

# Studies waiting for the worker, in arrival order, without repeats.
_pending: "queue.Queue[str]" = queue.Queue()
_queued: set[str] = set()
_lock = threading.Lock()
_worker: threading.Thread | None = None


def start_worker() -> None:
    """Start the worker thread of this process; without it, schedule() does nothing."""
    global _worker
    with _lock:
        if _worker is not None and _worker.is_alive():
            return
        _worker = threading.Thread(target=_run, name="telerad-metadata", daemon=True)
        _worker.start()


def schedule(study_instance_uids: Iterable[str]) -> None:
    """Queue studies whose metadata documents the worker should build."""
    if _worker is None:
        return
    with _lock:
        for uid in study_instance_uids:
            if uid and uid not in _queued:
                _queued.add(uid)
                _pending.put(uid)


def build_study(study_instance_uid: str) -> int:
    """Build the missing or stale documents of one study now; return how many were built."""
    from telerad.dicomweb import metadata, wado
    from telerad.dicomweb.http import DicomwebError

    resource = {"study": study_instance_uid}
    try:
        found = wado.find(resource, None)
    except DicomwebError:
        # Deleted, or never indexed: nothing to build.
        return 0
    stored = wado.stored_documents(resource, found.instances)
    missing = [(instance, cached) for instance, cached in zip(found.instances, stored) if not metadata.is_current(instance, cached)]
    present = [(instance, cached) for instance, cached in missing if instance.path.is_file()]
    if present:
        metadata.documents(present)
    return len(present)


def _run() -> None:
    while True:
        uid = _pending.get()
        with _lock:
            _queued.discard(uid)
        started = time.monotonic()
        try:
            built = build_study(uid)
        except Exception:
            logger.exception("building metadata failed study_instance_uid=%s", uid)
        else:
            if built:
                logger.info("metadata prepared study_instance_uid=%s instances=%d duration=%.2fs", uid, built, time.monotonic() - started)
        finally:
            connection.close()
