"""Decode and validate the index attributes of one dataset.

The table :data:`INDEXED_ATTRIBUTES` is the single list of what the index
keeps for each level; VRs come from pydicom's data dictionary. Values are
decoded with the dataset's Specific Character Set (PS3.5 6.1) and checked
against their VR. A value that cannot be decoded or does not fit its VR is
rejected rather than stored, because the index must never hold text that
differs from the file.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import struct
from typing import Mapping

from pydicom.charset import decode_bytes, python_encoding
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.valuerep import PersonName

from telerad.archive.header import RawValue
from telerad.archive.names import fold

INDEXED_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "patient": ("PatientID", "IssuerOfPatientID", "PatientName", "PatientBirthDate", "PatientSex"),
    "study": (
        "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
        "StudyDescription", "ReferringPhysicianName",
    ),
    "series": (
        "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "BodyPartExamined",
        "SeriesDate", "SeriesTime",
    ),
    "instance": ("SOPInstanceUID", "SOPClassUID", "InstanceNumber", "Rows", "Columns", "NumberOfFrames"),
}
REQUIRED_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return tag


SPECIFIC_CHARACTER_SET = _tag("SpecificCharacterSet")
KEYWORD_TAGS: dict[str, int] = {
    keyword: _tag(keyword) for keywords in INDEXED_ATTRIBUTES.values() for keyword in keywords
}
WANTED_TAGS = frozenset(KEYWORD_TAGS.values()) | {SPECIFIC_CHARACTER_SET}

# PS3.5 9.1: components of digits without leading zeros, at most 64 characters.
UID_PATTERN = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
TIME_PATTERN = re.compile(r"^([01][0-9]|2[0-3])([0-5][0-9]([0-5][0-9](\.[0-9]{1,6})?)?)?$")
# Delimiters that reset ISO 2022 code extensions inside text values (PS3.5 6.1.3).
TEXT_DELIMITERS = {0x5C, 0x0D, 0x0A, 0x09, 0x0C}
PN_DELIMITERS = TEXT_DELIMITERS | {0x5E, 0x3D}
TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
REPLACEMENT_CHARACTER = "\ufffd"


class InvalidAttribute(ValueError):
    """An index attribute is missing, undecodable or does not fit its VR; the message names it."""


@dataclasses.dataclass(frozen=True)
class InstanceRecord:
    """The decoded index attributes of one instance, keyed by snake_case keyword per level."""

    patient: dict[str, str]
    study: dict[str, str]
    series: dict[str, object]
    instance: dict[str, object]

    @property
    def sop_instance_uid(self) -> str:
        return str(self.instance["sop_instance_uid"])

    @property
    def study_instance_uid(self) -> str:
        return str(self.study["study_instance_uid"])


def snake_case(keyword: str) -> str:
    """Return the column name of a DICOM keyword (``SOPInstanceUID`` -> ``sop_instance_uid``)."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", keyword)
    return name.lower()


@dataclasses.dataclass(frozen=True)
class _Attribute:
    keyword: str
    tag: int
    vr: str
    column: str


_LEVEL_ATTRIBUTES: dict[str, tuple[_Attribute, ...]] = {
    level: tuple(_Attribute(keyword, KEYWORD_TAGS[keyword], dictionary_VR(keyword), snake_case(keyword)) for keyword in keywords)
    for level, keywords in INDEXED_ATTRIBUTES.items()
}


def build_record(values: Mapping[int, RawValue], *, little_endian: bool = True) -> InstanceRecord:
    """Decode the scanned raw values into an :class:`InstanceRecord`, raising InvalidAttribute on bad input."""
    encodings = _python_encodings(values.get(SPECIFIC_CHARACTER_SET))
    for keyword in REQUIRED_KEYWORDS:
        raw = values.get(KEYWORD_TAGS[keyword])
        if raw is None or not raw.value.strip(b"\x00 "):
            raise InvalidAttribute(f"{keyword} is missing; it is required")

    levels: dict[str, dict[str, object]] = {}
    for level, attributes in _LEVEL_ATTRIBUTES.items():
        decoded: dict[str, object] = {}
        for attribute in attributes:
            raw = values.get(attribute.tag)
            decoded[attribute.column] = _decode(attribute, raw, encodings, little_endian)
        levels[level] = decoded

    patient = levels["patient"]
    patient["patient_name_folded"] = fold(str(patient["patient_name"]))
    study = levels["study"]
    study["referring_physician_name_folded"] = fold(str(study["referring_physician_name"]))
    return InstanceRecord(
        patient={key: str(value) for key, value in patient.items()},
        study={key: str(value) for key, value in study.items()},
        series=levels["series"],
        instance=levels["instance"],
    )


def _python_encodings(raw: RawValue | None) -> list[str]:
    if raw is None:
        return ["iso8859"]
    terms = [term.strip() for term in raw.value.decode("ascii", errors="replace").split("\\")]
    encodings = []
    for index, term in enumerate(terms):
        if not term:
            # PS3.5 6.1.2.5.2: an empty first value means the default repertoire.
            if index == 0:
                encodings.append("iso8859")
            continue
        normalised = _normalise_charset_term(term)
        if normalised not in python_encoding:
            raise InvalidAttribute(f"SpecificCharacterSet has the unknown term {term[:20]!r}")
        encodings.append(python_encoding[normalised])
    return encodings or ["iso8859"]


def _normalise_charset_term(term: str) -> str:
    """Repair the common misspellings of defined terms ("ISO-IR 100", "ISO_IR100")."""
    upper = term.upper()
    if upper in python_encoding:
        return upper
    match = re.match(r"^ISO[_ -]?2022[_ -]?IR[_ -]?(\d+)$", upper)
    if match:
        return f"ISO 2022 IR {match.group(1)}"
    match = re.match(r"^ISO[_ -]?IR[_ -]?(\d+)$", upper)
    if match:
        return f"ISO_IR {match.group(1)}"
    return upper


def _decode(attribute: _Attribute, raw: RawValue | None, encodings: list[str], little_endian: bool) -> object:
    keyword, vr = attribute.keyword, attribute.vr
    if raw is None:
        return None if vr in {"IS", "US"} else ""
    if vr == "US":
        return _decode_unsigned_short(keyword, raw.value, little_endian)
    if vr == "PN":
        return _decode_person_name(keyword, raw.value, encodings)
    if vr in TEXT_VRS:
        return _decode_text(keyword, raw.value, encodings)
    text = _decode_ascii(keyword, raw.value)
    if vr == "UI":
        return _check_uid(keyword, text)
    if vr == "DA":
        return _check_date(keyword, text)
    if vr == "TM":
        return _check_time(keyword, text)
    if vr == "IS":
        return _check_integer_string(keyword, text)
    return text


def _decode_ascii(keyword: str, value: bytes) -> str:
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidAttribute(f"{keyword} has bytes outside the default repertoire") from None
    # Multi-valued attributes keep their first value in the index.
    return text.split("\\")[0].strip(" \x00")


def _decode_text(keyword: str, value: bytes, encodings: list[str]) -> str:
    text = decode_bytes(value.rstrip(b"\x00 "), encodings, TEXT_DELIMITERS)
    _require_decodable(keyword, text, value)
    return text.strip()


def _decode_person_name(keyword: str, value: bytes, encodings: list[str]) -> str:
    # A multi-valued PN keeps its first name in the index.
    text = str(PersonName(value.rstrip(b"\x00 "), encodings).decode())
    _require_decodable(keyword, text, value)
    return text.split("\\")[0].strip()


def _require_decodable(keyword: str, text: str, value: bytes) -> None:
    # pydicom substitutes U+FFFD for undecodable bytes instead of raising,
    # unless its process-wide validation mode is RAISE; a genuine U+FFFD
    # can only come from UTF-8 input.
    if REPLACEMENT_CHARACTER in text and REPLACEMENT_CHARACTER.encode("utf-8") not in value:
        raise InvalidAttribute(f"{keyword} cannot be decoded with the Specific Character Set")


def _decode_unsigned_short(keyword: str, value: bytes, little_endian: bool) -> int | None:
    if not value:
        return None
    if len(value) < 2:
        raise InvalidAttribute(f"{keyword} has {len(value)} bytes; an unsigned short (US) needs 2")
    return struct.unpack_from("<H" if little_endian else ">H", value)[0]


def _check_uid(keyword: str, text: str) -> str:
    if not text:
        return text
    if len(text) > 64 or not UID_PATTERN.match(text):
        raise InvalidAttribute(f"{keyword} is not a valid UID (digits and dots, max 64): {text[:70]!r}")
    return text


def _check_date(keyword: str, text: str) -> str:
    if not text:
        return text
    # ACR-NEMA 2.0 wrote dates as YYYY.MM.DD; PS3.5 6.2 recommends that readers accept it.
    compact = text.replace(".", "") if re.match(r"^\d{4}\.\d{2}\.\d{2}$", text) else text
    try:
        valid = len(compact) == 8 and bool(datetime.datetime.strptime(compact, "%Y%m%d"))
    except ValueError:
        valid = False
    if not valid:
        # Messages reach logs and peers, so a birth date is never quoted.
        shown = "" if keyword in INDEXED_ATTRIBUTES["patient"] else f" {text[:20]!r}"
        raise InvalidAttribute(f"{keyword}{shown} is not a date (DA: YYYYMMDD)")
    return compact


def _check_time(keyword: str, text: str) -> str:
    if not text:
        return text
    # ACR-NEMA 2.0 wrote times as HH:MM:SS.
    compact = text.replace(":", "") if ":" in text else text
    if not TIME_PATTERN.match(compact):
        raise InvalidAttribute(f"{keyword} {text[:20]!r} is not a time (TM: HHMMSS.FFFFFF)")
    return compact


def _check_integer_string(keyword: str, text: str) -> int | None:
    if not text:
        return None
    try:
        number = int(text)
    except ValueError:
        raise InvalidAttribute(f"{keyword} {text[:20]!r} is not an integer string (IS)") from None
    if not -(2**31) <= number < 2**31:
        raise InvalidAttribute(f"{keyword} {text[:20]!r} is out of range for IS")
    return number
