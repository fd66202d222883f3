"""DICOM JSON metadata of stored instances (PS3.18 F.2), kept encoded for fast responses.

Each instance's JSON is built once from its stored file and kept
zlib-compressed in :class:`InstanceMetadata`. A series or study response is
the concatenation of those documents, with no JSON parsing per request.
Values of binary VRs over BULK_DATA_THRESHOLD bytes become a BulkDataURI
(PS3.18 F.2.6) naming the element by its tag path; the stored document holds
the URI without scheme and host, which are added per request.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import zlib
from pathlib import Path
from typing import Any, Iterable

from django.urls import reverse
from pydicom import Dataset, dcmread
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.datadict import dictionary_VR
from pydicom.tag import BaseTag

from telerad.dicomweb.models import InstanceMetadata

logger = logging.getLogger(__name__)

# Raise when the document format changes, so that stored documents are rebuilt.
ENCODER_VERSION = 1
# Binary values longer than this many bytes are sent as BulkDataURI rather than InlineBinary.
BULK_DATA_THRESHOLD = 1024
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
TRANSFER_SYNTAX_UID_TAG = "00020010"
# zlib level 6 shrinks a CT instance's JSON about fivefold; level 9 gains little more.
COMPRESSION_LEVEL = 6
URI_KEY = b'"BulkDataURI":"'


@dataclasses.dataclass(frozen=True)
class InstanceFile:
    """What building one instance's document needs from the index."""

    pk: int
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    dataset_sha256: str
    path: Path


def bulkdata_path(instance: InstanceFile, tag_path: str) -> str:
    return reverse(
        "dicomweb:bulkdata",
        kwargs={
            "study": instance.study_instance_uid,
            "series": instance.series_instance_uid,
            "instance": instance.sop_instance_uid,
            "attribute": tag_path,
        },
    )


def encode_instance(instance: InstanceFile) -> bytes:
    """Build the DICOM JSON object of one stored instance, as compact UTF-8 bytes.

    Large values are not read from the file: pydicom defers them, and they
    become BulkDataURIs.
    """
    dataset = dcmread(instance.path, defer_size=BULK_DATA_THRESHOLD)
    document = {TRANSFER_SYNTAX_UID_TAG: {"vr": "UI", "Value": [instance.transfer_syntax_uid]}}
    document.update(_dataset_json(dataset, instance, prefix=""))
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _dataset_json(dataset: Dataset, instance: InstanceFile, *, prefix: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for tag in dataset.keys():
        # Group lengths (gggg,0000) describe the encoding, not the content.
        if tag.element == 0:
            continue
        key = f"{tag:08X}"
        tag_path = prefix + key
        raw = dataset.get_item(tag, keep_deferred=True)
        if isinstance(raw, RawDataElement) and raw.value is None and raw.length != 0:
            vr = _deferred_vr(raw)
            if vr in BINARY_VRS:
                result[key] = {"vr": vr, "BulkDataURI": bulkdata_path(instance, tag_path)}
                continue
        element = dataset[tag]
        encoded = _element_json(element, instance, tag_path)
        if encoded is not None:
            result[key] = encoded
    return result


def _element_json(element: DataElement, instance: InstanceFile, tag_path: str) -> dict[str, Any] | None:
    if element.VR == "SQ":
        items = [_dataset_json(item, instance, prefix=f"{tag_path}/{number}/") for number, item in enumerate(element.value)]
        return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
    if element.VR in BINARY_VRS and not element.is_empty and len(element.value) > BULK_DATA_THRESHOLD:
        return {"vr": element.VR, "BulkDataURI": bulkdata_path(instance, tag_path)}
    try:
        return element.to_json_dict(None, BULK_DATA_THRESHOLD)
    except (ValueError, TypeError, OverflowError) as exc:
        # PS3.18 F.2 has no form for a value that does not fit its VR, so the
        # element is left out of the metadata; the stored file keeps it.
        logger.warning("element %s left out of metadata, its value does not fit VR %s: %s sop_instance_uid=%s", BaseTag(element.tag), element.VR, exc, instance.sop_instance_uid)
        return None


def _deferred_vr(raw: RawDataElement) -> str:
    """Return the VR of an element pydicom has not read yet; implicit VR files leave it unset."""
    if raw.VR is not None:
        return str(raw.VR)
    try:
        vr = dictionary_VR(raw.tag)
    except KeyError:
        return "UN"
    # PS3.5 A.1: in implicit VR Little Endian, Pixel Data and other OB-or-OW values are OW.
    return "OW" if "OW" in vr else vr


def documents(instances: Iterable[tuple[InstanceFile, InstanceMetadata | None]]) -> list[bytes]:
    """Return the JSON document of each instance, building and storing the ones that are missing or stale."""
    result: list[bytes] = []
    rebuilt: list[InstanceMetadata] = []
    for instance, stored in instances:
        if stored is not None and stored.dataset_sha256 == instance.dataset_sha256 and stored.encoder_version == ENCODER_VERSION:
            result.append(zlib.decompress(stored.document))
            continue
        document = encode_instance(instance)
        result.append(document)
        rebuilt.append(InstanceMetadata(instance_id=instance.pk, dataset_sha256=instance.dataset_sha256, encoder_version=ENCODER_VERSION, document=zlib.compress(document, COMPRESSION_LEVEL)))
    if rebuilt:
        # Two requests may build the same rows at once; the later write wins with equal content.
        InstanceMetadata.objects.bulk_create(
            rebuilt, update_conflicts=True, unique_fields=["instance"], update_fields=["dataset_sha256", "encoder_version", "document", "built_at"],
        )
        logger.info("metadata built for %d instances", len(rebuilt))
    return result


def json_array(documents: list[bytes], *, origin: str) -> bytes:
    """Join instance documents into one JSON array, making each BulkDataURI absolute with `origin` (scheme and host)."""
    body = b"[" + b",".join(documents) + b"]"
    # A key written by json.dumps never occurs inside a string value, where its quotes would be escaped.
    return body.replace(URI_KEY, URI_KEY + origin.encode("ascii"))
