"""Storing instances: index rows, files, duplicates and rejections."""

from __future__ import annotations

import dataclasses
import os

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from telerad.archive import header, ingest
from telerad.archive.models import Instance, Patient, Series, Study
from telerad.audit.models import AuditEvent
from telerad.config import DuplicatePolicy

pytestmark = pytest.mark.django_db(transaction=True)
IMPORT = ingest.Source(kind="import", user="tester")


def encoded(ds, tmp_path, name="instance.dcm") -> bytes:
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def dataset_part(data: bytes) -> bytes:
    return data[header.read_file_meta(data).dataset_offset:]


def test_store_file_indexes_every_level(sample_file, storage):
    data = sample_file("CT_small.dcm").read_bytes()
    ds = dcmread(sample_file("CT_small.dcm"))

    result = ingest.store_file(data, source=IMPORT, storage=storage)

    assert result.outcome is ingest.Outcome.STORED
    instance = Instance.objects.select_related("series__study__patient").get()
    assert instance.sop_instance_uid == ds.SOPInstanceUID
    assert instance.series.series_instance_uid == ds.SeriesInstanceUID
    assert instance.series.study.study_instance_uid == ds.StudyInstanceUID
    assert instance.series.study.patient.patient_id == ds.PatientID
    assert instance.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID


def test_stored_file_is_byte_identical(sample_file, storage):
    data = sample_file("MR_small_RLE.dcm").read_bytes()

    ingest.store_file(data, source=IMPORT, storage=storage)

    instance = Instance.objects.get()
    assert storage.path(instance.storage_key).read_bytes() == data


def test_counters_follow_stored_instances(sample_file, storage, tmp_path):
    ds = dcmread(sample_file("CT_small.dcm"))
    ingest.store_file(encoded(ds, tmp_path, "a.dcm"), source=IMPORT, storage=storage)
    ds.SOPInstanceUID = generate_uid()
    ingest.store_file(encoded(ds, tmp_path, "b.dcm"), source=IMPORT, storage=storage)
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "MR"
    ingest.store_file(encoded(ds, tmp_path, "c.dcm"), source=IMPORT, storage=storage)

    study = Study.objects.get()
    assert study.number_of_study_related_instances == 3
    assert study.number_of_study_related_series == 2
    assert study.modalities_in_study == "CT\\MR"
    assert sorted(Series.objects.values_list("number_of_series_related_instances", flat=True)) == [1, 2]


def test_identical_copy_is_already_present(sample_file, storage):
    data = sample_file("CT_small.dcm").read_bytes()
    ingest.store_file(data, source=IMPORT, storage=storage)

    result = ingest.store_file(data, source=IMPORT, storage=storage)

    assert result.outcome is ingest.Outcome.ALREADY_PRESENT
    assert Instance.objects.count() == 1
    assert Study.objects.get().number_of_study_related_instances == 1


def test_received_copy_of_imported_file_is_present(sample_file, storage):
    data = sample_file("CT_small.dcm").read_bytes()
    ingest.store_file(data, source=IMPORT, storage=storage)
    ds = dcmread(sample_file("CT_small.dcm"))

    result = ingest.store_dataset(
        dataset_part(data), dataset_offset=0, transfer_syntax=ds.file_meta.TransferSyntaxUID,
        sop_class_uid=ds.SOPClassUID, sop_instance_uid=ds.SOPInstanceUID,
        source=ingest.Source(kind="dimse", ae_title="MODALITY"), storage=storage,
    )

    assert result.outcome is ingest.Outcome.ALREADY_PRESENT


def test_different_copy_is_rejected_under_keep_first(sample_file, storage, tmp_path):
    original = sample_file("CT_small.dcm").read_bytes()
    ingest.store_file(original, source=IMPORT, storage=storage)
    ds = dcmread(sample_file("CT_small.dcm"))
    ds.StudyDescription = "changed"

    result = ingest.store_file(encoded(ds, tmp_path), source=IMPORT, storage=storage)

    assert result.outcome is ingest.Outcome.CONFLICT
    instance = Instance.objects.get()
    assert storage.path(instance.storage_key).read_bytes() == original
    assert len(list(storage.root.rglob("*.dcm"))) == 1
    assert AuditEvent.objects.filter(action="duplicate-rejected").count() == 1


def test_different_copy_replaces_under_overwrite(sample_file, storage, tmp_path, settings):
    settings.TELERAD = dataclasses.replace(settings.TELERAD, duplicate_policy=DuplicatePolicy.OVERWRITE)
    ingest.store_file(sample_file("CT_small.dcm").read_bytes(), source=IMPORT, storage=storage)
    ds = dcmread(sample_file("CT_small.dcm"))
    ds.StudyDescription = "changed"
    replacement = encoded(ds, tmp_path)

    result = ingest.store_file(replacement, source=IMPORT, storage=storage)

    assert result.outcome is ingest.Outcome.REPLACED
    instance = Instance.objects.get()
    assert storage.path(instance.storage_key).read_bytes() == replacement
    assert len(list(storage.root.rglob("*.dcm"))) == 1
    assert Study.objects.get().number_of_study_related_instances == 1
    assert AuditEvent.objects.filter(action="duplicate-replaced").count() == 1


def test_studies_without_patient_id_keep_separate_patients(sample_file, storage, tmp_path):
    ds = dcmread(sample_file("CT_small.dcm"))
    ds.PatientID = ""
    for number, name in enumerate(("Citizen^Jan", "Doe^Jane")):
        ds.PatientName = name
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
        assert ingest.store_file(encoded(ds, tmp_path, f"{number}.dcm"), source=IMPORT, storage=storage).outcome is ingest.Outcome.STORED

    assert sorted(Patient.objects.values_list("patient_name", flat=True)) == ["Citizen^Jan", "Doe^Jane"]


def test_new_series_keeps_unidentified_patient(sample_file, storage, tmp_path):
    ds = dcmread(sample_file("CT_small.dcm"))
    ds.PatientID = ""
    ingest.store_file(encoded(ds, tmp_path, "a.dcm"), source=IMPORT, storage=storage)
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()

    assert ingest.store_file(encoded(ds, tmp_path, "b.dcm"), source=IMPORT, storage=storage).outcome is ingest.Outcome.STORED
    assert Patient.objects.count() == 1
    assert Study.objects.get().number_of_study_related_series == 2


def test_study_of_another_patient_is_rejected(sample_file, storage, tmp_path):
    ds = dcmread(sample_file("CT_small.dcm"))
    ingest.store_file(encoded(ds, tmp_path, "a.dcm"), source=IMPORT, storage=storage)
    ds.SOPInstanceUID = generate_uid()
    ds.PatientID = "SOMEONE-ELSE"

    result = ingest.store_file(encoded(ds, tmp_path, "b.dcm"), source=IMPORT, storage=storage)

    assert result.outcome is ingest.Outcome.REJECTED
    assert "another PatientID" in result.reason
    assert Instance.objects.count() == 1
    assert len(list(storage.root.rglob("*.dcm"))) == 1


def test_series_of_another_study_is_rejected(sample_file, storage, tmp_path):
    ds = dcmread(sample_file("CT_small.dcm"))
    ingest.store_file(encoded(ds, tmp_path, "a.dcm"), source=IMPORT, storage=storage)
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()

    result = ingest.store_file(encoded(ds, tmp_path, "b.dcm"), source=IMPORT, storage=storage)

    assert result.outcome is ingest.Outcome.REJECTED
    assert "another study" in result.reason
    assert Study.objects.count() == 1


def test_rejected_file_leaves_archive_unchanged(sample_file, storage):
    ingest.store_file(sample_file("CT_small.dcm").read_bytes(), source=IMPORT, storage=storage)
    before = sorted(path.read_bytes() for path in storage.root.rglob("*.dcm"))

    result = ingest.store_file(sample_file("MR_truncated.dcm").read_bytes(), source=IMPORT, storage=storage)

    assert result.outcome is ingest.Outcome.REJECTED
    assert "truncated" in result.reason
    assert sorted(path.read_bytes() for path in storage.root.rglob("*.dcm")) == before
    assert Instance.objects.count() == 1


def test_non_dicom_file_is_rejected(storage):
    result = ingest.store_file(b"%PDF-1.7 this is not an image" * 10, source=IMPORT, storage=storage)

    assert result.outcome is ingest.Outcome.REJECTED
    assert "not a DICOM file" in result.reason


def test_stale_meta_uid_is_corrected(sample_file, storage, tmp_path):
    ds = dcmread(sample_file("CT_small.dcm"))
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = tmp_path / "mismatch.dcm"
    ds.save_as(path, enforce_file_format=False)
    data = path.read_bytes()

    result = ingest.store_file(data, source=IMPORT, storage=storage)

    assert result.outcome is ingest.Outcome.STORED
    stored = storage.path(Instance.objects.get().storage_key)
    assert dcmread(stored).file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert dataset_part(stored.read_bytes()) == dataset_part(data)


def test_request_uid_mismatch_is_rejected(sample_file, storage):
    data = sample_file("CT_small.dcm").read_bytes()
    ds = dcmread(sample_file("CT_small.dcm"))

    result = ingest.store_dataset(
        dataset_part(data), dataset_offset=0, transfer_syntax=ds.file_meta.TransferSyntaxUID,
        sop_class_uid=ds.SOPClassUID, sop_instance_uid=generate_uid(),
        source=ingest.Source(kind="dimse", ae_title="MODALITY"), storage=storage,
    )

    assert result.outcome is ingest.Outcome.REJECTED
    assert "differs from the request's" in result.reason
    assert Instance.objects.count() == 0


def test_bare_dataset_gets_file_meta(sample_file, storage):
    data = sample_file("MR_small_implicit.dcm").read_bytes()
    bare = dataset_part(data)

    result = ingest.store_file(bare, source=IMPORT, storage=storage)

    assert result.outcome is ingest.Outcome.STORED
    stored = storage.path(Instance.objects.get().storage_key).read_bytes()
    assert dataset_part(stored) == bare
    assert dcmread(storage.path(Instance.objects.get().storage_key)).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"


def test_received_dataset_records_source_ae(sample_file, storage):
    data = sample_file("CT_small.dcm").read_bytes()
    ds = dcmread(sample_file("CT_small.dcm"))

    ingest.store_dataset(
        dataset_part(data), dataset_offset=0, transfer_syntax=ds.file_meta.TransferSyntaxUID,
        sop_class_uid=ds.SOPClassUID, sop_instance_uid=ds.SOPInstanceUID,
        source=ingest.Source(kind="dimse", ae_title="CT_SCANNER", address="127.0.0.1"), storage=storage,
    )

    instance = Instance.objects.get()
    assert instance.source_ae_title == "CT_SCANNER"
    meta = dcmread(storage.path(instance.storage_key)).file_meta
    assert meta.SendingApplicationEntityTitle == "CT_SCANNER"
    assert meta.SourceApplicationEntityTitle == "TELERAD"
    assert meta.ReceivingApplicationEntityTitle == "TELERAD"


def test_patient_is_shared_by_studies(sample_file, storage, tmp_path):
    ds = dcmread(sample_file("CT_small.dcm"))
    ingest.store_file(encoded(ds, tmp_path, "a.dcm"), source=IMPORT, storage=storage)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ingest.store_file(encoded(ds, tmp_path, "b.dcm"), source=IMPORT, storage=storage)

    assert Patient.objects.count() == 1
    assert Study.objects.count() == 2


def test_missing_file_is_restored_by_identical_copy(sample_file, storage):
    data = sample_file("CT_small.dcm").read_bytes()
    ingest.store_file(data, source=IMPORT, storage=storage)
    path = storage.path(Instance.objects.get().storage_key)
    path.unlink()

    result = ingest.store_file(data, source=IMPORT, storage=storage)

    assert result.outcome is ingest.Outcome.ALREADY_PRESENT
    assert path.read_bytes() == data


def test_missing_file_under_older_key_is_restored(sample_file, storage):
    data = sample_file("CT_small.dcm").read_bytes()
    ingest.store_file(data, source=IMPORT, storage=storage)
    current_key = Instance.objects.get().storage_key
    storage.path(current_key).unlink()
    # An index row written under an earlier layout of the storage folder, whose file is gone.
    Instance.objects.update(storage_key="0a/0b/earlier-layout.dcm")

    result = ingest.store_file(data, source=IMPORT, storage=storage)

    assert result.outcome is ingest.Outcome.ALREADY_PRESENT
    instance = Instance.objects.get()
    assert instance.storage_key == current_key
    assert storage.path(current_key).read_bytes() == data
    assert instance.file_size == len(data)


def test_unfinished_files_are_removed_when_old(storage):
    old = storage.temporary_dir / "old.part"
    new = storage.temporary_dir / "new.part"
    old.write_bytes(b"partial")
    new.write_bytes(b"partial")
    os.utime(old, (0, 0))

    removed = storage.remove_unfinished()

    assert removed == 1
    assert not old.exists()
    assert new.exists()


def test_reencoded_copy_is_already_present(sample_file, storage, tmp_path):
    ingest.store_file(sample_file("CT_small.dcm").read_bytes(), source=IMPORT, storage=storage)
    ds = dcmread(sample_file("CT_small.dcm"))
    # Same content in another transfer syntax, with group lengths added.
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"
    path = tmp_path / "implicit.dcm"
    ds.save_as(path, implicit_vr=True, little_endian=True)
    reencoded = path.read_bytes()

    result = ingest.store_file(reencoded, source=IMPORT, storage=storage)

    assert result.outcome is ingest.Outcome.ALREADY_PRESENT
    assert Instance.objects.get().transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert len(list(storage.root.rglob("*.dcm"))) == 1


def test_new_study_updates_patient_name(sample_file, storage, tmp_path):
    ds = dcmread(sample_file("CT_small.dcm"))
    ingest.store_file(encoded(ds, tmp_path, "a.dcm"), source=IMPORT, storage=storage)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.PatientName = "Corrected^Name"
    ingest.store_file(encoded(ds, tmp_path, "b.dcm"), source=IMPORT, storage=storage)

    patient = Patient.objects.get()
    assert patient.patient_name == "Corrected^Name"
    assert patient.patient_name_folded == "corrected^name"
    assert AuditEvent.objects.filter(action="patient-updated").count() == 1


def test_parallel_stores_of_one_new_study(sample_file, storage, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    ds = dcmread(sample_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    files = []
    for number in range(12):
        ds.SOPInstanceUID = generate_uid()
        files.append(encoded(ds, tmp_path, f"{number}.dcm"))

    def store(data: bytes) -> ingest.Outcome:
        try:
            return ingest.store_file(data, source=IMPORT, storage=storage).outcome
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(store, files, timeout=120))

    assert outcomes == [ingest.Outcome.STORED] * 12
    assert Study.objects.get().number_of_study_related_instances == 12
    assert Series.objects.get().number_of_series_related_instances == 12
