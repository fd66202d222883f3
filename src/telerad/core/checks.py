"""Configuration checks, reported by ``telerad check`` and before every server starts."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.checks import Error, register
from django.db import DatabaseError, connection


@register("telerad")
def check_configuration(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    config = settings.TELERAD
    errors = [Error(str(problem), id="telerad.E001") for problem in config.problems]
    errors += _check_data_dir(config.data_dir)
    if not config.problems:
        errors += _check_database()
    return errors


def _check_data_dir(data_dir: Any) -> list[Error]:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return [Error(f"TELERAD_DATA_DIR: cannot create {data_dir}: {exc.strerror}", id="telerad.E002")]
    if not os.access(data_dir, os.W_OK):
        return [Error(f"TELERAD_DATA_DIR: {data_dir} is not writable by this user", id="telerad.E002")]
    return []


def _check_database() -> list[Error]:
    try:
        connection.ensure_connection()
    except DatabaseError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [Error(f"TELERAD_DATABASE_URL: cannot connect to the database: {first_line}", id="telerad.E003")]
    finally:
        # Inside a transaction (tests, management commands) the connection stays.
        if not connection.in_atomic_block:
            connection.close()
    return []
