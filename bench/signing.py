"""Benchmark signing a report until its PDF and DICOM objects are in the archive.

The script imports copies of a real CT image (pydicom's ``CT_small.dcm``,
one study per exam, new UIDs and accession numbers), syncs the exams and
starts the report delivery worker as ``telerad serve`` does. Then, for each
exam, a signed-in radiologist claims it and posts the sign form with the
password through Django's test client (middleware, re-authentication with
Argon2, the signing transaction and the audit event included). It times:

- sign request: the POST of the sign form until its response;
- PDF and SR ready: from the same start until the archive indexes both the
  Encapsulated PDF and the Basic Text SR of the report in the exam's study
  (polled every 10 ms, at most 60 s).

It prints p50, p95 and the maximum in milliseconds, and the machine it ran on.

Usage: .venv/bin/python bench/signing.py [--reports 20]
       [--database postgresql://postgres@127.0.0.1:5432/bench_signing]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

PASSWORD = "bench signing password 1234"
POLL_SECONDS = 0.01
READY_TIMEOUT_SECONDS = 60.0
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
FINDINGS = "No acute intracranial haemorrhage. Ventricles and sulci are normal for age. No mass effect."
IMPRESSION = "No acute intracranial abnormality."


def write_studies(folder: Path, count: int) -> None:
    """Write `count` copies of CT_small.dcm, each its own patient, study and accession number."""
    import pydicom
    from pydicom.uid import generate_uid

    source = common.pydicom_test_file("CT_small.dcm")
    for number in range(count):
        dataset = pydicom.dcmread(source)
        dataset.PatientID = f"SIGN{number:04d}"
        dataset.AccessionNumber = f"SIGNACC{number:04d}"
        dataset.StudyInstanceUID = generate_uid(entropy_srcs=["telerad-bench-signing", "study", str(number)])
        dataset.SeriesInstanceUID = generate_uid(entropy_srcs=["telerad-bench-signing", "series", str(number)])
        dataset.SOPInstanceUID = generate_uid(entropy_srcs=["telerad-bench-signing", "instance", str(number)])
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.save_as(folder / f"{number:04d}.dcm", enforce_file_format=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=20, help="reports to sign, one exam each (default 20)")
    parser.add_argument("--database", help="a PostgreSQL server URL; a fresh database named after it is made and dropped. Default: SQLite")
    arguments = parser.parse_args()
    if arguments.reports < 1:
        parser.error("--reports must be at least 1")

    with tempfile.TemporaryDirectory(prefix="telerad-bench-signing-") as folder, common.optional_fresh_database(arguments.database) as database_url:
        common.set_up_django(folder, database_url, TELERAD_TWO_FACTOR_REQUIRED="false")
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from django.db import connection
        from django.test import Client

        from telerad.accounts.roles import Role, set_roles
        from telerad.archive.models import Instance
        from telerad.reading.delivery import outbox
        from telerad.reading.models import Exam, ExamStatus

        call_command("migrate", verbosity=0)
        images = Path(folder) / "images"
        images.mkdir()
        write_studies(images, arguments.reports)
        call_command("import", str(images), verbosity=0)
        call_command("exams", "sync", verbosity=0)
        exams = list(Exam.objects.order_by("accession_number").prefetch_related("studies"))
        if len(exams) != arguments.reports:
            raise common.BenchmarkError(f"expected {arguments.reports} exams after the sync, found {len(exams)}")

        reader = User.objects.create_user("bench-reader", password=PASSWORD)
        set_roles(reader, [Role.RADIOLOGIST])
        client = Client()
        client.force_login(reader)
        outbox.start()

        sign_times: list[float] = []
        ready_times: list[float] = []
        try:
            for exam in exams:
                study = exam.studies.get()
                response = client.post(f"/worklist/{exam.pk}/claim")
                if response.status_code not in (200, 302, 303):
                    raise common.BenchmarkError(f"claiming exam {exam.accession_number} returned {response.status_code}")
                data = {"revision": "0", "section-findings": FINDINGS, "section-impression": IMPRESSION, "password": PASSWORD}
                started = time.perf_counter()
                response = client.post(f"/reports/exams/{exam.pk}/sign/", data, headers={"HX-Request": "true"})
                signed_at = time.perf_counter()
                exam.refresh_from_db()
                if response.status_code not in (200, 204) or exam.status != ExamStatus.FINAL:
                    raise common.BenchmarkError(f"signing exam {exam.accession_number} returned {response.status_code}, exam status {exam.status}")
                deadline = started + READY_TIMEOUT_SECONDS
                while True:
                    classes = set(Instance.objects.filter(series__study=study).values_list("sop_class_uid", flat=True))
                    if {ENCAPSULATED_PDF, BASIC_TEXT_SR} <= classes:
                        break
                    if time.perf_counter() > deadline:
                        raise common.BenchmarkError(f"the PDF and SR of exam {exam.accession_number} were not stored within {READY_TIMEOUT_SECONDS:.0f}s")
                    time.sleep(POLL_SECONDS)
                ready = time.perf_counter()
                sign_times.append((signed_at - started) * 1000)
                ready_times.append((ready - started) * 1000)
        finally:
            outbox.stop()

        print(f"{arguments.reports} reports on {connection.vendor}")
        print(f"{'measurement':28} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        for label, values in (("sign request", sign_times), ("PDF and SR ready", ready_times)):
            print(f"{label:28} {statistics.median(values):8.1f} {common.percentile(values, 0.95):8.1f} {max(values):8.1f}")
        for key, value in common.describe_machine(Path(folder)).items():
            print(f"{key}: {value}")
        connection.close()


if __name__ == "__main__":
    main()
