from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from telerad.core import background, runtime
from telerad.dicomweb import prebuild
from telerad.dimse import server as dicom_server


class Command(BaseCommand):
    help = "Run the web application, the DICOM listener and the background work in one process."
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

        runtime.stop_on_sigterm()
        prebuild.start_worker()
        background.start()
        listeners = dicom_server.start(block=False)
        runtime.print_banner(web=True, dicom=True)
        runtime.load_web_application()
        runtime.freeze_startup_objects()
        try:
            runtime.web_server().run()
        except KeyboardInterrupt:
            # uvicorn raises the signal that stopped it again once it has shut down.
            pass
        finally:
            dicom_server.stop(listeners)
            background.stop()
