"""A fast structural scan of an encoded DICOM dataset.

pydicom builds a Python object for every element it reads, which costs about
2 ms for a typical CT header. The receive path needs only the two dozen
attributes of the index, plus proof that the encoding is complete, so this
module walks the element headers (tag, VR, length) and keeps the raw values of
the requested top-level tags. Values are decoded afterwards by pydicom's value
converters in :mod:`telerad.archive.record`.

The walk checks the structure of the whole dataset, pixel data included: every
value must lie inside the buffer and every undefined-length sequence must be
closed. A truncated file or stream therefore fails here, before anything is
stored.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from functools import lru_cache
from typing import Iterable

from pydicom.datadict import dictionary_VR
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)

UNDEFINED_LENGTH = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_DELIMITATION = 0xFFFEE00D
SEQUENCE_DELIMITATION = 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010

# PS3.5 7.1.2: these VRs have a 2-byte reserved field and a 4-byte length.
LONG_LENGTH_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
# PS3.5 6.2: every VR of the current standard.
KNOWN_VRS = LONG_LENGTH_VRS | frozenset({
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT",
    b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
})

FILE_META_GROUP = 0x0002
PREAMBLE_LENGTH = 128


class MalformedDataset(ValueError):
    """The bytes are not a complete, well-formed DICOM dataset."""


@dataclasses.dataclass(frozen=True)
class RawValue:
    vr: str
    value: bytes


@dataclasses.dataclass(frozen=True)
class Encoding:
    implicit_vr: bool
    little_endian: bool
    deflated: bool = False

    @classmethod
    def of(cls, transfer_syntax_uid: str) -> Encoding:
        if transfer_syntax_uid == ImplicitVRLittleEndian:
            return cls(implicit_vr=True, little_endian=True)
        if transfer_syntax_uid == ExplicitVRBigEndian:
            return cls(implicit_vr=False, little_endian=False)
        if transfer_syntax_uid == DeflatedExplicitVRLittleEndian:
            return cls(implicit_vr=False, little_endian=True, deflated=True)
        # Every other transfer syntax, compressed ones included, encodes the
        # dataset in explicit VR little endian (PS3.5 A.4).
        return cls(implicit_vr=False, little_endian=True)


@dataclasses.dataclass(frozen=True)
class FileMeta:
    """The file meta information group (PS3.10 7.1) of a Part 10 file."""

    values: dict[int, RawValue]
    dataset_offset: int

    def text(self, tag: int) -> str:
        raw = self.values.get(tag)
        if raw is None:
            return ""
        return raw.value.rstrip(b"\x00 ").decode("ascii", errors="replace").strip()


@lru_cache(maxsize=4096)
def _implicit_vr(tag: int) -> str:
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return "UN"


def read_file_meta(buffer: bytes) -> FileMeta | None:
    """Read the file meta group of a Part 10 file, or return None when there is no ``DICM`` prefix."""
    if len(buffer) < PREAMBLE_LENGTH + 4 or bytes(buffer[PREAMBLE_LENGTH:PREAMBLE_LENGTH + 4]) != b"DICM":
        return None

    # PS3.10 7.1: the meta group is always explicit VR little endian. Some
    # writers omit the group length, so read while the group is 0002.
    values: dict[int, RawValue] = {}
    position = PREAMBLE_LENGTH + 4
    encoding = Encoding(implicit_vr=False, little_endian=True)
    while position + 8 <= len(buffer):
        group = struct.unpack_from("<H", buffer, position)[0]
        if group != FILE_META_GROUP:
            break
        tag, vr, length, value_position = _element_header(buffer, position, encoding)
        end = value_position + length
        if length == UNDEFINED_LENGTH or end > len(buffer):
            raise MalformedDataset(f"file meta element {_tag_text(tag)} runs past the end of the file")
        values[tag] = RawValue(vr, bytes(buffer[value_position:end]))
        position = end
    return FileMeta(values=values, dataset_offset=position)


def dataset_bytes(buffer: bytes, offset: int, encoding: Encoding) -> tuple[bytes, int]:
    """Return the buffer to scan and where its dataset starts: inflated when the transfer syntax is deflated."""
    if not encoding.deflated:
        return buffer, offset
    try:
        # PS3.5 A.5: raw deflate without zlib header.
        return zlib.decompress(buffer[offset:], -zlib.MAX_WBITS), 0
    except zlib.error as exc:
        raise MalformedDataset(f"the deflated dataset cannot be inflated: {exc}") from exc


_VR_TEXT = {vr: vr.decode("ascii") for vr in KNOWN_VRS}


def scan(buffer: bytes, start: int, encoding: Encoding, wanted: Iterable[int]) -> dict[int, RawValue]:
    """Walk every element of the dataset that begins at `start` and return the raw values of the `wanted` top-level tags.

    `buffer` is bytes, an mmap or a memoryview of the whole encoded data.
    Raises MalformedDataset when an element header is invalid or a value runs past the end.
    """
    if encoding.implicit_vr:
        return _scan_generic(buffer, start, encoding, frozenset(wanted))
    # The common case, explicit VR, is inlined: this loop runs for each of the
    # few hundred elements of a header on the receive path.
    endian = "<" if encoding.little_endian else ">"
    tag_struct = struct.Struct(endian + "HH")
    short_struct = struct.Struct(endian + "H")
    wanted_tags = frozenset(wanted)
    found: dict[int, RawValue] = {}
    size = len(buffer)
    position = start
    previous_tag = -1
    while size - position >= 8:
        group, element = tag_struct.unpack_from(buffer, position)
        tag = (group << 16) | element
        vr_bytes = bytes(buffer[position + 4:position + 6])
        if vr_bytes in LONG_LENGTH_VRS or group == 0xFFFE or vr_bytes not in KNOWN_VRS:
            # Long-form and unusual headers take the general path.
            tag, vr, length, value_position = _element_header(buffer, position, encoding)
        else:
            vr = _VR_TEXT[vr_bytes]
            length = short_struct.unpack_from(buffer, position + 6)[0]
            value_position = position + 8
        if tag <= previous_tag:
            raise MalformedDataset(f"element {_tag_text(tag)} out of order after {_tag_text(previous_tag)}: dataset corrupt")
        previous_tag = tag
        if length == UNDEFINED_LENGTH:
            position = _skip_undefined_length(buffer, value_position, tag, encoding, vr == "UN")
            continue
        end = value_position + length
        if end > size:
            raise MalformedDataset(f"element {_tag_text(tag)} truncated: {length} bytes declared, {size - value_position} left")
        if tag in wanted_tags:
            found[tag] = RawValue(vr, bytes(buffer[value_position:end]))
        position = end
    _check_trailing(buffer, position)
    return found


def _scan_generic(buffer: bytes, start: int, encoding: Encoding, wanted_tags: frozenset[int]) -> dict[int, RawValue]:
    found: dict[int, RawValue] = {}
    size = len(buffer)
    position = start
    previous_tag = -1
    while size - position >= 8:
        tag, vr, length, value_position = _element_header(buffer, position, encoding)
        if tag <= previous_tag:
            raise MalformedDataset(f"element {_tag_text(tag)} out of order after {_tag_text(previous_tag)}: dataset corrupt")
        previous_tag = tag
        if length == UNDEFINED_LENGTH:
            position = _skip_undefined_length(buffer, value_position, tag, encoding, True)
            continue
        end = value_position + length
        if end > size:
            raise MalformedDataset(f"element {_tag_text(tag)} truncated: {length} bytes declared, {size - value_position} left")
        if tag in wanted_tags:
            found[tag] = RawValue(vr, bytes(buffer[value_position:end]))
        position = end
    _check_trailing(buffer, position)
    return found


def _check_trailing(buffer: bytes, position: int) -> None:
    # Trailing zero padding shorter than an element header is tolerated.
    rest = bytes(buffer[position:])
    if rest.strip(b"\x00"):
        raise MalformedDataset(f"{len(rest)} stray bytes after the last element: data truncated or corrupt")


def _element_header(buffer: bytes, position: int, encoding: Encoding) -> tuple[int, str, int, int]:
    """Return (tag, VR, value length, value position) of the element at `position`."""
    size = len(buffer)
    if position + 8 > size:
        raise MalformedDataset(f"element header cut off at byte {position}: data truncated")
    endian = "<" if encoding.little_endian else ">"
    group, element = struct.unpack_from(endian + "HH", buffer, position)
    tag = (group << 16) | element
    if group == 0xFFFE or encoding.implicit_vr:
        # Items and delimiters carry no VR in any transfer syntax (PS3.5 7.5).
        length = struct.unpack_from(endian + "L", buffer, position + 4)[0]
        vr = "" if group == 0xFFFE else _implicit_vr(tag)
        return tag, vr, length, position + 8

    vr_bytes = bytes(buffer[position + 4:position + 6])
    if vr_bytes not in KNOWN_VRS:
        raise MalformedDataset(f"element {_tag_text(tag)} has the invalid VR {vr_bytes!r}")
    if vr_bytes in LONG_LENGTH_VRS:
        if position + 12 > size:
            raise MalformedDataset(f"header of element {_tag_text(tag)} cut off: data truncated")
        length = struct.unpack_from(endian + "L", buffer, position + 8)[0]
        return tag, vr_bytes.decode("ascii"), length, position + 12
    length = struct.unpack_from(endian + "H", buffer, position + 6)[0]
    return tag, vr_bytes.decode("ascii"), length, position + 8


def _skip_undefined_length(buffer: bytes, position: int, tag: int, encoding: Encoding, implicit: bool) -> int:
    """Skip the items of an undefined-length sequence or encapsulated pixel data; return the position after its delimiter."""
    nested = Encoding(implicit_vr=implicit, little_endian=encoding.little_endian if not implicit else True)
    size = len(buffer)
    while True:
        if position + 8 > size:
            raise MalformedDataset(f"sequence {_tag_text(tag)} has no delimiter: data truncated")
        item_tag, _, length, value_position = _element_header(buffer, position, nested)
        if item_tag == SEQUENCE_DELIMITATION:
            return value_position
        if item_tag != ITEM:
            raise MalformedDataset(f"sequence {_tag_text(tag)} has {_tag_text(item_tag)} where an item belongs")
        if length == UNDEFINED_LENGTH:
            position = _skip_item(buffer, value_position, tag, nested)
            continue
        position = value_position + length
        if position > size:
            raise MalformedDataset(f"item of {_tag_text(tag)} runs past the end: data truncated")


def _skip_item(buffer: bytes, position: int, tag: int, encoding: Encoding) -> int:
    """Skip the elements of an undefined-length item; return the position after its item delimiter."""
    size = len(buffer)
    while True:
        if position + 8 > size:
            raise MalformedDataset(f"item of {_tag_text(tag)} has no delimiter: data truncated")
        element_tag, vr, length, value_position = _element_header(buffer, position, encoding)
        if element_tag == ITEM_DELIMITATION:
            return value_position
        if length == UNDEFINED_LENGTH:
            implicit = encoding.implicit_vr or vr == "UN"
            position = _skip_undefined_length(buffer, value_position, element_tag, encoding, implicit)
            continue
        position = value_position + length
        if position > size:
            raise MalformedDataset(f"element {_tag_text(element_tag)} in {_tag_text(tag)} truncated")


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def guess_transfer_syntax(buffer: bytes) -> str | None:
    """Guess the encoding of a dataset stored without file meta information (old ACR-NEMA style files).

    The first element is almost always in group 0008; its byte order gives the
    endianness, and two letters of a known VR after the tag mean explicit VR.
    """
    if len(buffer) < 8:
        return None
    little_group = struct.unpack_from("<H", buffer, 0)[0]
    big_group = struct.unpack_from(">H", buffer, 0)[0]
    explicit = bytes(buffer[4:6]) in KNOWN_VRS
    if little_group in range(0x0002, 0x0030):
        return "1.2.840.10008.1.2.1" if explicit else ImplicitVRLittleEndian
    if big_group in range(0x0002, 0x0030) and explicit:
        return ExplicitVRBigEndian
    return None
