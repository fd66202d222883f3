"""Database settings: PostgreSQL connections come from a pool shared by every thread, SQLite keeps its own per thread."""

from __future__ import annotations

import threading

import pytest
from django.conf import settings as django_settings
from django.db import connection

from telerad import settings
from telerad.asgi import WEB_THREADS


def test_postgresql_uses_pool_sized_for_associations():
    database = settings._database("postgresql://telerad@127.0.0.1:5432/telerad")

    pool = database["OPTIONS"]["pool"]
    assert database["CONN_MAX_AGE"] == 0
    assert database["CONN_HEALTH_CHECKS"] is True
    assert pool["max_size"] >= django_settings.TELERAD.dicom_max_associations + WEB_THREADS
    assert pool["min_size"] <= pool["max_size"]


def test_sqlite_has_no_pool(tmp_path):
    database = settings._database(f"sqlite:///{tmp_path / 'telerad.sqlite3'}")

    assert "pool" not in database["OPTIONS"]
    assert database["CONN_MAX_AGE"] == 60


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the pool is PostgreSQL's")
def test_threads_reuse_pooled_connections():
    backends = []

    def query_in_new_thread() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                backends.append(cursor.fetchone()[0])
        finally:
            connection.close()

    def run_threads(count: int) -> None:
        for _ in range(count):
            thread = threading.Thread(target=query_in_new_thread)
            thread.start()
            thread.join()

    # The first thread opens the pool, which then fills to its minimum size in the background.
    run_threads(1)
    connection.pool.wait(timeout=10)
    opened = connection.pool.get_stats()["connections_num"]

    run_threads(6)

    assert len(backends) == 7
    # Six threads one after another borrow connections that the pool has open already.
    assert connection.pool.get_stats()["connections_num"] == opened
