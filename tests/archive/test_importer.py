"""Importing files from disk: folders, zip archives, DICOMDIR media, rejections and the command."""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pydicom
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pydicom import dcmread

from telerad.archive import importer
from telerad.archive.ingest import default_storage
from telerad.archive.models import Instance, Series, Study
from telerad.audit.models import AuditEvent
from telerad.dicomweb import metadata
from telerad.dicomweb.models import InstanceMetadata

pytestmark = pytest.mark.django_db

# One of each kind the archive meets: modalities, transfer syntaxes and character sets.
VARIED_SAMPLES = (
    "CT_small.dcm",  # CT, explicit VR little endian
    "MR_small.dcm",  # MR
    "ExplVR_BigEnd.dcm",  # explicit VR big endian
    "OBXXXX1A_2frame.dcm",  # US, two frames
    "JPEG-lossy.dcm",  # JPEG extended
    "693_J2KI.dcm",  # JPEG 2000
    "emri_small_RLE.dcm",  # RLE lossless, ten frames
    "image_dfl.dcm",  # deflated explicit VR little endian
    "chrH31.dcm",  # Japanese, ISO 2022
    "chrRuss.dcm",  # Cyrillic
    "chrX1.dcm",  # UTF-8
    "test-SR.dcm",  # structured report
)
DICOMDIR_REFERENCED_FILES = 31
DICOMDIR_TESTS = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests"
USER = "importer-test"


def copy_samples(sample_file, folder: Path, names=VARIED_SAMPLES) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(sample_file(name), folder / name)) for name in names]


def import_paths(paths, storage) -> importer.ImportReport:
    return importer.run_import(importer.plan_import(paths), user=USER, storage=storage)


def stored_files(root: Path) -> dict[str, int]:
    return {str(path.relative_to(root)): path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}


def index_rows() -> list[tuple]:
    instances = list(Instance.objects.order_by("sop_instance_uid").values_list("sop_instance_uid", "storage_key", "dataset_sha256", "series_id"))
    series = list(Series.objects.order_by("pk").values_list("pk", "number_of_series_related_instances"))
    studies = list(Study.objects.order_by("pk").values_list("pk", "number_of_study_related_series", "number_of_study_related_instances"))
    return [*instances, *series, *studies]


def dicomdir_medium(tmp_path: Path) -> Path:
    """Copy pydicom's DICOMDIR test medium (three patients) to `tmp_path`."""
    medium = tmp_path / "medium"
    medium.mkdir()
    shutil.copy(DICOMDIR_TESTS / "DICOMDIR", medium / "DICOMDIR")
    for patient in ("77654033", "98892001", "98892003"):
        shutil.copytree(DICOMDIR_TESTS / patient, medium / patient)
    return medium


def run_command(*args, **options) -> tuple[int, str, str]:
    """Run ``import`` through call_command; return its exit status, standard output and standard error."""
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        call_command("import", *[str(arg) for arg in args], stdout=stdout, stderr=stderr, **options)
    except SystemExit as exc:
        return int(exc.code), stdout.getvalue(), stderr.getvalue()
    return 0, stdout.getvalue(), stderr.getvalue()


# Folders


def test_folder_stores_every_sample(sample_file, storage, tmp_path):
    copy_samples(sample_file, tmp_path / "in")

    report = import_paths([tmp_path / "in"], storage)

    assert report.count("stored") == len(VARIED_SAMPLES)
    assert report.rejected == []
    assert Instance.objects.count() == len(VARIED_SAMPLES)
    assert len(stored_files(storage.root)) == len(VARIED_SAMPLES)


def test_folder_import_is_audited_per_study(sample_file, storage, tmp_path):
    paths = copy_samples(sample_file, tmp_path / "in")
    datasets = [dcmread(path, stop_before_pixels=True) for path in paths]
    studies = {(str(ds.get("PatientID", "")), ds.StudyInstanceUID) for ds in datasets}

    import_paths([tmp_path / "in"], storage)

    stored_events = AuditEvent.objects.filter(action="instances-stored")
    assert {(event.patient_id, event.study_instance_uid) for event in stored_events} == studies
    assert all(event.user == USER for event in stored_events)
    run_event = AuditEvent.objects.get(action="import")
    assert run_event.outcome == 0
    assert f"stored={len(VARIED_SAMPLES)}" in run_event.detail
    assert "rejected=0" in run_event.detail


def test_second_import_changes_nothing(sample_file, storage, tmp_path):
    copy_samples(sample_file, tmp_path / "in")
    import_paths([tmp_path / "in"], storage)
    files_before, rows_before = stored_files(storage.root), index_rows()

    report = import_paths([tmp_path / "in"], storage)

    assert report.count("already present") == len(VARIED_SAMPLES)
    assert report.count("stored") == 0
    assert stored_files(storage.root) == files_before
    assert index_rows() == rows_before


def test_second_import_writes_no_study_events(sample_file, storage, tmp_path):
    copy_samples(sample_file, tmp_path / "in", names=("CT_small.dcm",))
    import_paths([tmp_path / "in"], storage)

    import_paths([tmp_path / "in"], storage)

    assert AuditEvent.objects.filter(action="instances-stored").count() == 1
    assert AuditEvent.objects.filter(action="import").count() == 2


def test_subfolders_are_walked(sample_file, storage, tmp_path):
    copy_samples(sample_file, tmp_path / "in" / "a" / "b", names=("CT_small.dcm",))
    copy_samples(sample_file, tmp_path / "in" / "c", names=("MR_small.dcm",))

    report = import_paths([tmp_path / "in"], storage)

    assert report.count("stored") == 2


def test_hidden_files_are_skipped(sample_file, storage, tmp_path):
    folder = tmp_path / "in"
    copy_samples(sample_file, folder, names=("CT_small.dcm",))
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    copy_samples(sample_file, folder / ".git", names=("MR_small.dcm",))

    report = import_paths([folder], storage)

    assert report.count("stored") == 1
    assert report.count("skipped") == 2
    assert report.rejected == []


def test_non_dicom_file_in_folder_is_rejected(sample_file, storage, tmp_path):
    folder = tmp_path / "in"
    copy_samples(sample_file, folder, names=("CT_small.dcm",))
    (folder / "notes.txt").write_text("scanned on Tuesday\n")

    report = import_paths([folder], storage)

    assert report.count("stored") == 1
    assert [result.path for result in report.rejected] == [str(folder / "notes.txt")]
    assert "not a DICOM file" in report.rejected[0].reason


def test_symbolic_link_loop_ends(sample_file, storage, tmp_path):
    folder = tmp_path / "in"
    copy_samples(sample_file, folder, names=("CT_small.dcm",))
    (folder / "loop").symlink_to(folder)

    report = import_paths([folder], storage)

    assert report.files == 1
    assert report.count("stored") == 1


def test_file_reached_twice_is_imported_once(sample_file, storage, tmp_path):
    [path] = copy_samples(sample_file, tmp_path / "in", names=("CT_small.dcm",))
    (tmp_path / "in" / "link.dcm").symlink_to(path)

    report = import_paths([tmp_path / "in", path], storage)

    assert report.files == 1


def test_broken_symbolic_link_is_rejected(storage, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "gone.dcm").symlink_to(tmp_path / "missing.dcm")

    report = import_paths([folder], storage)

    assert "broken symbolic link" in report.rejected[0].reason


def test_missing_path_raises(tmp_path):
    with pytest.raises(importer.ImportPathError, match="nowhere"):
        importer.plan_import([tmp_path / "nowhere"])


def test_large_file_is_mapped(sample_file, storage, tmp_path):
    path = sample_file("RG1_UNCR.dcm")
    assert path.stat().st_size > importer.MMAP_THRESHOLD

    report = import_paths([path], storage)

    assert report.count("stored") == 1
    instance = Instance.objects.get()
    assert storage.path(instance.storage_key).read_bytes() == path.read_bytes()


# Rejections


def without_sop_instance_uid(sample_file, folder: Path) -> Path:
    ds = dcmread(sample_file("CT_small.dcm"))
    del ds.SOPInstanceUID
    path = folder / "no_uid.dcm"
    ds.save_as(path)
    return path


def test_rejected_files_name_the_problem(sample_file, storage, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    shutil.copy(sample_file("MR_truncated.dcm"), folder / "truncated_pixels.dcm")
    (folder / "truncated_meta.dcm").write_bytes(sample_file("CT_small.dcm").read_bytes()[:200])
    (folder / "report.pdf").write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    without_sop_instance_uid(sample_file, folder)

    report = import_paths([folder], storage)

    reasons = {Path(result.path).name: result.reason for result in report.rejected}
    assert "truncated" in reasons["truncated_pixels.dcm"]
    assert "runs past the end" in reasons["truncated_meta.dcm"]
    assert "not a DICOM file" in reasons["report.pdf"]
    assert "SOPInstanceUID is missing" in reasons["no_uid.dcm"]
    assert report.count("rejected") == 4


def test_rejected_files_change_nothing_stored(sample_file, storage, tmp_path):
    copy_samples(sample_file, tmp_path / "good")
    import_paths([tmp_path / "good"], storage)
    files_before, rows_before = stored_files(storage.root), index_rows()
    folder = tmp_path / "bad"
    folder.mkdir()
    shutil.copy(sample_file("MR_truncated.dcm"), folder / "truncated.dcm")
    (folder / "half.dcm").write_bytes(sample_file("CT_small.dcm").read_bytes()[:20000])
    without_sop_instance_uid(sample_file, folder)

    report = import_paths([folder], storage)

    assert report.rejected_count == 3
    assert stored_files(storage.root) == files_before
    assert index_rows() == rows_before


def test_rejections_make_import_event_a_minor_failure(storage, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")

    import_paths([tmp_path / "notes.txt"], storage)

    run_event = AuditEvent.objects.get(action="import")
    assert run_event.outcome == 4
    assert "rejected=1" in run_event.detail


# Zip archives


def test_zip_members_are_stored(sample_file, storage, tmp_path):
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as writer:
        for name in VARIED_SAMPLES:
            writer.write(sample_file(name), f"export/{name}")
        writer.writestr("export/", "")

    report = import_paths([archive], storage)

    assert report.count("stored") == len(VARIED_SAMPLES)
    assert report.files == len(VARIED_SAMPLES)
    assert Instance.objects.count() == len(VARIED_SAMPLES)


def test_zip_member_is_stored_byte_identical(sample_file, storage, tmp_path):
    archive = tmp_path / "one.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as writer:
        writer.write(sample_file("CT_small.dcm"), "CT_small.dcm")

    import_paths([archive], storage)

    instance = Instance.objects.get()
    assert storage.path(instance.storage_key).read_bytes() == sample_file("CT_small.dcm").read_bytes()


def test_nested_zip_is_rejected(sample_file, storage, tmp_path):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as writer:
        writer.write(sample_file("CT_small.dcm"), "CT_small.dcm")
    archive = tmp_path / "outer.zip"
    with zipfile.ZipFile(archive, "w") as writer:
        writer.writestr("inner.zip", inner.getvalue())
        writer.write(sample_file("MR_small.dcm"), "MR_small.dcm")

    report = import_paths([archive], storage)

    assert report.count("stored") == 1
    assert report.rejected[0].path == f"{archive}/inner.zip"
    assert "zip archive inside a zip archive" in report.rejected[0].reason


def test_zip_hidden_members_are_skipped(sample_file, storage, tmp_path):
    archive = tmp_path / "mac.zip"
    with zipfile.ZipFile(archive, "w") as writer:
        writer.write(sample_file("CT_small.dcm"), "CT_small.dcm")
        writer.writestr("__MACOSX/._CT_small.dcm", b"\x00\x05\x16\x07")

    report = import_paths([archive], storage)

    assert report.count("stored") == 1
    assert report.count("skipped") == 1
    assert report.rejected == []


def test_damaged_zip_is_rejected(sample_file, storage, tmp_path):
    archive = tmp_path / "damaged.zip"
    with zipfile.ZipFile(archive, "w") as writer:
        writer.write(sample_file("CT_small.dcm"), "CT_small.dcm")
    archive.write_bytes(archive.read_bytes()[:-30])

    report = import_paths([archive], storage)

    assert "cannot read the zip archive" in report.rejected[0].reason
    assert Instance.objects.count() == 0


def test_large_zip_member_goes_through_temporary_file(sample_file, storage, tmp_path, monkeypatch):
    # Lowering the limit sends a real member through the temporary-file path.
    monkeypatch.setattr(importer, "ZIP_MEMBER_IN_MEMORY_LIMIT", 1024)
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as writer:
        writer.write(sample_file("CT_small.dcm"), "CT_small.dcm")

    report = import_paths([archive], storage)

    assert report.count("stored") == 1


# DICOMDIR media


def test_dicomdir_folder_imports_referenced_files(storage, tmp_path):
    medium = dicomdir_medium(tmp_path)

    report = import_paths([medium], storage)

    assert report.count("stored") == DICOMDIR_REFERENCED_FILES
    assert report.files == DICOMDIR_REFERENCED_FILES
    assert Instance.objects.count() == DICOMDIR_REFERENCED_FILES


def test_dicomdir_file_imports_referenced_files(storage, tmp_path):
    medium = dicomdir_medium(tmp_path)

    report = import_paths([medium / "DICOMDIR"], storage)

    assert report.count("stored") == DICOMDIR_REFERENCED_FILES


def test_dicomdir_references_match_the_medium(tmp_path):
    medium = dicomdir_medium(tmp_path)
    instance_files = [path for path in medium.rglob("*") if path.is_file() and path.name != "DICOMDIR"]

    file_ids = importer.read_referenced_file_ids(medium / "DICOMDIR")

    assert len(file_ids) == DICOMDIR_REFERENCED_FILES
    assert sorted(medium.joinpath(*file_id) for file_id in file_ids) == sorted(instance_files)


def test_dicomdir_is_not_stored_as_instance(storage, tmp_path):
    medium = dicomdir_medium(tmp_path)

    plan = importer.plan_import([medium])

    assert medium / "DICOMDIR" not in [candidate.path for candidate in plan.candidates]
    assert plan.media == [importer.Medium(medium / "DICOMDIR", DICOMDIR_REFERENCED_FILES)]


def test_dicomdir_missing_file_is_rejected(storage, tmp_path):
    medium = dicomdir_medium(tmp_path)
    missing = medium / "77654033" / "CR1" / "6154"
    missing.unlink()

    report = import_paths([medium], storage)

    assert report.count("stored") == DICOMDIR_REFERENCED_FILES - 1
    assert [result.path for result in report.rejected] == [str(missing)]
    assert "does not exist" in report.rejected[0].reason


def test_dicomdir_lower_case_names_are_found(storage, tmp_path):
    medium = dicomdir_medium(tmp_path)
    # Some CD mounts show ISO 9660 names in lower case.
    for path in sorted(medium.rglob("*"), key=lambda path: len(path.parts), reverse=True):
        path.rename(path.with_name(path.name.lower()))

    report = import_paths([medium], storage)

    assert report.count("stored") == DICOMDIR_REFERENCED_FILES


def test_stray_dicomdir_copy_is_skipped(sample_file, storage, tmp_path):
    folder = tmp_path / "in"
    copy_samples(sample_file, folder, names=("CT_small.dcm",))
    shutil.copy(DICOMDIR_TESTS / "DICOMDIR-bigEnd", folder / "DICOMDIR-bigEnd")

    report = import_paths([folder], storage)

    assert report.count("stored") == 1
    assert report.count("skipped") == 1
    assert report.rejected == []


def test_unreadable_dicomdir_falls_back_to_walk(sample_file, storage, tmp_path):
    folder = tmp_path / "in"
    copy_samples(sample_file, folder, names=("CT_small.dcm",))
    (folder / "DICOMDIR").write_bytes(b"not a directory")

    report = import_paths([folder], storage)

    assert report.count("stored") == 1
    assert "cannot read the DICOMDIR" in report.rejected[0].reason


# Samples


def test_sample_image_paths_lists_images():
    paths = importer.sample_image_paths()
    names = {path.name for path in paths}

    assert len(paths) > 200
    assert {"CT_small.dcm", "chrH31.dcm", "image_dfl.dcm", "RG1_UNCR.dcm"} <= names
    assert not any(name.startswith("DICOMDIR") for name in names)
    assert not any(path.suffix in {".txt", ".json", ".dump"} for path in paths)


# The command


def test_command_exits_zero_without_rejections(sample_file, tmp_path):
    copy_samples(sample_file, tmp_path / "in", names=("CT_small.dcm", "MR_small.dcm"))

    status, _, _ = run_command(tmp_path / "in")

    assert status == 0
    assert Instance.objects.count() == 2


def test_command_builds_metadata_of_imported_studies(sample_file, tmp_path):
    copy_samples(sample_file, tmp_path / "in", names=("CT_small.dcm", "MR_small.dcm"))

    status, output, _ = run_command(tmp_path / "in")

    assert status == 0
    documents = InstanceMetadata.objects.filter(encoder_version=metadata.ENCODER_VERSION)
    assert sorted(documents.values_list("instance__sop_instance_uid", flat=True)) == sorted(Instance.objects.values_list("sop_instance_uid", flat=True))
    assert "Built the metadata of 2 instances" in output


def test_command_without_metadata_builds_none(sample_file, tmp_path):
    copy_samples(sample_file, tmp_path / "in", names=("CT_small.dcm",))

    status, output, _ = run_command(tmp_path / "in", no_metadata=True)

    assert status == 0
    assert Instance.objects.count() == 1
    assert InstanceMetadata.objects.count() == 0
    assert "metadata" not in output


def test_command_second_import_builds_no_metadata(sample_file, tmp_path):
    copy_samples(sample_file, tmp_path / "in", names=("CT_small.dcm",))
    run_command(tmp_path / "in")

    status, output, _ = run_command(tmp_path / "in")

    assert status == 0
    assert InstanceMetadata.objects.count() == 1
    assert "metadata" not in output


def test_command_refreshes_postgresql_statistics(sample_file, tmp_path):
    copy_samples(sample_file, tmp_path / "in", names=("CT_small.dcm",))

    with CaptureQueriesContext(connection) as queries:
        status, _, _ = run_command(tmp_path / "in", no_metadata=True)

    assert status == 0
    analyzed = [query["sql"] for query in queries.captured_queries if query["sql"].startswith("ANALYZE ")]
    if connection.vendor == "postgresql":
        assert analyzed == ['ANALYZE "archive_patient", "archive_study", "archive_series", "archive_instance"']
    else:
        assert analyzed == []


def test_command_exits_one_with_rejections(sample_file, tmp_path):
    copy_samples(sample_file, tmp_path / "in", names=("CT_small.dcm",))
    (tmp_path / "in" / "notes.txt").write_text("not an image")

    status, output, _ = run_command(tmp_path / "in")

    assert status == 1
    assert f"{tmp_path / 'in' / 'notes.txt'}: not a DICOM file" in output


def test_command_missing_path_is_usage_error(tmp_path):
    with pytest.raises(CommandError, match="nowhere") as raised:
        call_command("import", str(tmp_path / "nowhere"))

    assert raised.value.returncode == 2


def test_command_caps_listed_rejections(tmp_path):
    for index in range(4):
        (tmp_path / f"notes{index}.txt").write_text("not an image")

    _, output, _ = run_command(tmp_path, max_errors=1)

    assert output.count(": not a DICOM file") == 1
    assert "... and 3 more" in output


def test_command_writes_csv_report(sample_file, tmp_path):
    copy_samples(sample_file, tmp_path / "in", names=("CT_small.dcm",))
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    report_path = tmp_path / "report.csv"
    uid = dcmread(sample_file("CT_small.dcm"), stop_before_pixels=True).SOPInstanceUID

    run_command(tmp_path / "in", report=str(report_path))

    with report_path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "outcome", "reason", "sop_instance_uid"]
    by_name = {Path(row["path"]).name: row for row in rows}
    assert by_name["CT_small.dcm"]["outcome"] == "stored"
    assert by_name["CT_small.dcm"]["sop_instance_uid"] == uid
    assert by_name["notes.txt"]["outcome"] == "rejected"
    assert "not a DICOM file" in by_name["notes.txt"]["reason"]


def test_command_rejection_leaves_storage_unchanged(sample_file, tmp_path):
    copy_samples(sample_file, tmp_path / "good", names=("CT_small.dcm",))
    run_command(tmp_path / "good")
    root = default_storage().root
    files_before, rows_before = stored_files(root), index_rows()
    without_sop_instance_uid(sample_file, tmp_path)

    status, _, _ = run_command(tmp_path / "no_uid.dcm")

    assert status == 1
    assert stored_files(root) == files_before
    assert index_rows() == rows_before


def test_command_progress_bar_on_request(sample_file, tmp_path):
    copy_samples(sample_file, tmp_path / "in", names=("CT_small.dcm",))

    _, _, errors = run_command(tmp_path / "in", progress=True)

    assert "Importing" in errors
    assert "1 files" in errors


def test_command_log_lines_clear_progress_bar(sample_file, tmp_path):
    copy_samples(sample_file, tmp_path / "in", names=("CT_small.dcm",))
    stderr = io.StringIO()
    handler = logging.StreamHandler(stderr)
    handler.setFormatter(logging.Formatter("LOG %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        call_command("import", str(tmp_path / "in"), stdout=io.StringIO(), stderr=stderr, progress=True)
    finally:
        root.removeHandler(handler)

    lines = [line for line in stderr.getvalue().split("\n") if "LOG import finished" in line]
    assert len(lines) == 1
    # The bar is cleared with a carriage return, so the log line starts the visible line.
    assert lines[0].rsplit("\r", 1)[-1].startswith("LOG import finished")
    assert handler.emit.__func__ is logging.StreamHandler.emit


def test_command_progress_bar_hidden_when_quiet(sample_file, tmp_path):
    copy_samples(sample_file, tmp_path / "in", names=("CT_small.dcm",))

    _, _, errors = run_command(tmp_path / "in", progress=True, quiet=True)

    assert errors == ""


def test_command_records_user(sample_file, tmp_path):
    copy_samples(sample_file, tmp_path / "in", names=("CT_small.dcm",))

    run_command(tmp_path / "in", user="radiographer7")

    assert AuditEvent.objects.get(action="import").user == "radiographer7"


def telerad(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    # A private SQLite database, so that the test database is left alone.
    environment = {key: value for key, value in os.environ.items() if key != "TELERAD_DATABASE_URL"}
    environment["TELERAD_DATA_DIR"] = str(data_dir)
    command = [str(Path(sys.executable).with_name("telerad")), *args]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)


def test_telerad_import_exit_statuses(sample_file, tmp_path):
    data_dir = tmp_path / "data"
    copy_samples(sample_file, tmp_path / "good", names=("CT_small.dcm",))
    (tmp_path / "notes.txt").write_text("not an image")

    not_migrated = telerad("import", str(tmp_path / "good"), data_dir=data_dir)
    assert telerad("migrate", "-v", "0", data_dir=data_dir).returncode == 0
    rejected = telerad("import", str(tmp_path / "good"), str(tmp_path / "notes.txt"), data_dir=data_dir)
    missing = telerad("import", str(tmp_path / "nowhere"), data_dir=data_dir)

    assert not_migrated.returncode == 2
    assert "telerad migrate" in not_migrated.stderr
    assert rejected.returncode == 1
    assert "stored:                1" in rejected.stdout
    assert "Importing" not in rejected.stderr
    assert missing.returncode == 2
    assert "nowhere" in missing.stderr
