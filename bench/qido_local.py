"""Time QIDO-RS study searches in process, on an index of generated rows, and print the query plans.

The index rows are written directly (no files are stored), so that an
archive of 5,000 studies and 100,000 instances is ready in well under a minute. Each
search runs through Django's test client, view and JSON encoding included,
without the web server and the network.

Run on SQLite in a fresh data folder:
``TELERAD_DATA_DIR=$(mktemp -d) .venv/bin/python bench/qido_local.py``
or on PostgreSQL by also setting TELERAD_DATABASE_URL to an empty database.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from typing import Sequence

STUDIES = 5000
INSTANCES_PER_STUDY = 20
SERIES_PER_STUDY = 2
PATIENTS = 2500
REPEATS = 50
# 50 family names, so that a name prefix such as "DOE*" matches about 100 studies.
FAMILY_NAMES = tuple(stem + ending for stem in ("DO", "SMI", "MÜL", "GAR", "NGU") for ending in ("E", "TH", "LER", "CIA", "YEN", "SKI", "BOIS", "SSI", "NAKA", "NOV"))
GIVEN_NAMES = ("JOHN", "JANE", "ÉLODIE", "LUCA", "ANNA", "PIOTR", "YUKI", "OLGA")
SEARCHES = {
    "PatientID exact": {"PatientID": "PID001234"},
    "PatientName wildcard": {"PatientName": "DOE*"},
    "StudyDate range": {"StudyDate": "20180101-20180131"},
    "no filter, limit=100": {"limit": "100"},
}


def setup_django() -> None:
    if not os.environ.get("TELERAD_DATA_DIR"):
        sys.exit("set TELERAD_DATA_DIR to an empty folder")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telerad.settings")
    os.environ.setdefault("TELERAD_HTTP_TLS", "false")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def build_index(seed: int) -> None:
    """Write patients, studies, series and instances, with values spread as in a department."""
    from telerad.archive.models import Instance, Patient, Series, Study
    from telerad.archive.names import fold

    if Study.objects.exists():
        return
    rng = random.Random(seed)
    patients = []
    for number in range(PATIENTS):
        name = f"{rng.choice(FAMILY_NAMES)}^{rng.choice(GIVEN_NAMES)}"
        if number % 10 == 0:
            name += "=山田^太郎=やまだ^たろう"
        patients.append(Patient(patient_id=f"PID{number:06d}", patient_name=name, patient_name_folded=fold(name), patient_birth_date="19700101", patient_sex="O"))
    patients = Patient.objects.bulk_create(patients)

    studies = []
    for number in range(STUDIES):
        day = 20120101 + rng.randrange(13) * 10000 + rng.randrange(12) * 100 + rng.randrange(28)
        studies.append(Study(
            patient=patients[number % PATIENTS], study_instance_uid=f"1.2.826.0.1.3680043.9.7.{number}",
            study_date=str(day), study_time=f"{rng.randrange(24):02d}{rng.randrange(60):02d}00",
            accession_number=f"ACC{number:07d}", study_id=str(number), study_description="CT CHEST",
            modalities_in_study="CT\\SR", number_of_study_related_series=SERIES_PER_STUDY,
            number_of_study_related_instances=INSTANCES_PER_STUDY,
        ))
    studies = Study.objects.bulk_create(studies, batch_size=1000)

    series = [
        Series(study=study, series_instance_uid=f"{study.study_instance_uid}.{index}", modality=("CT", "SR")[index],
               series_number=index + 1, number_of_series_related_instances=INSTANCES_PER_STUDY // SERIES_PER_STUDY)
        for study in studies for index in range(SERIES_PER_STUDY)
    ]
    series = Series.objects.bulk_create(series, batch_size=1000)

    instances = [
        Instance(series=one, sop_instance_uid=f"{one.series_instance_uid}.{index}", sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                 instance_number=index + 1, transfer_syntax_uid="1.2.840.10008.1.2.1", rows=512, columns=512,
                 storage_key=f"bench/{one.series_instance_uid}.{index}", file_size=1, dataset_sha256="0" * 64, dataset_offset=0)
        for one in series for index in range(INSTANCES_PER_STUDY // SERIES_PER_STUDY)
    ]
    Instance.objects.bulk_create(instances, batch_size=2000)


def time_searches(repeats: int) -> None:
    from django.contrib.auth.models import User
    from django.test import Client

    from telerad.accounts.tokens import create_token

    # An API token, as DICOMweb clients send, so that no session is saved per request.
    user, _ = User.objects.get_or_create(username="bench")
    _token, text = create_token(user)
    client = Client(headers={"Authorization": f"Bearer {text}"})
    print(f"{'search':24} {'results':>7} {'p50 ms':>8} {'p95 ms':>8}")
    for label, parameters in SEARCHES.items():
        durations = []
        count = 0
        for _ in range(repeats):
            started = time.perf_counter()
            response = client.get("/dicom-web/studies", parameters)
            durations.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.content
            count = len(response.json())
        durations.sort()
        p95 = durations[int(0.95 * (len(durations) - 1))]
        print(f"{label:24} {count:7d} {statistics.median(durations):8.1f} {p95:8.1f}")


def print_plans() -> None:
    """Print the database's plan of each search's query."""
    from django.db import connection

    from telerad.archive.query import compile_query
    from telerad.dicomweb.qido import DEFAULT_KEYS, Level

    for label, parameters in SEARCHES.items():
        identifier = {keyword: "" for keyword in DEFAULT_KEYS[Level.STUDY]}
        identifier.update({key: value for key, value in parameters.items() if key != "limit"})
        compiled = compile_query("STUDY", identifier, relational=True)
        queryset = compiled.queryset.values_list(*compiled.return_paths.values())[:101]
        print(f"--- {label} ({connection.vendor})")
        print(queryset.explain())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=REPEATS, help="runs of each search (default %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated values (default %(default)s)")
    parser.add_argument("--plans", action="store_true", help="also print each query's plan")
    arguments = parser.parse_args(argv)

    setup_django()
    started = time.perf_counter()
    build_index(arguments.seed)
    print(f"index ready in {time.perf_counter() - started:.1f} s: {STUDIES} studies, {STUDIES * INSTANCES_PER_STUDY} instances")
    if arguments.plans:
        print_plans()
    time_searches(arguments.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
