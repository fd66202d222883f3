"""Real ``telerad serve`` processes for the end-to-end tests.

Each server gets its own data folder, free ports and, when the suite runs on
PostgreSQL, its own database on the same PostgreSQL server. The test process
is configured for the test database, not for a server's, so a server's index
is read through a ``telerad shell`` command run with that server's
environment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterable, Iterator

import psycopg
import pytest
from psycopg import sql
from pynetdicom import AE
from pynetdicom.sop_class import Verification

TELERAD_COMMAND = Path(sys.executable).with_name("telerad")
PROBE_AE_TITLE = "E2E_PROBE"
START_TIMEOUT = 60.0  # seconds, migrations on a new PostgreSQL database included
STOP_TIMEOUT = 15.0  # seconds
COMMAND_TIMEOUT = 120.0  # seconds for one `telerad` command
START_ATTEMPTS = 3  # another process may take a free port between free_port() and the server's bind
OUTPUT_LINES_ON_FAILURE = 150

# A server's index as JSON, printed by `telerad shell` in the server's environment.
INDEX_QUERY = """
import json
from django.conf import settings
from telerad.archive.models import Instance
from telerad.audit.models import AuditEvent
instances = list(Instance.objects.order_by("pk").values(
    "sop_instance_uid", "sop_class_uid", "transfer_syntax_uid", "storage_key", "dataset_sha256",
    "source_ae_title", "series__series_instance_uid", "series__study__study_instance_uid",
    "series__study__patient__patient_id", "series__study__patient__patient_name",
))
events = list(AuditEvent.objects.order_by("sequence").values("action", "outcome", "user", "patient_id", "study_instance_uid", "detail"))
print(json.dumps({"storage_dir": str(settings.TELERAD.storage_dir), "instances": instances, "audit_events": events}))
"""


@dataclasses.dataclass(frozen=True)
class StoredInstance:
    """One row of a server's instance index, with the path of its stored file."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str
    patient_name: str
    source_ae_title: str
    dataset_sha256: str
    path: Path


@dataclasses.dataclass(frozen=True)
class Index:
    storage_dir: Path
    rows: list[StoredInstance]
    audit_events: list[dict[str, Any]]

    @property
    def instances(self) -> dict[str, StoredInstance]:
        return {row.sop_instance_uid: row for row in self.rows}

    def rows_for(self, sop_instance_uid: str) -> list[StoredInstance]:
        return [row for row in self.rows if row.sop_instance_uid == sop_instance_uid]

    def events(self, action: str) -> list[dict[str, Any]]:
        return [event for event in self.audit_events if event["action"] == action]

    def stored_files(self) -> list[Path]:
        return sorted(path for path in self.storage_dir.rglob("*") if path.is_file())


def _index_from_json(data: dict[str, Any]) -> Index:
    storage_dir = Path(data["storage_dir"])
    rows = [
        StoredInstance(
            sop_instance_uid=row["sop_instance_uid"],
            sop_class_uid=row["sop_class_uid"],
            transfer_syntax_uid=row["transfer_syntax_uid"],
            study_instance_uid=row["series__study__study_instance_uid"],
            series_instance_uid=row["series__series_instance_uid"],
            patient_id=row["series__study__patient__patient_id"],
            patient_name=row["series__study__patient__patient_name"],
            source_ae_title=row["source_ae_title"],
            dataset_sha256=row["dataset_sha256"],
            path=storage_dir / row["storage_key"],
        )
        for row in data["instances"]
    ]
    return Index(storage_dir=storage_dir, rows=rows, audit_events=data["audit_events"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgres_base_url() -> str | None:
    """Return the suite's PostgreSQL URL when the suite runs on PostgreSQL."""
    url = os.environ.get("TELERAD_DATABASE_URL", "")
    return url if url.startswith(("postgres://", "postgresql://")) else None


def _postgres_admin_url(base_url: str) -> str:
    return urllib.parse.urlsplit(base_url)._replace(scheme="postgresql", path="/postgres").geturl()


def create_postgres_database(base_url: str) -> tuple[str, str]:
    """Create a database named for one server on the suite's PostgreSQL server; return its URL and name."""
    name = f"telerad_e2e_{secrets.token_hex(6)}"
    with psycopg.connect(_postgres_admin_url(base_url), autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return urllib.parse.urlsplit(base_url)._replace(path=f"/{name}").geturl(), name


def drop_postgres_database(base_url: str, name: str) -> None:
    with psycopg.connect(_postgres_admin_url(base_url), autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _setting_value(value: str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


@dataclasses.dataclass
class TeleradServer:
    """One ``telerad serve`` subprocess, the environment its commands run with, and its output files."""

    name: str
    data_dir: Path
    log_dir: Path
    environ: dict[str, str]
    calling_ae_titles: tuple[str, ...]
    ae_title: str = "TELERAD"
    process: subprocess.Popen[bytes] | None = None
    output_files: list[Path] = dataclasses.field(default_factory=list)
    registered: set[str] = dataclasses.field(default_factory=set)

    @property
    def dicom_port(self) -> int:
        return int(self.environ["TELERAD_DICOM_PORT"])

    @property
    def dicom_tls_port(self) -> int:
        return int(self.environ["TELERAD_DICOM_TLS_PORT"])

    @property
    def plain_listener(self) -> bool:
        return self.environ.get("TELERAD_DICOM_TLS_ONLY") != "true"

    @property
    def http_port(self) -> int:
        return int(self.environ["TELERAD_HTTP_PORT"])

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the server, register its calling AE titles once, and wait until it accepts an association."""
        for _ in range(START_ATTEMPTS):
            self._spawn()
            if self._wait_for_port(self.dicom_port if self.plain_listener else self.dicom_tls_port):
                break
            if "Address already in use" not in self.output():
                pytest.fail(f"{self.name} exited with status {self.process.returncode} while starting:\n{self.output_tail()}")
            # Another process took a port between free_port() and the bind; try others.
            for name in ("TELERAD_HTTP_PORT", "TELERAD_DICOM_PORT", "TELERAD_DICOM_TLS_PORT"):
                if name in self.environ:
                    self.environ[name] = str(free_port())
        else:
            pytest.fail(f"{self.name} found no free ports in {START_ATTEMPTS} attempts:\n{self.output_tail()}")
        self.register_ae(*(title for title in self._probe_and_calling_ae_titles() if title not in self.registered))
        # A TLS-only server is ready once its TLS port is open; probing it would need a client certificate.
        if self.plain_listener:
            self._wait_for_association()
        # The web server starts after the DICOM listener.
        if not self._wait_for_port(self.http_port):
            pytest.fail(f"{self.name} exited before opening its HTTP port:\n{self.output_tail()}")

    def _spawn(self) -> None:
        number = len(self.output_files) // 2 + 1
        stdout_path = self.log_dir / f"{self.name}-{number}.stdout"
        stderr_path = self.log_dir / f"{self.name}-{number}.stderr"
        self.output_files += [stdout_path, stderr_path]
        with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [str(TELERAD_COMMAND), "serve"], env=self.environ, cwd=self.data_dir, stdout=stdout, stderr=stderr,
            )

    def _wait_for_port(self, port: int) -> bool:
        """Wait until `port` accepts connections; return False when the server exited first."""
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
            time.sleep(0.1)
        pytest.fail(f"{self.name} did not open port {port} within {START_TIMEOUT:.0f} s:\n{self.output_tail()}")

    def _probe_and_calling_ae_titles(self) -> tuple[str, ...]:
        """Return the titles to register: the first calling title doubles as the probe of ``start``."""
        return self.calling_ae_titles or (PROBE_AE_TITLE,)

    def _wait_for_association(self) -> None:
        probe_ae_title = self._probe_and_calling_ae_titles()[0]
        ae = AE(ae_title=probe_ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
        ae.add_requested_context(Verification)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while time.monotonic() < deadline:
                assoc = ae.associate("127.0.0.1", self.dicom_port, ae_title=self.ae_title)
                if assoc.is_established:
                    assoc.release()
                    return
                if not self.is_running():
                    break
                time.sleep(0.2)
        finally:
            ae.shutdown()
        pytest.fail(f"{self.name} accepted no association from {probe_ae_title}:\n{self.output_tail()}")

    def register_ae(self, *titles: str, host: str = "127.0.0.1", options: tuple[str, ...] = ()) -> None:
        """Register calling AE titles with ``telerad ae add`` and `options`, all at once."""
        processes = [
            (title, subprocess.Popen(
                [str(TELERAD_COMMAND), "ae", "add", title, "--host", host, *options],
                env=self.environ, cwd=self.data_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            ))
            for title in titles
        ]
        for title, process in processes:
            output, _ = process.communicate(timeout=COMMAND_TIMEOUT)
            if process.returncode != 0:
                pytest.fail(f"telerad ae add {title} failed with status {process.returncode}:\n{output}")
            self.registered.add(title)

    def run(self, *arguments: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a ``telerad`` command with this server's environment; fail the test when it fails."""
        completed = subprocess.run(
            [str(TELERAD_COMMAND), *arguments], env=self.environ, cwd=self.data_dir,
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT, input=input,
        )
        if completed.returncode != 0:
            pytest.fail(f"telerad {arguments[0]} failed with status {completed.returncode}:\n{completed.stdout}{completed.stderr}")
        return completed

    def add_user(self, username: str, *roles: str, password: str = "a long enough password") -> None:
        """Create an account with ``telerad user add``, as an administrator would."""
        role_options = [option for role in roles for option in ("--role", role)]
        self.run("user", "add", username, *role_options, "--password-stdin", input=password + "\n")

    def query(self, code: str) -> Any:
        """Run Python `code` in ``telerad shell`` and return the JSON value of its last output line."""
        completed = self.run("shell", "--no-imports", "--command", code)
        lines = [line for line in completed.stdout.splitlines() if line.strip()]
        assert lines, f"telerad shell printed nothing; stderr:\n{completed.stderr}"
        return json.loads(lines[-1])

    def index(self) -> Index:
        return _index_from_json(self.query(INDEX_QUERY))

    def stop(self) -> None:
        """Stop the server with SIGTERM, then SIGKILL when it does not exit in time."""
        if not self.is_running():
            return
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)

    def kill(self) -> None:
        """Kill the server with SIGKILL, so that it can neither finish a request nor roll back a transaction."""
        os.kill(self.pid, signal.SIGKILL)
        assert self.process is not None
        self.process.wait(timeout=STOP_TIMEOUT)

    def log(self) -> str:
        """Return what the server wrote to standard error (its log) over all its starts."""
        return "".join(path.read_text(errors="replace") for path in self.output_files if path.suffix == ".stderr")

    def output(self) -> str:
        return "".join(f"--- {path.name}\n{path.read_text(errors='replace')}" for path in self.output_files if path.exists())

    def output_tail(self) -> str:
        return "\n".join(self.output().splitlines()[-OUTPUT_LINES_ON_FAILURE:])


class ServerFactory:
    """Servers started in folders under `base_dir`; ``close`` stops them and drops their databases."""

    def __init__(self, base_dir: Path):
        self.base_dir = base_dir
        self.servers: list[TeleradServer] = []
        self.databases: list[str] = []

    def start(self, *, calling_ae_titles: Iterable[str] = (), **settings: str | bool) -> TeleradServer:
        """Start a server; `settings` are telerad settings by lower-case name, such as ``duplicate_policy="overwrite"``."""
        name = f"server{len(self.servers) + 1}"
        data_dir = self.base_dir / name / "data"
        log_dir = self.base_dir / name / "output"
        data_dir.mkdir(parents=True)
        log_dir.mkdir()
        server = TeleradServer(
            name=name, data_dir=data_dir, log_dir=log_dir,
            environ=self._environment(data_dir, settings), calling_ae_titles=tuple(calling_ae_titles),
        )
        self.servers.append(server)
        server.start()
        return server

    def _environment(self, data_dir: Path, settings: dict[str, str | bool]) -> dict[str, str]:
        # The suite's own TELERAD_* settings describe the test process, not the server.
        environ = {key: value for key, value in os.environ.items() if not key.startswith("TELERAD_")}
        environ.update({
            "TELERAD_DATA_DIR": str(data_dir),
            "TELERAD_HOST": "127.0.0.1",
            "TELERAD_HTTP_PORT": str(free_port()),
            "TELERAD_DICOM_PORT": str(free_port()),
            "TELERAD_HTTP_TLS": "false",
            "PYTHONUNBUFFERED": "1",
        })
        base_url = postgres_base_url()
        if base_url is not None:
            url, database = create_postgres_database(base_url)
            self.databases.append(database)
            environ["TELERAD_DATABASE_URL"] = url
        environ.update({f"TELERAD_{name.upper()}": _setting_value(value) for name, value in settings.items()})
        return environ

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        base_url = postgres_base_url()
        for database in self.databases:
            assert base_url is not None
            drop_postgres_database(base_url, database)


@contextlib.contextmanager
def running_servers(base_dir: Path) -> Iterator[ServerFactory]:
    factory = ServerFactory(base_dir)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers for one test."""
    with running_servers(tmp_path) as factory:
        yield factory


@pytest.fixture(scope="module")
def module_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """Start servers shared by the tests of one module."""
    with running_servers(tmp_path_factory.mktemp("servers")) as factory:
        yield factory


def _servers_of(item: pytest.Item) -> list[TeleradServer]:
    servers: list[TeleradServer] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, TeleradServer) and value not in servers:
            servers.append(value)
        elif isinstance(value, ServerFactory):
            servers += [server for server in value.servers if server not in servers]
    return servers


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Append the output of the test's servers to the report of a failed test."""
    report = yield
    if report.failed and call.when == "call":
        for server in _servers_of(item):
            report.sections.append((f"{server.name} output (last {OUTPUT_LINES_ON_FAILURE} lines)", server.output_tail()))
    return report
