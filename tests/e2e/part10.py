"""DICOM Part 10 files for the end-to-end tests: real samples, their encoded datasets and crafted variants."""

from __future__ import annotations

import hashlib
import io
import shutil
import struct
import subprocess
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_file_meta_info
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, generate_uid
from pynetdicom.dsutils import encode, split_dataset

PREAMBLE = b"\x00" * 128 + b"DICM"
DCMCONV_TIMEOUT = 60  # seconds


def sample_path(name: str) -> Path:
    """Return the path of a sample file shipped with pydicom or pydicom-data."""
    import data_store

    pydicom_data = Path(pydicom.__file__).parent / "data"
    for folder in (pydicom_data / "test_files", pydicom_data / "charset_files", Path(data_store.DataStore().data_path)):
        path = folder / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"no sample file named {name} in pydicom or pydicom-data")


def dataset_bytes(path: Path) -> bytes:
    """Return the encoded dataset of a Part 10 file: every byte after the file meta group."""
    _, offset = split_dataset(path)
    return path.read_bytes()[offset:]


def transfer_syntax_of(path: Path) -> UID:
    return UID(read_file_meta_info(path).TransferSyntaxUID)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_part10(path: Path, dataset: bytes, *, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str) -> Path:
    """Write `dataset`, already encoded, behind a preamble and a file meta group that names the given UIDs.

    The meta group is built apart from the dataset so that a test can pair it
    with a dataset that contradicts it or is broken.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    stream = io.BytesIO()
    stream.write(PREAMBLE)
    write_file_meta_info(stream, meta, enforce_standard=True)  # type: ignore[arg-type]
    path.write_bytes(stream.getvalue() + dataset)
    return path


def encoded(ds: Dataset) -> bytes:
    """Encode `ds` the way pynetdicom sends it, in the transfer syntax its file meta names."""
    transfer_syntax = UID(ds.file_meta.TransferSyntaxUID)
    data = encode(ds, transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian, transfer_syntax.is_deflated)
    assert data is not None, f"pynetdicom cannot encode the dataset in {transfer_syntax.name}"
    return data


def with_new_uids(path: Path) -> Dataset:
    """Read a sample and give it new Study, Series and SOP Instance UIDs, so that it is new to any archive."""
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    """Replace the one occurrence of `old` in `data` by `new`, which must have the same length so that no length field changes."""
    assert len(old) == len(new), f"replacement changes the length: {len(old)} to {len(new)} bytes"
    assert data.count(old) == 1, f"{old!r} occurs {data.count(old)} times in the dataset; expected once"
    return data.replace(old, new)


def replace_uid_element(dataset: bytes, tag: int, old_uid: str, new_uid: str) -> bytes:
    """Give a top-level UI element of an explicit VR little endian dataset a new value, adjusting its length field.

    Only valid for datasets without group length elements, because those would
    need the new length too.
    """
    group, element = tag >> 16, tag & 0xFFFF
    old = _ui_element(group, element, old_uid)
    assert dataset.count(old) == 1, f"UID element ({group:04X},{element:04X}) found {dataset.count(old)} times; expected once"
    return dataset.replace(old, _ui_element(group, element, new_uid))


def _ui_element(group: int, element: int, uid: str) -> bytes:
    # PS3.5 9.1: a UID of odd length is padded with one NUL byte.
    value = uid.encode("ascii")
    if len(value) % 2:
        value += b"\x00"
    return struct.pack("<HH2sH", group, element, b"UI", len(value)) + value


def dcmtk_encoded_copy(source: Path, destination: Path) -> Path:
    """Write `source` as DCMTK encodes it on the network, so that storescu sends the file's dataset unchanged.

    storescu re-encodes every dataset it sends, as seen with DCMTK 3.6.7:
    sequences and items get explicit lengths, group lengths are recalculated,
    trailing padding is dropped and encapsulated pixel data becomes OB.
    dcmconv writes the same encoding, so the copy's dataset is the byte stream
    telerad receives.
    """
    dcmconv = shutil.which("dcmconv")
    assert dcmconv is not None, "dcmconv not found; install DCMTK (Debian package dcmtk)"
    deflated = transfer_syntax_of(source) == DeflatedExplicitVRLittleEndian
    # dcmconv only deflates when asked to, whatever the input.
    options = ["--padding-off", *(["--write-xfer-deflated"] if deflated else [])]
    completed = subprocess.run(
        [dcmconv, "--quiet", *options, str(source), str(destination)],
        capture_output=True, text=True, timeout=DCMCONV_TIMEOUT,
    )
    assert completed.returncode == 0, f"dcmconv failed on {source.name}: {completed.stderr}"
    if deflated and len(dataset_bytes(destination)) % 2:
        # storescu pads an odd-length deflated stream with one NUL byte when it
        # sends it, as pydicom does when it writes one, but dcmconv does not.
        with destination.open("ab") as handle:
            handle.write(b"\x00")
    return destination
