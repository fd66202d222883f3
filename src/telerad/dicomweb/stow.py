"""STOW-RS: store instances sent as multipart/related (PS3.18 10.5).

Each application/dicom part is a Part 10 file and goes through the archive's
ingest like a C-STORE, so it is fsynced and indexed before the response reports
it as stored. Parts are stored one by one as the body is read, and the
response is a Store Instances Response Module (PS3.18 Annex I) in DICOM JSON.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import enum
import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from pydicom import Dataset
from pydicom.datadict import tag_for_keyword

from telerad.accounts.roles import Permission, requires
from telerad.archive import header, ingest
from telerad.archive.models import Instance
from telerad.audit import events as audit
from telerad.dicomweb import multipart, prebuild
from telerad.dicomweb.accept import Offer, choose, not_acceptable
from telerad.dicomweb.http import DicomwebError, client_address, endpoint, record_access

logger = logging.getLogger(__name__)

DICOM_MEDIA_TYPE = "application/dicom"
RESPONSE_OFFERS = (Offer("application/dicom+json"), Offer("application/json"))
# Content-Transfer-Encoding values that leave the bytes as they are (RFC 2045 6.1).
IDENTITY_ENCODINGS = frozenset({"", "binary", "8bit", "7bit"})
# Warning header values per response, so that a large upload of bad parts keeps the header short.
MAX_WARNINGS = 20
UID_TAGS = {keyword: int(tag_for_keyword(keyword) or 0) for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID")}


class FailureReason(enum.IntEnum):
    """Failure Reason (0008,1197) values of PS3.18 Table I.2-2, plus the codes telerad adds."""

    OUT_OF_RESOURCES = 0xA700
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000
    TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
    PROCESSING_FAILURE = 0x0110
    # PS3.7 C.5: the failure C-STORE also returns for another instance with this SOP Instance UID.
    DUPLICATE_SOP_INSTANCE = 0x0111
    # Table I.2-2 has no code for an instance of another study than the target
    # resource names, so telerad uses its own code in the Cxxx range.
    STUDY_INSTANCE_UID_MISMATCH = 0xC409


class WarningReason(enum.IntEnum):
    """Warning Reason (0008,1196) values of PS3.18 Table I.2-1, plus the code telerad adds."""

    COERCION_OF_DATA_ELEMENTS = 0xB000
    # telerad's own code: an identical instance was already stored, so nothing changed.
    ALREADY_STORED = 0xB00E


@dataclasses.dataclass(frozen=True)
class Identifiers:
    """The UIDs read from a part before it is stored; empty where the part does not contain them."""

    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    transfer_syntax_uid: str = ""
    meta_sop_class_uid: str = ""
    meta_sop_instance_uid: str = ""


@dataclasses.dataclass(frozen=True)
class PartOutcome:
    """The result of one part: a stored instance, possibly with a warning, or a failure."""

    part_number: int
    identifiers: Identifiers
    result: ingest.StoreResult | None = None
    warning: WarningReason | None = None
    failure: FailureReason | None = None
    message: str = ""

    @property
    def stored(self) -> bool:
        return self.failure is None


@endpoint
@requires(Permission.STORE_STUDIES)
def store_instances(request: HttpRequest, study: str | None = None) -> HttpResponse:
    """Store the application/dicom parts of a multipart/related body (PS3.18 10.5)."""
    if choose(request.headers.get("Accept", ""), RESPONSE_OFFERS) is None:
        raise not_acceptable(request.headers.get("Accept", ""), RESPONSE_OFFERS)
    boundary = _boundary_of_request(request)
    max_bytes = settings.TELERAD.dicomweb_max_upload_bytes
    _require_content_length_within(request, max_bytes)

    outcomes: list[PartOutcome] = []
    syntax_error = ""
    try:
        parts = multipart.iter_parts(request, boundary, max_bytes=max_bytes, temporary_dir=settings.TELERAD.temporary_dir)  # type: ignore[arg-type]
        for part in parts:
            with contextlib.closing(part.content):
                outcomes.append(_store_part(request, part, study))
    except multipart.MalformedMultipart as exc:
        syntax_error = str(exc)
        if not any(outcome.stored for outcome in outcomes):
            logger.warning("STOW-RS malformed body user=%s parts=%d error=%s", request.user.get_username(), len(outcomes), syntax_error)
            raise DicomwebError(400, _("The multipart body is malformed: %(error)s.") % {"error": syntax_error}) from None
    except multipart.BodyTooLarge as exc:
        # NOTE: parts completed before the limit was reached stay stored and
        # audited, but a 413 does not list them; sending them again is harmless.
        logger.warning("STOW-RS body over the limit user=%s limit_bytes=%d stored_parts=%d", request.user.get_username(), exc.limit, sum(outcome.stored for outcome in outcomes))
        raise DicomwebError(413, _("The request body is larger than the limit of %(limit)d MiB (TELERAD_DICOMWEB_MAX_UPLOAD_MB); send the instances in several requests.") % {"limit": exc.limit // (1024 * 1024)}) from None
    finally:
        _record_stored_studies(request, outcomes)
    return _store_response(request, study, outcomes, syntax_error)


def _boundary_of_request(request: HttpRequest) -> bytes:
    """Return the boundary of a multipart/related; type="application/dicom" request, raising 415 for other types and 400 without a boundary."""
    header = request.headers.get("Content-Type", "")
    content_type = multipart.ContentType.parse(header)
    root_type = content_type.parameters.get("type", DICOM_MEDIA_TYPE).strip().lower()
    if content_type.media_type != "multipart/related" or root_type != DICOM_MEDIA_TYPE:
        raise DicomwebError(415, _("Content-Type %(header)r is not supported; send multipart/related; type=\"application/dicom\" with one DICOM file per part.") % {"header": header})
    try:
        return multipart.boundary_of(content_type)
    except multipart.MalformedMultipart as exc:
        raise DicomwebError(400, str(exc)) from None


def _require_content_length_within(request: HttpRequest, max_bytes: int) -> None:
    # Under `telerad serve`, telerad.core.body_limit refuses such a body
    # before Django spools it; this check covers other ways of running.
    length = request.META.get("CONTENT_LENGTH") or ""
    if length.isdigit() and int(length) > max_bytes:
        logger.warning("STOW-RS body over the limit user=%s content_length=%s limit_bytes=%d", request.user.get_username(), length, max_bytes)
        raise DicomwebError(413, _("The request body of %(length)s bytes is larger than the limit of %(limit)d MiB (TELERAD_DICOMWEB_MAX_UPLOAD_MB); send the instances in several requests.") % {"length": length, "limit": max_bytes // (1024 * 1024)})


def _store_part(request: HttpRequest, part: multipart.Part, study: str | None) -> PartOutcome:
    problem = _part_media_problem(part)
    if problem:
        return PartOutcome(part.number, Identifiers(), failure=FailureReason.CANNOT_UNDERSTAND, message=problem)

    with part.content.buffer() as buffer:
        identifiers = _read_identifiers(buffer)
        rejection = _rejection_before_storing(identifiers, study)
        if rejection is not None:
            failure, message = rejection
            return PartOutcome(part.number, identifiers, failure=failure, message=message)
        source = ingest.Source(kind="stow", address=client_address(request), user=request.user.get_username())
        try:
            result = ingest.store_file(buffer, source=source)
        except OSError as exc:
            logger.error("storing failed part=%d sop_instance_uid=%s error=%s", part.number, identifiers.sop_instance_uid or "-", exc)
            return PartOutcome(part.number, identifiers, failure=FailureReason.OUT_OF_RESOURCES, message=f"storage error: {exc.strerror or exc}")
        except Exception:
            logger.exception("storing failed part=%d sop_instance_uid=%s", part.number, identifiers.sop_instance_uid or "-")
            return PartOutcome(part.number, identifiers, failure=FailureReason.PROCESSING_FAILURE, message="internal error while storing; see the server log")
    return _outcome_of(part.number, identifiers, result)


def _part_media_problem(part: multipart.Part) -> str:
    """Return why a part cannot be a DICOM file, or "" when it can."""
    content_type = part.content_type
    # A part without Content-Type has the type of the multipart/related body (RFC 2387 3.1).
    if content_type is not None and content_type.media_type != DICOM_MEDIA_TYPE:
        return f"part {part.number} is {content_type.media_type}; only {DICOM_MEDIA_TYPE} parts are stored, and metadata with bulk data is not supported"
    encoding = part.headers.get("content-transfer-encoding", "").strip().lower()
    if encoding not in IDENTITY_ENCODINGS:
        return f"part {part.number} has Content-Transfer-Encoding {encoding}; send the DICOM file as binary"
    return ""


def _read_identifiers(buffer: bytes) -> Identifiers:
    """Read the UIDs of a part leniently; ingest rejects what is malformed, with its own reason."""
    try:
        meta = header.read_file_meta(buffer)
    except header.MalformedDataset:
        return Identifiers()
    if meta is None:
        identifiers = Identifiers(transfer_syntax_uid=header.guess_transfer_syntax(buffer) or "")
        offset = 0
    else:
        identifiers = Identifiers(
            sop_class_uid=meta.text(ingest.MEDIA_STORAGE_SOP_CLASS_UID),
            sop_instance_uid=meta.text(ingest.MEDIA_STORAGE_SOP_INSTANCE_UID),
            transfer_syntax_uid=meta.text(ingest.TRANSFER_SYNTAX_UID),
            meta_sop_class_uid=meta.text(ingest.MEDIA_STORAGE_SOP_CLASS_UID),
            meta_sop_instance_uid=meta.text(ingest.MEDIA_STORAGE_SOP_INSTANCE_UID),
        )
        offset = meta.dataset_offset
    transfer_syntax = identifiers.transfer_syntax_uid
    if transfer_syntax not in ingest.KNOWN_TRANSFER_SYNTAXES:
        return identifiers

    encoding = header.Encoding.of(transfer_syntax)
    try:
        data, start = header.dataset_bytes(buffer, offset, encoding)
        values = header.scan(data, start, encoding, list(UID_TAGS.values()))
    except header.MalformedDataset:
        return identifiers
    texts = {keyword: _uid_text(values.get(tag)) for keyword, tag in UID_TAGS.items()}
    return dataclasses.replace(
        identifiers,
        sop_class_uid=texts["SOPClassUID"] or identifiers.sop_class_uid,
        sop_instance_uid=texts["SOPInstanceUID"] or identifiers.sop_instance_uid,
        study_instance_uid=texts["StudyInstanceUID"],
    )



def _uid_text(raw: header.RawValue | None) -> str:
    return "" if raw is None else raw.value.rstrip(b"\x00 ").decode("ascii", errors="replace").strip()


def _rejection_before_storing(identifiers: Identifiers, study: str | None) -> tuple[FailureReason, str] | None:
    syntax = identifiers.transfer_syntax_uid
    if syntax and syntax not in ingest.KNOWN_TRANSFER_SYNTAXES:
        return FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED, f"the transfer syntax {syntax!r} is not supported"
    # PS3.18 Table 10.5.3-1 names a Study Instance UID mismatch as a conflict, so /studies/{study} stores only that study.
    if study is None:
        return None
    if not identifiers.study_instance_uid:
        return FailureReason.CANNOT_UNDERSTAND, "the StudyInstanceUID of the instance cannot be read, so it cannot be checked against the target study"
    if identifiers.study_instance_uid != study:
        return FailureReason.STUDY_INSTANCE_UID_MISMATCH, f"the instance belongs to study {identifiers.study_instance_uid}, not to the target study {study}"
    return None


def _outcome_of(part_number: int, identifiers: Identifiers, result: ingest.StoreResult) -> PartOutcome:
    outcome = PartOutcome(part_number, identifiers, result=result, message=result.reason)
    if result.outcome is ingest.Outcome.REJECTED:
        failure = FailureReason.DATASET_DOES_NOT_MATCH_SOP_CLASS if result.sop_class_mismatch else FailureReason.CANNOT_UNDERSTAND
        return dataclasses.replace(outcome, failure=failure)
    if result.outcome is ingest.Outcome.CONFLICT:
        return dataclasses.replace(outcome, failure=FailureReason.DUPLICATE_SOP_INSTANCE)
    if result.outcome is ingest.Outcome.ALREADY_PRESENT:
        return dataclasses.replace(outcome, warning=WarningReason.ALREADY_STORED, message="an identical instance is already stored")
    meta_uids = (identifiers.meta_sop_class_uid, identifiers.meta_sop_instance_uid)
    if identifiers.meta_sop_instance_uid and meta_uids != (identifiers.sop_class_uid, result.sop_instance_uid):
        # ingest stored the dataset behind a file meta group naming the dataset's own UIDs.
        return dataclasses.replace(outcome, warning=WarningReason.COERCION_OF_DATA_ELEMENTS, message="the file meta information named other UIDs than the dataset and was corrected")
    return outcome


def _store_response(request: HttpRequest, study: str | None, outcomes: list[PartOutcome], syntax_error: str) -> HttpResponse:
    stored = [outcome for outcome in outcomes if outcome.stored]
    failed = [outcome for outcome in outcomes if not outcome.stored]
    _log_summary(request, outcomes, syntax_error)

    response_dataset = Dataset()
    studies = {outcome.result.study_instance_uid for outcome in stored if outcome.result is not None}
    target_study = study or (next(iter(studies)) if len(studies) == 1 else None)
    # Type 2: empty when the stored instances belong to several studies.
    response_dataset.RetrieveURL = _absolute(request, "dicomweb:study", study=target_study) if target_study else None
    if failed:
        response_dataset.FailedSOPSequence = [_failed_item(outcome) for outcome in failed]
    if stored:
        response_dataset.ReferencedSOPSequence = _referenced_items(request, stored)

    response = JsonResponse(response_dataset.to_json_dict(), status=_http_status(stored, failed, syntax_error), content_type="application/dicom+json")
    warnings = [f"part {outcome.part_number}: {outcome.message}" for outcome in outcomes if outcome.message and (outcome.warning or outcome.failure)]
    if syntax_error:
        warnings.append(f"the multipart body is malformed after part {len(outcomes)}: {syntax_error}")
    if len(warnings) > MAX_WARNINGS:
        warnings[MAX_WARNINGS - 1:] = [f"{len(warnings) - MAX_WARNINGS + 1} more parts with warnings or failures; see the response body"]
    if warnings:
        service = request.build_absolute_uri(reverse("dicomweb:studies")).removesuffix("/studies")
        response["Warning"] = ", ".join(_warning_value(service, text) for text in warnings)
    return response


def _http_status(stored: list[PartOutcome], failed: list[PartOutcome], syntax_error: str) -> int:
    """PS3.18 Table 10.5.3-1: 200 all stored, 202 some stored with warnings or failures, 409 none stored."""
    if not stored:
        return 409
    if failed or syntax_error or any(outcome.warning for outcome in stored):
        return 202
    return 200


def _failed_item(outcome: PartOutcome) -> Dataset:
    item = Dataset()
    if outcome.identifiers.sop_class_uid:
        item.ReferencedSOPClassUID = outcome.identifiers.sop_class_uid
    if outcome.identifiers.sop_instance_uid:
        item.ReferencedSOPInstanceUID = outcome.identifiers.sop_instance_uid
    item.FailureReason = int(outcome.failure or FailureReason.PROCESSING_FAILURE)
    return item


def _referenced_items(request: HttpRequest, stored: list[PartOutcome]) -> list[Dataset]:
    uids = [outcome.result.sop_instance_uid for outcome in stored if outcome.result is not None]
    rows = {
        sop_instance_uid: (sop_class_uid, series_instance_uid)
        for sop_instance_uid, sop_class_uid, series_instance_uid in Instance.objects.filter(sop_instance_uid__in=uids).values_list(
            "sop_instance_uid", "sop_class_uid", "series__series_instance_uid"
        )
    }
    items = []
    for outcome in stored:
        assert outcome.result is not None
        sop_instance_uid = outcome.result.sop_instance_uid
        sop_class_uid, series_instance_uid = rows.get(sop_instance_uid, (outcome.identifiers.sop_class_uid, ""))
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class_uid
        item.ReferencedSOPInstanceUID = sop_instance_uid
        item.RetrieveURL = _absolute(
            request, "dicomweb:instance", study=outcome.result.study_instance_uid, series=series_instance_uid, instance=sop_instance_uid
        ) if series_instance_uid else None
        if outcome.warning is not None:
            item.WarningReason = int(outcome.warning)
        items.append(item)
    return items


def _absolute(request: HttpRequest, name: str, **kwargs: Any) -> str:
    return request.build_absolute_uri(reverse(name, kwargs=kwargs))


def _warning_value(service: str, text: str) -> str:
    """Format a Warning header value in the PS3.18 form 299 {+service}: "text", in ASCII."""
    quoted = text.encode("ascii", errors="replace").decode("ascii").replace("\\", "\\\\").replace('"', '\\"')
    return f'299 {service}: "{quoted}"'


def _log_summary(request: HttpRequest, outcomes: list[PartOutcome], syntax_error: str) -> None:
    user = request.user.get_username()
    for outcome in outcomes:
        if not outcome.stored:
            logger.warning(
                "STOW-RS part failed user=%s part=%d sop_instance_uid=%s failure_reason=%04X reason=%s",
                user, outcome.part_number, outcome.identifiers.sop_instance_uid or "-", outcome.failure, outcome.message,
            )
    counts = collections.Counter(_count_key(outcome) for outcome in outcomes)
    logger.info(
        "STOW-RS request user=%s address=%s path=%s stored=%d already_stored=%d failed=%d%s",
        user, client_address(request), request.path, counts["stored"], counts["already stored"], counts["failed"],
        f" malformed_body={syntax_error!r}" if syntax_error else "",
    )


def _count_key(outcome: PartOutcome) -> str:
    if not outcome.stored:
        return "failed"
    return "already stored" if outcome.warning is WarningReason.ALREADY_STORED else "stored"


def _record_stored_studies(request: HttpRequest, outcomes: list[PartOutcome]) -> None:
    """Write one INSTANCES_STORED audit event per study with stored instances, and one failure event per study with refused parts."""
    per_study: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for outcome in outcomes:
        if outcome.stored and outcome.result is not None:
            per_study[(outcome.result.patient_id, outcome.result.study_instance_uid)][_count_key(outcome)] += 1
    prebuild.schedule(study_instance_uid for _patient_id, study_instance_uid in per_study)
    for (patient_id, study_instance_uid), counts in per_study.items():
        record_access(
            request,
            audit.Action.INSTANCES_STORED,
            patient_id=patient_id,
            study_instance_uid=study_instance_uid,
            detail=f"{counts['stored']} instances stored, {counts['already stored']} already stored",
        )
    refused: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for outcome in outcomes:
        if not outcome.stored and outcome.failure is not None:
            refused[outcome.identifiers.study_instance_uid][f"{int(outcome.failure):04X}"] += 1
    for study_instance_uid, reasons in refused.items():
        record_access(
            request,
            audit.Action.INSTANCES_STORED,
            study_instance_uid=study_instance_uid,
            detail="refused parts by failure reason: " + ", ".join(f"{code} x{count}" for code, count in sorted(reasons.items())),
            outcome=audit.Outcome.MINOR_FAILURE,
        )
