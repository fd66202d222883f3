"""Frames of stored pixel data: compressed as stored, or native little endian pixel bytes.

Compressed frames are cut out of the encapsulated pixel data without
decoding, with the Basic or Extended Offset Table when present (PS3.5
A.4). Native frames are read straight from their place in the file. Only
the header of a file is parsed, so a frame of a large multi-frame instance
costs one seek and one read.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.dataelem import RawDataElement
from pydicom.encaps import get_frame
from pydicom.pixels import iter_pixels
from pydicom.uid import UID

from telerad.dicomweb.transcode import TranscodeError

# Pixel Data, Float Pixel Data and Double Float Pixel Data (PS3.3 C.7.6.3).
PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
EXTENDED_OFFSET_TABLE = 0x7FE00001
EXTENDED_OFFSET_TABLE_LENGTHS = 0x7FE00002

# PS3.18 Table 8.7.3-5: media types of compressed frames, by transfer syntax.
COMPRESSED_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
# Other names clients use for the same frames: dicomweb-client and the
# DICOMweb client in OHIF's bundles name RLE frames image/x-dicom-rle.
OTHER_COMPRESSED_MEDIA_TYPES = {
    "1.2.840.10008.1.2.5": ("image/x-dicom-rle",),
}


class NoPixelData(Exception):
    """The instance has no pixel data element."""


@dataclasses.dataclass(frozen=True)
class PixelDataLocation:
    """Where the pixel data of a stored file is, and the frame geometry from its header."""

    path: Path
    transfer_syntax: UID
    tag: int
    value_offset: int
    number_of_frames: int
    samples: int
    bits_allocated: int
    extended_offsets: tuple[bytes, bytes] | None

    @property
    def encapsulated(self) -> bool:
        return self.transfer_syntax.is_encapsulated

    @property
    def frame_bits(self) -> int:
        return self.samples * self.bits_allocated


def locate(path: Path) -> PixelDataLocation:
    """Read the header of a stored file, leaving large values unread, and find its pixel data.

    Raises NoPixelData when there is none.
    """
    dataset = dcmread(path, defer_size=1024)
    tag = next((tag for tag in PIXEL_DATA_TAGS if tag in dataset), None)
    if tag is None:
        raise NoPixelData()
    raw = dataset.get_item(tag, keep_deferred=True)
    deferred = isinstance(raw, RawDataElement) and raw.value is None
    return PixelDataLocation(
        path=path,
        transfer_syntax=dataset.file_meta.TransferSyntaxUID,
        tag=tag,
        # A value small enough to be read at once has no known offset, and is read again with the whole file.
        value_offset=raw.value_tell if deferred else -1,
        number_of_frames=_number_of_frames(dataset),
        samples=_samples_per_frame(dataset),
        bits_allocated=int(dataset.BitsAllocated),
        extended_offsets=_extended_offsets(dataset),
    )


def _samples_per_frame(dataset: Dataset) -> int:
    pixels = int(dataset.Rows) * int(dataset.Columns)
    # PS3.3 C.7.6.3.1.2: native YBR_FULL_422 stores two samples per pixel (Y, Y, Cb, Cr per pixel pair).
    if dataset.get("PhotometricInterpretation") == "YBR_FULL_422" and not dataset.file_meta.TransferSyntaxUID.is_encapsulated:
        return pixels * 2
    return pixels * int(dataset.get("SamplesPerPixel", 1))


def _number_of_frames(dataset: Dataset) -> int:
    value = dataset.get("NumberOfFrames")
    return int(value) if value else 1


def _extended_offsets(dataset: Dataset) -> tuple[bytes, bytes] | None:
    if EXTENDED_OFFSET_TABLE in dataset and EXTENDED_OFFSET_TABLE_LENGTHS in dataset:
        return dataset[EXTENDED_OFFSET_TABLE].value, dataset[EXTENDED_OFFSET_TABLE_LENGTHS].value
    return None


def stored_frame(location: PixelDataLocation, number: int) -> bytes:
    """Return frame `number` (1-based) as stored: compressed bytes of an encapsulated syntax, else native bytes."""
    if not location.encapsulated:
        return native_frame(location, number)

    index = number - 1
    options = {"number_of_frames": location.number_of_frames, "extended_offsets": location.extended_offsets}
    try:
        if location.value_offset < 0:
            return get_frame(dcmread(location.path)[location.tag].value, index, **options)
        with location.path.open("rb") as handle:
            handle.seek(location.value_offset)
            return get_frame(handle, index, **options)
    except ValueError as exc:
        raise TranscodeError(f"frame {number} could not be read from the encapsulated pixel data: {exc}") from exc


def native_frame(location: PixelDataLocation, number: int) -> bytes:
    """Return the pixel bytes of frame `number` (1-based) of uncompressed pixel data, in little endian order."""
    if location.value_offset < 0 or location.frame_bits % 8 or not location.transfer_syntax.is_little_endian or location.transfer_syntax.is_deflated:
        return _frame_from_dataset(location, number)

    frame_length = location.frame_bits // 8
    with location.path.open("rb") as handle:
        handle.seek(location.value_offset + (number - 1) * frame_length)
        data = handle.read(frame_length)
    if len(data) != frame_length:
        raise TranscodeError(f"the pixel data ends before frame {number}")
    return data


def _frame_from_dataset(location: PixelDataLocation, number: int) -> bytes:
    """Cut a frame out of the whole pixel data value: for big endian, deflated and 1-bit data."""
    dataset = dcmread(location.path)
    value = dataset[location.tag].value
    frame_bits = location.frame_bits
    bits_allocated = location.bits_allocated
    if bits_allocated == 1:
        # PS3.5 8.1.1: 1-bit pixels are packed across frame boundaries, least significant bit first.
        bits = np.unpackbits(np.frombuffer(value, dtype=np.uint8), bitorder="little")
        frame = bits[(number - 1) * frame_bits : number * frame_bits]
        if frame.size != frame_bits:
            raise TranscodeError(f"the pixel data ends before frame {number}")
        return np.packbits(frame, bitorder="little").tobytes()

    frame_length = frame_bits // 8
    data = value[(number - 1) * frame_length : number * frame_length]
    if len(data) != frame_length:
        raise TranscodeError(f"the pixel data ends before frame {number}")
    if not location.transfer_syntax.is_little_endian and bits_allocated > 8:
        width = bits_allocated // 8
        data = np.frombuffer(data, dtype=f">u{width}").astype(f"<u{width}").tobytes()
    return data


def decoded_frames(location: PixelDataLocation, numbers: list[int]) -> Iterator[bytes]:
    """Decode frames `numbers` (1-based) of encapsulated pixel data into native little endian pixel bytes.

    pydicom converts YBR colour to RGB as it decodes, as when a whole
    instance is decompressed.
    """
    try:
        for array in iter_pixels(location.path, indices=[number - 1 for number in numbers]):
            yield np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    except Exception as exc:  # noqa: BLE001 - decoders raise many kinds of errors
        raise TranscodeError(f"the pixel data in {location.transfer_syntax.name} could not be decoded: {exc}") from exc
