"""Grants of patients and departments to clinicians, shared by ``telerad clinician`` and the Django admin.

Each change writes a CLINICIAN_ACCESS_CHANGED audit event in the same
transaction, naming the acting user ("cli" for the command line), the
clinician and the Patient ID or department, never a patient name.
"""

from __future__ import annotations

import datetime
import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from telerad.accounts.roles import Role, user_roles
from telerad.archive.models import Patient
from telerad.audit import events as audit
from telerad.clinicians.models import ClinicianGrant, ClinicianProfile

logger = logging.getLogger(__name__)


class GrantError(ValueError):
    """A grant request that cannot be carried out; its message states why and what to do."""


def normalise_department(text: str) -> str:
    """Return a department name as grants and exams store it: without surrounding spaces."""
    return text.strip()


def require_clinician(user: AbstractBaseUser) -> None:
    if Role.CLINICIAN not in user_roles(user):
        raise GrantError(f"user {user.get_username()!r} does not have the clinician role; give it first (telerad user roles)")


def find_patient(patient_id: str, issuer: str | None = None) -> Patient:
    """Return the patient with this Patient ID (and Issuer of Patient ID, when given); raise GrantError for none or several."""
    patients = Patient.objects.filter(patient_id=patient_id.strip())
    if issuer is not None:
        patients = patients.filter(issuer_of_patient_id=issuer.strip())
    found = list(patients[:2])
    if not patient_id.strip() or not found:
        issuer_text = f" and Issuer of Patient ID {issuer!r}" if issuer is not None else ""
        raise GrantError(f"patient with Patient ID {patient_id!r}{issuer_text} not found; check the ID in the study list or the order")
    if len(found) > 1:
        raise GrantError(f"several patients have Patient ID {patient_id!r}; give the Issuer of Patient ID too (telerad clinician grant --issuer)")
    return found[0]


def record_change(grant: ClinicianGrant, change: str, *, actor: str, address: str = "") -> None:
    """Write the audit event of a grant that was added, changed or revoked."""
    audit.record_event(
        action=audit.Action.CLINICIAN_ACCESS_CHANGED,
        user=actor,
        address=address,
        patient_id=grant.patient.patient_id if grant.patient_id is not None else "",
        detail=f"{change} grant of {grant.target_label} to clinician {grant.clinician.get_username()}" + _expiry_text(grant),
    )


def _expiry_text(grant: ClinicianGrant) -> str:
    return f", expires {grant.expires_at.isoformat(timespec='minutes')}" if grant.expires_at else ""


def grant_access(
    clinician: AbstractBaseUser, *, actor: str, patient: Patient | None = None, department: str = "",
    expires_at: datetime.datetime | None = None, note: str | None = None, address: str = "",
) -> tuple[ClinicianGrant, bool]:
    """Grant `clinician` the exams of `patient` or of `department`; return the grant and whether it is new.

    An existing grant of the same patient or department gets the new expiry
    time instead of a second row, and the new note unless `note` is None.
    """
    department = normalise_department(department)
    if (patient is None) == (not department):
        raise GrantError("give either a patient or a department, not both and not neither")
    require_clinician(clinician)

    with transaction.atomic():
        existing = ClinicianGrant.objects.select_for_update().filter(clinician=clinician)
        existing = existing.filter(patient=patient) if patient is not None else existing.filter(department__iexact=department)
        grant = existing.first()
        created = grant is None
        if grant is None:
            grant = ClinicianGrant(clinician=clinician, patient=patient, department=department, granted_by=actor)
        grant.expires_at = expires_at
        if note is not None:
            grant.note = note
        grant.save()
        record_change(grant, "added" if created else "renewed", actor=actor, address=address)
    logger.info("%s %s grant of %s to clinician %s", actor, "added" if created else "renewed", grant.target_label, clinician.get_username())
    return grant, created


def revoke(grant: ClinicianGrant, *, actor: str, address: str = "") -> None:
    with transaction.atomic():
        record_change(grant, "revoked", actor=actor, address=address)
        grant.delete()
    logger.info("%s revoked grant of %s to clinician %s", actor, grant.target_label, grant.clinician.get_username())


def set_dicom_names(clinician: AbstractBaseUser, names: list[str], *, actor: str, address: str = "") -> ClinicianProfile:
    """Replace the names under which `clinician` appears in DICOM headers, and audit the change."""
    require_clinician(clinician)
    cleaned = [name.strip() for name in names if name.strip()]
    with transaction.atomic():
        profile, _created = ClinicianProfile.objects.get_or_create(user=clinician)
        profile.dicom_names = "\n".join(cleaned)
        profile.save()
        record_profile_change(profile, actor=actor, address=address)
    return profile


def record_profile_change(profile: ClinicianProfile, *, actor: str, address: str = "") -> None:
    audit.record_event(
        action=audit.Action.CLINICIAN_ACCESS_CHANGED,
        user=actor,
        address=address,
        detail=f"names in DICOM headers of clinician {profile.user.get_username()} set to: {'; '.join(profile.name_list()) or '(none)'}",
    )
