"""Fixtures of the report tests: exams with a patient and a study, users with roles, and signing helpers."""

from __future__ import annotations

import itertools

import pytest
from django.test import Client
from django.utils import timezone

from telerad.archive.models import Patient, Study
from telerad.reading.models import Exam, ExamStudy

PASSWORD = "a long enough password"
PATIENT_NAME = "Doe^Jane"
_numbers = itertools.count(1)


def create_exam(*, accession: str = "ACC1", modalities: str = "CT", description: str = "CT head without contrast", claimed_by=None) -> Exam:
    number = next(_numbers)
    patient = Patient.objects.create(patient_id=f"PID{number}", patient_name=PATIENT_NAME)
    study = Study.objects.create(patient=patient, study_instance_uid=f"1.2.826.0.1.3680043.10.1.{number}", accession_number=accession)
    exam = Exam.objects.create(
        patient=patient, accession_number=accession, modalities=modalities, description=description, study_received_at=timezone.now(),
        claimed_by=claimed_by, claimed_at=timezone.now() if claimed_by else None,
    )
    ExamStudy.objects.create(exam=exam, study=study)
    return exam


def claim(exam: Exam, user) -> None:
    """Give `user` the claim on `exam`, as the worklist does."""
    Exam.objects.filter(pk=exam.pk).update(claimed_by=user, claimed_at=timezone.now(), claim_active_at=timezone.now())
    exam.refresh_from_db()


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def htmx_client_for(user) -> Client:
    client = Client(headers={"HX-Request": "true"})
    client.force_login(user)
    return client


@pytest.fixture
def radiologist(make_user):
    return make_user("attending", "radiologist")


@pytest.fixture
def resident(make_user):
    return make_user("resident", "resident")


@pytest.fixture
def exam(db, radiologist) -> Exam:
    return create_exam(claimed_by=radiologist)
