"""Exams made from real sample files stored through ingest."""

from __future__ import annotations

import datetime

import pydicom
import pytest
from django.core.management import call_command
from django.utils import timezone

from telerad.archive.models import Study
from telerad.reading import exams
from telerad.reading.models import Exam, ExamStudy, ExamSyncState, Priority, Subspecialty, SubspecialtyRule
from telerad.reading.delivery.dicom_objects import store_report_objects
from tests.reading.delivery_support import sign
from tests.reading.exam_factory import store_sample

pytestmark = pytest.mark.django_db


def test_sync_makes_exam_from_ct_header(sample_file, storage):
    dataset = store_sample(sample_file("CT_small.dcm"), storage=storage, AccessionNumber="ACC-1", BodyPartExamined="CHEST")

    result = exams.sync_exams(storage=storage)

    exam = Exam.objects.get()
    study = Study.objects.get()
    assert result.exams_created == 1
    assert result.studies_linked == 1
    assert exam.accession_number == "ACC-1"
    assert exam.patient.patient_id == dataset.PatientID
    assert exam.modalities == "CT"
    assert exam.body_part == "CHEST"
    assert exam.sending_site == "JFK IMAGING CENTER"
    assert exam.description == "e+1"
    assert exam.priority == Priority.ROUTINE
    assert exam.study_received_at == study.created_at
    assert exam.subspecialty.code == "chest"
    assert list(exam.studies.all()) == [study]


def test_sync_reads_order_information(sample_file, storage):
    store_sample(
        sample_file("MR_small.dcm"), storage=storage,
        RequestedProcedureDescription="MRI brain with contrast",
        ReasonForTheRequestedProcedure="Sudden headache",
        AdditionalPatientHistory="Known aneurysm",
        RequestedProcedurePriority="STAT",
        ReferringPhysicianName="Welby^Marcus",
    )

    exams.sync_exams(storage=storage)

    exam = Exam.objects.get()
    assert exam.requested_procedure == "MRI brain with contrast"
    assert exam.reason_for_study == "Sudden headache"
    assert exam.clinical_history == "Known aneurysm"
    assert exam.priority == Priority.STAT
    assert exam.referring_physician_name == "Welby^Marcus"
    assert exam.sending_site == "TOSHIBA"


def test_sync_reads_request_attributes_sequence(sample_file, storage):
    request = pydicom.Dataset()
    request.RequestedProcedureDescription = "CT abdomen"
    request.ReasonForTheRequestedProcedure = "Pain in the right lower quadrant"
    store_sample(sample_file("CT_small.dcm"), storage=storage, RequestAttributesSequence=[request])

    exams.sync_exams(storage=storage)

    exam = Exam.objects.get()
    assert exam.requested_procedure == "CT abdomen"
    assert exam.reason_for_study == "Pain in the right lower quadrant"
    assert exam.subspecialty.code == "abdominal"


@pytest.mark.parametrize(
    ("keyword", "term", "expected"),
    [
        ("RequestedProcedurePriority", "STAT", Priority.STAT),
        ("RequestedProcedurePriority", "HIGH", Priority.URGENT),
        ("RequestedProcedurePriority", "MEDIUM", Priority.ROUTINE),
        ("RequestedProcedurePriority", "ROUTINE", Priority.ROUTINE),
        ("RequestedProcedurePriority", "LOW", Priority.ROUTINE),
        ("StudyPriorityID", "HIGH", Priority.URGENT),
        ("StudyPriorityID", "MED", Priority.ROUTINE),
    ],
)
def test_priority_mapping(sample_file, storage, keyword, term, expected):
    store_sample(sample_file("CT_small.dcm"), storage=storage, **{keyword: term})

    exams.sync_exams(storage=storage)

    assert Exam.objects.get().priority == expected


def test_priority_term_unknown():
    assert exams.priority_from_term("whenever") is None
    assert exams.priority_from_term(" stat ") == Priority.STAT


def test_same_accession_groups_studies(sample_file, storage):
    store_sample(sample_file("CT_small.dcm"), storage=storage, PatientID="PAT-7", AccessionNumber="A100", RequestedProcedurePriority="ROUTINE")
    store_sample(sample_file("MR_small.dcm"), storage=storage, PatientID="PAT-7", AccessionNumber="A100", RequestedProcedurePriority="HIGH")
    store_sample(sample_file("MR_small.dcm"), storage=storage, PatientID="PAT-7", AccessionNumber="A200")

    result = exams.sync_exams(storage=storage)

    grouped = Exam.objects.get(accession_number="A100")
    assert result.studies_linked == 3
    assert result.exams_created == 2
    assert grouped.studies.count() == 2
    assert grouped.modalities == "CT\\MR"
    assert grouped.priority == Priority.URGENT
    assert grouped.study_received_at == min(Study.objects.filter(accession_number="A100").values_list("created_at", flat=True))
    assert Exam.objects.get(accession_number="A200").studies.count() == 1


def test_empty_accession_makes_separate_exams(sample_file, storage):
    store_sample(sample_file("CT_small.dcm"), storage=storage, PatientID="PAT-8", AccessionNumber="")
    store_sample(sample_file("CT_small.dcm"), storage=storage, PatientID="PAT-8", AccessionNumber="")

    exams.sync_exams(storage=storage)

    assert Exam.objects.count() == 2


def test_same_accession_other_patient_separate(sample_file, storage):
    store_sample(sample_file("CT_small.dcm"), storage=storage, PatientID="PAT-1", AccessionNumber="SHARED")
    store_sample(sample_file("CT_small.dcm"), storage=storage, PatientID="PAT-2", AccessionNumber="SHARED")

    exams.sync_exams(storage=storage)

    assert Exam.objects.filter(accession_number="SHARED").count() == 2


def test_later_series_adds_modality(sample_file, storage):
    first = store_sample(sample_file("CT_small.dcm"), storage=storage, PatientID="PAT-3", AccessionNumber="A300")
    exams.sync_exams(storage=storage)

    store_sample(sample_file("MR_small.dcm"), storage=storage, PatientID="PAT-3", AccessionNumber="A300", StudyInstanceUID=first.StudyInstanceUID)
    result = exams.sync_exams(storage=storage)

    assert result.exams_updated == 1
    assert result.exams_created == 0
    assert Exam.objects.get().modalities == "CT\\MR"


def test_report_objects_add_no_modality(sample_file, storage, make_user):
    store_sample(sample_file("CT_small.dcm"), storage=storage, PatientID="PAT-9", AccessionNumber="A900")
    exams.sync_exams(storage=storage)
    exam = Exam.objects.get()
    final = sign(exam, make_user("attending", "radiologist"))
    addendum = sign(exam, final.signer, kind="addendum", sections={"addendum": "Addendum."})
    store_report_objects(final, storage=storage)
    store_report_objects(addendum, storage=storage)

    result = exams.sync_exams(storage=storage, full=True)

    assert Study.objects.get().modalities_in_study == "CT\\DOC\\SR"
    assert result.exams_updated == 0
    assert Exam.objects.get().modalities == "CT"


def test_viewer_sr_and_segmentation_add_no_modality(sample_file, storage):
    ct = store_sample(sample_file("CT_small.dcm"), storage=storage, PatientID="PAT-10", AccessionNumber="A1000")
    exams.sync_exams(storage=storage)
    same_study = {"PatientID": "PAT-10", "AccessionNumber": "A1000", "StudyInstanceUID": ct.StudyInstanceUID}
    store_sample(sample_file("reportsi.dcm"), storage=storage, **same_study)
    store_sample(sample_file("liver_1frame.dcm"), storage=storage, **same_study)

    result = exams.sync_exams(storage=storage)

    assert Study.objects.get().modalities_in_study == "CT\\SEG\\SR"
    assert result.exams_updated == 0
    assert Exam.objects.get().modalities == "CT"


def test_new_exam_leaves_out_non_image_series(sample_file, storage):
    ct = store_sample(sample_file("CT_small.dcm"), storage=storage, PatientID="PAT-11", AccessionNumber="A1100")
    store_sample(sample_file("reportsi.dcm"), storage=storage, PatientID="PAT-11", AccessionNumber="A1100", StudyInstanceUID=ct.StudyInstanceUID)

    exams.sync_exams(storage=storage)

    assert Exam.objects.get().modalities == "CT"


def test_images_after_reports_give_image_modalities(sample_file, storage):
    report = store_sample(sample_file("reportsi.dcm"), storage=storage, PatientID="PAT-12", AccessionNumber="A1200")
    exams.sync_exams(storage=storage)
    assert not Exam.objects.exists()

    store_sample(sample_file("CT_small.dcm"), storage=storage, PatientID="PAT-12", AccessionNumber="A1200", StudyInstanceUID=report.StudyInstanceUID)
    exams.sync_exams(storage=storage)

    assert Exam.objects.get().modalities == "CT"


def test_full_sync_removes_stale_report_modalities(sample_file, storage):
    store_sample(sample_file("CT_small.dcm"), storage=storage, PatientID="PAT-13", AccessionNumber="A1300")
    exams.sync_exams(storage=storage)
    # The modalities that a sync before the non-image rule could leave on an exam.
    Exam.objects.update(modalities="CT\\DOC\\KO\\PR\\SR")

    result = exams.sync_exams(storage=storage, full=True)

    assert result.exams_updated == 1
    assert Exam.objects.get().modalities == "CT"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["CT", "SR", "DOC"], "CT"),
        (["MR\\PR", "KO", "CT"], "CT\\MR"),
        (["SR", "DOC"], "DOC\\SR"),
        (["", "US"], "US"),
        ([], ""),
    ],
)
def test_image_modalities(values, expected):
    assert exams.image_modalities(values) == expected


def test_calling_ae_when_no_institution(sample_file, storage):
    store_sample(sample_file("CT_small.dcm"), storage=storage, ae_title="CT_NORTH", InstitutionName=None)

    exams.sync_exams(storage=storage)

    assert Exam.objects.get().sending_site == "CT_NORTH"


def test_missing_file_uses_index(sample_file, storage):
    store_sample(sample_file("CT_small.dcm"), storage=storage, AccessionNumber="A400")
    for path in storage.root.rglob("*.dcm"):
        path.unlink()

    exams.sync_exams(storage=storage)

    exam = Exam.objects.get()
    assert exam.accession_number == "A400"
    assert exam.modalities == "CT"
    assert exam.sending_site == ""


def test_second_sync_changes_nothing(sample_file, storage):
    store_sample(sample_file("CT_small.dcm"), storage=storage)
    exams.sync_exams(storage=storage)

    result = exams.sync_exams(storage=storage)

    assert not result
    assert Exam.objects.count() == 1
    assert ExamSyncState.objects.get().checked_until is not None


def test_incremental_sync_skips_old_studies(sample_file, storage):
    exams.sync_exams(storage=storage)
    store_sample(sample_file("CT_small.dcm"), storage=storage)
    # A study created long before the previous run is outside the incremental window.
    Study.objects.update(created_at=timezone.now() - datetime.timedelta(days=30))

    incremental = exams.sync_exams(storage=storage)
    full = exams.sync_exams(storage=storage, full=True)

    assert incremental.studies_linked == 0
    assert full.studies_linked == 1
    assert ExamStudy.objects.count() == 1


def test_rules_in_position_order(sample_file, storage):
    neuro = Subspecialty.objects.get(code="neuro")
    SubspecialtyRule.objects.create(subspecialty=neuro, modality="MR", position=1)
    store_sample(sample_file("MR_small.dcm"), storage=storage, BodyPartExamined="KNEE")

    exams.sync_exams(storage=storage)

    assert Exam.objects.get().subspecialty == neuro


def test_inactive_rule_ignored(sample_file, storage):
    SubspecialtyRule.objects.update(active=False)
    store_sample(sample_file("CT_small.dcm"), storage=storage, BodyPartExamined="CHEST")

    exams.sync_exams(storage=storage)

    assert Exam.objects.get().subspecialty is None


def test_seeded_subspecialties():
    codes = set(Subspecialty.objects.values_list("code", flat=True))

    assert {"neuro", "chest", "abdominal", "musculoskeletal", "breast", "paediatric", "cardiac", "general"} <= codes


def test_sync_command(sample_file, storage, capsys):
    # The command reads headers from the configured storage, not this test's
    # folder, so the exam comes from the index alone.
    store_sample(sample_file("CT_small.dcm"), storage=storage, AccessionNumber="CMD-1")

    call_command("exams", "sync")

    assert Exam.objects.get().accession_number == "CMD-1"
    assert "1 studies linked to exams, 1 exams created" in capsys.readouterr().out
