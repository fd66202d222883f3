"""Store one instance: validate it, write its file durably, then commit its index rows.

This is the single entry point of every way images arrive (C-STORE, STOW-RS,
import from disk). The order of steps is the archive's durability rule: the
caller may acknowledge the instance only when :func:`store` returns a success
outcome, and by then the file is fsynced and the index transaction committed.
A crash between the two steps leaves an unreferenced file, never an index row
without its file.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import logging
import struct
from functools import lru_cache
from pathlib import Path
from typing import Literal
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from pydicom.uid import AllTransferSyntaxes

from telerad.audit import events as audit
from telerad.archive import equivalence, header, index
from telerad.archive.index import Rejected
from telerad.archive.models import Instance
from telerad.archive.record import WANTED_TAGS, InstanceRecord, InvalidAttribute, build_record
from telerad.archive.storage import FileStorage, storage_key
from telerad.config import DuplicatePolicy

logger = logging.getLogger(__name__)

# Tags of the file meta group (PS3.10 7.1).
MEDIA_STORAGE_SOP_CLASS_UID = 0x00020002
MEDIA_STORAGE_SOP_INSTANCE_UID = 0x00020003
TRANSFER_SYNTAX_UID = 0x00020010

# PS3.7 D.3.3.2: telerad's Implementation Class UID, a UUID-derived UID (PS3.5 B.2).
IMPLEMENTATION_CLASS_UID = "2.25.97339573584972770367630146180391949078"
IMPLEMENTATION_VERSION_NAME = "TELERAD_010"
KNOWN_TRANSFER_SYNTAXES = frozenset(str(uid) for uid in AllTransferSyntaxes)


class Outcome(enum.Enum):
    STORED = "stored"
    ALREADY_PRESENT = "already present"
    REPLACED = "replaced"
    REJECTED = "rejected"
    CONFLICT = "conflict"

    @property
    def succeeded(self) -> bool:
        return self in {Outcome.STORED, Outcome.ALREADY_PRESENT, Outcome.REPLACED}


@dataclasses.dataclass(frozen=True)
class Source:
    """The origin of an instance, for the index and the audit trail."""

    kind: str  # "dimse", "stow" or "import"
    ae_title: str = ""
    address: str = ""
    user: str = ""


@dataclasses.dataclass(frozen=True)
class StoreResult:
    outcome: Outcome
    reason: str = ""
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    patient_id: str = ""
    # The dataset is of another SOP class than the request named (PS3.4 B.2.3, status A900).
    sop_class_mismatch: bool = False


@lru_cache(maxsize=1)
def default_storage() -> FileStorage:
    config = settings.TELERAD
    return FileStorage(config.storage_dir, config.temporary_dir)


def store_file(buffer: bytes, *, source: Source, storage: FileStorage | None = None) -> StoreResult:
    """Store a Part 10 file as it is; a dataset without file meta gets one added in front of it.

    `buffer` is bytes or an mmap of the whole file.
    """
    try:
        meta = header.read_file_meta(buffer)
    except header.MalformedDataset as exc:
        return _rejected(f"invalid file meta information: {exc}")
    if meta is None:
        return _store_bare_dataset(buffer, source=source, storage=storage)

    transfer_syntax = meta.text(TRANSFER_SYNTAX_UID)
    if not transfer_syntax:
        return _rejected("the file meta information has no TransferSyntaxUID")
    return _store(
        buffer,
        dataset_offset=meta.dataset_offset,
        transfer_syntax=transfer_syntax,
        meta_prefix=None,
        expected_class=meta.text(MEDIA_STORAGE_SOP_CLASS_UID),
        expected_instance=meta.text(MEDIA_STORAGE_SOP_INSTANCE_UID),
        source=source,
        storage=storage,
    )


def store_dataset(
    buffer: bytes,
    *,
    dataset_offset: int,
    transfer_syntax: str,
    sop_class_uid: str,
    sop_instance_uid: str,
    source: Source,
    storage: FileStorage | None = None,
) -> StoreResult:
    """Store an encoded dataset received over the network, adding telerad's file meta information.

    The dataset must carry the SOP Class and Instance UIDs named by the request.
    """
    prefix = file_meta_prefix(sop_class_uid, sop_instance_uid, transfer_syntax, sending_ae_title=source.ae_title)
    return _store(
        buffer,
        dataset_offset=dataset_offset,
        transfer_syntax=transfer_syntax,
        meta_prefix=prefix,
        expected_class=sop_class_uid,
        expected_instance=sop_instance_uid,
        source=source,
        storage=storage,
    )


def file_meta_prefix(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, *, sending_ae_title: str = "") -> bytes:
    """Return the preamble, ``DICM`` prefix and file meta group (PS3.10 7.1) for a received dataset.

    telerad writes the file, so it is the Source AE; a network peer is named
    as the Sending AE and telerad as the Receiving AE. Encoded by hand because
    pydicom's writer costs about 1 ms per instance on the receive path.
    """
    ae_title = settings.TELERAD.ae_title
    elements = [
        _meta_element(0x0001, "OB", b"\x00\x01"),
        _meta_element(0x0002, "UI", _padded_uid(sop_class_uid)),
        _meta_element(0x0003, "UI", _padded_uid(sop_instance_uid)),
        _meta_element(0x0010, "UI", _padded_uid(transfer_syntax)),
        _meta_element(0x0012, "UI", _padded_uid(IMPLEMENTATION_CLASS_UID)),
        _meta_element(0x0013, "SH", _padded_text(IMPLEMENTATION_VERSION_NAME)),
        _meta_element(0x0016, "AE", _padded_text(ae_title)),
    ]
    if sending_ae_title:
        elements.append(_meta_element(0x0017, "AE", _padded_text(sending_ae_title)))
        elements.append(_meta_element(0x0018, "AE", _padded_text(ae_title)))
    group = b"".join(elements)
    group_length = _meta_element(0x0000, "UL", struct.pack("<L", len(group)))
    return b"\x00" * header.PREAMBLE_LENGTH + b"DICM" + group_length + group


def _meta_element(element: int, vr: str, value: bytes) -> bytes:
    # PS3.5 7.1.2: explicit VR little endian; OB has a reserved field and a 4-byte length.
    if vr == "OB":
        return struct.pack("<HH2s2xL", 0x0002, element, vr.encode(), len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr.encode(), len(value)) + value


def _padded_uid(uid: str) -> bytes:
    value = uid.encode("ascii")
    return value + b"\x00" if len(value) % 2 else value


def _padded_text(text: str) -> bytes:
    value = text.encode("ascii")
    return value + b" " if len(value) % 2 else value


def _store_bare_dataset(buffer: bytes, *, source: Source, storage: FileStorage | None) -> StoreResult:
    transfer_syntax = header.guess_transfer_syntax(buffer)
    if transfer_syntax is None:
        return _rejected("not a DICOM file: no DICM prefix and no recognisable dataset encoding")
    try:
        values = header.scan(buffer, 0, header.Encoding.of(transfer_syntax), WANTED_TAGS)
        record = build_record(values, little_endian=header.Encoding.of(transfer_syntax).little_endian)
    except (header.MalformedDataset, InvalidAttribute) as exc:
        return _rejected(f"not a valid DICOM dataset: {exc}")
    return store_dataset(
        buffer,
        dataset_offset=0,
        transfer_syntax=transfer_syntax,
        sop_class_uid=str(record.instance["sop_class_uid"]),
        sop_instance_uid=record.sop_instance_uid,
        source=source,
        storage=storage,
    )


def _store(
    buffer: bytes,
    *,
    dataset_offset: int,
    transfer_syntax: str,
    meta_prefix: bytes | None,
    expected_class: str,
    expected_instance: str,
    source: Source,
    storage: FileStorage | None,
) -> StoreResult:
    storage = storage or default_storage()
    try:
        record = _read_record(buffer, dataset_offset, transfer_syntax)
        if meta_prefix is None and _names_other_instance(record, expected_class, expected_instance):
            # Some writers leave stale UIDs in the file meta group. The
            # dataset is authoritative, so the file is stored with its
            # dataset bytes unchanged behind a corrected meta group.
            logger.warning("file meta information names other UIDs; storing with corrected meta sop_instance_uid=%s", record.sop_instance_uid)
            meta_prefix = file_meta_prefix(str(record.instance["sop_class_uid"]), record.sop_instance_uid, transfer_syntax, sending_ae_title=source.ae_title)
        else:
            _require_request_uids(record, expected_class, expected_instance)
    except Rejected as exc:
        return dataclasses.replace(_rejected(str(exc), sop_instance_uid=expected_instance), sop_class_mismatch=exc.sop_class_mismatch)

    dataset_sha256 = hashlib.sha256(memoryview(buffer)[dataset_offset:]).hexdigest()
    key = storage_key(record.sop_instance_uid, dataset_sha256)
    chunks: list[bytes | memoryview] = [memoryview(buffer)] if meta_prefix is None else [meta_prefix, memoryview(buffer)[dataset_offset:]]
    stored_offset = dataset_offset if meta_prefix is None else len(meta_prefix)
    try:
        # The file is written before the index lookup of its SOP Instance
        # UID, so that a new instance, the most frequent case, costs one
        # statement. A copy already stored has the same key and is not
        # written again. Its insert fails on the unique UID, and
        # _settle_existing decides.
        file_size = storage.write(key, chunks)
    finally:
        # The chunks are views of the caller's buffer (often an mmap). A
        # traceback kept by a database error further down keeps this frame,
        # and a live view would keep the caller from closing its buffer.
        chunks.clear()
    file_fields = {
        "storage_key": key,
        "file_size": file_size,
        "dataset_sha256": dataset_sha256,
        "dataset_offset": stored_offset,
        "transfer_syntax_uid": transfer_syntax,
        "source_ae_title": source.ae_title[:16],
        "source_address": source.address[:64],
    }
    try:
        return _index(record, file_fields, source=source, storage=storage)
    except Rejected as exc:
        _discard_unreferenced(storage, key)
        return _rejected(str(exc), sop_instance_uid=record.sop_instance_uid)


def _read_record(buffer: bytes, dataset_offset: int, transfer_syntax: str) -> InstanceRecord:
    if transfer_syntax not in KNOWN_TRANSFER_SYNTAXES:
        raise Rejected(f"the transfer syntax {transfer_syntax!r} is not supported")
    encoding = header.Encoding.of(transfer_syntax)
    try:
        data, start = header.dataset_bytes(buffer, dataset_offset, encoding)
        values = header.scan(data, start, encoding, WANTED_TAGS)
        record = build_record(values, little_endian=encoding.little_endian)
    except (header.MalformedDataset, InvalidAttribute) as exc:
        raise Rejected(str(exc)) from None
    return record


def _names_other_instance(record: InstanceRecord, sop_class_uid: str, sop_instance_uid: str) -> bool:
    return (sop_instance_uid, sop_class_uid) != (record.sop_instance_uid, record.instance["sop_class_uid"])


def _require_request_uids(record: InstanceRecord, sop_class_uid: str, sop_instance_uid: str) -> None:
    """Check the UIDs of a C-STORE or STOW request against the dataset (PS3.4 B.2.3: status A900 on a class mismatch)."""
    if sop_instance_uid != record.sop_instance_uid:
        raise Rejected(f"the dataset's SOPInstanceUID {record.sop_instance_uid} differs from the request's {sop_instance_uid}")
    if sop_class_uid != record.instance["sop_class_uid"]:
        raise Rejected(f"the dataset's SOPClassUID {record.instance['sop_class_uid']} differs from the request's {sop_class_uid}", sop_class_mismatch=True)


def _compare_with_stored(record: InstanceRecord, dataset_sha256: str, source: Source, *, storage: FileStorage, candidate: Path) -> StoreResult | Literal["new", "replace"]:
    """Return the outcome for a SOP Instance UID that is already stored, or how to go on storing it.

    `candidate` is the new Part 10 file.
    """
    stored = index.stored_file(record.sop_instance_uid)
    if stored is None:
        return "new"
    result = _result(Outcome.ALREADY_PRESENT, record)
    if stored.dataset_sha256 == dataset_sha256:
        return result
    if storage.exists(stored.storage_key) and equivalence.same_content(storage.path(stored.storage_key), candidate.read_bytes()):
        logger.info("identical instance in another encoding ignored sop_instance_uid=%s source=%s", record.sop_instance_uid, _source_label(source))
        return result
    if settings.TELERAD.duplicate_policy == DuplicatePolicy.OVERWRITE:
        return "replace"
    reason = "an instance with this SOP Instance UID but other content is already stored; the duplicate policy keeps the first"
    logger.warning("duplicate SOP instance rejected sop_instance_uid=%s study_instance_uid=%s source=%s", record.sop_instance_uid, record.study_instance_uid, _source_label(source))
    audit.record_event(
        action=audit.Action.DUPLICATE_REJECTED,
        outcome=audit.Outcome.MINOR_FAILURE,
        user=source.user or source.ae_title,
        address=source.address,
        patient_id=record.patient["patient_id"],
        study_instance_uid=record.study_instance_uid,
        detail=f"sop_instance_uid={record.sop_instance_uid}; {reason}",
    )
    return dataclasses.replace(result, outcome=Outcome.CONFLICT, reason=reason)


def _source_label(source: Source) -> str:
    return source.ae_title or source.user or source.kind


def _index(record: InstanceRecord, file_fields: dict[str, object], *, source: Source, storage: FileStorage) -> StoreResult:
    try:
        _insert_rows(record, file_fields, source)
        return _result(Outcome.STORED, record)
    except (IntegrityError, index.StaleSeries):
        # The SOP Instance UID is stored already, by an earlier store or by
        # another association between two statements, or another association
        # created the same study or series. Forget the cached series, because
        # a rolled-back transaction may have created it.
        index.forget_series(str(record.series["series_instance_uid"]))
    return _settle_existing(record, file_fields, source=source, storage=storage)


def _insert_rows(record: InstanceRecord, file_fields: dict[str, object], source: Source) -> None:
    series = index.cached_series(record)
    if series is not None and connection.vendor == "postgresql":
        # One statement, so it needs no transaction of its own.
        index.insert_instance(series, {**record.instance, **file_fields})
        return
    with transaction.atomic():
        _write_rows(record, file_fields, source, replace=False)


def _settle_existing(record: InstanceRecord, file_fields: dict[str, object], *, source: Source, storage: FileStorage) -> StoreResult:
    """Decide, by the duplicate policy, what becomes of a new file whose SOP Instance UID failed to insert."""
    key = str(file_fields["storage_key"])
    dataset_sha256 = str(file_fields["dataset_sha256"])
    outcome = _compare_with_stored(record, dataset_sha256, source, storage=storage, candidate=storage.path(key))
    if isinstance(outcome, StoreResult):
        if outcome.outcome is Outcome.ALREADY_PRESENT:
            _restore_if_missing(record, file_fields, dataset_sha256, storage)
        _discard_unreferenced(storage, key)
        return outcome

    with transaction.atomic():
        replaced_key = _write_rows(record, file_fields, source, replace=outcome == "replace")
    if replaced_key is None:
        return _result(Outcome.STORED, record)
    if replaced_key != key:
        storage.delete(replaced_key)
    return _result(Outcome.REPLACED, record)


def _restore_if_missing(record: InstanceRecord, file_fields: dict[str, object], dataset_sha256: str, storage: FileStorage) -> None:
    """Point the index at the new file when the stored file of an equal instance is gone."""
    stored = index.stored_file(record.sop_instance_uid)
    if stored is None or stored.dataset_sha256 != dataset_sha256 or stored.storage_key == file_fields["storage_key"]:
        return
    if storage.exists(stored.storage_key):
        return
    logger.error("stored file missing, restored from a new copy sop_instance_uid=%s storage_key=%s", record.sop_instance_uid, file_fields["storage_key"])
    Instance.objects.filter(sop_instance_uid=record.sop_instance_uid).update(
        storage_key=file_fields["storage_key"], file_size=file_fields["file_size"], dataset_offset=file_fields["dataset_offset"],
    )


def _write_rows(record: InstanceRecord, file_fields: dict[str, object], source: Source, *, replace: bool) -> str | None:
    """Insert or replace the instance row; return the storage key it replaced, if any.

    An insert that races with another store of the same SOP Instance UID
    fails on the unique index, and the caller decides again.
    """
    series = index.series_for(record)
    if not replace:
        index.insert_instance(series, {**record.instance, **file_fields})
        return None

    existing = Instance.objects.select_for_update().get(sop_instance_uid=record.sop_instance_uid)
    if existing.series_id != series.series_pk:
        raise Rejected("this SOP Instance UID is already stored in another series; the overwrite policy cannot move it")
    replaced_key = existing.storage_key
    for name, value in {**record.instance, **file_fields}.items():
        setattr(existing, name, value)
    existing.save()
    logger.warning("duplicate SOP instance replaced sop_instance_uid=%s study_instance_uid=%s source=%s", record.sop_instance_uid, record.study_instance_uid, _source_label(source))
    audit.record_event(
        action=audit.Action.DUPLICATE_REPLACED,
        outcome=audit.Outcome.SUCCESS,
        user=source.user or source.ae_title,
        address=source.address,
        patient_id=record.patient["patient_id"],
        study_instance_uid=record.study_instance_uid,
        detail=f"sop_instance_uid={record.sop_instance_uid}; the duplicate policy overwrites",
    )
    return replaced_key


def _discard_unreferenced(storage: FileStorage, key: str) -> None:
    if not Instance.objects.filter(storage_key=key).exists():
        storage.delete(key)


def _result(outcome: Outcome, record: InstanceRecord) -> StoreResult:
    return StoreResult(outcome, sop_instance_uid=record.sop_instance_uid, study_instance_uid=record.study_instance_uid, patient_id=record.patient["patient_id"])


def _rejected(reason: str, *, sop_instance_uid: str = "") -> StoreResult:
    # Callers log rejections with their context (calling AE, file path).
    return StoreResult(Outcome.REJECTED, reason=reason, sop_instance_uid=sop_instance_uid)
