from __future__ import annotations

import io

import pydicom
import pytest
from django.test import Client

from telerad.archive.ingest import Outcome, default_storage
from telerad.archive.models import Instance, Series
from telerad.reading.delivery.dicom_objects import (
    BASIC_TEXT_SR_STORAGE, ENCAPSULATED_PDF_STORAGE, ReportNotStorable, report_uid, store_report_objects,
)

from .delivery_support import final_report, make_exam, radiologist, sign  # noqa: F401


def read_stored(sop_instance_uid: str) -> pydicom.Dataset:
    instance = Instance.objects.get(sop_instance_uid=sop_instance_uid)
    return pydicom.dcmread(io.BytesIO(default_storage().path(instance.storage_key).read_bytes()))


def concept(item) -> tuple[str, str, str]:
    code = item.ConceptNameCodeSequence[0]
    return code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning


def test_objects_join_exam_study(final_report):
    study = final_report.exam.studies.get()
    image = Instance.objects.filter(series__study=study).first()
    original = read_stored(image.sop_instance_uid)

    results = store_report_objects(final_report)

    assert [result.outcome for result in results] == [Outcome.STORED, Outcome.STORED]
    for result in results:
        ds = read_stored(result.sop_instance_uid)
        assert ds.StudyInstanceUID == study.study_instance_uid
        assert ds.PatientID == original.PatientID
        assert ds.PatientName == original.PatientName
        assert ds.PatientBirthDate == original.PatientBirthDate
        assert ds.PatientSex == original.PatientSex
        assert ds.AccessionNumber == (study.accession_number or "ACC1001")
        assert ds.SeriesInstanceUID != original.SeriesInstanceUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    series = {read_stored(result.sop_instance_uid).SeriesInstanceUID for result in results}
    assert len(series) == 2
    assert Series.objects.filter(study=study).count() == 3


def test_encapsulated_pdf_modules(final_report):
    store_report_objects(final_report)

    ds = read_stored(report_uid(final_report, "pdf"))

    assert ds.SOPClassUID == ENCAPSULATED_PDF_STORAGE
    assert ds.Modality == "DOC"
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert ds.BurnedInAnnotation == "YES"
    assert ds.ConversionType == "WSD"
    assert ds.EncapsulatedDocument.startswith(b"%PDF")
    assert ds.EncapsulatedDocument[: ds.EncapsulatedDocumentLength].rstrip().endswith(b"%%EOF")
    assert len(ds.EncapsulatedDocument) % 2 == 0
    assert concept(ds) == ("18748-4", "LN", "Diagnostic Imaging Report")
    assert ds.ContentDate
    assert ds.ContentTime
    assert ds.InstanceNumber == 1


def test_basic_text_sr_content_tree(final_report):
    store_report_objects(final_report)

    ds = read_stored(report_uid(final_report, "sr"))

    assert ds.SOPClassUID == BASIC_TEXT_SR_STORAGE
    assert ds.Modality == "SR"
    assert ds.CompletionFlag == "COMPLETE"
    assert ds.VerificationFlag == "VERIFIED"
    assert ds.VerifyingObserverSequence[0].VerifyingObserverName == "Smith^Jane"
    assert ds.VerifyingObserverSequence[0].VerificationDateTime
    assert ds.ValueType == "CONTAINER"
    assert ds.ContinuityOfContent == "SEPARATE"
    assert concept(ds) == ("18748-4", "LN", "Diagnostic Imaging Report")
    observer, *sections = ds.ContentSequence
    assert observer.RelationshipType == "HAS OBS CONTEXT"
    assert observer.PersonName == "Smith^Jane"
    assert [concept(section) for section in sections] == [
        ("121060", "DCM", "History"),
        ("121064", "DCM", "Current Procedure Descriptions"),
        ("121070", "DCM", "Findings"),
        ("121072", "DCM", "Impressions"),
    ]
    findings = sections[2]
    assert findings.ValueType == "CONTAINER"
    assert findings.RelationshipType == "CONTAINS"
    text = findings.ContentSequence[0]
    assert text.ValueType == "TEXT"
    assert concept(text) == ("121071", "DCM", "Finding")
    assert text.TextValue == "No intracranial haemorrhage.\nVentricles of normal size & shape."
    assert "PredecessorDocumentsSequence" not in ds


def test_addendum_sr_references_final(final_report, radiologist):
    store_report_objects(final_report)
    addendum = sign(final_report.exam, radiologist, kind="addendum", sections={"addendum": "Comparison with 2025 CT: stable.", "custom-note": "Discussed."})

    store_report_objects(addendum)
    ds = read_stored(report_uid(addendum, "sr"))

    predecessor = ds.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert predecessor.ReferencedSOPInstanceUID == report_uid(final_report, "sr")
    assert Instance.objects.filter(sop_instance_uid=predecessor.ReferencedSOPInstanceUID).exists()
    addendum_container = ds.ContentSequence[1]
    assert concept(addendum_container) == ("121078", "DCM", "Addendum")
    local = addendum_container.ContentSequence[1]
    assert concept(local) == ("custom-note", "99TELERAD", "Custom note")
    assert concept(ds.ContentSequence[2]) == ("121060", "DCM", "History")


def test_storing_again_adds_nothing(final_report):
    store_report_objects(final_report)
    count = Instance.objects.count()

    results = store_report_objects(final_report)

    assert [result.outcome for result in results] == [Outcome.ALREADY_PRESENT, Outcome.ALREADY_PRESENT]
    assert Instance.objects.count() == count


def test_exam_without_study_is_not_storable(radiologist):
    signed = sign(make_exam(None, accession="NS2"), radiologist)

    with pytest.raises(ReportNotStorable, match="has no study"):
        store_report_objects(signed)


def test_qido_finds_report_objects(final_report, make_user):
    store_report_objects(final_report)
    study_uid = final_report.exam.studies.get().study_instance_uid
    client = Client()
    client.force_login(make_user("reader", "radiologist"))

    response = client.get(f"/dicom-web/studies/{study_uid}/instances", {"SOPClassUID": f"{ENCAPSULATED_PDF_STORAGE},{BASIC_TEXT_SR_STORAGE}"}, HTTP_ACCEPT="application/dicom+json")

    assert response.status_code == 200
    found = {item["00080018"]["Value"][0] for item in response.json()}
    assert found == {report_uid(final_report, "pdf"), report_uid(final_report, "sr")}
    series = client.get(f"/dicom-web/studies/{study_uid}/series", {"Modality": "SR"}, HTTP_ACCEPT="application/dicom+json")
    assert [item["0020000E"]["Value"][0] for item in series.json()] == [report_uid(final_report, "sr-series")]
