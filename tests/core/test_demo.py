"""The demo's patient history: the real head CT as a current study and two priors, under new UIDs and dates."""

from __future__ import annotations

import pydicom
import pytest

from telerad.archive.ingest import Outcome, Source, store_file
from telerad.archive.models import Patient
from telerad.core.demo import PATIENT_HISTORY, PATIENT_HISTORY_SOURCE, write_patient_history


def test_write_patient_history_keeps_patient_and_pixels(tmp_path, sample_file):
    source = pydicom.dcmread(sample_file(PATIENT_HISTORY_SOURCE))

    studies = [pydicom.dcmread(path) for path in write_patient_history(tmp_path)]

    assert [study.StudyDate for study in studies] == [date for date, _, _ in PATIENT_HISTORY]
    assert {study.PatientID for study in studies} == {source.PatientID}
    assert len({study.StudyInstanceUID for study in studies} | {source.StudyInstanceUID}) == 4
    assert all(study.PixelData == source.PixelData for study in studies)


def test_write_patient_history_is_deterministic(tmp_path):
    first = [pydicom.dcmread(path).SOPInstanceUID for path in write_patient_history(tmp_path / "one")]
    second = [pydicom.dcmread(path).SOPInstanceUID for path in write_patient_history(tmp_path / "two")]

    assert first == second


@pytest.mark.django_db
def test_write_patient_history_imports_one_patient(tmp_path, storage):
    source = Source("import", user="demo")

    outcomes = [store_file(path.read_bytes(), source=source, storage=storage).outcome for path in write_patient_history(tmp_path)]

    assert outcomes == [Outcome.STORED] * len(PATIENT_HISTORY)
    assert Patient.objects.get().studies.count() == len(PATIENT_HISTORY)


@pytest.mark.django_db
def test_demo_current_exam_is_urgent_with_history(tmp_path, storage):
    from telerad.reading.exams import sync_exams
    from telerad.reading.models import Exam, Priority

    for path in write_patient_history(tmp_path):
        store_file(path.read_bytes(), source=Source("import", user="demo"), storage=storage)

    sync_exams(storage=storage)

    current = Exam.objects.get(accession_number=PATIENT_HISTORY[0][1])
    prior = Exam.objects.get(accession_number=PATIENT_HISTORY[1][1])
    assert current.priority == Priority.URGENT
    assert current.clinical_history.startswith("Hypertension.")
    assert "haemorrhage" in current.reason_for_study
    assert prior.priority == Priority.ROUTINE
    assert prior.clinical_history == ""


def test_demo_accounts_cover_the_reading_roles():
    from telerad.accounts.roles import Role
    from telerad.core.demo import DEMO_ACCOUNTS

    roles = {role for _user, _password, names in DEMO_ACCOUNTS for role in names}

    assert {Role.RADIOLOGIST, Role.RESIDENT, Role.LEAD_RADIOLOGIST, Role.TECHNOLOGIST, Role.AUDITOR, Role.ADMINISTRATOR} <= {Role(name) for name in roles}


@pytest.mark.django_db
def test_demo_history_is_referred_by_demo_clinician(tmp_path, storage, make_user):
    from telerad.clinicians import grants
    from telerad.core.demo import DEMO_CLINICIAN, DEMO_REFERRING_PHYSICIAN
    from telerad.reading.exams import sync_exams
    from telerad.reading.models import Exam

    clinician = make_user(DEMO_CLINICIAN, "clinician")
    grants.set_dicom_names(clinician, [DEMO_REFERRING_PHYSICIAN], actor="demo")
    for path in write_patient_history(tmp_path):
        store_file(path.read_bytes(), source=Source("import", user="demo"), storage=storage)

    sync_exams(storage=storage)

    accessions = [accession for _date, accession, _description in PATIENT_HISTORY]
    assert set(Exam.objects.filter(referring_clinician=clinician).values_list("accession_number", flat=True)) == set(accessions)


@pytest.fixture
def demo_radiologist(db):
    from django.contrib.auth import get_user_model

    from telerad.accounts.roles import Role, set_roles
    from telerad.core.demo import DEMO_ACCOUNTS

    username, password, _roles = next(account for account in DEMO_ACCOUNTS if account[0] == "radiologist")
    user = get_user_model().objects.create_user(username, password=password)
    set_roles(user, [Role.RADIOLOGIST])
    return user


@pytest.fixture
def imported_history(tmp_path, db):
    for path in write_patient_history(tmp_path):
        store_file(path.read_bytes(), source=Source("import", user="demo"))


@pytest.mark.django_db
def test_demo_signs_prior_reports(imported_history, demo_radiologist):
    from telerad.archive.models import Series
    from telerad.audit.models import AuditEvent
    from telerad.core.demo import PRIOR_REPORTS, sign_prior_reports
    from telerad.reading.delivery.models import DeliveryJob, JobState
    from telerad.reading.models import Exam, ExamStatus, SignedKind
    from telerad.reading.reports_signing import hash_matches

    signed = sign_prior_reports("demo-test")

    assert signed == len(PRIOR_REPORTS)
    for accession, sections in PRIOR_REPORTS.items():
        exam = Exam.objects.get(accession_number=accession)
        report = exam.signed_reports.get()
        assert exam.status == ExamStatus.FINAL
        assert exam.claimed_by is None
        assert exam.first_claimed_at is not None
        assert exam.signed_at == report.signed_at
        assert exam.modalities == "CT"
        assert report.kind == SignedKind.FINAL
        assert report.signer == demo_radiologist
        assert report.sections["impression"] == sections["impression"]
        assert report.sections["technique"].startswith("Axial CT of the head")
        assert hash_matches(report)
        study_modalities = set(Series.objects.filter(study__exam_link__exam=exam).values_list("modality", flat=True))
        assert study_modalities == {"CT", "DOC", "SR"}
    assert set(DeliveryJob.objects.values_list("state", flat=True)) == {JobState.SENT}
    assert AuditEvent.objects.filter(action="report-final-signed", user="radiologist").count() == len(PRIOR_REPORTS)
    assert AuditEvent.objects.filter(action="exam-claimed", user="radiologist").count() == len(PRIOR_REPORTS)
    current = Exam.objects.get(accession_number=PATIENT_HISTORY[0][1])
    assert current.status == ExamStatus.UNREAD
    assert not current.signed_reports.exists()


@pytest.mark.django_db
def test_demo_signs_priors_once(imported_history, demo_radiologist):
    from telerad.core.demo import sign_prior_reports
    from telerad.reading.models import SignedReport

    sign_prior_reports("demo-test")

    assert sign_prior_reports("demo-test") == 0
    assert SignedReport.objects.count() == 2


@pytest.mark.django_db
def test_demo_reading_screen_shows_prior_reports(imported_history, demo_radiologist):
    from django.test import Client
    from django.urls import reverse

    from telerad.core.demo import PRIOR_REPORTS, sign_prior_reports
    from telerad.reading.models import Exam

    sign_prior_reports("demo-test")
    client = Client()
    client.force_login(demo_radiologist)
    current = Exam.objects.get(accession_number=PATIENT_HISTORY[0][1])

    page = client.get(reverse("reading:exam", args=[current.pk])).content.decode()

    for _accession, sections in PRIOR_REPORTS.items():
        assert sections["impression"] in page
    assert page.count("signed by radiologist") == len(PRIOR_REPORTS)
