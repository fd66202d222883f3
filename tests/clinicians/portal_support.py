"""Fixtures of the portal and access tests: real sample images stored through ingest, exams made by the exam sync, and clinicians.

The personas: ``welby`` referred the CT exam of patient 1CT1, ``kildare``
referred the MR exam of patient 4MR1, and ``casey`` referred nothing. The CT
patient also has an older CT study, ``ct_prior``, without a referring clinician.
"""

from __future__ import annotations

import dataclasses
import io

import pydicom
import pytest
from django.test import Client
from pydicom.uid import generate_uid

from telerad.archive.ingest import Source, default_storage, store_file
from telerad.reading import exams
from telerad.reading.models import Exam
from tests.reading.reports_fixtures import PASSWORD, claim, htmx_client_for

FINDINGS = "Small left pleural effusion."
IMPRESSION = "No pneumothorax."
DRAFT_TEXT = "Draft wording that only the radiologist may read."
PRELIMINARY_TEXT = "Preliminary wording of the resident."


@dataclasses.dataclass(frozen=True)
class StoredStudy:
    """One stored sample study: its UIDs and the exam the sync made of it."""

    exam: Exam
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    patient_id: str
    accession_number: str


def store_copy(path, **changes) -> pydicom.Dataset:
    """Store a copy of a sample file with new UIDs and the attribute `changes` in the default storage, as an import does."""
    dataset = pydicom.dcmread(path)
    dataset.StudyInstanceUID = generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    for keyword, value in changes.items():
        setattr(dataset, keyword, value)
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    result = store_file(buffer.getvalue(), source=Source(kind="import", user="tests"))
    assert result.outcome.succeeded, result.reason
    return dataset


def stored_study(dataset: pydicom.Dataset) -> StoredStudy:
    exam = Exam.objects.get(exam_studies__study__study_instance_uid=dataset.StudyInstanceUID)
    return StoredStudy(
        exam=exam,
        study_instance_uid=str(dataset.StudyInstanceUID),
        series_instance_uid=str(dataset.SeriesInstanceUID),
        sop_instance_uid=str(dataset.SOPInstanceUID),
        patient_id=str(dataset.PatientID),
        accession_number=str(dataset.AccessionNumber),
    )


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def welby(make_user):
    return make_user("welby", "clinician")


@pytest.fixture
def kildare(make_user):
    return make_user("kildare", "clinician")


@pytest.fixture
def casey(make_user):
    return make_user("casey", "clinician")


@pytest.fixture
def archive(db, sample_file, welby, kildare) -> dict[str, StoredStudy]:
    """Store the CT and MR samples and an older CT of the same patient, sync exams, and set the referring clinicians."""
    ct = store_copy(sample_file("CT_small.dcm"), AccessionNumber="PORTAL-CT", StudyDate="20260301", RequestingService="Emergency")
    prior = store_copy(sample_file("CT_small.dcm"), AccessionNumber="PORTAL-CT-OLD", StudyDate="20240301")
    mr = store_copy(sample_file("MR_small.dcm"), AccessionNumber="PORTAL-MR", StudyDate="20260302", CurrentPatientLocation="Ward 7")
    exams.sync_exams(storage=default_storage())
    studies = {"ct": stored_study(ct), "ct_prior": stored_study(prior), "mr": stored_study(mr)}
    Exam.objects.filter(pk=studies["ct"].exam.pk).update(referring_clinician=welby)
    Exam.objects.filter(pk=studies["mr"].exam.pk).update(referring_clinician=kildare)
    return {name: dataclasses.replace(study, exam=Exam.objects.get(pk=study.exam.pk)) for name, study in studies.items()}


def sign_final(exam: Exam, signer, *, critical: bool = False) -> None:
    """Claim `exam` for `signer` and sign its final report (preliminary for a resident) through the editor."""
    claim(exam, signer)
    data = {"revision": "0", "section-findings": FINDINGS, "section-impression": IMPRESSION, "password": PASSWORD}
    if critical:
        data["critical"] = "on"
    response = htmx_client_for(signer).post(f"/reports/exams/{exam.pk}/sign/", data)
    assert response.status_code == 200, response.content.decode()
    exam.refresh_from_db()


def save_draft(exam: Exam, reader, text: str = DRAFT_TEXT) -> None:
    """Claim `exam` for `reader` and save a draft report through the editor."""
    claim(exam, reader)
    response = htmx_client_for(reader).post(f"/reports/exams/{exam.pk}/", {"revision": "0", "section-findings": text})
    assert response.status_code == 200, response.content.decode()
    exam.refresh_from_db()


def sign_preliminary(exam: Exam, resident) -> None:
    claim(exam, resident)
    data = {"revision": "0", "section-findings": PRELIMINARY_TEXT, "section-impression": PRELIMINARY_TEXT, "password": PASSWORD}
    response = htmx_client_for(resident).post(f"/reports/exams/{exam.pk}/sign/", data)
    assert response.status_code == 200, response.content.decode()
    exam.refresh_from_db()
