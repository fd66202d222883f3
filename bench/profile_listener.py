"""Time the steps of telerad's C-STORE receive path over one association.

Runs telerad's DICOM listener inside this process, with timers wrapped around
the functions of each step, sends the study of ``bench/ingest.py`` with one
``storescu`` association, and prints the milliseconds each step costs per
instance. With ``--cprofile FILE`` it also profiles every thread of the
listener with cProfile (which slows pure-Python code several times over, so
take the step times from a run without it) and prints the top functions.
With ``--bare`` it measures the floor instead: a pynetdicom Storage SCP that
only makes each received file durable (fdatasync, rename into a folder, fsync
of the folder), with the same chunked receive that telerad uses.

The timers replace module attributes of telerad and pynetdicom at run time;
nothing on disk changes.

Usage: .venv/bin/python bench/profile_listener.py [--instances 500] [--database URL] [--cprofile FILE | --bare]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import socket
import sys
import tempfile
import threading
import time
import types
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


class StepTimers:
    """Total seconds and calls per step, added to from any thread."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def wrap(self, step: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                with self._lock:
                    self.seconds[step] += elapsed
                    self.calls[step] += 1

        return timed

    def patch(self, owner: Any, name: str, step: str) -> None:
        """Replace ``owner.name`` by a timed wrapper that counts as `step`."""
        setattr(owner, name, self.wrap(step, getattr(owner, name)))


# Steps in the order they happen, with what each covers. Indented steps are
# parts of the step above them.
STEPS: list[tuple[str, str]] = [
    ("pdu", "pynetdicom: read a PDU from the socket and decode it (DUL thread)"),
    ("dimse decode", "pynetdicom: assemble the DIMSE message from the PDUs, in memory or in a temporary file"),
    ("handler", "telerad's C-STORE handler, all of it"),
    ("  file meta", "  build the file meta group (file_meta_prefix)"),
    ("  header scan", "  walk the element headers (header.scan)"),
    ("  decode", "  decode and check the index attributes (build_record)"),
    ("  sha256", "  SHA-256 of the dataset"),
    ("  duplicate check", "  compare with the stored instance of this SOP Instance UID, only when its insert fails"),
    ("  file write", "  write the Part 10 file, fdatasync, rename, directory fsync (FileStorage.write)"),
    ("    fdatasync", "    fdatasync of the new file"),
    ("    directory fsync", "    fsync of the folder after the rename"),
    ("  transaction", "  index rows in one transaction, commit included (_index)"),
    ("    commit", "    the COMMIT alone"),
    ("response", "pynetdicom: encode and send the C-STORE response"),
]


def install_timers(timers: StepTimers) -> None:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from pynetdicom import dimse, dimse_messages, dul

    from telerad.archive import header, ingest, storage
    from telerad.dimse import server

    timers.patch(dul.DULServiceProvider, "_read_pdu_data", "pdu")
    timers.patch(dimse_messages.DIMSEMessage, "decode_msg", "dimse decode")
    timers.patch(dimse.DIMSEServiceProvider, "send_msg", "response")
    # event_handlers() looks the handler up when the server starts.
    timers.patch(server, "_on_c_store", "handler")
    timers.patch(ingest, "file_meta_prefix", "  file meta")
    timers.patch(header, "scan", "  header scan")
    timers.patch(ingest, "build_record", "  decode")
    timers.patch(ingest, "_compare_with_stored", "  duplicate check")
    timers.patch(storage.FileStorage, "write", "  file write")
    timers.patch(storage, "_fsync_directory", "    directory fsync")
    timers.patch(ingest, "_index", "  transaction")
    timers.patch(BaseDatabaseWrapper, "_commit", "    commit")

    # ingest and storage call hashlib.sha256 and os.fdatasync through their
    # module globals, so each gets a stand-in module with one timed function.
    timed_hashlib = types.SimpleNamespace(sha256=timers.wrap("  sha256", ingest.hashlib.sha256))
    ingest.hashlib = timed_hashlib  # type: ignore[assignment]
    timed_os = types.ModuleType("os")
    timed_os.__dict__.update(os.__dict__)
    timed_os.fdatasync = timers.wrap("    fdatasync", os.fdatasync)  # type: ignore[attr-defined]
    storage.os = timed_os  # type: ignore[assignment]


class ThreadProfiles:
    """One cProfile profiler per thread started after :meth:`install`, merged at the end."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []

    def install(self) -> None:
        def start_profiler(*_: Any) -> None:
            sys.setprofile(None)
            profile = cProfile.Profile()
            self.profiles.append(profile)
            profile.enable()

        threading.setprofile(start_profiler)

    def report(self, path: Path, top: int) -> None:
        threading.setprofile(None)  # type: ignore[arg-type]
        merged = pstats.Stats(self.profiles[0])
        for profile in self.profiles[1:]:
            merged.add(profile)
        merged.dump_stats(path)
        merged.sort_stats("tottime").print_stats(top)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=500, help="number of CT slices (default: 500)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated UIDs (default: 1)")
    parser.add_argument("--data-dir", type=Path, help="folder of the generated study (default: the one bench/ingest.py uses)")
    parser.add_argument("--database", default="sqlite", help="sqlite (default) or a PostgreSQL server URL, as for bench/ingest.py")
    parser.add_argument("--cprofile", type=Path, help="also profile every listener thread and write the merged statistics to this file")
    parser.add_argument("--bare", action="store_true", help="measure a pynetdicom receiver that only stores files durably, without telerad")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    data_folder = arguments.data_dir or Path(tempfile.gettempdir()) / f"telerad-bench-ct{arguments.instances}-seed{arguments.seed}"
    study = common.build_ct_study(data_folder, instances=arguments.instances, seed=arguments.seed)
    work = common.new_work_folder("telerad-bench-profile-")
    try:
        if arguments.bare:
            return receive_bare(study, work)
        postgres = None if arguments.database == "sqlite" else common.PostgresServer(arguments.database)
        if postgres is None:
            return profile_once(arguments, study, work, None)
        with postgres.fresh_database() as database_url:
            return profile_once(arguments, study, work, database_url)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def receive_bare(study: common.StudyFiles, work: Path) -> int:
    """Receive the study with a pynetdicom Storage SCP that only makes each file durable, and print its rate."""
    from pydicom.uid import AllTransferSyntaxes
    from pynetdicom import AE, _config, evt
    from pynetdicom.sop_class import CTImageStorage

    # pynetdicom writes each dataset to a temporary file, which must be on
    # the file system of the target folder for the rename.
    tempfile.tempdir = str(work)
    _config.STORE_RECV_CHUNKED_DATASET = True
    folder = work / "received"
    folder.mkdir()

    def store(event: Any) -> int:
        received = Path(event.dataset_path)
        with received.open("rb") as handle:
            os.fdatasync(handle.fileno())
        os.rename(received, folder / f"{event.request.AffectedSOPInstanceUID}.dcm")
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        return 0x0000

    ae = AE(ae_title="BARE")
    ae.maximum_pdu_size = 4 * 1024 * 1024
    ae.add_supported_context(CTImageStorage, [str(uid) for uid in AllTransferSyntaxes])
    port = common.free_port()
    running = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, store)])
    running.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sent = common.send_with_storescu([study.paths], port=port, called_ae_title="BARE", log_folder=work / "storescu")
    finally:
        running.shutdown()

    received = sum(1 for _ in folder.iterdir())
    problems = list(sent.failures) + ([] if received == study.count else [f"{received} files received, {study.count} sent"])
    print(f"bare pynetdicom receiver: {study.count} instances over one association in {sent.seconds:.2f} s: "
          f"{study.count / sent.seconds:.1f} instances/s, {sent.seconds * 1000 / study.count:.2f} ms per instance")
    for problem in problems:
        print(f"FAILED {problem}", file=sys.stderr)
    return 1 if problems else 0


def profile_once(arguments: argparse.Namespace, study: common.StudyFiles, work: Path, database_url: str | None) -> int:
    listener = common.TeleradListener(data_dir=work / "data", database_url=database_url)
    listener.migrate()
    # Django reads its settings from the environment once, at setup.
    os.environ.update(listener.environment())
    os.environ["DJANGO_SETTINGS_MODULE"] = "telerad.settings"
    import django

    django.setup()
    from telerad.dimse import server

    timers = StepTimers()
    install_timers(timers)
    profiles = ThreadProfiles()
    if arguments.cprofile:
        profiles.install()

    listeners = server.start(block=False)
    try:
        sent = common.send_with_storescu(
            [study.paths], port=listener.dicom_port, called_ae_title=common.TELERAD_AE_TITLE, log_folder=work / "storescu",
        )
    finally:
        server.stop(listeners)
    problems = list(sent.failures) + common.check_telerad_index(listener, study)

    print_steps(timers, study, sent.seconds, database_url)
    if arguments.cprofile:
        print()
        profiles.report(arguments.cprofile, top=35)
    for problem in problems:
        print(f"FAILED {problem}", file=sys.stderr)
    return 1 if problems else 0


def print_steps(timers: StepTimers, study: common.StudyFiles, seconds: float, database_url: str | None) -> None:
    count = study.count
    wall_ms = seconds * 1000 / count
    print(f"{count} instances over one association in {seconds:.2f} s: {count / seconds:.1f} instances/s, {wall_ms:.2f} ms per instance")
    print(f"database: {'SQLite' if database_url is None else 'PostgreSQL'}; telerad source: {common.telerad_source()}")
    print()
    print(f"{'step':<22}{'ms/instance':>12}{'calls/instance':>16}  what it covers")
    accounted = 0.0
    for step, description in STEPS:
        step_ms = timers.seconds[step] * 1000 / count
        if not step.startswith(" "):
            accounted += step_ms
        print(f"{step:<22}{step_ms:>12.2f}{timers.calls[step] / count:>16.1f}  {description.strip()}")
    print(f"{'other':<22}{wall_ms - accounted:>12.2f}{'':>16}  the rest of the wall time: hand-offs between pynetdicom's threads, storescu, TCP")


if __name__ == "__main__":
    sys.exit(main())
