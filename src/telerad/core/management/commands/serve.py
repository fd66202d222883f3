from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from telerad.audit import forwarder as audit_forwarder
from telerad.core import runtime
from telerad.dicomweb import prebuild
from telerad.dimse import server as dicom_server
from telerad.reading import background as worklist_background
from telerad.reading.delivery import outbox as report_delivery


class Command(BaseCommand):
    help = "Run the web application and the DICOM listener in one process."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--no-migrate", action="store_true", help="do not apply database migrations at start")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            runtime.require_valid_configuration()
        except runtime.ConfigurationInvalid as exc:
            raise CommandError(str(exc)) from None
        if not options["no_migrate"]:
            runtime.prepare_database()

        prebuild.start_worker()
        audit_forwarder.start()
        worklist_background.start()
        report_delivery.start()
        listeners = dicom_server.start(block=False)
        runtime.print_banner(web=True, dicom=True)
        try:
            runtime.web_server().run()
        finally:
            dicom_server.stop(listeners)
            audit_forwarder.stop()
            worklist_background.stop()
            report_delivery.stop()
