"""Encode a stored instance as a DICOM JSON object (PS3.18 F.2), with bulk data as URIs.

pydicom's DataElement.to_json_dict is the reference. It costs tens of
microseconds per element, which makes a 500-instance series take many
seconds the first time. The common VRs are therefore converted here
straight from the raw bytes with the same rules as pydicom 3.0 (trailing
padding stripped, DS and IS as JSON numbers, empty values without
"Value"). Person names, URIs, private elements of unknown VR and any
value the fast path cannot parse go through pydicom. The tests compare
the result with pydicom's on every sample file.
"""

from __future__ import annotations

import base64
import logging
import math
import struct
from typing import Any, Callable

from pydicom import Dataset
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.datadict import dictionary_VR
from pydicom.tag import BaseTag
from pydicom.values import TEXT_VR_DELIMS

logger = logging.getLogger(__name__)

# Binary values longer than this many bytes are sent as BulkDataURI rather than InlineBinary.
BULK_DATA_THRESHOLD = 1024
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
# Struct formats of the binary number VRs (PS3.5 6.2).
NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "UV": "Q", "SV": "q"}
# Value representations decoded with the default repertoire, split at backslashes.
ASCII_VRS = frozenset({"AS", "CS", "DA", "DT", "TM"})
# Text in the dataset's character set: multi-valued, or a single value that may contain backslashes.
MULTI_TEXT_VRS = frozenset({"SH", "LO", "UC"})
SINGLE_TEXT_VRS = frozenset({"LT", "ST", "UT"})

BulkDataUri = Callable[[str], str]


def dataset_json(dataset: Dataset, bulk_data_uri: BulkDataUri, *, prefix: str = "", encodings: list[str] | None = None) -> dict[str, Any]:
    """Return the DICOM JSON object of `dataset`; `bulk_data_uri` makes the URI of a tag path such as ``00540016/0/00181072``.

    Values pydicom deferred (see dcmread's defer_size) are not read; binary
    ones become BulkDataURIs. Group lengths (gggg,0000) are left out
    because they describe the encoding, not the content.
    """
    if "SpecificCharacterSet" in dataset or encodings is None:
        encodings = convert_encodings(dataset.get("SpecificCharacterSet"))
    result: dict[str, Any] = {}
    for raw in dataset.elements():
        tag = BaseTag(raw.tag)
        if tag.element == 0:
            continue
        key = f"{tag:08X}"
        encoded = _element_json(dataset, raw, bulk_data_uri, prefix + key, encodings)
        if encoded is not None:
            result[key] = encoded
    return result


def _element_json(dataset: Dataset, raw: DataElement | RawDataElement, bulk_data_uri: BulkDataUri, tag_path: str, encodings: list[str]) -> dict[str, Any] | None:
    value = raw.value
    if isinstance(raw, RawDataElement) and value is None and raw.length != 0:
        deferred_vr = str(raw.VR) if raw.VR is not None else _vr(raw) or "UN"
        if deferred_vr in BINARY_VRS:
            return {"vr": deferred_vr, "BulkDataURI": bulk_data_uri(tag_path)}
    vr = _vr(raw)
    if isinstance(raw, RawDataElement) and isinstance(value, bytes) and vr is not None:
        fast = _raw_json(vr, value, little_endian=raw.is_little_endian, encodings=encodings)
        if fast is not None:
            if "InlineBinary" in fast and len(value) > BULK_DATA_THRESHOLD:
                return {"vr": vr, "BulkDataURI": bulk_data_uri(tag_path)}
            return fast

    element = dataset[raw.tag]
    if element.VR == "SQ":
        items = [dataset_json(item, bulk_data_uri, prefix=f"{tag_path}/{number}/", encodings=encodings) for number, item in enumerate(element.value)]
        return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
    if element.VR in BINARY_VRS and not element.is_empty and len(element.value) > BULK_DATA_THRESHOLD:
        return {"vr": element.VR, "BulkDataURI": bulk_data_uri(tag_path)}
    try:
        return element.to_json_dict(None, BULK_DATA_THRESHOLD)
    except (ValueError, TypeError, OverflowError) as exc:
        # PS3.18 F.2 has no form for a value that does not fit its VR, so the
        # element is left out of the metadata. The stored file keeps it.
        logger.warning("element %s left out of metadata, its value does not fit VR %s: %s", BaseTag(element.tag), element.VR, exc)
        return None


def _vr(raw: DataElement | RawDataElement) -> str | None:
    """Return the VR of an element, from the dictionary for implicit VR files; None when pydicom has to decide."""
    # pydicom replaces UN with the VR from its dictionary when the tag is in it.
    if raw.VR == "UN":
        return None
    if raw.VR is not None:
        return str(raw.VR)
    if BaseTag(raw.tag).is_private:
        return None
    try:
        vr = dictionary_VR(raw.tag)
    except KeyError:
        return None
    if " or " not in vr:
        return vr
    # PS3.5 A.1: in implicit VR Little Endian, Pixel Data and other OB-or-OW values are OW.
    # Other ambiguous VRs (US or SS) depend on other elements, which pydicom resolves.
    return "OW" if vr == "OB or OW" else None


def _raw_json(vr: str, value: bytes, *, little_endian: bool, encodings: list[str]) -> dict[str, Any] | None:
    """Convert a raw value with pydicom's rules; return None to leave the element to pydicom."""
    try:
        values = _raw_values(vr, value, little_endian=little_endian, encodings=encodings)
    except (ValueError, UnicodeDecodeError, struct.error):
        return None
    if values is None:
        return None
    if isinstance(values, str):
        return {"vr": vr, "InlineBinary": values} if values else {"vr": vr}
    return {"vr": vr, "Value": values} if values else {"vr": vr}


def _raw_values(vr: str, value: bytes, *, little_endian: bool, encodings: list[str]) -> list[Any] | str | None:
    if vr in BINARY_VRS:
        return base64.b64encode(value).decode("ascii")
    if vr in NUMBER_FORMATS:
        code = NUMBER_FORMATS[vr]
        count, remainder = divmod(len(value), struct.calcsize("<" + code))
        if remainder:
            return None
        return list(struct.unpack(("<" if little_endian else ">") + code * count, value))
    if vr in ASCII_VRS or vr in ("AE", "UI", "IS", "DS"):
        strings = _split(value.decode("iso8859").rstrip("\x00 " if vr != "UI" else "\x00 "))
        if vr == "AE":
            return [string.strip() for string in strings]
        if vr == "IS":
            return [int(string) for string in strings]
        if vr == "DS":
            numbers = [float(string) for string in strings]
            # JSON has no NaN or infinity, so pydicom decides what to do with them.
            return numbers if all(math.isfinite(number) for number in numbers) else None
        return strings
    if vr in MULTI_TEXT_VRS:
        text = decode_bytes(value, encodings, TEXT_VR_DELIMS)
        return [string.rstrip("\x00 ") for string in text.split("\\")] if text.rstrip("\x00 ") else []
    if vr in SINGLE_TEXT_VRS:
        text = decode_bytes(value, encodings, TEXT_VR_DELIMS).rstrip("\x00 ")
        return [text] if text else []
    return None


def _split(text: str) -> list[str]:
    return text.split("\\") if text else []
