"""Make an exam of every study in the archive, from the index and the DICOM header.

:func:`sync_exams` finds studies without an exam and links each to one: the
exam of the same patient and accession number when there is one, else a new
exam. It reads the header of one stored instance (without pixel data) for the
order information that the index does not keep: requested procedure, reason,
history, priority, institution. It runs in a background thread of the
servers (see :mod:`telerad.reading.background`) and from ``telerad exams
sync``, whatever path the study came in by. Every run starts from the
database, so several processes may run it at once: the unique constraints on
exams and study links decide which process creates a row, and the other one
links to it.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from typing import Iterable

import pydicom
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from pydicom.errors import InvalidDicomError

from telerad.archive.ingest import default_storage
from telerad.archive.models import Instance, Series, Study
from telerad.archive.storage import FileStorage
from telerad.reading.models import Exam, ExamStudy, ExamSyncState, Priority, SubspecialtyRule

logger = logging.getLogger(__name__)

BATCH_SIZE = 200
# A study row becomes visible to other processes when its ingest transaction
# commits, a moment after its created_at. Each run therefore looks back this
# far before the start of the previous run, so that a late commit is found.
SYNC_MARGIN = datetime.timedelta(minutes=10)
# Series that arrive later add modalities to a study. Each run compares the
# exams of studies created within this window and changed since the last run;
# `telerad exams sync --full` compares all of them.
MODALITY_WINDOW = datetime.timedelta(days=2)
# Modality (0008,0060) defined terms of series that contain no images (PS3.3
# C.7.3.1.1.1): documents, structured reports, key object selections,
# presentation states, registrations, segmentations, fiducials, audio and
# radiotherapy objects. Report delivery stores the signed report in the
# exam's study as DOC and SR, and viewers save measurements as SR, KO or PR.
# None of them is what was acquired, so exams leave them out of their
# modalities. The data migration recompute_exam_modalities keeps its own copy.
NON_IMAGE_MODALITIES = frozenset({
    "AU", "DOC", "FID", "KO", "PLAN", "PR", "REG", "RTPLAN", "RTRECORD", "RTSTRUCT", "SEG", "SR",
})

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


@dataclasses.dataclass
class SyncResult:
    exams_created: int = 0
    studies_linked: int = 0
    exams_updated: int = 0

    def __bool__(self) -> bool:
        return bool(self.exams_created or self.studies_linked or self.exams_updated)


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
    )


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
    """Merge backslash-separated modality lists into one sorted list without repeats or NON_IMAGE_MODALITIES.

    An exam whose series are all non-image objects (a study of one report,
    say) keeps them, so that the worklist still names what it contains. Its
    next image series replaces them.
    """
    modalities = {modality for value in values for modality in value.split("\\") if modality}
    images = modalities - NON_IMAGE_MODALITIES
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
        "requested_procedure": order.requested_procedure,
        "reason_for_study": order.reason_for_study,
        "clinical_history": order.clinical_history,
    }
    for field, value in fill.items():
        if value and not getattr(exam, field):
            setattr(exam, field, value)


def _link_study(study: Study, order: OrderInformation, calling_ae_title: str, rules: list[SubspecialtyRule]) -> bool:
    """Link one study to its exam in one transaction; return whether a new exam was made.

    Raises IntegrityError when another process made the same exam or link first.
    """
    with transaction.atomic():
        exam = None
        if study.accession_number:
            exam = Exam.objects.select_for_update().filter(patient_id=study.patient_id, accession_number=study.accession_number).first()
        created = exam is None
        if exam is None:
            exam = _new_exam(study, order, calling_ae_title)
        else:
            _merge_study(exam, study, order, calling_ae_title)
        if exam.subspecialty_id is None:
            exam.subspecialty_id = choose_subspecialty(exam, rules)
        exam.save()
        ExamStudy.objects.create(exam=exam, study=study)
    logger.debug("study linked to exam exam_pk=%s accession=%s study_instance_uid=%s new=%s", exam.pk, exam.accession_number, study.study_instance_uid, created)
    return created


def _add_study(study: Study, storage: FileStorage, rules: list[SubspecialtyRule], result: SyncResult) -> None:
    order, calling_ae_title = read_order_information(study, storage)
    # A second attempt finds the exam or the link that another process committed first.
    for attempt in (1, 2):
        try:
            created = _link_study(study, order, calling_ae_title, rules)
        except IntegrityError as exc:
            if ExamStudy.objects.filter(study=study).exists():
                return
            if attempt == 2:
                logger.error("study not linked to an exam study_instance_uid=%s accession=%s: %s", study.study_instance_uid, study.accession_number, exc)
            continue
        result.studies_linked += 1
        result.exams_created += int(created)
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


def _sync_state() -> ExamSyncState:
    try:
        state, _ = ExamSyncState.objects.get_or_create(pk=1)
    except IntegrityError:
        # Another process created the row at the same moment.
        state = ExamSyncState.objects.get(pk=1)
    return state


def sync_exams(*, full: bool = False, storage: FileStorage | None = None) -> SyncResult:
    """Link every study without an exam to one, and update the modalities of exams whose studies grew.

    Without `full`, only studies created since shortly before the previous
    run are checked, through the index on Study.created_at.
    """
    started = timezone.now()
    storage = storage or default_storage()
    state = _sync_state()
    since = None if full or state.checked_until is None else state.checked_until - SYNC_MARGIN
    rules = active_rules()
    result = SyncResult()

    last_id = 0
    while True:
        studies = Study.objects.filter(exam_link__isnull=True, pk__gt=last_id)
        if since is not None:
            studies = studies.filter(created_at__gte=since)
        batch = list(studies.select_related("patient").order_by("pk")[:BATCH_SIZE])
        if not batch:
            break
        for study in batch:
            _add_study(study, storage, rules, result)
        last_id = batch[-1].pk

    _refresh_modalities(_changed_exam_ids(since, started), rules, result)
    # A slower process that started earlier must not move the mark back.
    ExamSyncState.objects.filter(Q(pk=1) & (Q(checked_until__isnull=True) | Q(checked_until__lt=started))).update(checked_until=started)
    if result:
        logger.info(
            "exams synchronised: %d studies linked, %d exams created, %d exams updated in %.2fs",
            result.studies_linked, result.exams_created, result.exams_updated, (timezone.now() - started).total_seconds(),
        )
    return result
