"""Only studies with images become exams; exams that earlier versions made of other studies leave the worklist."""

from __future__ import annotations

import datetime
import importlib

import pytest
from django.apps import apps
from django.utils import timezone

from telerad.archive.models import Study
from telerad.reading import exams
from telerad.reading.models import Exam, ExamStatus, ExamStudy, ExamSyncState, Report
from telerad.reading.quality_models import QualityIssue
from tests.reading.delivery_support import sign
from tests.reading.exam_factory import store_sample

pytestmark = pytest.mark.django_db

ENHANCED_US_VOLUME_STORAGE = "1.2.840.10008.5.1.4.1.1.6.2"
RETIRED_ULTRASOUND_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6"
RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
PRIVATE_SOP_CLASS = "1.3.12.2.1107.5.9.1"


def exam_of_old_version(study_instance_uid: str, *, status: str = ExamStatus.UNREAD) -> Exam:
    """Create the exam that versions before the image rule made of any study."""
    study = Study.objects.get(study_instance_uid=study_instance_uid)
    exam = Exam.objects.create(
        patient=study.patient, accession_number=study.accession_number, modalities=study.modalities_in_study,
        status=status, study_received_at=study.created_at,
    )
    ExamStudy.objects.create(exam=exam, study=study)
    return exam


@pytest.mark.parametrize(
    "name",
    [
        "test-SR.dcm",  # Comprehensive SR
        "reportsi.dcm",  # Basic Text SR
        "rtplan.dcm",
        "rtdose.dcm",  # has pixel data, but is a dose grid
        "waveform_ecg.dcm",
        "liver_1frame.dcm",  # segmentation
        "chrJapMulti.dcm",  # secondary capture with Rows and Columns but no pixel data
    ],
)
def test_study_without_images_makes_no_exam(sample_file, storage, name):
    store_sample(sample_file(name), storage=storage, AccessionNumber="NOIMG-1")

    result = exams.sync_exams(storage=storage)

    assert not Exam.objects.exists()
    assert result.exams_created == 0
    assert result.studies_linked == 0


@pytest.mark.parametrize(
    ("name", "modality"),
    [
        ("CT_small.dcm", "CT"),
        ("MR_small.dcm", "MR"),
        ("examples_rgb_color.dcm", "US"),
        ("JPEG2000.dcm", "NM"),
        ("SC_rgb_rle.dcm", "OT"),
        ("chrArab.dcm", "OT"),  # a character-set sample that has pixel data
    ],
)
def test_study_with_images_makes_exam(sample_file, storage, name, modality):
    store_sample(sample_file(name), storage=storage)

    result = exams.sync_exams(storage=storage)

    assert result.exams_created == 1
    assert Exam.objects.get().modalities == modality


def test_study_with_images_and_report_makes_exam(sample_file, storage):
    ct = store_sample(sample_file("CT_small.dcm"), storage=storage)
    store_sample(sample_file("test-SR.dcm"), storage=storage, StudyInstanceUID=ct.StudyInstanceUID, PatientID=ct.PatientID)

    exams.sync_exams(storage=storage)

    assert Exam.objects.get().studies.get().study_instance_uid == ct.StudyInstanceUID


def test_study_without_images_becomes_exam_when_images_arrive(sample_file, storage):
    report = store_sample(sample_file("test-SR.dcm"), storage=storage, AccessionNumber="LATE-1")
    exams.sync_exams(storage=storage)
    assert not Exam.objects.exists()

    # Later runs look back from the previous run only, so the study's creation is before their window.
    Study.objects.update(created_at=timezone.now() - datetime.timedelta(hours=1))
    ExamSyncState.objects.update(checked_until=timezone.now() - datetime.timedelta(minutes=1))
    store_sample(
        sample_file("CT_small.dcm"), storage=storage,
        StudyInstanceUID=report.StudyInstanceUID, PatientID=report.PatientID, AccessionNumber="LATE-1",
    )
    result = exams.sync_exams(storage=storage)

    exam = Exam.objects.get()
    assert result.exams_created == 1
    assert exam.accession_number == "LATE-1"
    assert exam.studies.get().study_instance_uid == report.StudyInstanceUID


def test_study_without_images_joins_exam_of_accession(sample_file, storage):
    ct = store_sample(sample_file("CT_small.dcm"), storage=storage, PatientID="PAT-J", AccessionNumber="JOIN-1")
    store_sample(sample_file("test-SR.dcm"), storage=storage, PatientID="PAT-J", AccessionNumber="JOIN-1")

    result = exams.sync_exams(storage=storage)

    exam = Exam.objects.get()
    assert result.exams_created == 1
    assert result.studies_linked == 2
    assert exam.studies.count() == 2
    assert exam.studies.filter(study_instance_uid=ct.StudyInstanceUID).exists()


def test_study_without_images_of_other_patient_joins_nothing(sample_file, storage):
    store_sample(sample_file("CT_small.dcm"), storage=storage, PatientID="PAT-K", AccessionNumber="JOIN-2")
    store_sample(sample_file("test-SR.dcm"), storage=storage, PatientID="PAT-L", AccessionNumber="JOIN-2")

    exams.sync_exams(storage=storage)

    assert Exam.objects.get().studies.count() == 1
    assert Study.objects.filter(exam_link__isnull=True).count() == 1


def test_full_sync_removes_exam_without_images(sample_file, storage):
    unread = exam_of_old_version(store_sample(sample_file("test-SR.dcm"), storage=storage).StudyInstanceUID)
    claimed = exam_of_old_version(store_sample(sample_file("waveform_ecg.dcm"), storage=storage).StudyInstanceUID, status=ExamStatus.IN_PROGRESS)

    result = exams.sync_exams(storage=storage, full=True)

    assert result.exams_removed == 2
    assert not Exam.objects.filter(pk__in=[unread.pk, claimed.pk]).exists()
    assert not ExamStudy.objects.exists()
    assert Study.objects.count() == 2


def test_full_sync_keeps_exams_with_images(sample_file, storage):
    store_sample(sample_file("CT_small.dcm"), storage=storage)
    exams.sync_exams(storage=storage)

    result = exams.sync_exams(storage=storage, full=True)

    assert result.exams_removed == 0
    assert Exam.objects.count() == 1


def test_full_sync_keeps_exam_with_draft(sample_file, storage, make_user):
    exam = exam_of_old_version(store_sample(sample_file("rtplan.dcm"), storage=storage).StudyInstanceUID, status=ExamStatus.DRAFT)
    Report.objects.create(exam=exam, author=make_user("reader", "radiologist"), sections={"findings": "Plan only."}, section_order=["findings"])

    result = exams.sync_exams(storage=storage, full=True)

    assert result.exams_removed == 0
    assert Exam.objects.filter(pk=exam.pk).exists()


def test_full_sync_keeps_exam_with_signed_report(sample_file, storage, make_user):
    exam = exam_of_old_version(store_sample(sample_file("test-SR.dcm"), storage=storage).StudyInstanceUID)
    sign(exam, make_user("attending", "radiologist"))
    # Signing normally moves the status on; an unread status isolates the signed-report check.
    Exam.objects.filter(pk=exam.pk).update(status=ExamStatus.UNREAD)

    result = exams.sync_exams(storage=storage, full=True)

    assert result.exams_removed == 0
    assert Exam.objects.filter(pk=exam.pk).exists()


def test_full_sync_keeps_exam_with_quality_issue(sample_file, storage, make_user):
    dataset = store_sample(sample_file("chrJapMulti.dcm"), storage=storage)
    exam = exam_of_old_version(dataset.StudyInstanceUID)
    QualityIssue.objects.create(
        exam=exam, study_instance_uid=dataset.StudyInstanceUID, reason="missing-images", comment="No pixel data.",
        raised_by=make_user("reader", "radiologist"),
    )

    result = exams.sync_exams(storage=storage, full=True)

    assert result.exams_removed == 0
    assert Exam.objects.filter(pk=exam.pk).exists()


def test_incremental_sync_removes_nothing(sample_file, storage):
    exams.sync_exams(storage=storage)
    exam = exam_of_old_version(store_sample(sample_file("test-SR.dcm"), storage=storage).StudyInstanceUID)

    result = exams.sync_exams(storage=storage)

    assert result.exams_removed == 0
    assert Exam.objects.filter(pk=exam.pk).exists()


def test_migration_makes_next_sync_remove(sample_file, storage):
    exams.sync_exams(storage=storage)
    exam = exam_of_old_version(store_sample(sample_file("test-SR.dcm"), storage=storage).StudyInstanceUID)
    migration = importlib.import_module("telerad.reading.migrations.0011_recheck_exams_for_images")

    migration.request_full_sync(apps, None)
    result = exams.sync_exams(storage=storage)

    assert ExamSyncState.objects.get().checked_until is not None
    assert result.exams_removed == 1
    assert not Exam.objects.filter(pk=exam.pk).exists()


def test_sync_command_reports_removed_exams(sample_file, storage, capsys):
    from django.core.management import call_command

    call_command("exams", "sync", "--full")

    assert "0 exams without images removed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("sop_class_uid", "modality", "expected"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", "CT", True),  # CT Image Storage
        ("1.2.840.10008.5.1.4.1.1.1.1", "DX", True),  # Digital X-Ray Image Storage - For Presentation
        ("1.2.840.10008.5.1.4.1.1.7", "OT", True),  # Secondary Capture Image Storage
        (ENHANCED_US_VOLUME_STORAGE, "US", True),
        (RETIRED_ULTRASOUND_IMAGE_STORAGE, "US", True),
        (RT_DOSE_STORAGE, "RTDOSE", False),
        ("1.2.840.10008.5.1.4.1.1.88.33", "SR", False),  # Comprehensive SR
        ("1.2.840.10008.5.1.4.1.1.11.1", "PR", False),  # Grayscale Softcopy Presentation State
        ("1.2.840.10008.5.1.4.1.1.104.1", "DOC", False),  # Encapsulated PDF
        ("1.2.840.10008.5.1.4.1.1.9.1.1", "ECG", False),  # 12-lead ECG Waveform
        ("1.2.840.10008.5.1.4.1.1.481.3", "RTSTRUCT", False),  # RT Structure Set
        (PRIVATE_SOP_CLASS, "CT", True),
        (PRIVATE_SOP_CLASS, "sr", False),
    ],
)
def test_image_sop_classes(sop_class_uid, modality, expected):
    assert exams.is_image_sop_class(sop_class_uid, modality) is expected
