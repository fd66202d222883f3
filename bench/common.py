"""Helpers shared by telerad's benchmarks.

- test data built from real headers in pydicom's bundled files, cached on disk;
- starting and stopping a `telerad dicom` listener, and an Orthanc peer in a
  private network namespace that has only loopback;
- peak RSS of a process tree, sampled from /proc;
- a description of the machine and of the software versions.

Benchmarks run as ``.venv/bin/python bench/NAME.py``; this file is imported
beside them and uses only the standard library, numpy, pydicom and psycopg.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Iterator, Sequence

# Bump when the generated files change, so that stale caches are rebuilt.
CT_BUILDER_VERSION = 1
CT_SIZE = 512
ORTHANC_BINARY = "/usr/sbin/Orthanc"
TELERAD_AE_TITLE = "TELERAD"
ORTHANC_AE_TITLE = "ORTHANC"
CALLING_AE_TITLE = "BENCH"
# Upper bounds, in seconds, for a server to start or to stop.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
RSS_SAMPLE_INTERVAL = 0.05
# Finding new child processes means reading every /proc/PID/stat (measured:
# about 4 ms for 95 processes on a 2-core VM), so it runs less often than the
# RSS sampling.
TREE_REFRESH_INTERVAL = 1.0


class BenchmarkError(Exception):
    """A server failed to start, a send failed or a result was wrong. The message names which."""


# --- machine and versions -------------------------------------------------


def describe_machine(data_path: Path) -> dict[str, str]:
    """Return the facts a benchmark figure depends on: cores, CPU, memory, kernel and file system."""
    return {
        "cores": str(os.cpu_count() or "?"),
        "cpu": _cpu_model(),
        "memory": f"{_memory_total_gib():.1f} GiB",
        "kernel": platform.release(),
        "file system": f"{_file_system_type(data_path)} at {data_path}",
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_total_gib() -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _file_system_type(path: Path) -> str:
    """Return the type of the file system that contains `path`, from the longest matching mount point."""
    resolved = str(path.resolve())
    best, best_type = "", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) < 3:
                continue
            mount_point, kind = fields[1], fields[2]
            inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) > len(best):
                best, best_type = mount_point, kind
    return best_type


def command_version(command: Sequence[str]) -> str:
    """Return the first line a program prints for its version option, or "not found"."""
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    lines = (completed.stdout or completed.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def telerad_source() -> str:
    """Return where the measured telerad code comes from: its folder, and its git commit when it has one.

    Benchmarks import telerad the way the ``telerad`` command does, so
    PYTHONPATH can point them at another checkout, such as an unpacked
    ``git archive`` of a commit.
    """
    import importlib.util

    spec = importlib.util.find_spec("telerad.dimse")
    if spec is None or spec.origin is None:
        return "telerad not importable"
    source = Path(spec.origin).resolve().parents[2]
    commit = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    if commit.returncode != 0:
        return f"{source} (not a git checkout)"
    changes = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--", "."], capture_output=True, text=True, check=False)
    state = "with uncommitted changes" if changes.stdout.strip() else "clean"
    return f"{source} at commit {commit.stdout.strip()}, {state}"


def python_versions() -> dict[str, str]:
    """Return the versions of Python and of the packages on telerad's receive path."""
    import sqlite3
    from importlib import metadata

    versions = {"Python": platform.python_version(), "SQLite": sqlite3.sqlite_version}
    for package in ("telerad", "Django", "pydicom", "pynetdicom", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


# --- test data ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StudyFiles:
    """A built study on disk and the facts a benchmark checks its results against."""

    folder: Path
    paths: tuple[Path, ...]
    study_instance_uid: str
    series_instance_uid: str
    total_bytes: int
    # SHA-256 of the sorted SOP Instance UIDs, one per line, which is equal only
    # when the archive contains exactly these instances.
    sop_instance_uids_sha256: str

    @property
    def count(self) -> int:
        return len(self.paths)


def pydicom_test_file(name: str) -> Path:
    """Return the path of one of pydicom's bundled test files (pydicom's own lookup may try to download)."""
    import pydicom

    path = Path(pydicom.__file__).parent / "data" / "test_files" / name
    if not path.is_file():
        raise BenchmarkError(f"pydicom's test file {name} is missing at {path}; reinstall pydicom")
    return path


def sop_instance_uids_digest(uids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(uids)).encode("ascii")).hexdigest()


def build_ct_study(folder: Path, *, instances: int, seed: int) -> StudyFiles:
    """Write a CT study of `instances` slices of 512x512 16-bit pixels into `folder`, or reuse the files there.

    Each slice is pydicom's real header ``CT_small.dcm`` with its 128x128
    pixels enlarged to 512x512: each pixel is repeated 4x4 and the pixel
    spacing divided by 4, so the field of view stays the same. The Study,
    Series and SOP Instance UIDs are derived from `seed`, and each slice gets
    its own InstanceNumber, ImagePositionPatient and SliceLocation. The same
    seed gives the same files.
    """
    manifest_path = folder / "manifest.json"
    expected = {"builder": CT_BUILDER_VERSION, "instances": instances, "seed": seed}
    cached = _read_manifest(manifest_path, expected)
    if cached is not None:
        return cached

    folder.mkdir(parents=True, exist_ok=True)
    manifest_path.unlink(missing_ok=True)
    study = _write_ct_slices(folder, instances=instances, seed=seed)
    # The manifest is written last, so an interrupted build is never reused.
    manifest = {
        **expected,
        "files": [path.name for path in study.paths],
        "study_instance_uid": study.study_instance_uid,
        "series_instance_uid": study.series_instance_uid,
        "total_bytes": study.total_bytes,
        "sop_instance_uids_sha256": study.sop_instance_uids_sha256,
    }
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return study


def _read_manifest(manifest_path: Path, expected: dict[str, int]) -> StudyFiles | None:
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None
    if any(manifest.get(key) != value for key, value in expected.items()):
        return None

    folder = manifest_path.parent
    paths = tuple(folder / name for name in manifest["files"])
    if sum(path.stat().st_size for path in paths if path.is_file()) != manifest["total_bytes"]:
        return None
    return StudyFiles(
        folder=folder,
        paths=paths,
        study_instance_uid=manifest["study_instance_uid"],
        series_instance_uid=manifest["series_instance_uid"],
        total_bytes=manifest["total_bytes"],
        sop_instance_uids_sha256=manifest["sop_instance_uids_sha256"],
    )


def _write_ct_slices(folder: Path, *, instances: int, seed: int) -> StudyFiles:
    import numpy as np
    import pydicom
    from pydicom.uid import generate_uid

    template = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))
    factor = CT_SIZE // template.Rows
    pixels = np.repeat(np.repeat(template.pixel_array, factor, axis=0), factor, axis=1)
    template.PixelData = pixels.tobytes()
    template.Rows, template.Columns = pixels.shape
    template.PixelSpacing = [f"{float(value) / factor:.6f}" for value in template.PixelSpacing]

    entropy = f"telerad-bench-ct-seed-{seed}"
    template.StudyInstanceUID = generate_uid(entropy_srcs=[entropy, "study"])
    template.SeriesInstanceUID = generate_uid(entropy_srcs=[entropy, "series"])
    first_position = [float(value) for value in template.ImagePositionPatient]
    spacing = float(template.SliceThickness)

    paths, uids, total = [], [], 0
    for index in range(instances):
        sop_instance_uid = generate_uid(entropy_srcs=[entropy, "instance", str(index)])
        template.SOPInstanceUID = sop_instance_uid
        template.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
        template.InstanceNumber = index + 1
        z = first_position[2] - index * spacing
        template.ImagePositionPatient = [f"{first_position[0]:.6f}", f"{first_position[1]:.6f}", f"{z:.6f}"]
        template.SliceLocation = f"{z:.6f}"
        path = folder / f"slice-{index + 1:04d}.dcm"
        template.save_as(path, enforce_file_format=True)
        paths.append(path)
        uids.append(sop_instance_uid)
        total += path.stat().st_size
    return StudyFiles(
        folder=folder,
        paths=tuple(paths),
        study_instance_uid=str(template.StudyInstanceUID),
        series_instance_uid=str(template.SeriesInstanceUID),
        total_bytes=total,
        sop_instance_uids_sha256=sop_instance_uids_digest(uids),
    )


# --- processes and memory ----------------------------------------------------


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 now (another program may still take it before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _status_kib(pid: int, field: str) -> int:
    """Return a ``kB`` field of /proc/PID/status (VmRSS, VmHWM), or 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(field.encode("ascii") + b":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def process_tree(root: int) -> list[int]:
    """Return `root` and all its descendants, read from the parent PIDs in /proc/PID/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name in brackets may contain spaces, but the fields after it cannot.
        fields = stat[stat.rindex(b")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))

    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


class PeakRssSampler:
    """Samples the summed VmRSS of a process tree in a background thread and keeps the peak.

    The sampling misses peaks shorter than the interval, so :meth:`stop` also
    reads the root's VmHWM (the kernel's exact peak for one process) and keeps
    the larger of the two.
    """

    def __init__(self, root_pid: int, *, interval: float = RSS_SAMPLE_INTERVAL):
        self.root_pid = root_pid
        self.interval = interval
        self.peak_kib = 0
        self.samples = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{root_pid}", daemon=True)

    def start(self) -> PeakRssSampler:
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop sampling and return the peak in bytes. Call it before the process exits, while VmHWM can be read."""
        self.peak_kib = max(self.peak_kib, _status_kib(self.root_pid, "VmHWM"))
        self._stopping.set()
        self._thread.join()
        return self.peak_kib * 1024

    def _run(self) -> None:
        pids = [self.root_pid]
        refreshed = 0.0
        while not self._stopping.is_set():
            now = time.monotonic()
            if now - refreshed >= TREE_REFRESH_INTERVAL:
                pids = process_tree(self.root_pid)
                refreshed = now
            total = sum(_status_kib(pid, "VmRSS") for pid in pids)
            self.peak_kib = max(self.peak_kib, total)
            self.samples += 1
            self._stopping.wait(self.interval)


def stop_process(process: subprocess.Popen[bytes], *, first_signal: int = signal.SIGTERM) -> None:
    """Send `first_signal` to the process by its PID, then SIGKILL if it has not exited within STOP_TIMEOUT."""
    if process.poll() is not None:
        return
    process.send_signal(first_signal)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)


def log_tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def dcmtk_environment() -> dict[str, str]:
    """Return the environment for DCMTK programs and Orthanc.

    DCMTK as Debian packages it leaves Nagle's algorithm on unless TCP_NODELAY
    is set, and every DIMSE round trip then waits about 40 ms for a delayed
    acknowledgement.
    """
    return {**os.environ, "TCP_NODELAY": "1"}


# --- sending ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SendResult:
    seconds: float
    failures: tuple[str, ...]


def split_evenly(paths: Sequence[Path], parts: int) -> list[list[Path]]:
    """Split `paths` into `parts` consecutive runs whose lengths differ by at most one."""
    size, extra = divmod(len(paths), parts)
    groups, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        groups.append(list(paths[start:end]))
        start = end
    return [group for group in groups if group]


def send_with_storescu(
    groups: Sequence[Sequence[Path]],
    *,
    port: int,
    called_ae_title: str,
    log_folder: Path,
    prefix: Sequence[str] = (),
    timeout: float = 900.0,
) -> SendResult:
    """Run one ``storescu`` process (one association) per group at the same time and time them together.

    `prefix` goes before the command, for example ``nsenter --net=...`` to
    reach a server in another network namespace. A failure is a non-zero exit
    status or an error line in a process's output.
    """
    log_folder.mkdir(parents=True, exist_ok=True)
    processes = []
    started = time.perf_counter()
    for index, group in enumerate(groups):
        log_path = log_folder / f"storescu-{index + 1}.log"
        command = [
            *prefix, "storescu", "-aet", CALLING_AE_TITLE, "-aec", called_ae_title,
            "127.0.0.1", str(port), *map(str, group),
        ]
        with log_path.open("wb") as log:
            processes.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dcmtk_environment()), log_path))
    failures = []
    for process, log_path in processes:
        try:
            status = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            status = -1
        errors = [line for line in log_path.read_text(errors="replace").splitlines() if line.startswith(("E:", "F:"))]
        if status != 0 or errors:
            failures.append(f"{log_path.name}: exit status {status}; {'; '.join(errors[:3]) or 'no error line'}")
    return SendResult(seconds=time.perf_counter() - started, failures=tuple(failures))


def wait_for_echo(port: int, called_ae_title: str, *, process: subprocess.Popen[bytes], log_path: Path, prefix: Sequence[str] = ()) -> None:
    """Wait until a C-ECHO to the server succeeds; raise BenchmarkError if it exits or START_TIMEOUT passes."""
    deadline = time.monotonic() + START_TIMEOUT
    command = [*prefix, "echoscu", "-aet", CALLING_AE_TITLE, "-aec", called_ae_title, "127.0.0.1", str(port)]
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchmarkError(f"the server exited with status {process.returncode} while starting:\n{log_tail(log_path)}")
        echo = subprocess.run(command, capture_output=True, env=dcmtk_environment(), timeout=30, check=False)
        if echo.returncode == 0:
            return
        time.sleep(0.2)
    raise BenchmarkError(f"C-ECHO to port {port} timed out: no response within {START_TIMEOUT:.0f} s:\n{log_tail(log_path)}")


def wait_for_port(port: int, *, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Wait until a TCP connection to 127.0.0.1:`port` succeeds; raise BenchmarkError if the process exits or START_TIMEOUT passes."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchmarkError(f"the server exited with status {process.returncode} while starting:\n{log_tail(log_path)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise BenchmarkError(f"port {port} did not accept connections within {START_TIMEOUT:.0f} s:\n{log_tail(log_path)}")


# --- telerad -------------------------------------------------------------------


def telerad_command() -> Path:
    """Return the ``telerad`` script of the virtual environment that runs this benchmark."""
    path = Path(sys.executable).parent / "telerad"
    if not path.is_file():
        raise BenchmarkError(f"{path} not found; run the benchmark with the project's .venv/bin/python")
    return path


@dataclasses.dataclass
class PostgresServer:
    """A PostgreSQL server on which each telerad run gets a fresh database, dropped afterwards."""

    url: str
    # Fresh databases are named BASE_PID_N after the database named in `url`.
    base_name: str = dataclasses.field(init=False)
    _counter: int = dataclasses.field(init=False, default=0)

    def __post_init__(self) -> None:
        self.base_name = urllib.parse.urlsplit(self.url).path.strip("/") or "telerad_bench"
        # The name goes into CREATE DATABASE, which takes no query parameters.
        if not self.base_name.replace("_", "").isalnum() or not self.base_name.isascii():
            raise BenchmarkError(f"invalid database name {self.base_name!r} in --database; use letters, digits and _")

    def database_url(self, name: str) -> str:
        return urllib.parse.urlunsplit(urllib.parse.urlsplit(self.url)._replace(path="/" + name))

    def version(self) -> str:
        with self._admin() as connection:
            return str(connection.execute("SHOW server_version").fetchone()[0])

    @contextlib.contextmanager
    def fresh_database(self) -> Iterator[str]:
        """Create an empty database with a name no other run uses, yield its URL and drop it."""
        self._counter += 1
        name = f"{self.base_name}_{os.getpid()}_{self._counter}"
        with self._admin() as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        try:
            yield self.database_url(name)
        finally:
            with self._admin() as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _admin(self):  # type: ignore[no-untyped-def]
        import psycopg

        return psycopg.connect(self.database_url("postgres"), autocommit=True, connect_timeout=10)


@dataclasses.dataclass
class TeleradListener:
    """A `telerad dicom` process on 127.0.0.1 with its own data folder and database."""

    data_dir: Path
    database_url: str | None
    dicom_port: int = dataclasses.field(default_factory=free_port)
    http_port: int = dataclasses.field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    # ``dicom`` runs the DICOM listener alone; ``serve`` adds the web
    # application, over HTTPS when `http_tls` is true.
    subcommand: str = "dicom"
    http_tls: bool = False

    @property
    def log_path(self) -> Path:
        return self.data_dir / "listener.log"

    def environment(self) -> dict[str, str]:
        environment = {
            **os.environ,
            "TELERAD_DATA_DIR": str(self.data_dir),
            "TELERAD_HOST": "127.0.0.1",
            "TELERAD_DICOM_PORT": str(self.dicom_port),
            "TELERAD_HTTP_PORT": str(self.http_port),
            "TELERAD_HTTP_TLS": "true" if self.http_tls else "false",
            "TELERAD_ACCEPT_ANY_AE": "true",
            "TELERAD_AE_TITLE": TELERAD_AE_TITLE,
            # The viewer benchmark logs in with a password alone.
            "TELERAD_TWO_FACTOR_REQUIRED": "false",
        }
        environment.pop("TELERAD_CONFIG_FILE", None)
        if self.database_url:
            environment["TELERAD_DATABASE_URL"] = self.database_url
        else:
            environment.pop("TELERAD_DATABASE_URL", None)
        return environment

    def run_command(self, *arguments: str, timeout: float = 300.0) -> str:
        """Run a ``telerad`` command with this listener's environment and return its output."""
        completed = subprocess.run(
            [str(telerad_command()), *arguments],
            capture_output=True, text=True, env=self.environment(), timeout=timeout, check=False,
        )
        if completed.returncode != 0:
            raise BenchmarkError(f"telerad {arguments[0]} failed with status {completed.returncode}:\n{completed.stderr[-2000:]}")
        return completed.stdout

    def migrate(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.run_command("migrate", "--verbosity", "0")

    def start(self) -> subprocess.Popen[bytes]:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(telerad_command()), self.subcommand], stdout=log, stderr=subprocess.STDOUT, env=self.environment(),
            )
        return self.process

    @property
    def certificate_path(self) -> Path:
        """The self-signed certificate that ``telerad serve`` writes on its first start with HTTPS."""
        return self.data_dir / "tls" / "telerad.crt"

    def wait_until_ready(self) -> None:
        assert self.process is not None
        wait_for_echo(self.dicom_port, TELERAD_AE_TITLE, process=self.process, log_path=self.log_path)
        if self.subcommand == "serve":
            wait_for_port(self.http_port, process=self.process, log_path=self.log_path)

    def stop(self) -> None:
        # `telerad dicom` shuts its server down on KeyboardInterrupt.
        if self.process is not None:
            stop_process(self.process, first_signal=signal.SIGINT)

    def index_summary(self) -> dict[str, object]:
        """Return the counts of the index, read by a separate ``telerad shell`` with the same settings."""
        script = (
            "import hashlib, json\n"
            "from telerad.archive.models import Instance, Series, Study\n"
            "uids = sorted(Instance.objects.values_list('sop_instance_uid', flat=True))\n"
            "print(json.dumps({\n"
            "    'instances': len(uids),\n"
            "    'series': Series.objects.count(),\n"
            "    'studies': list(Study.objects.values_list('study_instance_uid', 'number_of_study_related_instances')),\n"
            "    'sop_instance_uids_sha256': hashlib.sha256('\\n'.join(uids).encode('ascii')).hexdigest(),\n"
            "}))\n"
        )
        output = self.run_command("shell", "--no-imports", "-c", script)
        return json.loads(output.strip().splitlines()[-1])

    def stored_files(self) -> int:
        return sum(1 for _ in (self.data_dir / "storage").rglob("*.dcm"))


def check_telerad_index(listener: TeleradListener, study: StudyFiles) -> list[str]:
    """Return what differs between the listener's index and files and the study that was sent (empty when all match)."""
    summary = listener.index_summary()
    problems = []
    if summary["instances"] != study.count:
        problems.append(f"{summary['instances']} instances indexed, {study.count} sent")
    if summary["sop_instance_uids_sha256"] != study.sop_instance_uids_sha256:
        problems.append("the indexed SOP Instance UIDs differ from those sent")
    if summary["studies"] != [[study.study_instance_uid, study.count]]:
        problems.append(f"studies and their instance counts are {summary['studies']}, expected one study of {study.count}")
    if summary["series"] != 1:
        problems.append(f"{summary['series']} series indexed, expected 1")
    files = listener.stored_files()
    if files != study.count:
        problems.append(f"{files} files in storage, {study.count} sent")
    return problems


# --- Orthanc -------------------------------------------------------------------


def orthanc_unavailable_reason() -> str | None:
    """Return why Orthanc cannot run here, or None when it can."""
    if not Path(ORTHANC_BINARY).is_file():
        return f"{ORTHANC_BINARY} not found (Debian package orthanc)"
    if os.geteuid() != 0:
        return "a private network namespace needs root (Orthanc 1.10 listens on every interface)"
    for program in ("unshare", "nsenter", "ip"):
        if shutil.which(program) is None:
            return f"{program} not found (Debian packages util-linux and iproute2)"
    return None


@dataclasses.dataclass
class OrthancServer:
    """Orthanc with its own configuration and storage, alone in a network namespace that has only loopback.

    Orthanc 1.10 cannot bind to 127.0.0.1 only, so it runs where its listeners
    can be reached from nowhere but the namespace itself. Clients enter the
    namespace with :attr:`client_prefix`.
    """

    folder: Path
    dicom_port: int = dataclasses.field(default_factory=free_port)
    http_port: int = dataclasses.field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    # Entries added to the minimal configuration, or replacing its own
    # (for example "Plugins" and "DicomWeb").
    extra_configuration: dict[str, object] = dataclasses.field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        return self.folder / "orthanc.log"

    @property
    def client_prefix(self) -> list[str]:
        assert self.process is not None
        return ["nsenter", f"--net=/proc/{self.process.pid}/ns/net", "--"]

    def write_configuration(self) -> Path:
        """Write a minimal configuration that keeps Orthanc's default fsync of the storage area and the index."""
        configuration = {
            "Name": "telerad-bench",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"),
            "StorageCompression": False,
            "DicomAet": ORTHANC_AE_TITLE,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": False,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [],
            **self.extra_configuration,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "orthanc.json"
        path.write_text(json.dumps(configuration, indent=2))
        return path

    def start(self) -> subprocess.Popen[bytes]:
        configuration = self.write_configuration()
        # unshare and sh both exec, so the PID of this process is Orthanc's.
        command = [
            "unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$1"',
            ORTHANC_BINARY, str(configuration),
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dcmtk_environment())
        return self.process

    def wait_until_ready(self) -> None:
        assert self.process is not None
        self._wait_for_own_namespace()
        wait_for_echo(self.dicom_port, ORTHANC_AE_TITLE, process=self.process, log_path=self.log_path, prefix=self.client_prefix)

    def _wait_for_own_namespace(self) -> None:
        """Wait until the process has left this namespace, so that clients never enter the host's network."""
        assert self.process is not None
        ours = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchmarkError(f"Orthanc exited with status {self.process.returncode} while starting:\n{log_tail(self.log_path)}")
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{self.process.pid}/ns/net") != ours:
                    return
            time.sleep(0.05)
        raise BenchmarkError("Orthanc's process did not enter its own network namespace")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, first_signal=signal.SIGTERM)

    def statistics(self) -> dict[str, object]:
        """Return Orthanc's /statistics, fetched from inside its namespace."""
        script = (
            "import sys, urllib.request\n"
            f"sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:{self.http_port}/statistics', timeout=30).read().decode())\n"
        )
        completed = subprocess.run(
            [*self.client_prefix, sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False,
        )
        if completed.returncode != 0:
            raise BenchmarkError(f"Orthanc's /statistics failed: {completed.stderr.strip()[-500:]}")
        return json.loads(completed.stdout)


def check_orthanc_index(server: OrthancServer, study: StudyFiles) -> list[str]:
    """Return what differs between Orthanc's counts and the study that was sent (empty when all match)."""
    statistics = server.statistics()
    expected = {"CountInstances": study.count, "CountSeries": 1, "CountStudies": 1}
    return [
        f"Orthanc's {key} is {statistics.get(key)}, expected {value}"
        for key, value in expected.items()
        if statistics.get(key) != value
    ]


def new_work_folder(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


# --- benchmarks inside a Django process -----------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile: the smallest value with at least `fraction` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@contextlib.contextmanager
def optional_fresh_database(url: str | None) -> Iterator[str | None]:
    """Yield None for SQLite (no URL), else the URL of a fresh PostgreSQL database that is dropped afterwards."""
    if url is None:
        yield None
        return
    with PostgresServer(url).fresh_database() as fresh:
        yield fresh


def set_up_django(data_dir: str, database_url: str | None, **environment: str) -> None:
    """Point telerad's settings at `data_dir` and `database_url` (SQLite when None), set `environment`, and set up Django."""
    os.environ["TELERAD_DATA_DIR"] = data_dir
    os.environ["TELERAD_HTTP_TLS"] = "false"
    os.environ.pop("TELERAD_CONFIG_FILE", None)
    if database_url:
        os.environ["TELERAD_DATABASE_URL"] = database_url
    else:
        os.environ.pop("TELERAD_DATABASE_URL", None)
    os.environ.update(environment)
    os.environ["DJANGO_SETTINGS_MODULE"] = "telerad.settings"
    import django

    django.setup()
