"""Re-encode a stored instance in Explicit VR Little Endian, decompressing its pixel data if needed.

The stored file is never changed; the re-encoded copy is built in memory
for one response part. pydicom decodes the pixel data with the installed
plugins (pylibjpeg, openjpeg, RLE, pyjpegls). After decompression, pydicom
sets Photometric Interpretation to what the decoded pixels are (YBR colour
comes out as RGB) and keeps Lossy Image Compression.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.pixels import get_decoder
from pydicom.uid import UID, ExplicitVRLittleEndian

from telerad.archive.ingest import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

EXPLICIT_VR_LITTLE_ENDIAN = str(ExplicitVRLittleEndian)
# Bytes per word of the binary VRs whose values follow the byte order (PS3.5 7.3).
WORD_SIZES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


class TranscodeError(Exception):
    """The instance cannot be re-encoded; the message names the reason."""


def can_decode(transfer_syntax_uid: str) -> bool:
    """Whether pixel data in `transfer_syntax_uid` can be turned into native little endian pixels."""
    syntax = UID(transfer_syntax_uid)
    if not syntax.is_transfer_syntax:
        return False
    if not syntax.is_encapsulated:
        return True
    try:
        return get_decoder(syntax).is_available
    except NotImplementedError:
        return False


def explicit_little_endian_file(path: Path) -> bytes:
    """Return the instance at `path` as a Part 10 file in Explicit VR Little Endian."""
    dataset = dcmread(path)
    syntax = dataset.file_meta.TransferSyntaxUID
    if syntax == ExplicitVRLittleEndian:
        return path.read_bytes()

    if syntax.is_encapsulated and "PixelData" in dataset:
        try:
            # The SOP Instance UID stays: the copy is the same instance in another encoding.
            dataset.decompress(generate_instance_uid=False)
        except Exception as exc:  # noqa: BLE001 - decoders raise many kinds of errors
            raise TranscodeError(f"the pixel data in {syntax.name} could not be decoded: {exc}") from exc
    elif not syntax.is_little_endian:
        _swap_to_little_endian(dataset)

    dataset.file_meta = _file_meta(dataset.file_meta)
    buffer = io.BytesIO()
    dcmwrite(buffer, dataset, enforce_file_format=True, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


def _file_meta(original: FileMetaDataset) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = original.MediaStorageSOPClassUID
    meta.MediaStorageSOPInstanceUID = original.MediaStorageSOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def _swap_to_little_endian(dataset: Dataset) -> None:
    """Byte-swap the binary values of a big endian dataset; pydicom's writer re-encodes the others.

    pydicom does not convert OW, OF, OL, OD and OV values between byte orders
    itself (see pydicom.filewriter.dcmwrite).
    """
    for element in dataset.iterall():
        size = WORD_SIZES.get(str(element.VR))
        if size is None or element.is_empty:
            continue
        words = np.frombuffer(element.value, dtype=f">u{size}")
        element.value = words.astype(f"<u{size}").tobytes()
