"""Make an exam of every study with images in the archive, from the index and the DICOM header.

:func:`sync_exams` finds studies without an exam and links each to one: the
exam of the same patient and accession number when there is one, else a new
exam. Only a study with images gets a new exam (see :func:`study_has_images`):
a study of reports, presentation states, waveforms or radiotherapy plans
alone joins the exam of its accession number when there is one, and waits
for images otherwise. It reads the header of one stored instance (without pixel data) for the
order information that the index does not keep: requested procedure, reason,
history, priority, institution, department. A new exam's Referring
Physician's Name gives it a referring clinician when exactly one clinician's
profile lists the name (see :mod:`telerad.clinicians.matching`). It runs in
a background thread of the servers (see :mod:`telerad.reading.background`)
and from ``telerad exams sync``, whatever path the study came in by. Every run starts from the
database, so several processes may run it at once: the unique constraints on
exams and study links decide which process creates a row, and the other one
links to it.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
import operator
from typing import Iterable

import pydicom
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError, Q
from django.utils import timezone
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from telerad.archive.ingest import default_storage
from telerad.archive.models import Instance, Series, Study
from telerad.archive.storage import FileStorage
from telerad.clinicians.matching import ClinicianMatcher, assign_matched_clinician, record_match
from telerad.reading.models import Exam, ExamStatus, ExamStudy, ExamSyncState, Priority, Report, SubspecialtyRule

logger = logging.getLogger(__name__)

BATCH_SIZE = 200
# The length of Exam.department. Values of valid headers are shorter, because an LO value has at most 64 characters.
DEPARTMENT_MAX_LENGTH = 200
# A study row becomes visible to other processes when its ingest transaction
# commits, a moment after its created_at. Each run therefore looks back this
# far before the start of the previous run, so that a late commit is found.
SYNC_MARGIN = datetime.timedelta(minutes=10)
# Series that arrive later add modalities to a study. Each run compares the
# exams of studies created within this window and changed since the last run;
# `telerad exams sync --full` compares all of them.
MODALITY_WINDOW = datetime.timedelta(days=2)

# Requested Procedure Priority (0040,1003) and the retired Study Priority ID
# (0032,000C) use STAT, HIGH, ROUTINE, MEDIUM (MED) and LOW. telerad has
# three priorities, so LOW reads as routine.
PRIORITY_TERMS = {
    "STAT": Priority.STAT,
    "HIGH": Priority.URGENT,
    "MEDIUM": Priority.ROUTINE,
    "MED": Priority.ROUTINE,
    "ROUTINE": Priority.ROUTINE,
    "LOW": Priority.ROUTINE,
}

HEADER_KEYWORDS = [
    "RequestedProcedureDescription",
    "ReasonForTheRequestedProcedure",
    "ReasonForStudy",
    "AdditionalPatientHistory",
    "RequestedProcedurePriority",
    "StudyPriorityID",
    "BodyPartExamined",
    "InstitutionName",
    "ReferringPhysicianName",
    "RequestingService",
    "CurrentPatientLocation",
    "RequestAttributesSequence",
]


@dataclasses.dataclass(frozen=True)
class OrderInformation:
    """The order information in one instance's header."""

    requested_procedure: str = ""
    reason_for_study: str = ""
    clinical_history: str = ""
    priority: Priority | None = None
    body_part: str = ""
    institution: str = ""
    referring_physician: str = ""
    department: str = ""


@dataclasses.dataclass
class SyncResult:
    exams_created: int = 0
    studies_linked: int = 0
    exams_updated: int = 0
    exams_removed: int = 0
    clinicians_matched: int = 0

    def __bool__(self) -> bool:
        return bool(self.exams_created or self.studies_linked or self.exams_updated or self.exams_removed)


def priority_from_term(term: str) -> Priority | None:
    """Map a DICOM priority term to a reading priority; None for an empty or unknown term."""
    return PRIORITY_TERMS.get(term.strip().upper())


def _text(dataset: pydicom.Dataset, keyword: str) -> str:
    value = dataset.get(keyword)
    if value is None or value == "":
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(item) for item in value).strip()
    return str(value).strip()


def order_information(dataset: pydicom.Dataset) -> OrderInformation:
    """Collect the order information of a dataset, falling back to its first Request Attributes Sequence item."""
    requests = dataset.get("RequestAttributesSequence") or []
    request = requests[0] if len(requests) else pydicom.Dataset()

    def first(*keywords: str) -> str:
        for source in (dataset, request):
            for keyword in keywords:
                text = _text(source, keyword)
                if text:
                    return text
        return ""

    priority = priority_from_term(first("RequestedProcedurePriority")) or priority_from_term(first("StudyPriorityID"))
    return OrderInformation(
        requested_procedure=first("RequestedProcedureDescription"),
        reason_for_study=first("ReasonForTheRequestedProcedure", "ReasonForStudy"),
        clinical_history=first("AdditionalPatientHistory"),
        priority=priority,
        body_part=first("BodyPartExamined"),
        institution=first("InstitutionName"),
        referring_physician=first("ReferringPhysicianName"),
        # The ward or service that asked for the exam, else where the patient is.
        department=(first("RequestingService") or first("CurrentPatientLocation"))[:DEPARTMENT_MAX_LENGTH],
    )


# Storage SOP classes that pydicom's UID dictionary names "... Image Storage"
# are images. Of the other storage classes, only this one is an image. RT Dose,
# Segmentation and Parametric Map have pixel data too, but they are derived
# from images rather than read as images.
IMAGE_SOP_CLASSES_NOT_NAMED_IMAGE = frozenset({"1.2.840.10008.5.1.4.1.1.6.2"})  # Enhanced US Volume Storage
# Modality (0008,0060) terms of series without images (PS3.3 C.7.3.1.1.1):
# documents, structured reports, key objects, presentation states,
# registrations, segmentations, waveforms and radiotherapy objects. They decide
# whether a SOP class that pydicom does not know (private or newer) is an image.
# Report delivery stores the signed report in the exam's study as DOC and SR,
# and viewers save measurements as SR, KO or PR: exams leave all of them out
# of their modalities. The data migration recompute_exam_modalities keeps its
# own, shorter copy.
NON_IMAGE_SERIES_MODALITIES = frozenset({
    "ASMT", "AU", "DOC", "ECG", "EEG", "EMG", "EOG", "EPS", "FID", "HD", "KO", "M3D", "PLAN", "POS", "PR", "REG",
    "RESP", "RTDOSE", "RTPLAN", "RTRECORD", "RTSTRUCT", "RWV", "SEG", "SMR", "SR",
})
PIXEL_DATA_KEYWORDS = ["PixelData", "FloatPixelData", "DoubleFloatPixelData"]
# NOTE: a study whose first instances of image classes all lack pixel data
# counts as a study without images, even when a later instance has some.
MAX_PIXEL_DATA_CHECKS = 5


def is_image_sop_class(sop_class_uid: str, modality: str) -> bool:
    """Return whether instances of this SOP class, in a series of this Modality, are images to report.

    A SOP class in pydicom's UID dictionary decides by its name (see
    IMAGE_SOP_CLASSES_NOT_NAMED_IMAGE). An unknown class, such as a vendor's
    private one, is an image unless its series' modality is a non-image one.
    """
    uid = UID(sop_class_uid)
    if uid.type == "SOP Class":
        return "Image Storage" in uid.name or sop_class_uid in IMAGE_SOP_CLASSES_NOT_NAMED_IMAGE
    return modality.upper() not in NON_IMAGE_SERIES_MODALITIES


def _has_pixel_data(instance: Instance, storage: FileStorage) -> bool:
    """Return whether the stored file of `instance` has pixel data. An unreadable file counts as having it."""
    try:
        # defer_size leaves the pixel values on disk: only the element's presence matters.
        dataset = pydicom.dcmread(storage.path(instance.storage_key), specific_tags=PIXEL_DATA_KEYWORDS, defer_size=1024)
    except (OSError, InvalidDicomError, ValueError) as exc:
        logger.warning("file unreadable, instance counted as an image sop_instance_uid=%s storage_key=%s: %s", instance.sop_instance_uid, instance.storage_key, exc)
        return True
    return any(keyword in dataset for keyword in PIXEL_DATA_KEYWORDS)


def study_has_images(study: Study, storage: FileStorage) -> bool:
    """Return whether `study` has an image to report: the rule that decides which studies become exams.

    An instance is an image when its SOP class is an image class (see
    is_image_sop_class), the index has its Rows and Columns, and its stored
    file has pixel data. At most MAX_PIXEL_DATA_CHECKS files are read.
    """
    instances = Instance.objects.filter(series__study=study, rows__isnull=False, columns__isnull=False)
    classes = set(instances.values_list("sop_class_uid", "series__modality").distinct())
    image_classes = [Q(sop_class_uid=sop_class_uid, series__modality=modality) for sop_class_uid, modality in classes if is_image_sop_class(sop_class_uid, modality)]
    if not image_classes:
        return False

    candidates = instances.filter(functools.reduce(operator.or_, image_classes)).only("sop_instance_uid", "storage_key").order_by("id")
    return any(_has_pixel_data(instance, storage) for instance in candidates[:MAX_PIXEL_DATA_CHECKS])


def read_order_information(study: Study, storage: FileStorage) -> tuple[OrderInformation, str]:
    """Read the order information of the study's first stored instance; return it and the instance's calling AE title.

    A missing or unreadable file gives empty information, so that the exam is still made from the index.
    """
    instance = Instance.objects.filter(series__study=study).order_by("id").only("storage_key", "source_ae_title").first()
    if instance is None:
        return OrderInformation(), ""
    try:
        dataset = pydicom.dcmread(storage.path(instance.storage_key), stop_before_pixels=True, specific_tags=HEADER_KEYWORDS)
        return order_information(dataset), instance.source_ae_title
    except (OSError, InvalidDicomError, ValueError) as exc:
        logger.warning("header unreadable, exam made from the index study_instance_uid=%s storage_key=%s: %s", study.study_instance_uid, instance.storage_key, exc)
        return OrderInformation(), instance.source_ae_title


def image_modalities(values: Iterable[str]) -> str:
    """Merge backslash-separated modality lists into one sorted list without repeats or NON_IMAGE_SERIES_MODALITIES.

    An exam whose series are all non-image objects (a study of one report,
    say) keeps them, so that the worklist still names what it contains. Its
    next image series replaces them.
    """
    modalities = {modality for value in values for modality in value.split("\\") if modality}
    images = modalities - NON_IMAGE_SERIES_MODALITIES
    return "\\".join(sorted(images or modalities))


def study_series_modalities(study: Study) -> list[str]:
    """Return the Modality of each series of `study`, without empty ones."""
    return list(Series.objects.filter(study=study).exclude(modality="").values_list("modality", flat=True))


def choose_subspecialty(exam: Exam, rules: list[SubspecialtyRule]) -> int | None:
    """Return the subspecialty id of the first rule that matches the exam, or None."""
    modalities = set(exam.modalities.split("\\"))
    text = " ".join((exam.body_part, exam.description, exam.requested_procedure)).upper()
    for rule in rules:
        if rule.modality and rule.modality.upper() not in modalities:
            continue
        if rule.body_part_keyword and rule.body_part_keyword.upper() not in text:
            continue
        return rule.subspecialty_id
    return None


def active_rules() -> list[SubspecialtyRule]:
    return list(SubspecialtyRule.objects.filter(active=True, subspecialty__active=True).order_by("position", "id"))


def _series_body_parts(study: Study) -> str:
    parts = Series.objects.filter(study=study).exclude(body_part_examined="").values_list("body_part_examined", flat=True)
    return ", ".join(sorted(set(parts)))


def _new_exam(study: Study, order: OrderInformation, calling_ae_title: str) -> Exam:
    return Exam(
        patient_id=study.patient_id,
        accession_number=study.accession_number,
        priority=order.priority or Priority.ROUTINE,
        modalities=image_modalities(study_series_modalities(study)),
        body_part=order.body_part or _series_body_parts(study),
        description=study.study_description or order.requested_procedure,
        sending_site=order.institution or calling_ae_title,
        referring_physician_name=study.referring_physician_name or order.referring_physician,
        department=order.department,
        requested_procedure=order.requested_procedure,
        reason_for_study=order.reason_for_study,
        clinical_history=order.clinical_history,
        study_received_at=study.created_at,
    )


def _merge_study(exam: Exam, study: Study, order: OrderInformation, calling_ae_title: str) -> None:
    """Add a further study's image modalities to the exam and fill the fields that are still empty."""
    exam.modalities = image_modalities([exam.modalities, *study_series_modalities(study)])
    exam.study_received_at = min(exam.study_received_at, study.created_at)
    # The urgency of any study of the exam counts.
    if order.priority is not None and order.priority < exam.priority:
        exam.priority = order.priority
    fill = {
        "body_part": order.body_part or _series_body_parts(study),
        "description": study.study_description or order.requested_procedure,
        "sending_site": order.institution or calling_ae_title,
        "referring_physician_name": study.referring_physician_name or order.referring_physician,
        "department": order.department,
        "requested_procedure": order.requested_procedure,
        "reason_for_study": order.reason_for_study,
        "clinical_history": order.clinical_history,
    }
    for field, value in fill.items():
        if value and not getattr(exam, field):
            setattr(exam, field, value)


def _link_study(
    study: Study, order: OrderInformation, calling_ae_title: str, rules: list[SubspecialtyRule], matcher: ClinicianMatcher, *, may_create: bool,
) -> tuple[bool, bool] | None:
    """Link one study to its exam in one transaction; return whether a new exam was made and whether it got a referring clinician.

    Without `may_create`, the study joins only the exam of its accession
    number, and None means that there is none. Raises IntegrityError when
    another process made the same exam or link first.
    """
    with transaction.atomic():
        exam = None
        if study.accession_number:
            exam = Exam.objects.select_for_update().filter(patient_id=study.patient_id, accession_number=study.accession_number).first()
        if exam is None and not may_create:
            return None
        created = exam is None
        if exam is None:
            exam = _new_exam(study, order, calling_ae_title)
        else:
            _merge_study(exam, study, order, calling_ae_title)
        if exam.subspecialty_id is None:
            exam.subspecialty_id = choose_subspecialty(exam, rules)
        matched = assign_matched_clinician(exam, matcher)
        exam.save()
        ExamStudy.objects.create(exam=exam, study=study)
        if matched:
            record_match(exam, matcher)
    logger.debug("study linked to exam exam_pk=%s accession=%s study_instance_uid=%s new=%s", exam.pk, exam.accession_number, study.study_instance_uid, created)
    return created, matched


def _add_study(study: Study, storage: FileStorage, rules: list[SubspecialtyRule], matcher: ClinicianMatcher, result: SyncResult) -> None:
    has_images = study_has_images(study, storage)
    if not has_images and not study.accession_number:
        logger.debug("study without images waits for them study_instance_uid=%s", study.study_instance_uid)
        return

    order, calling_ae_title = read_order_information(study, storage)
    # A second attempt finds the exam or the link that another process committed first.
    for attempt in (1, 2):
        try:
            linked = _link_study(study, order, calling_ae_title, rules, matcher, may_create=has_images)
            if linked is None:
                logger.debug("study without images and without an exam of its accession number waits study_instance_uid=%s accession=%s", study.study_instance_uid, study.accession_number)
                return
            created, matched = linked
        except IntegrityError as exc:
            if ExamStudy.objects.filter(study=study).exists():
                return
            if attempt == 2:
                logger.error("study not linked to an exam study_instance_uid=%s accession=%s: %s", study.study_instance_uid, study.accession_number, exc)
            continue
        result.studies_linked += 1
        result.exams_created += int(created)
        result.clinicians_matched += int(matched)
        return


def _series_modalities(exam_ids: list[int]) -> dict[int, list[str]]:
    """Return the Modality of every series of each exam.

    Study.modalities_in_study cannot be used here, because it includes the
    non-image series, such as the DOC and SR that report delivery adds to
    the exam's study.
    """
    series = (
        Series.objects.filter(study__exam_link__exam_id__in=exam_ids).exclude(modality="")
        .values_list("study__exam_link__exam_id", "modality")
    )
    by_exam: dict[int, list[str]] = {}
    for exam_id, modality in series:
        by_exam.setdefault(exam_id, []).append(modality)
    return by_exam


def _refresh_modalities(exam_ids: Iterable[int], rules: list[SubspecialtyRule], result: SyncResult) -> None:
    """Compute the modalities of each exam again from the image series of all its studies."""
    ids = list(exam_ids)
    for start in range(0, len(ids), BATCH_SIZE):
        chunk = ids[start:start + BATCH_SIZE]
        by_exam = _series_modalities(chunk)
        for exam in Exam.objects.filter(pk__in=chunk).only("id", "modalities", "subspecialty_id", "body_part", "description", "requested_procedure"):
            if exam.pk not in by_exam:
                # An exam without a series that has a Modality keeps its modalities.
                continue
            modalities = image_modalities(by_exam[exam.pk])
            if modalities == exam.modalities:
                continue
            exam.modalities = modalities
            changes = {"modalities": modalities, "updated_at": timezone.now()}
            if exam.subspecialty_id is None:
                changes["subspecialty_id"] = choose_subspecialty(exam, rules)
            # A plain UPDATE of these columns leaves concurrent edits of other fields alone.
            Exam.objects.filter(pk=exam.pk).update(**changes)
            result.exams_updated += 1


def _changed_exam_ids(since: datetime.datetime | None, now: datetime.datetime) -> Iterable[int]:
    links = ExamStudy.objects.all()
    if since is not None:
        # created_at is indexed and narrows the scan; updated_at then picks the studies that grew.
        links = links.filter(study__created_at__gte=now - MODALITY_WINDOW, study__updated_at__gte=since)
    return links.values_list("exam_id", flat=True).distinct().iterator(chunk_size=2000)


# Exams that no reader has written anything for yet.
UNREPORTED_STATUSES = (ExamStatus.UNREAD, ExamStatus.IN_PROGRESS)


def _exam_has_images(exam: Exam, storage: FileStorage) -> bool:
    return any(study_has_images(study, storage) for study in exam.studies.all())


def _has_reader_work(exam: Exam) -> bool:
    """Return whether a reader has written a draft, signed a report or raised an image-quality issue on `exam`."""
    return Report.objects.filter(exam=exam).exists() or exam.signed_reports.exists() or exam.quality_issues.exists()


def _remove_exam(exam_id: int, result: SyncResult) -> None:
    """Delete the exam and its study links, unless a reader started on it since it was selected."""
    with transaction.atomic():
        # The row lock makes a draft save wait. On PostgreSQL a new report or issue row
        # waits too, because its foreign key check locks the exam, and SQLite runs one
        # write transaction at a time. So the checks after the lock see all work on the exam.
        exam = Exam.objects.select_for_update().filter(pk=exam_id, status__in=UNREPORTED_STATUSES).first()
        if exam is None or _has_reader_work(exam):
            return
        study_uids = list(exam.studies.values_list("study_instance_uid", flat=True))
        try:
            exam.delete()
        except ProtectedError as exc:
            logger.warning("exam without images kept, other records refer to it exam_pk=%s accession=%s: %s", exam_id, exam.accession_number, exc)
            return
    result.exams_removed += 1
    logger.info("exam without images removed exam_pk=%s accession=%s study_instance_uids=%s", exam_id, exam.accession_number, ",".join(study_uids))


def remove_exams_without_images(storage: FileStorage, result: SyncResult) -> None:
    """Remove the unread or just claimed exams whose studies have no images, so that they leave the worklist.

    Versions before the image rule of study_has_images made an exam of every
    study. An exam with a draft or signed report, or an image-quality issue,
    stays whatever its studies hold. The studies of a removed exam get an exam
    again when images arrive.
    """
    candidates = Exam.objects.filter(status__in=UNREPORTED_STATUSES, report__isnull=True, signed_reports__isnull=True, quality_issues__isnull=True)
    ids = list(candidates.order_by("pk").values_list("pk", flat=True).distinct())
    for start in range(0, len(ids), BATCH_SIZE):
        chunk = ids[start:start + BATCH_SIZE]
        for exam in Exam.objects.filter(pk__in=chunk).prefetch_related("studies").order_by("pk"):
            if not _exam_has_images(exam, storage):
                _remove_exam(exam.pk, result)


def _sync_state() -> ExamSyncState:
    try:
        state, _ = ExamSyncState.objects.get_or_create(pk=1)
    except IntegrityError:
        # Another process created the row at the same moment.
        state = ExamSyncState.objects.get(pk=1)
    return state


def sync_exams(*, full: bool = False, storage: FileStorage | None = None) -> SyncResult:
    """Link every study with images, or with the accession number of an exam, to an exam, and update the modalities of exams whose studies grew.

    Without `full`, only studies created since shortly before the previous
    run are checked, through the index on Study.created_at, and the studies
    without an exam that received instances since then. A full run, which is
    also the first run and the next one after the sync state was reset, also
    removes the exams without images that nobody has started to report
    (see remove_exams_without_images).
    """
    started = timezone.now()
    storage = storage or default_storage()
    state = _sync_state()
    since = None if full or state.checked_until is None else state.checked_until - SYNC_MARGIN
    rules = active_rules()
    result = SyncResult()

    if since is None:
        remove_exams_without_images(storage, result)

    last_id = 0
    matcher: ClinicianMatcher | None = None
    while True:
        studies = Study.objects.filter(exam_link__isnull=True, pk__gt=last_id)
        if since is not None:
            # A study without images is checked again when instances arrive. NOTE: after MODALITY_WINDOW only a full run does.
            changed = Q(created_at__gte=started - MODALITY_WINDOW, updated_at__gte=since)
            studies = studies.filter(Q(created_at__gte=since) | changed)
        batch = list(studies.select_related("patient").order_by("pk")[:BATCH_SIZE])
        if not batch:
            break
        # Read once a run, and only when a study waits, because the sync runs every few seconds.
        matcher = matcher or ClinicianMatcher.load()
        for study in batch:
            _add_study(study, storage, rules, matcher, result)
        last_id = batch[-1].pk

    _refresh_modalities(_changed_exam_ids(since, started), rules, result)
    # A slower process that started earlier must not move the mark back.
    ExamSyncState.objects.filter(Q(pk=1) & (Q(checked_until__isnull=True) | Q(checked_until__lt=started))).update(checked_until=started)
    if result:
        logger.info(
            "exams synchronised: %d studies linked, %d exams created, %d exams updated, %d exams without images removed, "
            "%d referring clinicians matched in %.2fs",
            result.studies_linked, result.exams_created, result.exams_updated, result.exams_removed, result.clinicians_matched,
            (timezone.now() - started).total_seconds(),
        )
    return result
