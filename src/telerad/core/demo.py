"""The demonstration installation: its accounts, and the sample images it imports."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from telerad.config import Config

# User name, password, role names (see telerad.accounts.roles.Role). The
# passwords are public, so they exist only where TELERAD_DEMO=true. The lead
# radiologist is the demo's default critical result contact
# (telerad.config.DEMO_CRITICAL_CONTACT).
DEMO_ACCOUNTS = (
    ("admin", "telerad-demo-admin", ("administrator", "it")),
    ("radiologist", "telerad-demo-radiologist", ("radiologist",)),
    ("technologist", "telerad-demo-technologist", ("technologist",)),
    ("auditor", "telerad-demo-auditor", ("auditor",)),
    ("resident", "telerad-demo-resident", ("resident",)),
    ("lead", "telerad-demo-lead", ("lead-radiologist",)),
    ("clinician", "telerad-demo-clinician", ("clinician",)),
)


def login_lines() -> list[str]:
    from django.conf import settings

    lines = ["  demo logins (user / password):"]
    for username, password, roles in DEMO_ACCOUNTS:
        lines.append(f"         {username:<13} {password:<28} ({', '.join(roles)})")
    lines += critical_contact_lines(settings.TELERAD)
    lines.append(two_factor_line(settings.TELERAD.two_factor_required))
    return lines


def critical_contact_lines(config: Config) -> list[str]:
    """Return the banner lines that name who gets critical results without a referring clinician, and their escalations."""
    lines = []
    if config.critical_department_contact:
        lines.append(f"         critical results of exams without a referring clinician go to {config.critical_department_contact}")
    if config.critical_escalation_contact:
        lines.append(f"         critical results not acknowledged in time escalate to {config.critical_escalation_contact}")
    return lines


def two_factor_line(required: bool) -> str:
    if required:
        return "         two-factor login is on: each account sets up an authenticator app at its first login"
    return "         two-factor login is off for the demo (TELERAD_TWO_FACTOR_REQUIRED=false); keep it on elsewhere"


def prepare_sample_variants(target: Path) -> list[Path]:
    """Return the sample images to import, writing re-identified copies of variants into `target`.

    pydicom ships one image in several encodings (RLE, JPEG-LS, big endian...)
    under the same SOP Instance UID. The archive keeps only the first of such
    a set, so every later variant gets its own SOP Instance and Series UIDs,
    derived from its file name, and a series description naming its transfer
    syntax. Samples whose UIDs are unique are imported as they are.
    """
    from telerad.archive.importer import sample_image_paths

    target.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    paths: list[Path] = []
    # Some samples are broken on purpose; the import reports them, so
    # pydicom's warnings while reading them here would only repeat that.
    pydicom_logger = logging.getLogger("pydicom")
    previous_level = pydicom_logger.level
    pydicom_logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for path in sample_image_paths():
                paths.append(_sample_or_variant(path, target, seen))
    finally:
        pydicom_logger.setLevel(previous_level)
    return paths


def _sample_or_variant(path: Path, target: Path, seen: set[str]) -> Path:
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        dataset = dcmread(path, force=True)
        sop_instance_uid = str(dataset.get("SOPInstanceUID", ""))
    except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError):
        # Broken samples go to the import as they are, which rejects them with a reason.
        return path
    if not sop_instance_uid or sop_instance_uid not in seen:
        seen.add(sop_instance_uid)
        return path
    return _write_variant(dataset, path, target)


def _write_variant(dataset: Any, path: Path, target: Path) -> Path:
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

    if "TransferSyntaxUID" not in dataset.file_meta:
        # A dataset stored without file meta: name the encoding it was read in.
        implicit_vr, little_endian = dataset.original_encoding
        if implicit_vr:
            dataset.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        elif little_endian:
            dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        else:
            dataset.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
        dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    transfer_syntax = dataset.file_meta.TransferSyntaxUID
    dataset.SOPInstanceUID = generate_uid(entropy_srcs=["sop", path.name])
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.SeriesInstanceUID = generate_uid(entropy_srcs=["series", path.name])
    dataset.SeriesDescription = f"{transfer_syntax.name} ({path.stem})"[:64]
    variant = target / path.name
    dataset.save_as(variant, enforce_file_format=True)
    return variant


# A head CT from the CQ500 collection in pydicom-data, which has no study
# date. The demo makes a dated current study of its patient and two priors
# from it, so that the viewer has priors to show beside the current study.
PATIENT_HISTORY_SOURCE = "693_UNCI.dcm"
PATIENT_HISTORY = (
    # Study date, accession number, description.
    ("20261120", "DEMO-CT-2026", "CT head"),
    ("20251118", "DEMO-CT-2025", "CT head, prior"),
    ("20231115", "DEMO-CT-2023", "CT head, earlier prior"),
)
# The demo's referring physician, as the history's headers name them, and
# the demo account whose clinician profile lists that name, so that the
# exams of PATIENT_HISTORY appear in that account's portal.
DEMO_REFERRING_PHYSICIAN = "WELBY^MARCUS"
DEMO_CLINICIAN = "clinician"
# The order details of the current study. They make its exam urgent, so it
# tops the worklist, and give it a clinical question. The priors have none.
CURRENT_ORDER = {
    "StudyPriorityID": "HIGH",
    "RequestedProcedureDescription": "CT head without contrast",
    "ReasonForStudy": "Sudden severe headache; exclude haemorrhage.",
    "AdditionalPatientHistory": "Hypertension. Prior CT head 2025 and 2023.",
}


def write_patient_history(target: Path) -> list[Path]:
    """Write the studies of PATIENT_HISTORY into `target`; return their paths.

    Each is the real image with new Study, Series and SOP Instance UIDs,
    derived from the accession number, so that running the demo again finds
    them already stored. Without pydicom-data there is no source and no study.
    """
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    from telerad.archive.importer import sample_image_paths

    source = next((path for path in sample_image_paths() if path.name == PATIENT_HISTORY_SOURCE), None)
    if source is None:
        return []
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for study_date, accession, description in PATIENT_HISTORY:
        dataset = dcmread(source)
        dataset.StudyInstanceUID = generate_uid(entropy_srcs=["demo-study", accession])
        dataset.SeriesInstanceUID = generate_uid(entropy_srcs=["demo-series", accession])
        dataset.SOPInstanceUID = generate_uid(entropy_srcs=["demo-instance", accession])
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        for keyword in ("StudyDate", "SeriesDate", "ContentDate"):
            setattr(dataset, keyword, study_date)
        dataset.StudyTime = "093000"
        dataset.AccessionNumber = accession
        dataset.StudyDescription = description
        dataset.StudyID = accession[-4:]
        dataset.ReferringPhysicianName = DEMO_REFERRING_PHYSICIAN
        if accession == PATIENT_HISTORY[0][1]:
            for keyword, value in CURRENT_ORDER.items():
                setattr(dataset, keyword, value)
        path = target / f"{accession}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


# The final reports of the two priors, signed by the demo radiologist: text
# of the sections of the "CT head" report template, by accession number.
PRIOR_REPORTS = {
    "DEMO-CT-2025": {
        "comparison": "CT head of 15 November 2023.",
        "findings": (
            "No intracranial haemorrhage, mass effect or midline shift. Grey-white matter differentiation is preserved. "
            "Mild periventricular white matter hypodensities, unchanged. The ventricles and sulci are normal for age. "
            "No extra-axial collection. The calvarium is intact."
        ),
        "impression": "No acute intracranial abnormality. Mild chronic small vessel change, stable since 2023.",
    },
    "DEMO-CT-2023": {
        "comparison": "None.",
        "findings": (
            "No intracranial haemorrhage, mass effect or midline shift. Grey-white matter differentiation is preserved. "
            "Mild periventricular white matter hypodensities. The ventricles and sulci are normal for age. "
            "No extra-axial collection. The calvarium is intact."
        ),
        "impression": "No acute intracranial abnormality. Mild chronic small vessel ischaemic change.",
    },
}
# Most passes over the report delivery outbox, each of up to one batch of jobs; the priors' two jobs take one pass.
MAX_DELIVERY_PASSES = 10


def sign_prior_reports(owner: str) -> int:
    """Sign the final reports of PRIOR_REPORTS as the demo radiologist, and store their report objects; return how many were signed.

    Each prior goes the way a reader takes: exam sync makes its exam, the
    worklist's claim, then the editor's signing with the radiologist's
    password, which records the turnaround times and queues the delivery.
    The delivery then runs at once, as a server's delivery worker would, so
    that the Encapsulated PDF and the Basic Text SR are in the priors'
    studies from the start. A prior that has a final report is skipped, so
    a second run of the demo signs nothing twice.
    """
    from django.contrib.auth import get_user_model

    from telerad.reading import claims, exams
    from telerad.reading.delivery import outbox
    from telerad.reading.models import Exam, SignedKind, SignedReport
    from telerad.reading.reports import current_draft
    from telerad.reading.reports_signing import sign_report

    username, password, _roles = next(account for account in DEMO_ACCOUNTS if account[0] == "radiologist")
    radiologist = get_user_model().objects.get(username=username)
    exams.sync_exams()
    signed = 0
    for accession, sections in PRIOR_REPORTS.items():
        exam = Exam.objects.filter(accession_number=accession).first()
        if exam is None or SignedReport.objects.filter(exam=exam, kind=SignedKind.FINAL).exists():
            continue
        claims.claim(exam.pk, radiologist)
        data = {f"section-{key}": text for key, text in sections.items()}
        sign_report(exam.pk, radiologist, current_draft(exam).revision, data, critical=False, password=password, code="", address="")
        signed += 1

    for _ in range(MAX_DELIVERY_PASSES):
        if not outbox.process_due_jobs(owner):
            break
    return signed
