from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from telerad.accounts import roles
from telerad.core import runtime, workers
from telerad.core.demo import (
    DEMO_ACCOUNTS,
    DEMO_CLINICIAN,
    DEMO_REFERRING_PHYSICIAN,
    PATIENT_HISTORY,
    critical_contact_lines,
    prepare_sample_variants,
    sign_prior_reports,
    two_factor_line,
    write_patient_history,
)


class Command(BaseCommand):
    help = "Prepare a demonstration archive: database, demo accounts and the sample images of pydicom and pydicom-data."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--no-images", action="store_true", help="skip importing the sample images")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.TELERAD.demo:
            raise CommandError("the demo creates accounts with public passwords; set TELERAD_DEMO=true to allow it")
        try:
            runtime.require_valid_configuration()
        except runtime.ConfigurationInvalid as exc:
            raise CommandError(str(exc)) from None

        runtime.prepare_database()
        self._create_accounts()
        self._name_demo_clinician()
        self.stdout.write("Demo accounts: " + ", ".join(username for username, *_ in DEMO_ACCOUNTS))
        for line in critical_contact_lines(settings.TELERAD):
            self.stdout.write(line.strip())
        self.stdout.write(two_factor_line(settings.TELERAD.two_factor_required).strip())
        if not options["no_images"]:
            self._import_samples()
            signed = sign_prior_reports(workers.new_owner())
            self.stdout.write(f"Signed the final reports of {signed} prior exams of the demo patient as the demo radiologist.")
            self._prepare_metadata()
            self._refer_history_to_clinician()

    def _create_accounts(self) -> None:
        users = get_user_model()
        for username, password, role_names in DEMO_ACCOUNTS:
            user, _ = users.objects.get_or_create(username=username)
            user.is_superuser = False
            user.set_password(password)
            user.save()
            roles.set_roles(user, [roles.Role(name) for name in role_names])

    def _name_demo_clinician(self) -> None:
        """List the patient history's Referring Physician's Name in the demo clinician's profile, so that exam creation matches them."""
        from telerad.clinicians import grants

        clinician = get_user_model().objects.get(username=DEMO_CLINICIAN)
        grants.set_dicom_names(clinician, [DEMO_REFERRING_PHYSICIAN], actor="demo")

    def _refer_history_to_clinician(self) -> None:
        """Make the exams of the patient history now, so that they are the demo clinician's when the portal first opens.

        Exams that a demo of an earlier version stored without the referring
        physician's name get the clinician directly.
        """
        from telerad.reading import exams
        from telerad.reading.models import Exam

        clinician = get_user_model().objects.get(username=DEMO_CLINICIAN)
        exams.sync_exams()
        accessions = [accession for _date, accession, _description in PATIENT_HISTORY]
        Exam.objects.filter(accession_number__in=accessions, referring_clinician__isnull=True).update(referring_clinician=clinician)
        referred = Exam.objects.filter(accession_number__in=accessions, referring_clinician=clinician).count()
        self.stdout.write(f"The demo clinician referred {referred} exams of patient history; they show in the portal at /portal/.")

    def _prepare_metadata(self) -> None:
        """Build the viewer's metadata of every study now, so that the first look at each is quick."""
        from telerad.archive.models import Study
        from telerad.dicomweb import prebuild

        built = sum(prebuild.build_study(uid) for uid in Study.objects.values_list("study_instance_uid", flat=True))
        self.stdout.write(f"Prepared the viewer's metadata of {built} instances.")

    def _import_samples(self) -> None:
        samples = settings.TELERAD.data_dir / "demo-samples"
        paths = [str(path) for path in prepare_sample_variants(samples) + write_patient_history(samples / "history")]
        self.stdout.write(f"Importing {len(paths)} sample files from pydicom and pydicom-data.")
        self.stdout.write("Some are deliberately broken test files; the archive rejects those and says why.")
        try:
            call_command("import", *paths, "--max-errors", "30", stdout=self.stdout, stderr=self.stderr)
        except SystemExit as exc:
            # The import exits 1 when it rejected files, which the sample set does on purpose.
            if exc.code not in (0, 1, None):
                raise
