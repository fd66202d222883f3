"""Benchmark the turnaround page and its CSV export on 100,000 exams with turnaround times.

The script builds a database in a temporary folder (SQLite by default, or a
fresh PostgreSQL database that it drops afterwards) with bulk_create. It contains
20,000 patients and 100,000 exams of one study each, whose images arrived
over the last ``--days`` days, in the order of their ids as exam sync makes
them. Each exam was claimed by one of 20
radiologists, a fifth have a preliminary report signed by one of 5
residents, and ``--signed-fraction`` have a final report signed by the
reader; the rest wait with their claim. Then it times, ``--runs`` times
each, through Django's test client with the middleware, the audit event and
the template:

- GET /turnaround/ for the default range (the last 30 days) and for the last
  7 days, as a lead radiologist (every reader's exams) and as one radiologist
  (their own);
- the CSV export of the default range as a lead radiologist, its whole
  streamed body read.

It prints p50 and p95 of the wall time and p50 of this process's CPU time in
milliseconds, the rows of one export and the machine it ran on. On a shared
machine the CPU time varies less than the wall time. It leaves out the work
of a PostgreSQL server, which runs in its own processes.

Usage: .venv/bin/python bench/turnaround.py [--exams 100000] [--days 30] [--runs 10]
       [--database postgresql://postgres@127.0.0.1:5432/bench_turnaround]
"""

from __future__ import annotations

import argparse
import datetime
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

PATIENTS_PER_EXAM = 5
BATCH_SIZE = 5000
READERS = 20
RESIDENTS = 5
MODALITIES = ["CT", "MR", "CR", "US", "MG", "CT\\PT", "DX"]
PRELIMINARY_FRACTION = 0.2


def _minutes(randomiser: random.Random, low: float, high: float) -> datetime.timedelta:
    return datetime.timedelta(minutes=randomiser.uniform(low, high))


def timed(function: Callable[[], object], runs: int) -> tuple[float, float, float]:
    """Run `function` once to warm up, then `runs` times. Return the p50 and p95 of the wall time and the p50 of the CPU time, in ms."""
    function()
    wall_times = []
    cpu_times = []
    for _ in range(runs):
        wall_started = time.perf_counter()
        cpu_started = time.process_time()
        function()
        cpu_times.append((time.process_time() - cpu_started) * 1000)
        wall_times.append((time.perf_counter() - wall_started) * 1000)
    return statistics.median(wall_times), common.percentile(wall_times, 0.95), statistics.median(cpu_times)


def build(exam_count: int, days: int, signed_fraction: float, seed: int) -> None:
    from django.contrib.auth.models import User
    from django.utils import timezone

    from telerad.accounts.roles import Role, set_roles
    from telerad.archive.models import Patient, Study
    from telerad.reading.models import Exam, ExamStatus, ExamStudy, Priority, SignedKind, SignedReport

    randomiser = random.Random(seed)
    readers = []
    for number in range(READERS):
        user = User.objects.create_user(f"reader{number}", password="bench password 1234")
        set_roles(user, [Role.RADIOLOGIST])
        readers.append(user)
    residents = []
    for number in range(RESIDENTS):
        user = User.objects.create_user(f"resident{number}", password="bench password 1234")
        set_roles(user, [Role.RESIDENT])
        residents.append(user)
    lead = User.objects.create_user("lead", password="bench password 1234")
    set_roles(lead, [Role.LEAD_RADIOLOGIST])
    now = timezone.now()

    patients = Patient.objects.bulk_create(
        [Patient(patient_id=f"TAT{number:07d}", patient_name=f"Patient^Number{number}", patient_name_folded=f"patient^number{number}")
         for number in range(exam_count // PATIENTS_PER_EXAM)],
        batch_size=BATCH_SIZE,
    )
    # Oldest first: an exam's id grows with the arrival of its images.
    arrivals = sorted((now - _minutes(randomiser, 60, 60 * 24 * days) for _ in range(exam_count)))
    for start in range(0, exam_count, BATCH_SIZE):
        numbers = range(start, min(start + BATCH_SIZE, exam_count))
        studies = Study.objects.bulk_create([
            Study(patient=patients[number % len(patients)], study_instance_uid=f"2.25.{number + 1}", accession_number=f"TAT{number:08d}")
            for number in numbers
        ])
        exams = []
        signatures = []
        for number in numbers:
            received = arrivals[number]
            claimed = received + _minutes(randomiser, 1, 240)
            reader = randomiser.choice(readers)
            resident = randomiser.choice(residents) if randomiser.random() < PRELIMINARY_FRACTION else None
            preliminary = claimed + _minutes(randomiser, 5, 120) if resident is not None else None
            signed = (preliminary or claimed) + _minutes(randomiser, 5, 600) if randomiser.random() < signed_fraction else None
            if signed is not None:
                status = ExamStatus.FINAL
            elif preliminary is not None:
                status = ExamStatus.PRELIMINARY
            else:
                status = ExamStatus.IN_PROGRESS
            exam = Exam(
                patient=patients[number % len(patients)], accession_number=f"TAT{number:08d}",
                priority=randomiser.choices([Priority.STAT, Priority.URGENT, Priority.ROUTINE], weights=[5, 15, 80])[0],
                modalities=randomiser.choice(MODALITIES), description="Benchmark study", status=status,
                claimed_by=None if signed else reader, claimed_at=None if signed else claimed,
                study_received_at=received, first_claimed_at=claimed, preliminary_at=preliminary, signed_at=signed,
            )
            exams.append(exam)
            if resident is not None:
                signatures.append((exam, SignedKind.PRELIMINARY, resident, preliminary))
            if signed is not None:
                signatures.append((exam, SignedKind.FINAL, reader, signed))
        Exam.objects.bulk_create(exams)
        ExamStudy.objects.bulk_create([ExamStudy(exam=exam, study=study) for exam, study in zip(exams, studies)])
        SignedReport.objects.bulk_create([
            SignedReport(
                exam=exam, kind=kind, sections={"impression": "Benchmark."}, section_order=["impression"], text="Impression:\nBenchmark.",
                signer=signer, signed_at=signed_at, content_hash="0" * 64,
            )
            for exam, kind, signer, signed_at in signatures
        ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exams", type=int, default=100_000, help="exams to build (default 100000)")
    parser.add_argument("--days", type=int, default=30, help="days over which the images arrived, up to now (default 30)")
    parser.add_argument("--signed-fraction", type=float, default=0.9, help="share of exams with a signed final report, 0 to 1 (default 0.9)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each measurement after one warm-up run (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated data (default 1)")
    parser.add_argument("--database", help="a PostgreSQL server URL; a fresh database named after it is made and dropped. Default: SQLite")
    arguments = parser.parse_args()
    if not 0 <= arguments.signed_fraction <= 1:
        parser.error("--signed-fraction must be between 0 and 1")
    if arguments.days < 1:
        parser.error("--days must be at least 1")

    with tempfile.TemporaryDirectory(prefix="telerad-bench-turnaround-") as folder, common.optional_fresh_database(arguments.database) as database_url:
        common.set_up_django(folder, database_url)
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from django.db import connection
        from django.test import Client
        from django.utils import timezone

        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        build(arguments.exams, arguments.days, arguments.signed_fraction, arguments.seed)
        # Fresh statistics, as autovacuum (PostgreSQL) or PRAGMA optimize (SQLite) would gather over time.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        print(f"built {arguments.exams} exams over {arguments.days} days in {time.perf_counter() - started:.1f}s on {connection.vendor}")

        lead = Client()
        lead.force_login(User.objects.get(username="lead"))
        reader = Client()
        reader.force_login(User.objects.get(username="reader0"))
        week = {"date_from": (timezone.localdate() - datetime.timedelta(days=6)).isoformat(), "date_to": timezone.localdate().isoformat()}
        exported_rows = []

        def page(client: Client, parameters: dict[str, str]) -> Callable[[], None]:
            def get() -> None:
                response = client.get("/turnaround/", parameters)
                if response.status_code != 200:
                    raise common.BenchmarkError(f"GET /turnaround/ {parameters} returned {response.status_code}")
            return get

        def export() -> None:
            response = lead.get("/turnaround/exams.csv")
            if response.status_code != 200:
                raise common.BenchmarkError(f"GET /turnaround/exams.csv returned {response.status_code}")
            body = b"".join(response.streaming_content)
            exported_rows.append(body.count(b"\n") - 1)

        measurements = [
            ("page: lead, 30 days", page(lead, {})),
            ("page: lead, 7 days", page(lead, week)),
            ("page: one reader, 30 days", page(reader, {})),
            ("CSV: lead, 30 days", export),
        ]
        print(f"{'measurement':32} {'p50 ms':>8} {'p95 ms':>8} {'CPU p50 ms':>11}")
        for label, function in measurements:
            p50, p95, cpu_p50 = timed(function, arguments.runs)
            print(f"{label:32} {p50:8.1f} {p95:8.1f} {cpu_p50:11.1f}")
        print(f"CSV rows of one export: {exported_rows[-1]}")
        for key, value in common.describe_machine(Path(folder)).items():
            print(f"{key}: {value}")
        connection.close()


if __name__ == "__main__":
    main()
