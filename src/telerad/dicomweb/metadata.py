"""DICOM JSON metadata of stored instances (PS3.18 F.2), kept encoded for fast responses.

Each instance's JSON is built once from its stored file (see dicomjson.py) and kept
zlib-compressed in :class:`InstanceMetadata`. A series or study response is
the concatenation of those documents, with no JSON parsing per request.
Values of binary VRs over BULK_DATA_THRESHOLD bytes become a BulkDataURI
(PS3.18 F.2.6) naming the element by its tag path. The stored document
contains the URI without scheme and host, which are added per request.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import zlib
from pathlib import Path
from typing import Iterable

from django.urls import reverse
from pydicom import dcmread

from telerad.dicomweb.dicomjson import BULK_DATA_THRESHOLD, dataset_json
from telerad.dicomweb.models import InstanceMetadata

logger = logging.getLogger(__name__)

# Raise when the document format changes, so that stored documents are rebuilt.
ENCODER_VERSION = 2
TRANSFER_SYNTAX_UID_TAG = "00020010"
# zlib level 6 shrank the JSON of CT instances about fivefold (5.8 MB to 1.15 MB for 500).
COMPRESSION_LEVEL = 6
URI_KEY = b'"BulkDataURI":"'
# Pixel Spacing and Imager Pixel Spacing. Viewers scale images by them, and a
# zero or negative spacing (the CR samples RG1 and RG3 of pydicom-data carry
# 0\0) leaves OHIF's viewport empty. The metadata gives such a value as
# empty, which viewers read as unknown; the stored instance keeps it.
SPACING_TAGS = ("00280030", "00181164")


@dataclasses.dataclass(frozen=True)
class InstanceFile:
    """The index fields of one instance that building its document needs."""

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
    # reverse() is slow, so it runs once per instance rather than once per bulk data element.
    base = bulkdata_path(instance, "0").removesuffix("0")
    document = {TRANSFER_SYNTAX_UID_TAG: {"vr": "UI", "Value": [instance.transfer_syntax_uid]}}
    document.update(dataset_json(dataset, lambda tag_path: base + tag_path))
    _empty_unusable_spacings(document)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def is_current(instance: InstanceFile, stored: InstanceMetadata | None) -> bool:
    """Return whether `stored` is the document of this content, written by this encoder."""
    return stored is not None and stored.dataset_sha256 == instance.dataset_sha256 and stored.encoder_version == ENCODER_VERSION


def _empty_unusable_spacings(document: dict[str, dict]) -> None:
    for tag in SPACING_TAGS:
        element = document.get(tag)
        values = element.get("Value") if element else None
        if values and not all(isinstance(value, (int, float)) and value > 0 for value in values):
            logger.info("metadata leaves out a spacing that is not positive tag=%s", tag)
            document[tag] = {"vr": element["vr"]}


def documents(instances: Iterable[tuple[InstanceFile, InstanceMetadata | None]]) -> list[bytes]:
    """Return the JSON document of each instance, building and storing the ones that are missing or stale.

    A request that finds documents missing builds them, about 5 ms of CPU
    per CT instance, so 2 to 3 s for 500 slices. The servers build the
    documents of newly received studies in the background (prebuild.py), so
    that a viewer rarely waits for them.
    """
    result: list[bytes] = []
    rebuilt: list[InstanceMetadata] = []
    for instance, stored in instances:
        if is_current(instance, stored):
            result.append(zlib.decompress(stored.document))
            continue
        document = encode_instance(instance)
        result.append(document)
        rebuilt.append(InstanceMetadata(instance_id=instance.pk, dataset_sha256=instance.dataset_sha256, encoder_version=ENCODER_VERSION, document=zlib.compress(document, COMPRESSION_LEVEL)))
    if rebuilt:
        # Two requests may build the same rows at once. The later write wins, with equal content.
        InstanceMetadata.objects.bulk_create(
            rebuilt, update_conflicts=True, unique_fields=["instance"], update_fields=["dataset_sha256", "encoder_version", "document", "built_at"],
        )
        logger.info("metadata built for %d instances", len(rebuilt))
    return result


def without_private_attributes(document: bytes) -> bytes:
    """Return an instance document without the private data elements (odd group numbers) at its top level.

    OHIF draws images from standard attributes, and converts every element of
    every instance before it shows the first image. pydicom's CT_small.dcm,
    a GE slice, has 179 private elements out of 259, two thirds of its
    document's bytes.
    """
    data = json.loads(document)
    standard = {tag: value for tag, value in data.items() if int(tag[:4], 16) % 2 == 0}
    return json.dumps(standard, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_array(documents: list[bytes], *, origin: str) -> bytes:
    """Join instance documents into one JSON array, making each BulkDataURI absolute with `origin` (scheme and host)."""
    body = b"[" + b",".join(documents) + b"]"
    # A key written by json.dumps never occurs inside a string value, where its quotes would be escaped.
    return body.replace(URI_KEY, URI_KEY + origin.encode("ascii"))
