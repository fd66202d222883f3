"""The DICOM forms of a signed report, stored back into the exam's study.

Two instances per signed report, each in a series of its own: an
Encapsulated PDF (PS3.3 A.45.1) of the printable report and a Basic Text SR
(PS3.3 A.35.1) whose content tree has one CONTAINER per section. Their UIDs
derive from the signed report, so that storing them again after a failed
attempt finds the same instances instead of adding copies.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import uuid

from django.conf import settings
from django.utils import timezone
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, UID

from telerad.archive.ingest import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, Outcome, Source, StoreResult, store_file
from telerad.archive.storage import FileStorage
from telerad.reading.delivery.document import ReportDocument, SignedPart, build_document
from telerad.reading.delivery.pdf import render_pdf
from telerad.reading.models import SignedKind, SignedReport

logger = logging.getLogger(__name__)

ENCAPSULATED_PDF_STORAGE = UID("1.2.840.10008.5.1.4.1.1.104.1")
BASIC_TEXT_SR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.88.11")

# Namespace of the name-based UUIDs (RFC 4122 version 5) behind the UIDs of
# report objects; PS3.5 B.2 turns a UUID into a UID under the root 2.25.
REPORT_UID_NAMESPACE = uuid.UUID("b57d016b-3517-4f07-b8ee-111462cbefcf")

# Series numbers of report objects: high, so that viewers list them after the images.
PDF_SERIES_NUMBER_BASE = 9000
SR_SERIES_NUMBER_BASE = 9500


@dataclasses.dataclass(frozen=True)
class Code:
    value: str
    scheme: str
    meaning: str

    def item(self) -> Dataset:
        item = Dataset()
        item.CodeValue = self.value
        item.CodingSchemeDesignator = self.scheme
        item.CodeMeaning = self.meaning
        return item


# Document title and section headings: LOINC 18748-4 and the report headings
# of DICOM CID 7001, with the item concept used for the text under each.
DOCUMENT_TITLE = Code("18748-4", "LN", "Diagnostic Imaging Report")
PERSON_OBSERVER_NAME = Code("121008", "DCM", "Person Observer Name")
ADDENDUM_HEADING = Code("121078", "DCM", "Addendum")
HEADINGS: dict[str, tuple[Code, Code]] = {
    "indication": (Code("121109", "DCM", "Indications for Procedure"), Code("121109", "DCM", "Indications for Procedure")),
    "clinical_history": (Code("121060", "DCM", "History"), Code("121060", "DCM", "History")),
    "history": (Code("121060", "DCM", "History"), Code("121060", "DCM", "History")),
    "technique": (Code("121064", "DCM", "Current Procedure Descriptions"), Code("121065", "DCM", "Procedure Description")),
    "comparison": (Code("121066", "DCM", "Prior Procedure Descriptions"), Code("121067", "DCM", "Prior Procedure Description")),
    "findings": (Code("121070", "DCM", "Findings"), Code("121071", "DCM", "Finding")),
    "impression": (Code("121072", "DCM", "Impressions"), Code("121073", "DCM", "Impression")),
    "conclusion": (Code("121076", "DCM", "Conclusions"), Code("121077", "DCM", "Conclusion")),
    "recommendation": (Code("121074", "DCM", "Recommendations"), Code("121075", "DCM", "Recommendation")),
    "recommendations": (Code("121074", "DCM", "Recommendations"), Code("121075", "DCM", "Recommendation")),
}
# Sections with other keys get a code of telerad's local scheme (PS3.16 8.2: designators starting with 99).
LOCAL_SCHEME = "99TELERAD"


class ReportNotStorable(Exception):
    """The archive cannot store the report's objects, for the reason in the message."""


def report_uid(signed: SignedReport, role: str) -> UID:
    """Return the UID of one object (`role`: pdf, pdf-series, sr, sr-series) of a signed report."""
    name = f"{signed.pk}:{signed.content_hash}:{role}"
    return UID(f"2.25.{uuid.uuid5(REPORT_UID_NAMESPACE, name).int}")


def _heading_codes(key: str, title: str) -> tuple[Code, Code]:
    if key in HEADINGS:
        return HEADINGS[key]
    local = Code(key[:16], LOCAL_SCHEME, title[:64])
    return local, local


def _dicom_date(moment) -> tuple[str, str]:
    local = timezone.localtime(moment)
    return local.strftime("%Y%m%d"), local.strftime("%H%M%S")


def _series_index(signed: SignedReport) -> int:
    """Return the position of `signed` among its exam's signed reports, from 1."""
    return SignedReport.objects.filter(exam_id=signed.exam_id, signed_at__lt=signed.signed_at).count() + 1


def _common(document: ReportDocument, *, sop_class: UID, sop_instance: UID, series: UID, modality: str, series_number: int, series_description: str) -> Dataset:
    """Build the Patient, General Study, General Series, General Equipment and SOP Common attributes."""
    study = document.study
    if study is None:
        raise ReportNotStorable(f"exam {document.exam.pk} has no study to store the report objects in")
    patient = document.patient
    signed_date, signed_time = _dicom_date(document.signed.signed_at)

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    # The instance is created for the signing, so it carries the signing time;
    # the same signed report then always gives the same dataset.
    ds.InstanceCreationDate = signed_date
    ds.InstanceCreationTime = signed_time

    ds.PatientName = patient.patient_name
    ds.PatientID = patient.patient_id
    if patient.issuer_of_patient_id:
        ds.IssuerOfPatientID = patient.issuer_of_patient_id
    ds.PatientBirthDate = patient.patient_birth_date
    ds.PatientSex = patient.patient_sex

    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyDate = study.study_date
    ds.StudyTime = study.study_time
    ds.ReferringPhysicianName = study.referring_physician_name
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession_number or document.exam.accession_number
    ds.StudyDescription = study.study_description

    ds.Modality = modality
    ds.SeriesInstanceUID = series
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.SeriesDate = signed_date
    ds.SeriesTime = signed_time

    ds.Manufacturer = "telerad"
    ds.InstitutionName = settings.TELERAD.department_name[:64]
    ds.SoftwareVersions = IMPLEMENTATION_VERSION_NAME
    ds.ContentDate = signed_date
    ds.ContentTime = signed_time
    ds.InstanceNumber = 1
    return ds


def build_encapsulated_pdf(document: ReportDocument, pdf: bytes) -> Dataset:
    signed = document.signed
    index = _series_index(signed)
    ds = _common(
        document, sop_class=ENCAPSULATED_PDF_STORAGE, sop_instance=report_uid(signed, "pdf"), series=report_uid(signed, "pdf-series"),
        modality="DOC", series_number=PDF_SERIES_NUMBER_BASE + index, series_description=_series_description(signed, "PDF"),
    )
    # SC Equipment module: WSD is a workstation.
    ds.ConversionType = "WSD"
    # Encapsulated Document module.
    ds.AcquisitionDateTime = ds.ContentDate + ds.ContentTime
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = _document_title(document)[:64]
    ds.ConceptNameCodeSequence = Sequence([DOCUMENT_TITLE.item()])
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    # PS3.3 C.24.2.1: the value is padded to even length, and the length
    # attribute keeps the document's own length.
    ds.EncapsulatedDocument = pdf + (b"\x00" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    return ds


def _series_description(signed: SignedReport, form: str) -> str:
    kind = {SignedKind.FINAL: "Report", SignedKind.ADDENDUM: "Addended report", SignedKind.PRELIMINARY: "Preliminary report"}[SignedKind(signed.kind)]
    return f"{kind} ({form})"


def _document_title(document: ReportDocument) -> str:
    accession = document.exam.accession_number
    return f"Radiology report {accession}" if accession else "Radiology report"


def _text_item(concept: Code, text: str) -> Dataset:
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "TEXT"
    item.ConceptNameCodeSequence = Sequence([concept.item()])
    item.TextValue = text
    return item


def _container(concept: Code, children: list[Dataset]) -> Dataset:
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "CONTAINER"
    item.ConceptNameCodeSequence = Sequence([concept.item()])
    item.ContinuityOfContent = "SEPARATE"
    item.ContentSequence = Sequence(children)
    return item


def _section_containers(part: SignedPart) -> list[Dataset]:
    containers = []
    for section in part.sections:
        heading, concept = _heading_codes(section.key, section.title)
        containers.append(_container(heading, [_text_item(concept, section.text.strip())]))
    return containers


def _content_tree(document: ReportDocument) -> list[Dataset]:
    observer = Dataset()
    observer.RelationshipType = "HAS OBS CONTEXT"
    observer.ValueType = "PNAME"
    observer.ConceptNameCodeSequence = Sequence([PERSON_OBSERVER_NAME.item()])
    observer.PersonName = _dicom_person_name(document.signed.signer)
    items = [observer]
    for part in document.parts:
        if part.kind == SignedKind.ADDENDUM:
            items.append(_container(ADDENDUM_HEADING, _section_containers(part)))
        else:
            items += _section_containers(part)
    return items


def _dicom_person_name(user) -> str:
    """Return the user's name as a DICOM PN value (family^given), or the user name when none is set."""
    family = (getattr(user, "last_name", "") or "").strip()
    given = (getattr(user, "first_name", "") or "").strip()
    if family or given:
        return f"{family}^{given}".rstrip("^")
    return user.get_username()


def build_basic_text_sr(document: ReportDocument) -> Dataset:
    signed = document.signed
    index = _series_index(signed)
    ds = _common(
        document, sop_class=BASIC_TEXT_SR_STORAGE, sop_instance=report_uid(signed, "sr"), series=report_uid(signed, "sr-series"),
        modality="SR", series_number=SR_SERIES_NUMBER_BASE + index, series_description=_series_description(signed, "SR"),
    )
    # SR Document Series module.
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    # SR Document General module.
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "VERIFIED"
    verifier = Dataset()
    verifier.VerifyingObserverName = _dicom_person_name(signed.signer)
    verifier.VerifyingObserverIdentificationCodeSequence = Sequence()
    verifier.VerifyingOrganization = settings.TELERAD.department_name[:64]
    verifier.VerificationDateTime = ds.ContentDate + ds.ContentTime
    ds.VerifyingObserverSequence = Sequence([verifier])
    ds.PerformedProcedureCodeSequence = Sequence()
    predecessor = _predecessor(document)
    if predecessor is not None:
        ds.PredecessorDocumentsSequence = Sequence([predecessor])
    # SR Document Content module: the root CONTAINER.
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([DOCUMENT_TITLE.item()])
    ds.ContinuityOfContent = "SEPARATE"
    ds.ContentSequence = Sequence(_content_tree(document))
    return ds


def _predecessor(document: ReportDocument) -> Dataset | None:
    """Reference the SR of the version an addendum amends (PS3.3 C.17.2.3), when there is one."""
    if len(document.parts) < 2:
        return None
    previous = document.parts[1].signed
    instance = Dataset()
    instance.ReferencedSOPClassUID = BASIC_TEXT_SR_STORAGE
    instance.ReferencedSOPInstanceUID = report_uid(previous, "sr")
    series = Dataset()
    series.SeriesInstanceUID = report_uid(previous, "sr-series")
    series.ReferencedSOPSequence = Sequence([instance])
    study = Dataset()
    study.StudyInstanceUID = document.study.study_instance_uid
    study.ReferencedSeriesSequence = Sequence([series])
    return study


def encode(ds: Dataset) -> bytes:
    """Encode `ds` as a Part 10 file in Explicit VR Little Endian."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    meta.SourceApplicationEntityTitle = settings.TELERAD.ae_title
    ds.file_meta = meta
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def build_report_objects(signed: SignedReport) -> list[Dataset]:
    document = build_document(signed)
    return [build_encapsulated_pdf(document, render_pdf(document)), build_basic_text_sr(document)]


def store_report_objects(signed: SignedReport, *, storage: FileStorage | None = None) -> list[StoreResult]:
    """Store the report's Encapsulated PDF and Basic Text SR in the archive; raise ReportNotStorable on rejection.

    An object already stored counts as stored. One stored with other content
    (the department settings changed between two attempts) is kept as it is.
    """
    results = []
    for ds in build_report_objects(signed):
        result = store_file(encode(ds), source=Source(kind="report", user=signed.signer.get_username()), storage=storage)
        if result.outcome is Outcome.CONFLICT:
            logger.warning("report object already stored with other content, kept signed_report=%s sop_instance_uid=%s", signed.pk, ds.SOPInstanceUID)
        elif not result.outcome.succeeded:
            raise ReportNotStorable(f"the archive rejected {ds.SOPInstanceUID}: {result.reason}")
        results.append(result)
    return results
