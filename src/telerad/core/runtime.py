"""Start telerad's servers: the web application (uvicorn) and the DICOM listener."""

from __future__ import annotations

import gc
import logging
import signal
import ssl
import sys
from types import FrameType
from typing import Any

import uvicorn
from django.conf import settings
from django.core import checks
from django.core.management import call_command
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import get_resolver

from telerad.core import demo
from telerad.core.tls import ensure_self_signed
from telerad.dimse import server as dicom_server

logger = logging.getLogger(__name__)


class ConfigurationInvalid(Exception):
    """The configuration has problems; the message lists them."""


def require_valid_configuration() -> None:
    problems = [message for message in checks.run_checks(tags=["telerad"]) if message.is_serious()]
    if problems:
        lines = "\n".join(f"  {problem.msg}" for problem in problems)
        raise ConfigurationInvalid(f"telerad cannot start until the configuration is fixed:\n{lines}")


def require_migrated_database() -> None:
    """Raise ConfigurationInvalid unless the configuration is valid and every migration is applied.

    Unlike the servers, commands that change data do not migrate by themselves,
    so that one started against the wrong database creates nothing there.
    """
    problems = settings.TELERAD.problems
    if problems:
        lines = "\n".join(f"  {problem}" for problem in problems)
        raise ConfigurationInvalid(f"telerad cannot run until the configuration is fixed:\n{lines}")
    try:
        executor = MigrationExecutor(connection)
        unapplied = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        raise ConfigurationInvalid(f"cannot connect to the database: {exc}") from None
    if unapplied:
        raise ConfigurationInvalid(
            f"the database of the data folder {settings.TELERAD.data_dir} is not prepared yet; "
            "if that is the archive you meant, run: telerad migrate; otherwise set TELERAD_DATA_DIR (or TELERAD_DATABASE_URL) to the archive's"
        )


def prepare_database() -> None:
    call_command("migrate", interactive=False, verbosity=0)


class _UvicornConfig(uvicorn.Config):
    def load(self) -> None:
        super().load()
        if self.ssl is not None:
            # Refuse TLS 1.0 and 1.1 whatever the system's OpenSSL defaults are.
            self.ssl.minimum_version = ssl.TLSVersion.TLSv1_2


def stop_on_sigterm() -> None:
    """Make SIGTERM stop a server the way Ctrl-C does, so that it stops its listeners and workers before it exits.

    While uvicorn 0.3x runs, it handles SIGTERM by shutting the web server
    down, and then raises the signal again for the handler it found. Python's
    default handler ended the process there, before the DICOM listeners and
    background workers were stopped.
    """
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signal_number: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def load_web_application() -> None:
    """Import the URL configuration with every view module, and open the database, before the first request.

    Django does both on the first request, which took about 120 ms longer
    than later ones after a start on a 2-core machine.
    """
    resolver = get_resolver()
    resolver.url_patterns  # noqa: B018 - the property imports the URL modules and their views
    resolver.reverse_dict  # noqa: B018 - the property builds the lookup tables for reverse()
    connection.ensure_connection()
    connection.close()


def freeze_startup_objects() -> None:
    """Leave the objects made at start-up out of the garbage collector's future scans.

    A full collection over them took about 60 ms in a started server,
    holding the GIL, so every request and association waited. pynetdicom
    3.0 forces one every 60 turns of its accept loop, that is every 60
    associations or every 30 s when idle. After the freeze a full collection
    took under 1 ms.
    """
    gc.collect()
    gc.freeze()


def web_server() -> uvicorn.Server:
    config = settings.TELERAD
    options: dict[str, Any] = {}
    if config.http_tls:
        ensure_self_signed(config.certificate_path, config.private_key_path, config.host)
        options = {"ssl_certfile": str(config.certificate_path), "ssl_keyfile": str(config.private_key_path)}
    uvicorn_config = _UvicornConfig(
        "telerad.asgi:application",
        host=config.host,
        # With uvloop's event loop and TLS, and httptools' parser, a 512x512
        # CT frame over HTTPS cost 3.6 ms of server CPU, against 4.1 ms with
        # asyncio and h11.
        loop="uvloop",
        http="httptools",
        port=config.http_port,
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_keep_alive=30,
        # A stop waits this many seconds at most for requests in progress, such as a long retrieval.
        timeout_graceful_shutdown=10,
        **options,
    )
    return uvicorn.Server(uvicorn_config)


def web_address() -> str:
    config = settings.TELERAD
    scheme = "https" if config.http_tls else "http"
    return f"{scheme}://{config.host}:{config.http_port}/"


def print_banner(*, web: bool, dicom: bool) -> None:
    config = settings.TELERAD
    lines = ["telerad is starting"]
    if web:
        lines.append(f"  web:   {web_address()}")
    if dicom:
        for address in dicom_server.listener_addresses():
            lines.append(f"  DICOM: {address}, AE title {config.ae_title}")
        if config.accept_any_ae:
            lines.append("         accepting any calling AE title (TELERAD_ACCEPT_ANY_AE is on)")
    lines.append(f"  data:  {config.data_dir}")
    if config.demo and web:
        lines += demo.login_lines()
    print("\n".join(lines), file=sys.stdout, flush=True)
