"""Index rows written on the receive path.

Storing one more instance of a known series is the archive's most frequent
write. It runs as three plain SQL statements (count the instance in its series
and study, insert it), or one on PostgreSQL, because the ORM calls cost
several times the statements themselves. New patients, studies and series are rare and go
through the ORM.
"""

from __future__ import annotations

import dataclasses
import logging
import threading

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from telerad.archive.models import Instance, Patient, Series, Study
from telerad.archive.record import InstanceRecord
from telerad.audit import events as audit

logger = logging.getLogger(__name__)

# Bounded so that a long-running listener does not grow without limit; a
# miss costs one query.
SERIES_CACHE_SIZE = 4096


class Rejected(Exception):
    """The instance cannot be stored; the message gives the reason, without patient data."""

    def __init__(self, message: str, *, sop_class_mismatch: bool = False):
        super().__init__(message)
        self.sop_class_mismatch = sop_class_mismatch


@dataclasses.dataclass(frozen=True)
class SeriesKey:
    series_pk: int
    study_pk: int
    study_instance_uid: str
    patient_key: tuple[str, str]


_series_cache: dict[str, SeriesKey] = {}
_series_cache_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class StoredFile:
    dataset_sha256: str
    storage_key: str


def stored_file(sop_instance_uid: str) -> StoredFile | None:
    """Return the digest and storage key of the stored instance with this UID, or None when there is none."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT dataset_sha256, storage_key FROM archive_instance WHERE sop_instance_uid = %s", [sop_instance_uid])
        row = cursor.fetchone()
    return None if row is None else StoredFile(*row)


def series_for(record: InstanceRecord) -> SeriesKey:
    """Return the series of `record`, creating patient, study and series rows as needed, inside the caller's transaction."""
    series_uid = str(record.series["series_instance_uid"])
    key = _series_cache.get(series_uid)
    if key is None:
        key = _load_or_create_series(record)
        # A series created in this transaction exists for others only after the commit.
        transaction.on_commit(lambda: _remember_series(series_uid, key))

    return _checked(key, record)


def _checked(key: SeriesKey, record: InstanceRecord) -> SeriesKey:
    """Return `key` when `record` belongs in its series: the same study, and the same patient."""
    if key.study_instance_uid != record.study_instance_uid:
        raise Rejected(f"SeriesInstanceUID {record.series['series_instance_uid']} is already stored in another study")
    if key.patient_key != _patient_key(record):
        raise Rejected(f"StudyInstanceUID {record.study_instance_uid} is already stored for a patient with another PatientID")
    return key


def forget_series(series_instance_uid: str) -> None:
    """Drop a cached series, after a failed transaction may have rolled back its creation."""
    with _series_cache_lock:
        _series_cache.pop(series_instance_uid, None)


def clear_series_cache() -> None:
    """Forget every cached series, after rows were deleted outside the receive path."""
    with _series_cache_lock:
        _series_cache.clear()


def _remember_series(series_instance_uid: str, key: SeriesKey) -> None:
    with _series_cache_lock:
        if len(_series_cache) >= SERIES_CACHE_SIZE:
            _series_cache.clear()
        _series_cache[series_instance_uid] = key


class StaleSeries(Exception):
    """A cached series no longer exists (deleted by another process)."""


def cached_series(record: InstanceRecord) -> SeriesKey | None:
    """Return the series of `record` when it is cached, without a query; None when it is not."""
    key = _series_cache.get(str(record.series["series_instance_uid"]))
    return None if key is None else _checked(key, record)


def insert_instance(series: SeriesKey, fields: dict[str, object]) -> None:
    """Insert a new instance row and count it in its series and study.

    On PostgreSQL this is one statement, which commits by itself when it
    runs outside a transaction. Elsewhere the caller wraps it in one.
    """
    now = timezone.now()
    columns, parameters = _prepared(Instance, {**fields, "series": series.series_pk, "received_at": now})
    placeholders = ", ".join(["%s"] * len(columns))
    study_update_parameters = [*_prepared(Study, {"updated_at": now})[1], series.study_pk]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # A data-modifying WITH runs the three statements in one round trip.
            cursor.execute(
                "WITH counted_series AS ("
                " UPDATE archive_series SET number_of_series_related_instances = number_of_series_related_instances + 1"
                " WHERE id = %s AND study_id = %s RETURNING id"
                "), counted_study AS ("
                " UPDATE archive_study SET number_of_study_related_instances = number_of_study_related_instances + 1, updated_at = %s"
                " WHERE id = %s AND EXISTS (SELECT 1 FROM counted_series)"
                f") INSERT INTO archive_instance ({', '.join(columns)}) SELECT {placeholders} FROM counted_series",
                [series.series_pk, series.study_pk, *study_update_parameters, *parameters],
            )
            if cursor.rowcount != 1:
                raise StaleSeries(f"series {series.series_pk} is no longer in the index")
            return
        # Counting first also proves that the cached series still exists.
        cursor.execute(
            "UPDATE archive_series SET number_of_series_related_instances = number_of_series_related_instances + 1 WHERE id = %s AND study_id = %s",
            [series.series_pk, series.study_pk],
        )
        if cursor.rowcount != 1:
            raise StaleSeries(f"series {series.series_pk} is no longer in the index")
        cursor.execute(f"INSERT INTO archive_instance ({', '.join(columns)}) VALUES ({placeholders})", parameters)
        cursor.execute(
            "UPDATE archive_study SET number_of_study_related_instances = number_of_study_related_instances + 1, updated_at = %s WHERE id = %s",
            study_update_parameters,
        )


def _prepared(model: type[Instance] | type[Study], values: dict[str, object]) -> tuple[list[str], list[object]]:
    """Return column names and database-ready values, converted by each field as the ORM would."""
    columns, parameters = [], []
    for name, value in values.items():
        field = model._meta.get_field(name)
        columns.append(connection.ops.quote_name(field.column))
        parameters.append(field.get_db_prep_save(value, connection))
    return columns, parameters


def _patient_key(record: InstanceRecord) -> tuple[str, str]:
    return (record.patient["patient_id"], record.patient["issuer_of_patient_id"])


def _load_or_create_series(record: InstanceRecord) -> SeriesKey:
    series = Series.objects.filter(series_instance_uid=record.series["series_instance_uid"]).select_related("study__patient").first()
    if series is None:
        series = _create_series(record)
    patient = series.study.patient
    return SeriesKey(series.pk, series.study.pk, series.study.study_instance_uid, (patient.patient_id, patient.issuer_of_patient_id))


def _create_series(record: InstanceRecord) -> Series:
    study = _study_for(record)
    series = Series.objects.create(study=study, **record.series)
    modalities = study.modalities
    if series.modality and series.modality not in modalities:
        modalities.append(series.modality)
    Study.objects.filter(pk=study.pk).update(
        number_of_study_related_series=F("number_of_study_related_series") + 1,
        modalities_in_study="\\".join(sorted(modalities)),
    )
    return series


def _study_for(record: InstanceRecord) -> Study:
    study = Study.objects.select_for_update().filter(study_instance_uid=record.study_instance_uid).select_related("patient").first()
    if study is not None:
        return study

    patient_values = {key: value for key, value in record.patient.items() if key not in {"patient_id", "issuer_of_patient_id"}}
    if not record.patient["patient_id"]:
        # Without a Patient ID nothing shows that two studies are of one patient.
        patient = Patient.objects.create(issuer_of_patient_id=record.patient["issuer_of_patient_id"], **patient_values)
        return Study.objects.create(patient=patient, **record.study)
    patient, created = Patient.objects.get_or_create(
        patient_id=record.patient["patient_id"], issuer_of_patient_id=record.patient["issuer_of_patient_id"], defaults=patient_values
    )
    if not created:
        _update_demographics(patient, patient_values, record.study_instance_uid)
    return Study.objects.create(patient=patient, **record.study)


def _update_demographics(patient: Patient, values: dict[str, str], study_instance_uid: str) -> None:
    """Take the name, birth date and sex of the newest study, as a corrected registration would send them."""
    changed = [name for name, value in values.items() if value and getattr(patient, name) != value]
    if not changed:
        return
    for name in changed:
        setattr(patient, name, values[name])
    patient.save(update_fields=changed)
    fields = ", ".join(name for name in changed if not name.endswith("_folded"))
    logger.info("patient demographics updated by a new study patient_pk=%s study_instance_uid=%s fields=%s", patient.pk, study_instance_uid, fields)
    audit.record_event(
        action=audit.Action.PATIENT_UPDATED,
        patient_id=patient.patient_id,
        study_instance_uid=study_instance_uid,
        detail=f"changed by a new study: {fields}",
    )
