"""The data migration that computes existing exams' modalities again from their image series."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from telerad.reading import exams
from telerad.reading.models import Exam
from tests.reading.exam_factory import store_sample

BEFORE = [("reading", "0006_quality_issues")]

migration = importlib.import_module("telerad.reading.migrations.0009_recompute_exam_modalities")


@pytest.mark.django_db
def test_recompute_drops_report_modalities(sample_file, storage):
    ct = store_sample(sample_file("CT_small.dcm"), storage=storage, PatientID="PAT-M1", AccessionNumber="M100")
    store_sample(sample_file("reportsi.dcm"), storage=storage, PatientID="PAT-M1", AccessionNumber="M100", StudyInstanceUID=ct.StudyInstanceUID)
    store_sample(sample_file("MR_small.dcm"), storage=storage, PatientID="PAT-M2", AccessionNumber="M200")
    exams.sync_exams(storage=storage)
    Exam.objects.filter(accession_number="M100").update(modalities="CT\\DOC\\SR")

    migration.recompute_modalities(apps, None)

    assert Exam.objects.get(accession_number="M100").modalities == "CT"
    assert Exam.objects.get(accession_number="M200").modalities == "MR"


@pytest.mark.django_db
def test_recompute_keeps_exam_without_series():
    from tests.reading.exam_factory import make_exam

    exam = make_exam(accession="M300", modalities="CT\\SR")

    migration.recompute_modalities(apps, None)

    exam.refresh_from_db()
    assert exam.modalities == "CT\\SR"


@pytest.mark.django_db(transaction=True)
def test_migration_runs_forward_from_quality_issues(sample_file, storage):
    ct = store_sample(sample_file("CT_small.dcm"), storage=storage, PatientID="PAT-M4", AccessionNumber="M400")
    store_sample(sample_file("reportsi.dcm"), storage=storage, PatientID="PAT-M4", AccessionNumber="M400", StudyInstanceUID=ct.StudyInstanceUID)
    exams.sync_exams(storage=storage)
    exam_id = Exam.objects.get().pk

    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old_apps = executor.loader.project_state(BEFORE).apps
    old_apps.get_model("reading", "Exam").objects.filter(pk=exam_id).update(modalities="CT\\DOC\\SR")
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert Exam.objects.get(pk=exam_id).modalities == "CT"
