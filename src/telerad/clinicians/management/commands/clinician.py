"""``telerad clinician``: grant clinicians patients or departments, set their names in DICOM headers, and match exams to them."""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from telerad.clinicians import grants, matching
from telerad.clinicians.models import ClinicianGrant, ClinicianProfile
from telerad.core import runtime

ACTOR = "cli"


class Command(BaseCommand):
    help = "Manage what referring clinicians see in the portal: grants of patients and departments, and their names in DICOM headers."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{grant,revoke,list,names,match}")
        grant = actions.add_parser("grant", help="let a clinician see every exam of a patient or of a ward or department")
        grant.add_argument("username")
        self._add_target(grant)
        grant.add_argument("--expires", metavar="YYYY-MM-DD", help="the last day on which the grant counts; it ends at the following midnight, server time (default: no end)")
        grant.add_argument("--note", help="why the grant was made, for other administrators; a renewed grant keeps its note without it")

        revoke = actions.add_parser("revoke", help="take a grant of a patient or of a ward or department away")
        revoke.add_argument("username")
        self._add_target(revoke)

        listing = actions.add_parser("list", help="list grants and names in DICOM headers, of every clinician or of one")
        listing.add_argument("username", nargs="?")

        names = actions.add_parser(
            "names", help="set the names a clinician has in DICOM headers (Referring Physician's Name), which exams are matched by",
        )
        names.add_argument("username")
        names.add_argument("name", nargs="*", help="a DICOM person name such as WELBY^MARCUS; give none to remove every name")

        actions.add_parser(
            "match", help="give exams without a referring clinician the one whose names match their Referring Physician's Name",
        )

    @staticmethod
    def _add_target(parser: Any) -> None:
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--patient", metavar="PATIENT_ID", help="the Patient ID of the patient")
        target.add_argument("--department", metavar="NAME", help="a ward or department, as exams name it (case does not matter)")
        parser.add_argument("--issuer", help="the Issuer of Patient ID, when several patients share the Patient ID")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            runtime.require_migrated_database()
        except runtime.ConfigurationInvalid as exc:
            raise CommandError(str(exc)) from None
        action = options["action"]
        try:
            if action == "grant":
                self._grant(options)
            elif action == "revoke":
                self._revoke(options)
            elif action == "list":
                self._list(options["username"])
            elif action == "names":
                self._set_names(options["username"], options["name"])
            else:
                matched = matching.match_existing_exams(actor=ACTOR)
                self.stdout.write(f"{matched} exams got a referring clinician.")
        except grants.GrantError as exc:
            raise CommandError(str(exc)) from None

    def _grant(self, options: dict[str, Any]) -> None:
        clinician = _get_user(options["username"])
        patient = grants.find_patient(options["patient"], options["issuer"]) if options["patient"] is not None else None
        expires_at = _end_of_day(options["expires"]) if options["expires"] else None
        grant, created = grants.grant_access(
            clinician, actor=ACTOR, patient=patient, department=options["department"] or "", expires_at=expires_at, note=options["note"],
        )
        verb = "Granted" if created else "Renewed the grant of"
        until = f" until {timezone.localtime(grant.expires_at):%Y-%m-%d %H:%M}" if grant.expires_at else ""
        self.stdout.write(f"{verb} {grant.target_label} to {clinician.get_username()}{until}.")

    def _revoke(self, options: dict[str, Any]) -> None:
        clinician = _get_user(options["username"])
        found = ClinicianGrant.objects.filter(clinician=clinician).select_related("patient", "clinician")
        if options["patient"] is not None:
            found = found.filter(patient=grants.find_patient(options["patient"], options["issuer"]))
        else:
            found = found.filter(department__iexact=grants.normalise_department(options["department"]))
        grant = found.first()
        if grant is None:
            raise CommandError(f"{clinician.get_username()} has no such grant; see telerad clinician list {clinician.get_username()}")
        grants.revoke(grant, actor=ACTOR)
        self.stdout.write(f"Revoked the grant of {grant.target_label} to {clinician.get_username()}.")

    def _list(self, username: str | None) -> None:
        rows = ClinicianGrant.objects.select_related("clinician", "patient").order_by("clinician__username", "granted_at", "pk")
        profiles = ClinicianProfile.objects.select_related("user").order_by("user__username")
        if username is not None:
            user = _get_user(username)
            rows = rows.filter(clinician=user)
            profiles = profiles.filter(user=user)
        now = timezone.now()
        if not rows:
            self.stdout.write("No grants.")
        for grant in rows:
            state = "active" if grant.is_active(now) else "expired"
            expiry = f"until {timezone.localtime(grant.expires_at):%Y-%m-%d %H:%M}" if grant.expires_at else "no end"
            note = f"  ({grant.note})" if grant.note else ""
            self.stdout.write(
                f"{grant.clinician.get_username():<24} {grant.target_label:<40} {state:<8} {expiry:<22} by {grant.granted_by} on {timezone.localtime(grant.granted_at):%Y-%m-%d}{note}"
            )
        for profile in profiles:
            names = ", ".join(profile.name_list()) or "(none)"
            self.stdout.write(f"{profile.user.get_username():<24} names in DICOM headers: {names}")

    def _set_names(self, username: str, names: list[str]) -> None:
        profile = grants.set_dicom_names(_get_user(username), names, actor=ACTOR)
        listed = ", ".join(profile.name_list())
        self.stdout.write(f"{username} now has the names {listed}." if listed else f"{username} now has no name in DICOM headers.")


def _get_user(username: str) -> Any:
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"no user named {username!r}")
    return user


def _end_of_day(text: str) -> datetime.datetime:
    """Return the end of the given day in the server's time zone; raise CommandError for an invalid date."""
    try:
        day = datetime.date.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(f"--expires: {text!r} is not a date; write it as YYYY-MM-DD") from None
    if day < timezone.localdate():
        raise CommandError(f"--expires: {text} is in the past; give today or a later day")
    start_of_next_day = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time.min)
    return timezone.make_aware(start_of_next_day)
