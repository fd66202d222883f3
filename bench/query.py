"""Benchmark query and retrieve on a large archive: telerad (``telerad serve``) beside Orthanc with its DICOMweb plugin.

The archive is built by ``archive_builder.py``: 5,000 small studies of about
20 instances over 2,500 patients, plus one CT study of 500 slices of 512x512.
Both servers get the same files: telerad by ``telerad import``, Orthanc by
DCMTK ``storescu``. Then both are started afresh and measured in turns by the
same client (``query_client.py``), which checks every response against the
manifest of expected counts:

- QIDO-RS study search: PatientID exact, PatientName ``XXX*``, a StudyDate
  range, and no filter with ``limit=100``;
- WADO-RS metadata of the 500-instance series, the first call after the
  server started and warm calls;
- WADO-RS retrieve of the 500-instance study, multipart in the stored
  transfer syntax;
- C-FIND at study level with ``findscu`` (one process per query) and with
  pynetdicom (all queries over one association).

HTTP requests go over one keep-alive connection, HTTPS with telerad's
self-signed certificate and an API token for telerad, plain HTTP for Orthanc.
Orthanc 1.10 cannot bind to 127.0.0.1 only, so it runs in a private network
namespace that has only loopback, and its client runs there too; this needs
root.

Usage: .venv/bin/python bench/query.py [--database postgresql://postgres@127.0.0.1:5432/bench_query] [--work-dir DIR --keep]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import archive_builder  # noqa: E402
import common  # noqa: E402

ORTHANC_DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
QIDO_TARGET_P95_MS = 50.0
METADATA_TARGET_MS = 200.0
FIND_TARGET_P95_MS = 50.0
MEGABYTE = 1_000_000
# Loading processes per server: telerad import processes, or storescu
# associations to Orthanc. Loading is not measured, so it uses both cores.
LOAD_PROCESSES = 4
LOAD_TIMEOUT = 3 * 3600.0
CLIENT_TIMEOUT = 1800.0
BENCH_USER = "bench"

QIDO_TASKS = (
    ("QIDO PatientID exact", "patient_id"),
    ("QIDO PatientName XXX*", "patient_name"),
    ("QIDO StudyDate range", "study_date"),
    ("QIDO no filter, limit=100", "no_filter"),
)
FIND_TASKS = (
    ("PatientID exact", "patient_id"),
    ("PatientName XXX*", "patient_name"),
    ("StudyDate range", "study_date"),
)


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database", default="sqlite",
        help="sqlite (default: a file in telerad's data folder) or a PostgreSQL URL such as "
        "postgresql://postgres@127.0.0.1:5432/bench_query; the database named there is created, and dropped at the end unless --keep is given",
    )
    parser.add_argument("--studies", type=int, default=archive_builder.DEFAULT_STUDIES, help="small studies in the archive (default: 5000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the archive (default: 1)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the servers take turns within each (default: 3)")
    parser.add_argument("--qido-requests", type=int, default=40, help="QIDO-RS requests per kind of search, server and round (default: 40)")
    parser.add_argument("--find-requests", type=int, default=20, help="C-FIND queries per kind, client, server and round (default: 20)")
    parser.add_argument("--metadata-requests", type=int, default=5, help="warm series metadata requests per server and round (default: 5)")
    parser.add_argument("--retrieve-requests", type=int, default=5, help="whole-study retrievals per server and round (default: 5)")
    parser.add_argument("--work-dir", type=Path, help="folder for the servers' data; with --keep, a later run with the same folder reuses what is loaded (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the servers' data (and the PostgreSQL database) for a later run")
    parser.add_argument("--skip-orthanc", action="store_true", help="measure telerad only")
    parser.add_argument("--load-only", action="store_true", help="load the archive into the servers and stop, without measuring; use with --work-dir and --keep")
    arguments = parser.parse_args(argv)
    if arguments.studies < 2:
        parser.error("--studies must be at least 2")
    if not 1 <= arguments.rounds <= 20:
        parser.error("--rounds must be from 1 to 20")
    for name in ("qido_requests", "find_requests", "metadata_requests", "retrieve_requests"):
        if not 1 <= getattr(arguments, name) <= 1000:
            parser.error(f"--{name.replace('_', '-')} must be from 1 to 1000")
    if arguments.database != "sqlite" and not arguments.database.startswith(("postgresql://", "postgres://")):
        parser.error("--database must be sqlite or a postgresql:// URL")
    if arguments.load_only and not (arguments.keep and arguments.work_dir):
        parser.error("--load-only needs --work-dir and --keep, or the loaded data is deleted at once")
    return arguments


def progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}  (load {load_average()})", file=sys.stderr, flush=True)


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


# --- loading the archive ---------------------------------------------------------


def archive_digest(archive: archive_builder.Archive) -> str:
    """Return a digest of the manifest, which names the archive a data folder was loaded with."""
    return hashlib.sha256(json.dumps(archive.manifest, sort_keys=True).encode()).hexdigest()


def loaded_marker(folder: Path) -> Path:
    return folder / "loaded-archive.txt"


def is_loaded(folder: Path, archive: archive_builder.Archive) -> bool:
    with contextlib.suppress(OSError):
        return loaded_marker(folder).read_text().strip() == archive_digest(archive)
    return False


def load_telerad(server: common.TeleradListener, archive: archive_builder.Archive) -> None:
    """Import the archive with ``telerad import`` processes side by side, and check the index contains every study and instance."""
    server.migrate()
    groups: list[list[Path]] = common.split_evenly(study_folders(archive), LOAD_PROCESSES)
    groups[0] += archive.large_study.paths
    started = time.monotonic()
    processes = []
    for index, group in enumerate(groups):
        log_path = server.data_dir / f"import-{index + 1}.log"
        with log_path.open("wb") as log:
            command = [str(common.telerad_command()), "import", "--quiet", *map(str, group)]
            processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=server.environment()))
    statuses = [process.wait(timeout=LOAD_TIMEOUT) for process in processes]
    progress(f"telerad import took {time.monotonic() - started:.0f} s")
    if any(statuses):
        raise common.BenchmarkError(f"telerad import exit statuses {statuses}; see {server.data_dir}/import-*.log")
    check_telerad_counts(server, archive)
    loaded_marker(server.data_dir).write_text(archive_digest(archive))


def check_telerad_counts(server: common.TeleradListener, archive: archive_builder.Archive) -> None:
    script = (
        "import json\n"
        "from telerad.archive.models import Instance, Study\n"
        "print(json.dumps([Study.objects.count(), Instance.objects.count()]))\n"
    )
    output = server.run_command("shell", "--no-imports", "-c", script)
    studies, instances = json.loads(output.strip().splitlines()[-1])
    if (studies, instances) != (archive.studies, archive.instances):
        raise common.BenchmarkError(f"telerad's index has {studies} studies and {instances} instances, expected {archive.studies} and {archive.instances}")


def study_folders(archive: archive_builder.Archive) -> list[Path]:
    return sorted(path for path in archive.small_studies_folder.iterdir() if path.is_dir())


def load_orthanc(server: common.OrthancServer, archive: archive_builder.Archive) -> None:
    """Send the archive to Orthanc with ``storescu``, one association per group of folders, and check its counts."""
    groups: list[list[Path]] = common.split_evenly(study_folders(archive), LOAD_PROCESSES)
    groups[0] += archive.large_study.paths
    started = time.monotonic()
    processes = []
    for index, group in enumerate(groups):
        log_path = server.folder / f"storescu-{index + 1}.log"
        command = [
            *server.client_prefix, "storescu", "+sd", "+r", "-aet", common.CALLING_AE_TITLE, "-aec", common.ORTHANC_AE_TITLE,
            "127.0.0.1", str(server.dicom_port), *map(str, group),
        ]
        with log_path.open("wb") as log:
            processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=common.dcmtk_environment()))
    statuses = [process.wait(timeout=LOAD_TIMEOUT) for process in processes]
    progress(f"Orthanc load took {time.monotonic() - started:.0f} s")
    if any(statuses):
        raise common.BenchmarkError(f"storescu exit statuses {statuses}; see {server.folder}/storescu-*.log")
    statistics_ = server.statistics()
    counts = (statistics_.get("CountStudies"), statistics_.get("CountInstances"))
    if counts != (archive.studies, archive.instances):
        raise common.BenchmarkError(f"Orthanc has {counts[0]} studies and {counts[1]} instances, expected {archive.studies} and {archive.instances}")
    loaded_marker(server.folder).write_text(archive_digest(archive))


def orthanc_server(folder: Path) -> common.OrthancServer:
    return common.OrthancServer(
        folder=folder,
        extra_configuration={
            "Plugins": [str(ORTHANC_DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            # C-FIND from a calling AE that is not in DicomModalities.
            "DicomAlwaysAllowFind": True,
        },
    )


def create_token(server: common.TeleradListener) -> str:
    """Create the benchmark's user if it is missing, and return a new API token for it."""
    # A radiologist may search and retrieve every study, which is what the benchmark does.
    script = (
        "from django.contrib.auth import get_user_model\n"
        "from telerad.accounts import roles, users\n"
        f"User = get_user_model()\n"
        f"user = User.objects.filter(username={BENCH_USER!r}).first()\n"
        f"if user is None:\n"
        f"    user = User.objects.create_user({BENCH_USER!r}, 'bench@localhost', None)\n"
        f"users.replace_roles(user, {{roles.Role.RADIOLOGIST}}, actor='benchmark')\n"
    )
    server.run_command("shell", "--no-imports", "-c", script)
    return server.run_command("token", "create", BENCH_USER, "--name", "query benchmark", "--days", "1").strip()


# --- measuring -------------------------------------------------------------------


@dataclasses.dataclass
class Samples:
    seconds: list[float] = dataclasses.field(default_factory=list)
    bytes: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)

    def add(self, result: dict[str, Any], round_label: str) -> None:
        self.seconds += result["seconds"]
        self.bytes += result["bytes"]
        self.failures += [f"{round_label}: {failure}" for failure in result["failures"]]

    @property
    def missing_endpoint(self) -> bool:
        """True when every failure is an HTTP 501, the status of an endpoint not implemented yet."""
        return bool(self.failures) and all("HTTP status 501" in failure for failure in self.failures)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile: the smallest value with at least `fraction` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def build_plan(archive: archive_builder.Archive, arguments: argparse.Namespace, *, first_call: bool) -> list[dict[str, Any]]:
    """Return the client's tasks: the first metadata call alone, or one round of everything else."""
    large = archive.manifest["large_study"]
    metadata = {"kind": "metadata", "study": large["study_instance_uid"], "series": large["series_instance_uid"], "expected": large["instances"]}
    if first_call:
        return [{**metadata, "name": "metadata first call", "requests": 1}]

    queries = archive.manifest["queries"]
    tasks: list[dict[str, Any]] = [
        {"kind": "qido", "name": name, "queries": queries[key], "requests": arguments.qido_requests} for name, key in QIDO_TASKS
    ]
    tasks.append({**metadata, "name": "metadata warm", "requests": arguments.metadata_requests})
    tasks.append({"kind": "retrieve", "name": "retrieve study", "study": large["study_instance_uid"], "expected": large["instances"], "requests": arguments.retrieve_requests})
    for client in ("findscu", "pynetdicom"):
        tasks += [
            {"kind": client, "name": f"C-FIND {client} {name}", "queries": queries[key], "requests": arguments.find_requests}
            for name, key in FIND_TASKS
        ]
    return tasks


def run_client(prefix: Sequence[str], plan: dict[str, Any]) -> dict[str, Any]:
    command = [*prefix, sys.executable, str(Path(__file__).resolve().parent / "query_client.py")]
    completed = subprocess.run(command, input=json.dumps(plan), capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=False)
    if completed.returncode != 0:
        raise common.BenchmarkError(f"the query client failed with status {completed.returncode}:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout)


@dataclasses.dataclass
class Target:
    """A running server and what its client needs to reach it."""

    name: str
    client_prefix: list[str]
    http: dict[str, Any]
    dicom: dict[str, Any]
    samples: dict[str, Samples] = dataclasses.field(default_factory=dict)

    def run(self, tasks: list[dict[str, Any]], round_label: str) -> None:
        results = run_client(self.client_prefix, {"http": self.http, "dicom": self.dicom, "tasks": tasks})
        for name, result in results.items():
            self.samples.setdefault(name, Samples()).add(result, round_label)


def measure(targets: Sequence[Target], archive: archive_builder.Archive, arguments: argparse.Namespace) -> None:
    for target in targets:
        target.run(build_plan(archive, arguments, first_call=True), "first call")
        progress(f"{target.name}: first metadata call done")
    tasks = build_plan(archive, arguments, first_call=False)
    for round_number in range(1, arguments.rounds + 1):
        # The servers take turns, and the first one alternates, so that a slow
        # patch of a shared machine does not land on one of them only.
        order = targets if round_number % 2 else list(reversed(targets))
        for target in order:
            target.run(tasks, f"round {round_number}")
            progress(f"round {round_number}: {target.name} done")


# --- report ----------------------------------------------------------------------


def milliseconds(samples: Samples | None, fraction: float) -> float | None:
    if samples is None or samples.failures or not samples.seconds:
        return None
    return percentile(samples.seconds, fraction) * 1000


def megabytes_per_second(samples: Samples | None) -> float | None:
    if samples is None or samples.failures or not samples.seconds:
        return None
    return samples.bytes / MEGABYTE / sum(samples.seconds)


def cell(value: float | None, samples: Samples | None, width: int, digits: int = 1) -> str:
    if value is not None:
        return f"{value:>{width}.{digits}f}"
    if samples is not None and samples.missing_endpoint:
        return f"{'501':>{width}}"
    return f"{'FAILED' if samples is not None else '-':>{width}}"


def ratio(telerad: float | None, orthanc: float | None) -> str:
    if telerad is None or orthanc is None or orthanc == 0:
        return f"{'-':>7}"
    return f"{telerad / orthanc:>7.2f}"


def format_report(telerad: Target, orthanc: Target | None) -> list[str]:
    def samples_of(target: Target | None, name: str) -> Samples | None:
        return None if target is None else target.samples.get(name)

    header = f"{'measurement':<38}{'telerad p50':>12}{'p95':>8}{'Orthanc p50':>12}{'p95':>8}{'ratio p50':>10}{'p95':>7}"
    lines = ["times in ms", header]
    names = [name for name, _ in QIDO_TASKS] + ["metadata first call", "metadata warm"]
    names += [f"C-FIND {client} {name}" for client in ("findscu", "pynetdicom") for name, _ in FIND_TASKS]
    for name in names:
        ours, theirs = samples_of(telerad, name), samples_of(orthanc, name)
        values = [milliseconds(ours, 0.5), milliseconds(ours, 0.95), milliseconds(theirs, 0.5), milliseconds(theirs, 0.95)]
        count = len(ours.seconds) if ours is not None else 0
        lines.append(
            f"{name + f' (n={count})':<38}{cell(values[0], ours, 12)}{cell(values[1], ours, 8)}"
            f"{cell(values[2], theirs, 12)}{cell(values[3], theirs, 8)}{ratio(values[0], values[2]):>10}{ratio(values[1], values[3])}"
        )
    ours, theirs = samples_of(telerad, "retrieve study"), samples_of(orthanc, "retrieve study")
    rates = megabytes_per_second(ours), megabytes_per_second(theirs)
    lines.append(
        f"{'retrieve study, MB/s (time-weighted)':<38}{cell(rates[0], ours, 12)}{'':>8}{cell(rates[1], theirs, 12)}{'':>8}{ratio(*rates):>10}"
    )
    lines.append("ratio = telerad / Orthanc: below 1 is better for times, above 1 for MB/s; 501 = the endpoint returned 501 Not Implemented")
    return lines


def format_targets(telerad: Target, orthanc: Target | None) -> list[str]:
    def verdict(condition: bool | None) -> str:
        if condition is None:
            return "not measured"
        return "met" if condition else "missed"

    lines = []
    for name, _ in QIDO_TASKS:
        p95 = milliseconds(telerad.samples.get(name), 0.95)
        theirs = milliseconds(orthanc.samples.get(name), 0.95) if orthanc else None
        lines.append(f"target  {name} p95 < {QIDO_TARGET_P95_MS:.0f} ms: {verdict(None if p95 is None else p95 < QIDO_TARGET_P95_MS)}"
                     f"; faster than Orthanc: {verdict(None if p95 is None or theirs is None else p95 < theirs)}")
    for name in ("metadata first call", "metadata warm"):
        p50 = milliseconds(telerad.samples.get(name), 0.5)
        lines.append(f"target  {name} < {METADATA_TARGET_MS:.0f} ms (median): {verdict(None if p50 is None else p50 < METADATA_TARGET_MS)}")
    rate = megabytes_per_second(telerad.samples.get("retrieve study"))
    theirs_rate = megabytes_per_second(orthanc.samples.get("retrieve study")) if orthanc else None
    lines.append(f"target  retrieve at least Orthanc's MB/s: {verdict(None if rate is None or theirs_rate is None else rate >= theirs_rate)}")
    for name, _ in FIND_TASKS:
        p95 = milliseconds(telerad.samples.get(f"C-FIND findscu {name}"), 0.95)
        lines.append(f"target  C-FIND findscu {name} p95 < {FIND_TARGET_P95_MS:.0f} ms: {verdict(None if p95 is None else p95 < FIND_TARGET_P95_MS)}")
    return lines


def describe_counts(archive: archive_builder.Archive) -> list[str]:
    lines = [f"archive: {archive.studies} studies, {archive.instances} instances, in {archive.folder}"]
    for name, key in QIDO_TASKS:
        counts = [query["expected"] for query in archive.manifest["queries"][key]]
        lines.append(f"  {name}: {len(counts)} query values taken in turn, {min(counts)} to {max(counts)} matching studies each")
    return lines


# --- main ----------------------------------------------------------------------


@contextlib.contextmanager
def telerad_database(arguments: argparse.Namespace, reuse: bool) -> Iterator[str | None]:
    """Yield the database URL for telerad (None for SQLite), creating the PostgreSQL database unless it is reused."""
    if arguments.database == "sqlite":
        yield None
        return
    postgres = common.PostgresServer(arguments.database)
    name = postgres.base_name
    if not reuse:
        with postgres._admin() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres.database_url(name)
    finally:
        if not arguments.keep:
            with postgres._admin() as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def prepare_servers(arguments: argparse.Namespace, archive: archive_builder.Archive, work: Path, database_url: str | None, with_orthanc: bool) -> tuple[common.TeleradListener, common.OrthancServer | None]:
    """Load the archive into whichever server's data folder does not hold it yet; the two loads run at the same time."""
    telerad = common.TeleradListener(data_dir=work / f"telerad-{'sqlite' if database_url is None else 'postgresql'}", database_url=database_url, subcommand="serve", http_tls=True)
    orthanc = orthanc_server(work / "orthanc") if with_orthanc else None
    errors: list[BaseException] = []

    def load_orthanc_in_thread() -> None:
        assert orthanc is not None
        orthanc.start()
        try:
            orthanc.wait_until_ready()
            load_orthanc(orthanc, archive)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            orthanc.stop()

    thread = None
    if orthanc is not None and not is_loaded(orthanc.folder, archive):
        shutil.rmtree(orthanc.folder, ignore_errors=True)
        progress("loading the archive into Orthanc")
        thread = threading.Thread(target=load_orthanc_in_thread, name="orthanc-load")
        thread.start()
    if not is_loaded(telerad.data_dir, archive):
        shutil.rmtree(telerad.data_dir, ignore_errors=True)
        progress("loading the archive into telerad")
        load_telerad(telerad, archive)
    if thread is not None:
        thread.join()
    if errors:
        raise common.BenchmarkError(f"loading Orthanc failed: {errors[0]}")
    sync_worklist(telerad)
    return telerad, orthanc


def sync_worklist(server: common.TeleradListener) -> None:
    """Make the worklist's exams of the imported studies before any server starts.

    A server's background worker does this on its first start after an
    import, beside the measurements, which it slowed. For these 5,001 studies
    it took 31 s on SQLite and 70 s on PostgreSQL, and 4 minutes on
    PostgreSQL before `telerad import` refreshed the planner statistics.
    Once done, the worker only checks new studies.
    """
    started = time.monotonic()
    output = server.run_command("exams", "sync", timeout=LOAD_TIMEOUT)
    progress(f"worklist synchronised in {time.monotonic() - started:.0f} s: {output.strip()}")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    orthanc_reason = "skipped by --skip-orthanc" if arguments.skip_orthanc else common.orthanc_unavailable_reason()
    if orthanc_reason is None and not ORTHANC_DICOMWEB_PLUGIN.is_file():
        orthanc_reason = f"{ORTHANC_DICOMWEB_PLUGIN} not found (Debian package orthanc-dicomweb)"
    load_at_start = load_average()

    progress("building or reusing the archive")
    archive = archive_builder.build_archive(
        archive_builder.default_folder(arguments.studies, arguments.seed), studies=arguments.studies, seed=arguments.seed,
    )
    work = arguments.work_dir or common.new_work_folder("telerad-bench-query-")
    work.mkdir(parents=True, exist_ok=True)
    telerad_folder = work / f"telerad-{'sqlite' if arguments.database == 'sqlite' else 'postgresql'}"
    reuse_database = is_loaded(telerad_folder, archive)
    # A reused folder may contain caches that the first metadata call of a
    # fresh load would have built, so the report states which case it measured.
    orthanc_reused = is_loaded(work / "orthanc", archive)

    try:
        with telerad_database(arguments, reuse_database) as database_url:
            telerad, orthanc = prepare_servers(arguments, archive, work, database_url, orthanc_reason is None)
            if arguments.load_only:
                progress(f"loaded; the data is in {work}")
                return 0
            token = create_token(telerad)
            report = run_measurements(telerad, orthanc, token, archive, arguments)
    except common.BenchmarkError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if not arguments.keep:
            shutil.rmtree(work, ignore_errors=True)

    telerad_target, orthanc_target = report
    database_text = "SQLite in the data folder" if arguments.database == "sqlite" else f"PostgreSQL, database {common.PostgresServer(arguments.database).base_name}"
    lines = [
        f"query and retrieve, {arguments.rounds} rounds, {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"telerad database: {database_text}",
        f"data: telerad's {'reused from an earlier run' if reuse_database else 'loaded in this run'}, "
        f"Orthanc's {'reused from an earlier run' if orthanc_reused else 'loaded in this run'}, in {work}",
        *describe_counts(archive),
        "",
        *format_report(telerad_target, orthanc_target),
    ]
    if orthanc_reason:
        lines.append(f"Orthanc not measured: {orthanc_reason}")
    lines += ["", *format_targets(telerad_target, orthanc_target), ""]
    lines.append("machine: " + ", ".join(f"{name} {value}" for name, value in common.describe_machine(Path(archive.folder)).items()))
    lines.append(f"load average (1, 5, 15 min): {load_at_start} at start, {load_average()} at end")
    lines.append("versions: " + describe_software(arguments, orthanc_reason is None))
    lines.append("telerad source: " + common.telerad_source())
    print("\n".join(lines))

    failures = [
        f"{target.name} {name}: {failure}"
        for target in (telerad_target, orthanc_target) if target is not None
        for name, samples in target.samples.items() for failure in samples.failures[:5]
    ]
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


def run_measurements(
    telerad: common.TeleradListener, orthanc: common.OrthancServer | None, token: str,
    archive: archive_builder.Archive, arguments: argparse.Namespace,
) -> tuple[Target, Target | None]:
    """Start both servers afresh, measure them in turns, and stop them."""
    started: list[common.TeleradListener | common.OrthancServer] = []
    try:
        telerad.start()
        started.append(telerad)
        telerad.wait_until_ready()
        targets = [Target(
            name="telerad", client_prefix=[],
            http={"host": "127.0.0.1", "port": telerad.http_port, "root": "/dicom-web", "ca_file": str(telerad.certificate_path), "token": token},
            dicom={"port": telerad.dicom_port, "called_ae": common.TELERAD_AE_TITLE, "calling_ae": common.CALLING_AE_TITLE},
        )]
        if orthanc is not None:
            orthanc.start()
            started.append(orthanc)
            orthanc.wait_until_ready()
            targets.append(Target(
                name="Orthanc", client_prefix=orthanc.client_prefix,
                http={"host": "127.0.0.1", "port": orthanc.http_port, "root": "/dicom-web", "ca_file": None, "token": None},
                dicom={"port": orthanc.dicom_port, "called_ae": common.ORTHANC_AE_TITLE, "calling_ae": common.CALLING_AE_TITLE},
            ))
        progress("servers started")
        measure(targets, archive, arguments)
    finally:
        for server in started:
            server.stop()
    return targets[0], (targets[1] if len(targets) > 1 else None)


def describe_software(arguments: argparse.Namespace, with_orthanc: bool) -> str:
    versions = common.python_versions()
    versions["DCMTK findscu"] = common.command_version(["findscu", "--version"]).replace("$dcmtk: findscu ", "").strip(" $")
    if arguments.database != "sqlite":
        versions["PostgreSQL"] = common.PostgresServer(arguments.database).version()
    if with_orthanc:
        versions["Orthanc"] = common.command_version([common.ORTHANC_BINARY, "--version"]).split()[-1]
        versions["Orthanc DICOMweb plugin"] = ORTHANC_DICOMWEB_PLUGIN.resolve().name.removeprefix("libOrthancDicomWeb.so.")
    return ", ".join(f"{name} {version}" for name, version in versions.items())


if __name__ == "__main__":
    sys.exit(main())
