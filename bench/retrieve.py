"""Benchmark C-MOVE and C-GET of a 500-slice CT study from telerad's DICOM listener.

The study is pydicom's CT_small.dcm header with its pixels enlarged to
512x512 (see common.build_ct_study). A fresh ``telerad dicom`` receives it
with ``storescu``, then each run times:
- C-MOVE: DCMTK ``movescu`` at study level, to a pynetdicom Storage SCP in
  this process on 127.0.0.1 that counts what it receives and keeps nothing;
- C-GET: DCMTK ``getscu`` at study level with ``--ignore`` (it receives each
  instance and discards it).
Both use TCP_NODELAY=1. Figures are instances/s and MB/s (10^6 bytes of the
stored files) over the wall time of the DCMTK process, association set-up
included, as the median of ``--runs``. A run counts only when all 500
sub-operations completed.

Usage: .venv/bin/python bench/retrieve.py [--runs 3] [--database postgresql://postgres@127.0.0.1:5432/telerad_bench]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from pynetdicom import AE, evt  # noqa: E402
from pynetdicom.sop_class import CTImageStorage, Verification  # noqa: E402

DESTINATION_AE_TITLE = "BENCH_DEST"
MEGABYTE = 1_000_000
COMPLETED = re.compile(r"Number of Completed Suboperations\s*:\s*(\d+)")


class CountingDestination:
    """A Storage SCP on 127.0.0.1 that counts the instances and bytes it receives."""

    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0
        self._lock = threading.Lock()
        ae = AE(ae_title=DESTINATION_AE_TITLE)
        ae.add_supported_context(Verification)
        ae.add_supported_context(CTImageStorage)
        ae.maximum_pdu_size = 0
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])
        self.port = self.server.server_address[1]

    def _store(self, event: Any) -> int:
        with self._lock:
            self.count += 1
            self.bytes += len(event.request.DataSet.getbuffer())
        return 0x0000

    def reset(self) -> None:
        with self._lock:
            self.count = self.bytes = 0


def run_dcmtk(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env=common.dcmtk_environment(), timeout=900)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise common.BenchmarkError(f"{command[0]} failed with status {completed.returncode}:\n{completed.stderr[-2000:]}")
    return seconds, completed.stderr


def study_keys(study: common.StudyFiles) -> list[str]:
    return ["--study", "--key", "QueryRetrieveLevel=STUDY", "--key", f"StudyInstanceUID={study.study_instance_uid}"]


def measure_move(listener: common.TeleradListener, destination: CountingDestination, study: common.StudyFiles) -> float:
    destination.reset()
    seconds, _ = run_dcmtk([
        "movescu", "--verbose", "-aet", common.CALLING_AE_TITLE, "-aec", common.TELERAD_AE_TITLE,
        "--move", DESTINATION_AE_TITLE, *study_keys(study), "127.0.0.1", str(listener.dicom_port),
    ])
    if destination.count != study.count:
        raise common.BenchmarkError(f"the destination received {destination.count} instances, expected {study.count}")
    return seconds


def measure_get(listener: common.TeleradListener, study: common.StudyFiles) -> float:
    seconds, log = run_dcmtk([
        "getscu", "--verbose", "--ignore", "-aet", common.CALLING_AE_TITLE, "-aec", common.TELERAD_AE_TITLE,
        *study_keys(study), "127.0.0.1", str(listener.dicom_port),
    ])
    completed = [int(value) for value in COMPLETED.findall(log)]
    if not completed or completed[-1] != study.count:
        raise common.BenchmarkError(f"getscu reported {completed[-1:] or 'no'} completed sub-operations, expected {study.count}")
    return seconds


@contextlib.contextmanager
def running_listener(folder: Path, database_url: str | None, destination: CountingDestination, study: common.StudyFiles) -> Iterator[common.TeleradListener]:
    listener = common.TeleradListener(data_dir=folder, database_url=database_url)
    listener.migrate()
    listener.run_command("ae", "add", DESTINATION_AE_TITLE, "--host", "127.0.0.1", "--port", str(destination.port))
    listener.start()
    try:
        listener.wait_until_ready()
        sent = common.send_with_storescu([study.paths], port=listener.dicom_port, called_ae_title=common.TELERAD_AE_TITLE, log_folder=folder / "logs")
        if sent.failures:
            raise common.BenchmarkError("storing the study failed: " + "; ".join(sent.failures))
        yield listener
    finally:
        listener.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=500, help="number of CT slices in the study (default: 500)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each retrieve; the table shows the median (default: 3)")
    parser.add_argument("--database", default="sqlite", help="sqlite (default) or a PostgreSQL server URL")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated UIDs (default: 1)")
    arguments = parser.parse_args()

    data_folder = Path(tempfile.gettempdir()) / f"telerad-bench-ct{arguments.instances}-seed{arguments.seed}"
    study = common.build_ct_study(data_folder, instances=arguments.instances, seed=arguments.seed)
    postgres = None if arguments.database == "sqlite" else common.PostgresServer(arguments.database)
    destination = CountingDestination()
    folder = common.new_work_folder("telerad-bench-retrieve-")
    timings: dict[str, list[float]] = {"C-MOVE": [], "C-GET": []}
    try:
        database = postgres.fresh_database() if postgres else contextlib.nullcontext(None)
        with database as database_url, running_listener(folder / "server", database_url, destination, study) as listener:
            for run in range(arguments.runs):
                timings["C-MOVE"].append(measure_move(listener, destination, study))
                timings["C-GET"].append(measure_get(listener, study))
                print(f"run {run + 1}: C-MOVE {timings['C-MOVE'][-1]:.2f} s, C-GET {timings['C-GET'][-1]:.2f} s", file=sys.stderr)
    finally:
        destination.server.shutdown()

    print(f"{study.count} instances, {study.total_bytes / MEGABYTE:.1f} MB, database {arguments.database.split('://')[0]}")
    print("| retrieve | instances/s | MB/s | seconds (median) |")
    print("|---|---:|---:|---:|")
    for name, seconds in timings.items():
        median = statistics.median(seconds)
        print(f"| {name} | {study.count / median:.1f} | {study.total_bytes / MEGABYTE / median:.1f} | {median:.2f} |")
    print(f"source: {common.telerad_source()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
