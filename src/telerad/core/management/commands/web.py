from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from telerad.audit import forwarder as audit_forwarder
from telerad.core import runtime
from telerad.reading import background as worklist_background


class Command(BaseCommand):
    help = "Run only the web application (for several web nodes behind a load balancer)."
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            runtime.require_valid_configuration()
        except runtime.ConfigurationInvalid as exc:
            raise CommandError(str(exc)) from None
        audit_forwarder.start()
        worklist_background.start()
        runtime.print_banner(web=True, dicom=False)
        try:
            runtime.web_server().run()
        finally:
            audit_forwarder.stop()
            worklist_background.stop()
