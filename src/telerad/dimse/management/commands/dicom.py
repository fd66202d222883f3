from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from telerad.core import runtime
from telerad.dicomweb import prebuild
from telerad.dimse import server as dicom_server


class Command(BaseCommand):
    help = "Run only the DICOM listener (for several DICOM nodes on one database)."
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            runtime.require_valid_configuration()
        except runtime.ConfigurationInvalid as exc:
            raise CommandError(str(exc)) from None
        runtime.stop_on_sigterm()
        prebuild.start_worker()
        runtime.freeze_startup_objects()
        runtime.print_banner(web=False, dicom=True)
        try:
            dicom_server.start(block=True)
        except KeyboardInterrupt:
            pass
