"""Import DICOM files from disk: single files, folders, zip archives and DICOMDIR media.

An import runs in two steps. :func:`plan_import` walks the paths and lists
the files to read with their sizes, so that progress can be shown in bytes.
:func:`run_import` then hands each file to
:func:`telerad.archive.ingest.store_file`, which scans and validates it; this
module parses nothing with pydicom except DICOMDIR files.

A folder whose root contains a file named DICOMDIR is read as a DICOM medium.
The DICOMDIR is the index of the medium's File-set, so only the files that its
directory records reference are imported. Other files on the medium, such as
a viewer or a README, are left alone. Every other folder is walked recursively.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import enum
import logging
import mmap
import os
import re
import shutil
import tempfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pydicom
from django.conf import settings
from pydicom.uid import MediaStorageDirectoryStorage

from telerad.archive import header, ingest
from telerad.archive.storage import FileStorage
from telerad.audit import events as audit

logger = logging.getLogger(__name__)

SKIPPED = "skipped"
REJECTED_OUTCOMES = frozenset({ingest.Outcome.REJECTED.value, ingest.Outcome.CONFLICT.value})
MEDIA_STORAGE_SOP_CLASS_UID = 0x00020002

# Zip local file header, and the end-of-central-directory record that starts an empty archive.
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
# Smaller files are read into memory, which also covers empty files, because
# those cannot be mapped. Larger files are mapped read-only, so a
# multi-gigabyte file is never copied into memory.
MMAP_THRESHOLD = 1024 * 1024
# Larger zip members are extracted to a temporary file and mapped.
ZIP_MEMBER_IN_MEMORY_LIMIT = 64 * 1024 * 1024
# Desktop clutter that is not hidden by a leading dot.
HIDDEN_NAMES = frozenset({"thumbs.db", "desktop.ini", "__macosx"})
DICOMDIR_NAME = "DICOMDIR"
# Errors that reading a damaged or unsupported zip member raises.
ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError)


class ImportPathError(ValueError):
    """A path given to the import does not exist; the message names it."""


@dataclasses.dataclass(frozen=True)
class FileResult:
    """The outcome of one file: an :class:`ingest.Outcome` value, or ``skipped`` for a file that is not an instance."""

    path: str
    outcome: str
    reason: str = ""
    sop_instance_uid: str = ""

    @property
    def rejected(self) -> bool:
        return self.outcome in REJECTED_OUTCOMES


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A file to read, or a file already judged during planning (`verdict`) that is reported as it is."""

    path: Path
    size: int
    verdict: FileResult | None = None


@dataclasses.dataclass(frozen=True)
class Medium:
    """A DICOMDIR read during planning, with the number of files its directory records reference."""

    dicomdir: Path
    referenced_files: int


@dataclasses.dataclass
class ImportPlan:
    candidates: list[Candidate] = dataclasses.field(default_factory=list)
    media: list[Medium] = dataclasses.field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(candidate.size for candidate in self.candidates)


@dataclasses.dataclass
class ImportReport:
    """Counts per outcome, the rejected files, and instances stored per (patient ID, study UID)."""

    counts: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    rejected: list[FileResult] = dataclasses.field(default_factory=list)
    studies: collections.Counter[tuple[str, str]] = dataclasses.field(default_factory=collections.Counter)
    bytes_read: int = 0
    duration: float = 0.0
    interrupted: bool = False

    @property
    def files(self) -> int:
        return sum(self.counts.values())

    @property
    def rejected_count(self) -> int:
        return len(self.rejected)

    def count(self, outcome: ingest.Outcome | str) -> int:
        return self.counts[outcome.value if isinstance(outcome, ingest.Outcome) else outcome]

    def summary(self) -> str:
        """Return the counts as ``name=value`` pairs, for the log and the audit trail."""
        return (
            f"files={self.files} stored={self.count(ingest.Outcome.STORED)} "
            f"replaced={self.count(ingest.Outcome.REPLACED)} already_present={self.count(ingest.Outcome.ALREADY_PRESENT)} "
            f"rejected={self.rejected_count} skipped={self.count(SKIPPED)} studies={len(self.studies)}"
        )


ResultListener = Callable[[FileResult], None]
# Called with the number of files and of input bytes just finished.
ProgressListener = Callable[[int, int], None]


def _rejected(path: Path | str, reason: str) -> FileResult:
    return FileResult(str(path), ingest.Outcome.REJECTED.value, reason)


def _skipped(path: Path | str, reason: str) -> FileResult:
    return FileResult(str(path), SKIPPED, reason)


# Planning


def check_paths(paths: Sequence[Path]) -> None:
    """Raise ImportPathError naming every path in `paths` that does not exist."""
    missing = [path for path in paths if not path.exists()]
    if missing:
        raise ImportPathError(f"no such file or folder: {', '.join(str(path) for path in missing)}")


def plan_import(paths: Sequence[Path]) -> ImportPlan:
    """List the files to import from `paths`; raise ImportPathError when one of them does not exist.

    A file reached twice (a repeated path, a symbolic or hard link) is listed once.
    """
    check_paths(paths)
    planner = _Planner()
    for path in paths:
        planner.add_path(path)
    return planner.plan


class _Planner:
    def __init__(self) -> None:
        self.plan = ImportPlan()
        self._seen_files: set[tuple[int, int]] = set()
        self._seen_folders: set[tuple[int, int]] = set()

    def add_path(self, path: Path) -> None:
        if path.is_dir():
            self._add_folder(path)
            return

        if not path.is_file():
            self._add_verdict(_rejected(path, "not a regular file (a device, socket or named pipe)"))
            return
        if _is_dicomdir(path):
            self._add_medium(path)
            return
        self._add_file(path, path.stat())

    def _add_file(self, path: Path, stat: os.stat_result) -> None:
        identity = (stat.st_dev, stat.st_ino)
        if identity in self._seen_files:
            return
        self._seen_files.add(identity)
        self.plan.candidates.append(Candidate(path, stat.st_size))

    def _add_verdict(self, result: FileResult) -> None:
        self.plan.candidates.append(Candidate(Path(result.path), 0, result))

    def _add_folder(self, top: Path) -> None:
        # Depth first in name order. Each folder is entered once, keyed by
        # device and inode, so symbolic links that loop end the walk.
        stack = [top]
        while stack:
            folder = stack.pop()
            identity = _identity(folder)
            if identity is None or identity in self._seen_folders:
                continue
            self._seen_folders.add(identity)
            subfolders = self._add_folder_entries(folder)
            stack.extend(reversed(subfolders))

    def _add_folder_entries(self, folder: Path) -> list[Path]:
        """Add the files of `folder`, or its medium; return its subfolders to walk."""
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as exc:
            logger.warning("folder not readable path=%s error=%s", folder, exc.strerror)
            self._add_verdict(_rejected(folder, f"cannot read the folder: {exc.strerror}"))
            return []

        dicomdir = next((entry for entry in entries if entry.name.upper() == DICOMDIR_NAME and entry.is_file()), None)
        if dicomdir is not None and self._add_medium(Path(dicomdir.path)):
            return []

        subfolders = []
        for entry in entries:
            if entry is dicomdir:
                continue
            if _is_hidden(entry.name):
                kind = "folder" if entry.is_dir() else "file"
                self._add_verdict(_skipped(entry.path, f"hidden {kind}"))
            elif entry.is_dir():
                subfolders.append(Path(entry.path))
            elif entry.is_file():
                self._add_file(Path(entry.path), entry.stat())
            elif entry.is_symlink():
                self._add_verdict(_rejected(entry.path, "broken symbolic link: its target does not exist"))
            else:
                self._add_verdict(_rejected(entry.path, "not a regular file (a device, socket or named pipe)"))
        return subfolders

    def _add_medium(self, dicomdir: Path) -> bool:
        """Add the files referenced by `dicomdir`; return False, with the DICOMDIR rejected, when it cannot be read."""
        try:
            file_ids = read_referenced_file_ids(dicomdir)
        except InvalidDicomdir as exc:
            logger.warning("DICOMDIR not readable path=%s error=%s", dicomdir, exc)
            self._add_verdict(_rejected(dicomdir, f"cannot read the DICOMDIR: {exc}"))
            return False

        resolver = _FileIdResolver(dicomdir.parent)
        for file_id in file_ids:
            self._add_referenced_file(resolver, file_id)
        self.plan.media.append(Medium(dicomdir, len(file_ids)))
        logger.debug("DICOMDIR read path=%s referenced_files=%d", dicomdir, len(file_ids))
        return True

    def _add_referenced_file(self, resolver: _FileIdResolver, file_id: list[str]) -> None:
        if not _valid_file_id(file_id):
            value = "\\".join(file_id)
            self._add_verdict(_rejected(resolver.root, f"the DICOMDIR has the invalid ReferencedFileID {value!r}"))
            return

        expected = resolver.root.joinpath(*file_id)
        path = resolver.resolve(file_id)
        if path is None or not path.is_file():
            self._add_verdict(_rejected(expected, "the DICOMDIR references this file but it does not exist on the medium"))
            return
        self._add_file(path, path.stat())


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in HIDDEN_NAMES


def _is_dicomdir(path: Path) -> bool:
    """Tell a DICOMDIR by its file name or by its Media Storage SOP Class UID."""
    if path.name.upper() == DICOMDIR_NAME:
        return True
    try:
        with _open_buffer(path) as buffer:
            return _classify(buffer) is _Kind.DICOMDIR
    except OSError:
        return False


class InvalidDicomdir(ValueError):
    """A DICOMDIR cannot be read or has no directory records; the message gives the reason."""


def read_referenced_file_ids(dicomdir: Path) -> list[list[str]]:
    """Return the ReferencedFileID of every directory record of `dicomdir` that has one, in record order."""
    try:
        dataset = pydicom.dcmread(dicomdir)
        records = dataset.get("DirectoryRecordSequence")
        if records is None:
            raise InvalidDicomdir("it has no DirectoryRecordSequence")
        values = [record.get("ReferencedFileID") for record in records]
    except InvalidDicomdir:
        raise
    except Exception as exc:
        # pydicom raises many exception types on damaged input (InvalidDicomError,
        # ValueError, EOFError, struct.error and more), both in dcmread and when
        # a sequence is first accessed. Any of them makes the DICOMDIR unusable.
        raise InvalidDicomdir(str(exc) or type(exc).__name__) from exc

    file_ids = []
    for value in values:
        if not value:
            continue
        # One component comes as a string, several as a MultiValue.
        components = [value] if isinstance(value, str) else list(value)
        file_ids.append([str(component).strip() for component in components])
    return file_ids


def _valid_file_id(file_id: list[str]) -> bool:
    # Each component must be a single name, so that no file ID leads out of the medium's folder.
    return all(component not in {"", ".", ".."} and not re.search(r"[/\\\x00]", component) for component in file_id)


class _FileIdResolver:
    """Finds referenced files on a medium whose file names may differ in case.

    File IDs on CDs are upper case, but a mount may show them in lower case or
    with the ISO 9660 version suffix (``IM000001;1``).
    """

    def __init__(self, root: Path):
        self.root = root
        self._listings: dict[Path, dict[str, str]] = {}

    def resolve(self, file_id: list[str]) -> Path | None:
        path = self.root
        for component in file_id:
            name = self._find(path, component)
            if name is None:
                return None
            path = path / name
        return path

    def _find(self, folder: Path, component: str) -> str | None:
        if (folder / component).exists():
            return component
        listing = self._listings.get(folder)
        if listing is None:
            try:
                listing = {_comparable_name(name): name for name in sorted(os.listdir(folder))}
            except OSError:
                listing = {}
            self._listings[folder] = listing
        return listing.get(_comparable_name(component))


def _comparable_name(name: str) -> str:
    return name.split(";")[0].rstrip(".").upper()


# Importing


class _Kind(enum.Enum):
    DICOM = "dicom"
    DICOMDIR = "dicomdir"
    ZIP = "zip"


def _classify(buffer: bytes | mmap.mmap) -> _Kind:
    """Tell a DICOMDIR and a zip archive from everything else, which ingest judges."""
    if buffer[header.PREAMBLE_LENGTH:header.PREAMBLE_LENGTH + 4] == b"DICM":
        # DICM is checked first because the preamble may contain anything, a zip signature included.
        return _Kind.DICOMDIR if _media_storage_sop_class(buffer) == MediaStorageDirectoryStorage else _Kind.DICOM
    if buffer[:4] in ZIP_SIGNATURES:
        return _Kind.ZIP
    return _Kind.DICOM


def _media_storage_sop_class(buffer: bytes | mmap.mmap) -> str:
    try:
        meta = header.read_file_meta(buffer)  # type: ignore[arg-type]
    except header.MalformedDataset:
        return ""
    return meta.text(MEDIA_STORAGE_SOP_CLASS_UID) if meta else ""


@contextlib.contextmanager
def _open_buffer(path: Path) -> Iterator[bytes | mmap.mmap]:
    """Yield the content of a file: read into memory when small, mapped read-only otherwise."""
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size < MMAP_THRESHOLD:
            yield handle.read()
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            yield mapped


@contextlib.contextmanager
def _extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, temporary_dir: Path) -> Iterator[bytes | mmap.mmap]:
    """Yield the content of a zip member: in memory when small, else through a mapped temporary file."""
    if info.file_size <= ZIP_MEMBER_IN_MEMORY_LIMIT:
        yield archive.read(info)
        return

    temporary_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=temporary_dir, suffix=".import") as spool:
        with archive.open(info) as member:
            shutil.copyfileobj(member, spool, 1024 * 1024)
        spool.flush()
        with mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            yield mapped


def run_import(
    plan: ImportPlan,
    *,
    user: str,
    storage: FileStorage | None = None,
    on_result: ResultListener | None = None,
    on_progress: ProgressListener | None = None,
) -> ImportReport:
    """Store every file of `plan` and return the counts; write the audit events of the run, also when it is interrupted.

    Reading errors reject the file concerned; storage and database errors end the run.
    """
    importer = _Importer(user=user, storage=storage, on_result=on_result, on_progress=on_progress)
    started = time.monotonic()
    try:
        for candidate in plan.candidates:
            importer.import_candidate(candidate)
    except BaseException:
        importer.report.interrupted = True
        raise
    finally:
        importer.report.duration = time.monotonic() - started
        _record_run(importer.report, user)
    return importer.report


class _Importer:
    def __init__(
        self,
        *,
        user: str,
        storage: FileStorage | None,
        on_result: ResultListener | None,
        on_progress: ProgressListener | None,
    ):
        self.source = ingest.Source(kind="import", user=user)
        self.storage = storage
        self.report = ImportReport()
        self._on_result = on_result
        self._on_progress = on_progress

    def import_candidate(self, candidate: Candidate) -> None:
        if candidate.verdict is not None:
            self._record(candidate.verdict)
            self._advance(1, candidate.size)
            return

        kind = self._import_file(candidate.path)
        if kind is _Kind.ZIP:
            self._import_zip(candidate.path, candidate.size)
            return
        self._advance(1, candidate.size)

    def _import_file(self, path: Path) -> _Kind | None:
        """Store the file at `path`, unless it is a zip archive, which is left to the caller; return its kind."""
        with contextlib.ExitStack() as stack:
            try:
                buffer = stack.enter_context(_open_buffer(path))
            except OSError as exc:
                logger.warning("file not readable path=%s error=%s", path, exc.strerror)
                self._record(_rejected(path, f"cannot read the file: {exc.strerror or exc}"))
                return None

            kind = _classify(buffer)
            if kind is not _Kind.ZIP:
                self._record(self._import_buffer(buffer, kind, str(path)))
            return kind

    def _import_zip(self, path: Path, size: int) -> None:
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            logger.warning("zip archive not readable path=%s error=%s", path, exc)
            self._record(_rejected(path, f"cannot read the zip archive: {exc}"))
            self._advance(1, size)
            return

        consumed = 0
        with archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                self._record(self._import_member(archive, info, f"{path}/{info.filename}"))
                self._advance(1, info.compress_size)
                consumed += info.compress_size
        # The archive's headers and central directory, so progress ends at the file's size.
        self._advance(0, max(size - consumed, 0))

    def _import_member(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, display_path: str) -> FileResult:
        if any(_is_hidden(part) for part in info.filename.split("/")):
            return _skipped(display_path, "hidden file")
        if info.flag_bits & 0x1:
            return _rejected(display_path, "the zip member is encrypted; extract the archive with its password and import the files")

        with contextlib.ExitStack() as stack:
            try:
                buffer = stack.enter_context(_extract_member(archive, info, settings.TELERAD.temporary_dir))
            except ZIP_READ_ERRORS as exc:
                logger.warning("zip member not readable path=%s error=%s", display_path, exc)
                return _rejected(display_path, f"cannot read the zip member: {exc}")
            kind = _classify(buffer)
            if kind is _Kind.ZIP:
                return _rejected(display_path, "a zip archive inside a zip archive is not imported; extract it and import its files")
            return self._import_buffer(buffer, kind, display_path)

    def _import_buffer(self, buffer: bytes | mmap.mmap, kind: _Kind, display_path: str) -> FileResult:
        if kind is _Kind.DICOMDIR:
            return _skipped(display_path, "a DICOMDIR is an index, not an instance; import it on its own to import the files it references")

        try:
            result = ingest.store_file(buffer, source=self.source, storage=self.storage)  # type: ignore[arg-type]
        except header.MalformedDataset as exc:
            # store_file raises instead of rejecting when the file meta group itself is cut off.
            result = ingest.StoreResult(ingest.Outcome.REJECTED, reason=f"not a valid DICOM file: {exc}")
        if result.outcome in {ingest.Outcome.STORED, ingest.Outcome.REPLACED}:
            self.report.studies[(result.patient_id, result.study_instance_uid)] += 1
        return FileResult(display_path, result.outcome.value, result.reason, result.sop_instance_uid)

    def _record(self, result: FileResult) -> None:
        self.report.counts[result.outcome] += 1
        if result.rejected:
            self.report.rejected.append(result)
        if self._on_result is not None:
            self._on_result(result)

    def _advance(self, files: int, size: int) -> None:
        self.report.bytes_read += size
        if self._on_progress is not None:
            self._on_progress(files, size)


def _record_run(report: ImportReport, user: str) -> None:
    """Log the run and write its audit events: one per study that gained instances, one for the run."""
    state = "interrupted" if report.interrupted else "finished"
    logger.info("import %s user=%s %s bytes=%d duration=%.2fs", state, user, report.summary(), report.bytes_read, report.duration)

    for (patient_id, study_instance_uid), count in report.studies.items():
        audit.record_event(
            action=audit.Action.INSTANCES_STORED,
            user=user,
            patient_id=patient_id,
            study_instance_uid=study_instance_uid,
            detail=f"{count} instances imported from files",
        )
    if report.interrupted:
        outcome = audit.Outcome.SERIOUS_FAILURE
    elif report.rejected:
        outcome = audit.Outcome.MINOR_FAILURE
    else:
        outcome = audit.Outcome.SUCCESS
    audit.record_event(action=audit.Action.IMPORT, outcome=outcome, user=user, detail=f"import {state}: {report.summary()}")


# Samples


def sample_image_paths() -> list[Path]:
    """List the sample DICOM files shipped with pydicom and, when it is installed, pydicom-data.

    The list keeps the samples that ingest rejects on purpose (truncated files,
    missing UIDs) and the variants of one image that share a SOP Instance UID,
    so importing all of them stores fewer instances than it reads. DICOMDIR
    files and non-DICOM files (JSON, text dumps) are left out.
    """
    pydicom_data = Path(pydicom.__file__).parent / "data"
    folders = [pydicom_data / "test_files", pydicom_data / "charset_files"]
    try:
        import data_store
    except ImportError:
        pass
    else:
        folders.append(Path(data_store.DataStore().data_path))

    paths = []
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not _is_hidden(path.name) and _is_sample_image(path):
                paths.append(path)
    return paths


def _is_sample_image(path: Path) -> bool:
    with _open_buffer(path) as buffer:
        if _classify(buffer) is not _Kind.DICOM:
            return False
        # Datasets without file meta have no DICM prefix but carry the .dcm suffix.
        return buffer[header.PREAMBLE_LENGTH:header.PREAMBLE_LENGTH + 4] == b"DICM" or path.suffix.lower() == ".dcm"
