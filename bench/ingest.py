"""Benchmark C-STORE ingest of a 500-slice CT study: telerad's DICOM listener beside Orthanc.

Each run starts a fresh server (new data folder, new database), sends the
study with DCMTK ``storescu`` (TCP_NODELAY=1), checks that the server indexed
exactly the instances sent, and stops the server. Two kinds of send are
measured: the whole study over one association, and four ``storescu``
processes at once, each sending a quarter over its own association.

Figures per kind of send and server, medians over ``--runs``:
- instances/s and MB/s (10^6 bytes of the sent files), from the wall time of
  the ``storescu`` processes, association set-up and release included;
- the server's peak RSS: its process tree's VmRSS sampled every 50 ms from
  start to the end of the send, or its VmHWM when that is larger.

Orthanc runs alone in a private network namespace with only loopback, because
Orthanc 1.10 cannot bind to 127.0.0.1 only; this needs root. telerad binds
127.0.0.1 in this machine's namespace, where it reaches PostgreSQL.

Usage: .venv/bin/python bench/ingest.py [--database postgresql://postgres@127.0.0.1:5432/telerad_bench]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

# The targets the listener is measured against, over one association.
TARGET_INSTANCES_PER_SECOND = 150.0
TARGET_PEAK_RSS_MB = 300.0
MEGABYTE = 1_000_000


@dataclasses.dataclass(frozen=True)
class SendMode:
    label: str
    associations: int


@dataclasses.dataclass(frozen=True)
class RunFigures:
    instances_per_second: float
    megabytes_per_second: float
    peak_rss_mb: float


@dataclasses.dataclass
class Measurements:
    """The runs of one server with one kind of send."""

    server: str
    mode: SendMode
    runs: list[RunFigures] = dataclasses.field(default_factory=list)
    failures: list[str] = dataclasses.field(default_factory=list)

    def median(self) -> RunFigures | None:
        if self.failures or not self.runs:
            return None
        return RunFigures(
            instances_per_second=statistics.median(run.instances_per_second for run in self.runs),
            megabytes_per_second=statistics.median(run.megabytes_per_second for run in self.runs),
            peak_rss_mb=statistics.median(run.peak_rss_mb for run in self.runs),
        )


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=500, help="number of CT slices in the study (default: 500)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each server and kind of send; the median is reported (default: 3)")
    parser.add_argument(
        "--database", default="sqlite",
        help="sqlite (default: a file in each run's data folder) or a PostgreSQL server URL such as "
        "postgresql://postgres@127.0.0.1:5432/telerad_bench; each run creates and drops its own database named after the URL's",
    )
    parser.add_argument("--associations", type=int, default=4, help="parallel storescu processes in the parallel send (default: 4)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated UIDs (default: 1)")
    parser.add_argument("--data-dir", type=Path, help="folder for the generated study, reused while it matches (default: a folder in the temporary directory)")
    parser.add_argument("--skip-orthanc", action="store_true", help="measure telerad only")
    parser.add_argument("--keep", action="store_true", help="keep each run's data folders and logs, and print where they are")
    arguments = parser.parse_args(argv)
    if arguments.instances < arguments.associations or arguments.instances < 1:
        parser.error("--instances must be at least --associations and at least 1")
    if not 1 <= arguments.runs <= 50:
        parser.error("--runs must be from 1 to 50")
    if not 1 <= arguments.associations <= 32:
        parser.error("--associations must be from 1 to 32")
    if arguments.database != "sqlite" and not arguments.database.startswith(("postgresql://", "postgres://")):
        parser.error("--database must be sqlite or a postgresql:// URL")
    return arguments


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- one run -------------------------------------------------------------------


def measure_send(
    server: common.TeleradListener | common.OrthancServer,
    *,
    called_ae_title: str,
    study: common.StudyFiles,
    mode: SendMode,
    client_prefix: Callable[[], list[str]],
    check: Callable[[], list[str]],
) -> tuple[RunFigures, list[str]]:
    """Start `server`, send the study to it, check the result and stop the server. Return the figures and any problems."""
    process = server.start()
    sampler = common.PeakRssSampler(process.pid).start()
    try:
        server.wait_until_ready()
        groups = common.split_evenly(study.paths, mode.associations)
        sent = common.send_with_storescu(
            groups,
            port=server.dicom_port,
            called_ae_title=called_ae_title,
            log_folder=server.log_path.parent / "storescu",
            prefix=client_prefix(),
        )
        peak_bytes = sampler.stop()
        problems = list(sent.failures) + check()
    finally:
        sampler.stop()
        server.stop()
    figures = RunFigures(
        instances_per_second=study.count / sent.seconds,
        megabytes_per_second=study.total_bytes / MEGABYTE / sent.seconds,
        peak_rss_mb=peak_bytes / MEGABYTE,
    )
    return figures, problems


@contextlib.contextmanager
def telerad_database(postgres: common.PostgresServer | None) -> Iterator[str | None]:
    if postgres is None:
        yield None
        return
    with postgres.fresh_database() as url:
        yield url


def run_telerad(study: common.StudyFiles, mode: SendMode, folder: Path, postgres: common.PostgresServer | None) -> tuple[RunFigures, list[str]]:
    with telerad_database(postgres) as database_url:
        listener = common.TeleradListener(data_dir=folder, database_url=database_url)
        listener.migrate()
        return measure_send(
            listener,
            called_ae_title=common.TELERAD_AE_TITLE,
            study=study,
            mode=mode,
            client_prefix=list,
            check=lambda: common.check_telerad_index(listener, study),
        )


def run_orthanc(study: common.StudyFiles, mode: SendMode, folder: Path) -> tuple[RunFigures, list[str]]:
    server = common.OrthancServer(folder=folder)
    return measure_send(
        server,
        called_ae_title=common.ORTHANC_AE_TITLE,
        study=study,
        mode=mode,
        client_prefix=lambda: server.client_prefix,
        check=lambda: common.check_orthanc_index(server, study),
    )


# --- report ----------------------------------------------------------------------


def format_table(series: dict[tuple[str, str], Measurements], modes: Sequence[SendMode], servers: Sequence[str]) -> list[str]:
    lines = [f"{'send':<18}{'server':<10}{'instances/s':>12}{'MB/s':>9}{'peak RSS MB':>13}"]
    for mode in modes:
        label = mode.label
        medians = {}
        for server in servers:
            entry = series[(server, mode.label)]
            median = entry.median()
            medians[server] = median
            if median is None:
                lines.append(f"{label:<18}{server:<10}{'FAILED':>12}")
            else:
                lines.append(
                    f"{label:<18}{server:<10}{median.instances_per_second:>12.1f}"
                    f"{median.megabytes_per_second:>9.1f}{median.peak_rss_mb:>13.1f}"
                )
            label = ""
        telerad, orthanc = medians.get("telerad"), medians.get("Orthanc")
        if telerad is not None and orthanc is not None:
            lines.append(
                f"{'':<18}{'ratio':<10}{telerad.instances_per_second / orthanc.instances_per_second:>12.2f}"
                f"{telerad.megabytes_per_second / orthanc.megabytes_per_second:>9.2f}"
                f"{telerad.peak_rss_mb / orthanc.peak_rss_mb:>13.2f}"
            )
    return lines


def format_targets(series: dict[tuple[str, str], Measurements], mode: SendMode) -> list[str]:
    telerad = series[("telerad", mode.label)].median()
    if telerad is None:
        return ["targets: not checked, because a telerad run failed"]
    lines = [
        f"target  >= {TARGET_INSTANCES_PER_SECOND:.0f} instances/s over one association: "
        f"{'met' if telerad.instances_per_second >= TARGET_INSTANCES_PER_SECOND else 'missed'} ({telerad.instances_per_second:.1f})",
        f"target  peak RSS < {TARGET_PEAK_RSS_MB:.0f} MB: "
        f"{'met' if telerad.peak_rss_mb < TARGET_PEAK_RSS_MB else 'missed'} ({telerad.peak_rss_mb:.1f} MB)",
    ]
    orthanc_series = series.get(("Orthanc", mode.label))
    orthanc = orthanc_series.median() if orthanc_series else None
    if orthanc is not None:
        ratio = telerad.instances_per_second / orthanc.instances_per_second
        lines.append(f"target  at least Orthanc's rate over one association: {'met' if ratio >= 1 else 'missed'} (ratio {ratio:.2f})")
    return lines


def describe_software(postgres: common.PostgresServer | None, with_orthanc: bool) -> str:
    versions = common.python_versions()
    versions["DCMTK storescu"] = common.command_version(["storescu", "--version"]).replace("$dcmtk: storescu ", "").strip(" $")
    if postgres is not None:
        versions["PostgreSQL"] = postgres.version()
    if with_orthanc:
        versions["Orthanc"] = common.command_version([common.ORTHANC_BINARY, "--version"]).split()[-1]
    return ", ".join(f"{name} {version}" for name, version in versions.items())


# --- main ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    postgres = None if arguments.database == "sqlite" else common.PostgresServer(arguments.database)
    orthanc_reason = "skipped by --skip-orthanc" if arguments.skip_orthanc else common.orthanc_unavailable_reason()
    servers = ["telerad"] + ([] if orthanc_reason else ["Orthanc"])
    modes = [SendMode("1 association", 1), SendMode(f"{arguments.associations} associations", arguments.associations)]

    data_folder = arguments.data_dir or Path(tempfile.gettempdir()) / f"telerad-bench-ct{arguments.instances}-seed{arguments.seed}"
    progress(f"building or reusing the study in {data_folder}")
    study = common.build_ct_study(data_folder, instances=arguments.instances, seed=arguments.seed)
    work = common.new_work_folder("telerad-bench-ingest-")
    load_at_start = os.getloadavg()[0]

    series = {(server, mode.label): Measurements(server, mode) for server in servers for mode in modes}
    # Servers and kinds of send take turns within each run, so that a slow
    # patch of a shared machine does not land on one of them only.
    for run in range(1, arguments.runs + 1):
        for mode in modes:
            for server in servers:
                folder = work / f"{server.lower()}-{mode.associations}-run{run}"
                try:
                    if server == "telerad":
                        figures, problems = run_telerad(study, mode, folder, postgres)
                    else:
                        figures, problems = run_orthanc(study, mode, folder)
                except common.BenchmarkError as exc:
                    figures, problems = None, [str(exc)]
                entry = series[(server, mode.label)]
                if problems or figures is None:
                    entry.failures.extend(f"run {run}: {problem}" for problem in problems)
                    progress(f"run {run} {server:<8} {mode.label:<16} FAILED: {'; '.join(problems)[:500]}")
                else:
                    entry.runs.append(figures)
                    progress(
                        f"run {run} {server:<8} {mode.label:<16} {figures.instances_per_second:7.1f} instances/s"
                        f" {figures.megabytes_per_second:7.1f} MB/s  peak RSS {figures.peak_rss_mb:6.1f} MB"
                        f"  load average {os.getloadavg()[0]:.1f}"
                    )
                if not arguments.keep:
                    shutil.rmtree(folder, ignore_errors=True)

    database_text = "SQLite in the data folder" if postgres is None else f"PostgreSQL at {postgres.database_url('')}, a fresh database per run"
    lines = [
        f"C-STORE ingest of {study.count} CT slices of 512x512 16-bit, {study.total_bytes / MEGABYTE:.1f} MB, "
        f"median of {arguments.runs} runs, {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"telerad database: {database_text}",
        "",
        *format_table(series, modes, servers),
        "ratio = telerad / Orthanc: above 1 is better for instances/s and MB/s, below 1 is better for peak RSS",
    ]
    if orthanc_reason:
        lines.append(f"Orthanc not measured: {orthanc_reason}")
    lines += ["", *format_targets(series, modes[0]), ""]
    machine = common.describe_machine(work)
    lines.append("machine: " + ", ".join(f"{name} {value}" for name, value in machine.items()))
    lines.append(f"load average (1 min): {load_at_start:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    lines.append("versions: " + describe_software(postgres, not orthanc_reason))
    lines.append("telerad source: " + common.telerad_source())
    print("\n".join(lines))

    failures = [failure for entry in series.values() for failure in entry.failures]
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    if arguments.keep:
        print(f"data folders and logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
