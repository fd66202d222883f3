"""Builders for the reading tests: exams made directly in the database, and sample files changed and stored through ingest."""

from __future__ import annotations

import datetime
import io
import itertools

import pydicom
from django.utils import timezone
from pydicom.uid import generate_uid

from telerad.archive.ingest import Source, store_file
from telerad.archive.models import Patient, Study
from telerad.reading.models import Exam, ExamStatus, ExamStudy, Priority

_numbers = itertools.count(1)


def make_exam(
    *, patient_id: str = "", accession: str = "", priority: int = Priority.ROUTINE, status: str = ExamStatus.UNREAD,
    waiting_minutes: float = 10, modalities: str = "CT", patient_name: str = "Doe^Jane", **fields,
) -> Exam:
    """Create a patient (or reuse one by ID), a study and its exam, received `waiting_minutes` ago."""
    number = next(_numbers)
    patient_id = patient_id or f"P{number}"
    patient, _ = Patient.objects.get_or_create(patient_id=patient_id, issuer_of_patient_id="", defaults={"patient_name": patient_name})
    received = timezone.now() - datetime.timedelta(minutes=waiting_minutes)
    study = Study.objects.create(
        patient=patient, study_instance_uid=f"1.2.826.0.1.3680043.10.543.{number}", accession_number=accession, modalities_in_study=modalities,
    )
    exam = Exam.objects.create(
        patient=patient, accession_number=accession, priority=priority, status=status, modalities=modalities,
        study_received_at=received, **fields,
    )
    ExamStudy.objects.create(exam=exam, study=study)
    return exam


def store_sample(path, *, storage, ae_title: str = "", **changes) -> pydicom.Dataset:
    """Store a copy of a sample file with new UIDs (unless given) and the attribute `changes`; return the stored dataset."""
    dataset = pydicom.dcmread(path)
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.SeriesInstanceUID = generate_uid()
    dataset.StudyInstanceUID = generate_uid()
    for keyword, value in changes.items():
        if value is None:
            if keyword in dataset:
                delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    result = store_file(buffer.getvalue(), source=Source(kind="dimse" if ae_title else "import", ae_title=ae_title), storage=storage)
    assert result.outcome.succeeded, result.reason
    return dataset
