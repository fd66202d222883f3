"""Build the archive that the query and retrieve benchmarks search: many small studies plus one large CT study.

The files are real headers from pydicom's bundled test files (``CT_small.dcm``,
``MR_small.dcm`` and ``MR_small_implicit.dcm``) with fresh UIDs and varied
patients, dates and accession numbers, all derived from a seed, so the same
seed gives the same files. About one patient in ten has a name in a non-Latin
script (Japanese, Korean, Chinese, Cyrillic, Greek, Arabic, Hebrew), written
in UTF-8 (Specific Character Set ``ISO_IR 192``).

Beside the files, ``manifest.json`` lists every study and the queries the
benchmark sends, each with the number of studies it must match, computed here
from the generated values. The manifest is written last, so a build that was
interrupted is never reused.

Run alone to build the cache and print where it is:
``.venv/bin/python bench/archive_builder.py [--studies 5000] [--seed 1]``
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import random
import sys
import time
import unicodedata
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

# Bump when the generated files or the manifest change, so that stale caches are rebuilt.
ARCHIVE_BUILDER_VERSION = 1
DEFAULT_STUDIES = 5000
MEAN_INSTANCES_PER_STUDY = 20
# Each study gets MEAN +- this many instances, in pairs that cancel out, so
# that the archive contains exactly studies x MEAN small instances.
INSTANCES_SPREAD = 6
PATIENTS_PER_STUDY = 0.5
LARGE_CT_INSTANCES = 500
FIRST_STUDY_DATE = datetime.date(2012, 1, 1)
STUDY_DATE_SPAN_DAYS = 13 * 365

# Templates per modality: a real instance of pydicom's test files.
TEMPLATES = {
    "CT": ("CT_small.dcm",),
    "MR": ("MR_small.dcm", "MR_small_implicit.dcm"),
}
STUDY_DESCRIPTIONS = {
    "CT": ("CT HEAD WO CONTRAST", "CT CHEST W CONTRAST", "CT ABDOMEN PELVIS", "CT ANGIO NECK"),
    "MR": ("MR BRAIN WO W CONTRAST", "MR KNEE LEFT", "MR LUMBAR SPINE", "MR SHOULDER RIGHT"),
}

# Family names in upper-case ASCII, so that exact and case-folded matching
# agree on them, plus a few Latin names with accents.
LATIN_FAMILY_NAMES = (
    "ANDERSON", "BAKER", "CAMPBELL", "CARTER", "COLLINS", "COOPER", "DAVIES", "EDWARDS", "EVANS",
    "FISCHER", "FOSTER", "GARDNER", "GRAHAM", "HANSEN", "HARRIS", "HUGHES", "JENSEN", "JOHNSON",
    "KELLER", "KOWALSKI", "LARSEN", "LEWIS", "MARTIN", "MORGAN", "MURPHY", "NAKAMURA", "NELSON",
    "NOVAK", "OLSEN", "PARKER", "PETERSEN", "PHILLIPS", "QUINN", "REYES", "RICHTER", "ROBERTS",
    "ROSSI", "SANTOS", "SCHMIDT", "SCOTT", "SILVA", "SMITH", "STEWART", "TAYLOR", "THOMPSON",
    "TURNER", "VARGAS", "WAGNER", "WALKER", "WATSON", "WEBER", "WHITE", "WILSON", "WRIGHT", "YOUNG",
    "ZIMMERMANN",
)
ACCENTED_FAMILY_NAMES = ("MÜLLER", "GARCÍA", "LEFÈVRE", "DVOŘÁK", "ØSTERGÅRD", "ÇELIK")
GIVEN_NAMES = (
    "ALICE", "BEN", "CLARA", "DANIEL", "EMMA", "FELIX", "GRACE", "HUGO", "IRIS", "JONAS", "KAREN",
    "LEO", "MAYA", "NOAH", "OLIVIA", "PAUL", "RUTH", "SAMUEL", "TARA", "VICTOR",
)
# Person names with ideographic and phonetic component groups where the script has them (PS3.5 6.2.1).
NON_LATIN_NAMES = (
    "Yamada^Tarou=山田^太郎=やまだ^たろう",
    "Tanaka^Hanako=田中^花子=たなか^はなこ",
    "Hong^Gildong=洪^吉洞=홍^길동",
    "Kim^Minji=金^旻智=김^민지",
    "Wang^Xiaodong=王^小東",
    "Иванов^Иван",
    "Смирнова^Ольга",
    "Παπαδόπουλος^Γιώργος",
    "قباني^نزار",
    "שרון^דבורה",
)
NON_LATIN_SHARE = 0.1
ID_FORMATS = ("P{:07d}", "{:08d}", "MRN-{:06d}", "H{:05d}-X")

# Queries the benchmark sends; each value's expected count is computed below.
PATIENT_ID_QUERIES = 20
PATIENT_NAME_PREFIXES = ("SMI", "WAG", "PAR", "ROS", "HUG", "KEL", "TUR", "WAT")
STUDY_DATE_RANGES = 8
STUDY_DATE_RANGE_DAYS = 45
LIMIT = 100


@dataclasses.dataclass(frozen=True)
class StudyRecord:
    study_instance_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    accession_number: str
    modality: str
    instances: int


@dataclasses.dataclass(frozen=True)
class Archive:
    """A built archive on disk, read back from its manifest."""

    folder: Path
    manifest: dict

    @property
    def small_studies_folder(self) -> Path:
        return self.folder / "studies"

    @property
    def large_study(self) -> common.StudyFiles:
        return common.build_ct_study(self.folder / "ct", instances=LARGE_CT_INSTANCES, seed=self.manifest["seed"])

    @property
    def studies(self) -> int:
        return len(self.manifest["studies"])

    @property
    def instances(self) -> int:
        return sum(study["instances"] for study in self.manifest["studies"])


def default_folder(studies: int, seed: int) -> Path:
    import tempfile

    return Path(tempfile.gettempdir()) / f"telerad-bench-archive-v{ARCHIVE_BUILDER_VERSION}-studies{studies}-seed{seed}"


def build_archive(folder: Path, *, studies: int, seed: int) -> Archive:
    """Write the archive into `folder`, or reuse the files there when their manifest matches."""
    manifest_path = folder / "manifest.json"
    expected = {"builder": ARCHIVE_BUILDER_VERSION, "small_studies": studies, "seed": seed}
    try:
        manifest = json.loads(manifest_path.read_text())
        if all(manifest.get(key) == value for key, value in expected.items()):
            return Archive(folder, manifest)
    except (OSError, ValueError):
        pass

    folder.mkdir(parents=True, exist_ok=True)
    manifest_path.unlink(missing_ok=True)
    large = common.build_ct_study(folder / "ct", instances=LARGE_CT_INSTANCES, seed=seed)
    records = _write_small_studies(folder / "studies", studies=studies, seed=seed)
    records.append(_large_study_record(large))
    manifest = {
        **expected,
        "studies": [dataclasses.asdict(record) for record in records],
        "large_study": {
            "study_instance_uid": large.study_instance_uid,
            "series_instance_uid": large.series_instance_uid,
            "instances": large.count,
            "total_bytes": large.total_bytes,
        },
        "queries": _queries(records, seed=seed),
    }
    manifest_path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    return Archive(folder, manifest)


# --- patients and studies ------------------------------------------------------


def _patients(rng: random.Random, count: int) -> list[tuple[str, str, str, str]]:
    """Return (PatientID, PatientName, PatientBirthDate, PatientSex) for each patient, IDs unique."""
    patients = []
    for index in range(count):
        patient_id = ID_FORMATS[index % len(ID_FORMATS)].format(100000 + index * 7)
        roll = rng.random()
        if roll < NON_LATIN_SHARE:
            name = rng.choice(NON_LATIN_NAMES)
        elif roll < NON_LATIN_SHARE + 0.05:
            name = f"{rng.choice(ACCENTED_FAMILY_NAMES)}^{rng.choice(GIVEN_NAMES)}"
        else:
            name = f"{rng.choice(LATIN_FAMILY_NAMES)}^{rng.choice(GIVEN_NAMES)}"
        birth = FIRST_STUDY_DATE - datetime.timedelta(days=rng.randrange(365 * 5, 365 * 90))
        patients.append((patient_id, name, birth.strftime("%Y%m%d"), rng.choice("MF")))
    return patients


def _instance_counts(rng: random.Random, studies: int) -> list[int]:
    counts = []
    for _ in range(studies // 2):
        spread = rng.randint(0, INSTANCES_SPREAD)
        counts += [MEAN_INSTANCES_PER_STUDY + spread, MEAN_INSTANCES_PER_STUDY - spread]
    if studies % 2:
        counts.append(MEAN_INSTANCES_PER_STUDY)
    return counts


def _write_small_studies(folder: Path, *, studies: int, seed: int) -> list[StudyRecord]:
    import pydicom
    from pydicom.uid import generate_uid

    rng = random.Random(f"telerad-bench-archive-{seed}")
    templates = {
        modality: [pydicom.dcmread(common.pydicom_test_file(name)) for name in names]
        for modality, names in TEMPLATES.items()
    }
    patient_count = max(1, int(studies * PATIENTS_PER_STUDY))
    patients = _patients(rng, patient_count)
    counts = _instance_counts(rng, studies)
    records = []
    started = time.monotonic()
    for index in range(studies):
        # Every patient has at least one study; the rest are spread at random.
        patient = patients[index] if index < patient_count else rng.choice(patients)
        modality = rng.choice(sorted(TEMPLATES))
        study_date = (FIRST_STUDY_DATE + datetime.timedelta(days=rng.randrange(STUDY_DATE_SPAN_DAYS))).strftime("%Y%m%d")
        entropy = f"telerad-bench-archive-{seed}-study-{index}"
        record = StudyRecord(
            study_instance_uid=generate_uid(entropy_srcs=[entropy]),
            patient_id=patient[0],
            patient_name=patient[1],
            study_date=study_date,
            accession_number=f"ACC{seed:02d}{index:07d}",
            modality=modality,
            instances=counts[index],
        )
        study_folder = folder / f"{index // 100:03d}" / f"{index:05d}"
        study_folder.mkdir(parents=True, exist_ok=True)
        _write_study(study_folder, record, patient, templates[modality], rng=rng, entropy=entropy)
        records.append(record)
        if (index + 1) % 500 == 0:
            print(f"built {index + 1} of {studies} studies in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return records


def _write_study(folder: Path, record: StudyRecord, patient: tuple[str, str, str, str], templates: list, *, rng: random.Random, entropy: str) -> None:
    from pydicom.uid import generate_uid

    template = rng.choice(templates)
    series_count = rng.randint(1, 3)
    non_ascii = not record.patient_name.isascii()
    template.SpecificCharacterSet = "ISO_IR 192" if non_ascii else "ISO_IR 100"
    template.StudyInstanceUID = record.study_instance_uid
    template.PatientID = record.patient_id
    template.PatientName = record.patient_name
    template.PatientBirthDate = patient[2]
    template.PatientSex = patient[3]
    template.StudyDate = record.study_date
    template.SeriesDate = record.study_date
    template.StudyTime = f"{rng.randrange(7, 20):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}"
    template.AccessionNumber = record.accession_number
    template.StudyID = record.accession_number[-6:]
    template.StudyDescription = rng.choice(STUDY_DESCRIPTIONS[record.modality])
    template.ReferringPhysicianName = f"{rng.choice(LATIN_FAMILY_NAMES)}^{rng.choice(GIVEN_NAMES)}"

    for number in range(record.instances):
        series = number % series_count
        template.SeriesInstanceUID = generate_uid(entropy_srcs=[entropy, "series", str(series)])
        template.SeriesNumber = series + 1
        template.InstanceNumber = number // series_count + 1
        sop_instance_uid = generate_uid(entropy_srcs=[entropy, "instance", str(number)])
        template.SOPInstanceUID = sop_instance_uid
        template.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
        template.save_as(folder / f"{number + 1:03d}.dcm", enforce_file_format=True)


def _large_study_record(large: common.StudyFiles) -> StudyRecord:
    import pydicom

    header = pydicom.dcmread(large.paths[0], stop_before_pixels=True)
    return StudyRecord(
        study_instance_uid=large.study_instance_uid,
        patient_id=str(header.PatientID),
        patient_name=str(header.PatientName),
        study_date=str(header.StudyDate),
        accession_number=str(header.get("AccessionNumber", "")),
        modality=str(header.Modality),
        instances=large.count,
    )


# --- queries and their expected counts ---------------------------------------


def fold(text: str) -> str:
    """Return `text` in upper case without accents, as case- and accent-insensitive matching compares it."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(character for character in decomposed if not unicodedata.combining(character)).upper()


def _queries(records: Sequence[StudyRecord], *, seed: int) -> dict[str, list[dict]]:
    """Return the study-level queries with the number of studies each must match.

    A name prefix is kept only when exact and folded matching give the same
    count, so that servers that fold case or accents and servers that do not
    must both return it.
    """
    rng = random.Random(f"telerad-bench-queries-{seed}")
    patient_ids = sorted({record.patient_id for record in records})
    by_patient = [rng.choice(patient_ids) for _ in range(PATIENT_ID_QUERIES)]

    names = []
    for prefix in PATIENT_NAME_PREFIXES:
        exact = sum(record.patient_name.startswith(prefix) for record in records)
        folded = sum(fold(record.patient_name).startswith(fold(prefix)) for record in records)
        if exact == folded and exact > 0:
            names.append({"PatientName": prefix + "*", "expected": exact})

    dates = []
    for _ in range(STUDY_DATE_RANGES):
        first = FIRST_STUDY_DATE + datetime.timedelta(days=rng.randrange(STUDY_DATE_SPAN_DAYS - STUDY_DATE_RANGE_DAYS))
        last = first + datetime.timedelta(days=STUDY_DATE_RANGE_DAYS - 1)
        low, high = first.strftime("%Y%m%d"), last.strftime("%Y%m%d")
        dates.append({"StudyDate": f"{low}-{high}", "expected": sum(low <= record.study_date <= high for record in records)})

    return {
        "patient_id": [{"PatientID": value, "expected": sum(record.patient_id == value for record in records)} for value in by_patient],
        "patient_name": names,
        "study_date": dates,
        "no_filter": [{"limit": LIMIT, "expected": min(LIMIT, len(records))}],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=DEFAULT_STUDIES, help=f"small studies (default: {DEFAULT_STUDIES})")
    parser.add_argument("--seed", type=int, default=1, help="seed of every generated value (default: 1)")
    parser.add_argument("--folder", type=Path, help="where to write the files (default: a folder in the temporary directory named after the version, studies and seed)")
    arguments = parser.parse_args(argv)
    if arguments.studies < 2:
        parser.error("--studies must be at least 2")
    folder = arguments.folder or default_folder(arguments.studies, arguments.seed)
    started = time.monotonic()
    archive = build_archive(folder, studies=arguments.studies, seed=arguments.seed)
    print(f"{archive.studies} studies, {archive.instances} instances in {archive.folder} ({time.monotonic() - started:.0f} s)")
    for kind, queries in archive.manifest["queries"].items():
        counts = [query["expected"] for query in queries]
        print(f"  {kind}: {len(queries)} queries, {min(counts)} to {max(counts)} matching studies")
    return 0


if __name__ == "__main__":
    sys.exit(main())
