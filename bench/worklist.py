"""Benchmark the worklist on 100,000 exams: the query of one page and the whole page as a reader gets it.

The script builds a database in a temporary folder (SQLite by default, or a
fresh PostgreSQL database that it drops afterwards) with bulk_create. It holds
20,000 patients and 100,000 exams of one study each. A share of
``--open-fraction`` of the exams await a report and the rest are final. A
tenth of the open exams are claimed. A share of ``--question-fraction`` of
all exams have one or two question threads from clinicians, of which 60 %
are open, so that the page counts them. Then it times, ``--runs`` times each:

- the query: the count and the first page of 50 rows of the default order
  (priority, then waiting time), through ``reading.worklist``;
- the page: GET /worklist/ through Django's test client with a signed-in
  radiologist, middleware, template rendering and the audit event included,
  for the default view, page 100, a modality filter and the "Mine" view.

It prints p50 and p95 in milliseconds and the machine it ran on.

Usage: .venv/bin/python bench/worklist.py [--exams 100000] [--open-fraction 0.25] [--question-fraction 0.05] [--runs 30]
       [--database postgresql://postgres@127.0.0.1:5432/bench_worklist]
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
MODALITIES = ["CT", "MR", "CR", "US", "MG", "CT\\PT", "DX"]
BODY_PARTS = ["HEAD", "CHEST", "ABDOMEN", "KNEE", "BREAST", "SPINE", "PELVIS"]


def timed(function: Callable[[], object], runs: int) -> tuple[float, float]:
    """Run `function` once to warm up, then `runs` times; return p50 and p95 in milliseconds."""
    function()
    durations = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        durations.append((time.perf_counter() - started) * 1000)
    return statistics.median(durations), common.percentile(durations, 0.95)


def build(exam_count: int, open_fraction: float, question_fraction: float, seed: int) -> None:
    from django.contrib.auth.models import User
    from django.utils import timezone

    from telerad.accounts.roles import Role, set_roles
    from telerad.archive.models import Patient, Study
    from telerad.reading.models import Exam, ExamStatus, ExamStudy, Priority, Subspecialty

    randomiser = random.Random(seed)
    readers = []
    for number in range(20):
        user = User.objects.create_user(f"reader{number}", password="bench password 1234")
        set_roles(user, [Role.RADIOLOGIST])
        readers.append(user)
    clinicians = []
    for number in range(20):
        user = User.objects.create_user(f"clinician{number}", password="bench password 1234")
        set_roles(user, [Role.CLINICIAN])
        clinicians.append(user)
    subspecialties = list(Subspecialty.objects.all())
    now = timezone.now()
    open_statuses = [ExamStatus.UNREAD, ExamStatus.UNREAD, ExamStatus.UNREAD, ExamStatus.DRAFT, ExamStatus.PRELIMINARY]

    patients = Patient.objects.bulk_create(
        [Patient(patient_id=f"BENCH{number:07d}", patient_name=f"Patient^Number{number}", patient_name_folded=f"patient^number{number}")
         for number in range(exam_count // PATIENTS_PER_EXAM)],
        batch_size=BATCH_SIZE,
    )
    for start in range(0, exam_count, BATCH_SIZE):
        numbers = range(start, min(start + BATCH_SIZE, exam_count))
        received = {number: now - datetime.timedelta(minutes=randomiser.uniform(1, 60 * 24 * 30)) for number in numbers}
        modalities = {number: randomiser.choice(MODALITIES) for number in numbers}
        studies = Study.objects.bulk_create([
            Study(
                patient=patients[number % len(patients)], study_instance_uid=f"2.25.{number + 1}", accession_number=f"ACC{number:08d}",
                modalities_in_study=modalities[number], study_description="Benchmark study",
            )
            for number in numbers
        ])
        exams = []
        for number in numbers:
            is_open = randomiser.random() < open_fraction
            claimed = is_open and randomiser.random() < 0.1
            exams.append(Exam(
                patient=patients[number % len(patients)], accession_number=f"ACC{number:08d}",
                priority=randomiser.choices([Priority.STAT, Priority.URGENT, Priority.ROUTINE], weights=[5, 15, 80])[0],
                modalities=modalities[number], body_part=randomiser.choice(BODY_PARTS), description="Benchmark study",
                subspecialty=randomiser.choice(subspecialties), sending_site="Bench site",
                status=randomiser.choice(open_statuses) if is_open else ExamStatus.FINAL,
                claimed_by=randomiser.choice(readers) if claimed else None,
                claimed_at=now if claimed else None, claim_active_at=now if claimed else None,
                study_received_at=received[number],
            ))
        exams = Exam.objects.bulk_create(exams)
        ExamStudy.objects.bulk_create([ExamStudy(exam=exam, study=study) for exam, study in zip(exams, studies)])
        build_questions(exams, question_fraction, clinicians, readers, randomiser)


def build_questions(exams: list, question_fraction: float, clinicians: list, readers: list, randomiser: random.Random) -> None:
    """Give a share of `exams` one or two question threads of one message each, 60 % of them open."""
    if question_fraction <= 0:
        return
    from django.utils import timezone

    from telerad.clinicians.question_models import Assignment, Question, QuestionMessage, QuestionState

    now = timezone.now()
    questions = []
    for exam in exams:
        if randomiser.random() >= question_fraction:
            continue
        for _number in range(randomiser.choice([1, 1, 2])):
            opened = now - datetime.timedelta(minutes=randomiser.uniform(1, 60 * 24 * 7))
            state = QuestionState.OPEN if randomiser.random() < 0.6 else randomiser.choice([QuestionState.ANSWERED, QuestionState.CLOSED])
            questions.append(Question(
                exam=exam, subject="Benchmark question", opened_by=randomiser.choice(clinicians), opened_at=opened, state=state,
                assigned_to=randomiser.choice(readers), assignment=Assignment.ON_DUTY, open_since=opened, last_message_at=opened,
            ))
    questions = Question.objects.bulk_create(questions)
    QuestionMessage.objects.bulk_create([
        QuestionMessage(question=question, author=question.opened_by, body="Benchmark message", created_at=question.opened_at)
        for question in questions
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exams", type=int, default=100_000, help="exams to build (default 100000)")
    parser.add_argument("--open-fraction", type=float, default=0.25, help="share of exams awaiting a report, 0 to 1 (default 0.25)")
    parser.add_argument(
        "--question-fraction", type=float, default=0.05, help="share of exams with question threads, 0 to 1 (default 0.05)",
    )
    parser.add_argument("--runs", type=int, default=30, help="timed runs of each measurement (default 30)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated data (default 1)")
    parser.add_argument("--database", help="a PostgreSQL server URL; a fresh database named after it is made and dropped. Default: SQLite")
    arguments = parser.parse_args()
    if not 0 <= arguments.open_fraction <= 1:
        parser.error("--open-fraction must be between 0 and 1")
    if not 0 <= arguments.question_fraction <= 1:
        parser.error("--question-fraction must be between 0 and 1")

    with tempfile.TemporaryDirectory(prefix="telerad-bench-worklist-") as folder, common.optional_fresh_database(arguments.database) as database_url:
        common.set_up_django(folder, database_url)
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from django.core.paginator import Paginator
        from django.db import connection
        from django.test import Client

        from telerad.reading import worklist

        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        build(arguments.exams, arguments.open_fraction, arguments.question_fraction, arguments.seed)
        # Fresh statistics, as autovacuum (PostgreSQL) or PRAGMA optimize (SQLite) would gather over time.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        print(
            f"built {arguments.exams} exams ({arguments.open_fraction:.0%} open, {arguments.question_fraction:.0%} with questions)"
            f" in {time.perf_counter() - started:.1f}s on {connection.vendor}"
        )

        reader = User.objects.get(username="reader0")

        def query() -> None:
            exams = worklist.filtered_exams({}, reader)
            page = Paginator(exams, worklist.EXAMS_PER_PAGE).get_page(1)
            worklist.rows(page.object_list, reader)

        client = Client()
        client.force_login(reader)

        def page(parameters: dict[str, str]) -> Callable[[], None]:
            def get() -> None:
                response = client.get("/worklist/", parameters)
                if response.status_code != 200:
                    raise common.BenchmarkError(f"GET /worklist/ {parameters} returned {response.status_code}")
            return get

        measurements = [
            ("query: count + first page", query),
            ("page: default view", page({})),
            ("page: page 100", page({"page": "100"})),
            ("page: modality MR", page({"modality": "MR"})),
            ("page: mine", page({"mine": "1"})),
        ]
        print(f"{'measurement':32} {'p50 ms':>8} {'p95 ms':>8}")
        for label, function in measurements:
            p50, p95 = timed(function, arguments.runs)
            print(f"{label:32} {p50:8.1f} {p95:8.1f}")
        for key, value in common.describe_machine(Path(folder)).items():
            print(f"{key}: {value}")
        connection.close()


if __name__ == "__main__":
    main()
