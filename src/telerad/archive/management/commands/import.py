"""``telerad import PATH...``: store DICOM files from disk in the archive and build their metadata for the viewer.

Exit status: 0 when no file was rejected, 1 when some were, 2 for a usage or
configuration error (nothing is imported then).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import getpass
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterator, TextIO

from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from django.db import connection
from tqdm import tqdm

from telerad.archive import importer, ingest
from telerad.archive.models import Instance, Patient, Series, Study
from telerad.core import runtime

EXIT_REJECTED = 1
EXIT_USAGE = 2
# 128 + SIGINT, the status shells report for a program stopped with Ctrl-C.
EXIT_INTERRUPTED = 130
REPORT_COLUMNS = ("path", "outcome", "reason", "sop_instance_uid")


class Command(BaseCommand):
    help = (
        "Import DICOM files into the archive from files, folders (read recursively), zip archives and "
        "DICOMDIR media. A folder whose root contains a DICOMDIR is read as a medium: only the files "
        "its DICOMDIR references are imported. Hidden files are skipped. Exit status: 0 when no file "
        "was rejected, 1 when some were, 2 for a usage error."
    )
    # The configuration and database are checked in handle(), so that their
    # errors exit with the usage status instead of the rejection status.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="a DICOM file, folder, zip archive or DICOMDIR")
        parser.add_argument("--user", help="user name recorded in the audit trail (default: the operating-system user)")
        parser.add_argument("--progress", action="store_true", help="show the progress bar even when standard error is not a terminal")
        parser.add_argument("--quiet", action="store_true", help="never show the progress bar")
        parser.add_argument(
            "--max-errors", type=int, default=50, metavar="N",
            help="list at most N rejected files at the end (default: 50); --report lists them all",
        )
        parser.add_argument(
            "--report", type=Path, metavar="FILE",
            help="write a CSV file with one row per file: path, outcome, reason, sop_instance_uid",
        )
        parser.add_argument(
            "--no-metadata", action="store_true",
            help=(
                "skip building the DICOM JSON metadata of the imported studies (about 3 ms of CPU per instance); "
                "the viewer's first request for each series then builds it, and waits a few seconds for a long series"
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        max_errors = options["max_errors"]
        if max_errors < 0:
            raise CommandError(f"--max-errors must be 0 or more, not {max_errors}", returncode=EXIT_USAGE)
        try:
            importer.check_paths(options["paths"])
            runtime.require_migrated_database()
            plan = importer.plan_import(options["paths"])
        except (importer.ImportPathError, runtime.ConfigurationInvalid) as exc:
            raise CommandError(str(exc), returncode=EXIT_USAGE) from None

        user = options["user"] or _operating_system_user()
        # call_command() passes keyword options without argparse's conversion.
        report_path = Path(options["report"]) if options["report"] else None
        show_progress = not options["quiet"] and (options["progress"] or self.stderr.isatty())
        try:
            report = self._run(plan, user=user, report_path=report_path, show_progress=show_progress)
        except KeyboardInterrupt:
            raise CommandError("import interrupted; the files stored before the interruption stay stored", returncode=EXIT_INTERRUPTED) from None

        self._print_summary(report, plan, max_errors=max_errors, report_path=report_path)
        if report.studies:
            _refresh_planner_statistics()
        if report.studies and not options["no_metadata"]:
            self._build_metadata(report, show_progress=show_progress)
        if report.rejected:
            raise SystemExit(EXIT_REJECTED)

    def _run(self, plan: importer.ImportPlan, *, user: str, report_path: Path | None, show_progress: bool) -> importer.ImportReport:
        with _open_report(report_path) as report_file, tqdm(
            total=plan.total_bytes,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc="Importing",
            file=_ProgressStream(self.stderr),
            disable=not show_progress,
        ) as bar, _log_lines_above(bar):
            writer = csv.writer(report_file) if report_file else None
            if writer:
                writer.writerow(REPORT_COLUMNS)
            files_done = 0

            def on_result(result: importer.FileResult) -> None:
                if writer:
                    writer.writerow((result.path, result.outcome, result.reason, result.sop_instance_uid))

            def on_progress(files: int, size: int) -> None:
                nonlocal files_done
                files_done += files
                bar.set_postfix_str(f"{files_done} files", refresh=False)
                bar.update(size)

            return importer.run_import(plan, user=user, on_result=on_result, on_progress=on_progress)

    def _build_metadata(self, report: importer.ImportReport, *, show_progress: bool) -> None:
        """Build the metadata documents of the studies that received instances, as the servers do for studies they receive."""
        from telerad.dicomweb import prebuild

        started = time.monotonic()
        built = 0
        with tqdm(total=sum(report.studies.values()), unit="instances", desc="Building metadata", file=_ProgressStream(self.stderr), disable=not show_progress) as bar, _log_lines_above(bar):
            for (_patient_id, study_instance_uid), stored in report.studies.items():
                try:
                    built += prebuild.build_study(study_instance_uid)
                except KeyboardInterrupt:
                    raise CommandError(
                        "metadata building interrupted; the import is complete, and the viewer builds the missing metadata on its first request",
                        returncode=EXIT_INTERRUPTED,
                    ) from None
                bar.update(stored)
        self.stdout.write(f"Built the metadata of {built} instances in {time.monotonic() - started:.1f} s.")

    def _print_summary(self, report: importer.ImportReport, plan: importer.ImportPlan, *, max_errors: int, report_path: Path | None) -> None:
        for medium in plan.media:
            self.stdout.write(f"Read the DICOMDIR {medium.dicomdir}: it references {medium.referenced_files} files.")
        self.stdout.write(f"Read {report.files} files ({report.bytes_read / 1e6:.1f} MB) in {report.duration:.1f} s:")
        rows = [
            ("stored", report.count(ingest.Outcome.STORED)),
            ("replaced", report.count(ingest.Outcome.REPLACED)),
            ("already present", report.count(ingest.Outcome.ALREADY_PRESENT)),
            ("rejected", report.rejected_count),
        ]
        if report.count(importer.SKIPPED):
            rows.append(("skipped", report.count(importer.SKIPPED)))
        for label, count in rows:
            self.stdout.write(f"  {label + ':':<17}{count:>7}")
        if report_path is not None:
            self.stdout.write(f"Wrote the report of every file to {report_path}.")
        if not report.rejected:
            return

        self.stdout.write("Rejected files:")
        for result in report.rejected[:max_errors]:
            self.stdout.write(f"  {result.path}: {result.reason}")
        not_listed = report.rejected_count - max_errors
        if not_listed > 0:
            where = f"{report_path} lists them all" if report_path else "--report FILE lists them all"
            self.stdout.write(f"  ... and {not_listed} more; {where}")


def _refresh_planner_statistics() -> None:
    """Have PostgreSQL sample the archive tables again after an import.

    With the statistics from before a 100,000-instance import, PostgreSQL 15
    found the first instance of a study, as the worklist does for each new
    study, by walking the whole instance index: 65 ms instead of 0.1 ms.
    Autovacuum refreshes statistics only when it is on, and then only every
    autovacuum_naptime.
    """
    if connection.vendor != "postgresql":
        return
    tables = [model._meta.db_table for model in (Patient, Study, Series, Instance)]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE " + ", ".join(connection.ops.quote_name(table) for table in tables))


def _operating_system_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # A container user without a passwd entry and without USER set.
        return f"uid {os.getuid()}"


@contextlib.contextmanager
def _open_report(path: Path | None) -> Iterator[TextIO | None]:
    """Open the CSV report for writing, or yield None when no report was requested."""
    if path is None:
        yield None
        return
    try:
        handle = path.open("w", newline="", encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write the report {path}: {exc.strerror}", returncode=EXIT_USAGE) from None
    with handle:
        yield handle


@contextlib.contextmanager
def _log_lines_above(bar: tqdm) -> Iterator[None]:
    """Clear the progress bar before each log line, and draw it again after, so that the two do not run together."""
    if bar.disable:
        yield
        return
    handlers = [handler for handler in logging.getLogger().handlers if isinstance(handler, logging.StreamHandler)]

    def emit_above_bar(emit: Any, record: logging.LogRecord) -> None:
        bar.clear()
        emit(record)
        bar.refresh()

    for handler in handlers:
        handler.emit = functools.partial(emit_above_bar, handler.emit)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for handler in handlers:
            del handler.emit


class _ProgressStream:
    """Passes tqdm's partial lines through Django's output wrapper without a line ending or colour."""

    def __init__(self, wrapper: OutputWrapper):
        self.wrapper = wrapper

    def write(self, text: str) -> None:
        self.wrapper.write(text, style_func=lambda message: message, ending="")

    def flush(self) -> None:
        self.wrapper.flush()
