from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from telerad.core import background, runtime


class Command(BaseCommand):
    help = "Run only the web application (for several web nodes behind a load balancer)."
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            runtime.require_valid_configuration()
        except runtime.ConfigurationInvalid as exc:
            raise CommandError(str(exc)) from None
        runtime.stop_on_sigterm()
        # Report deliveries are left to `telerad serve` or `telerad worker` nodes.
        background.start(report_deliveries=False)
        runtime.print_banner(web=True, dicom=False)
        runtime.load_web_application()
        runtime.freeze_startup_objects()
        try:
            runtime.web_server().run()
        except KeyboardInterrupt:
            # uvicorn raises the signal that stopped it again once it has shut down.
            pass
        finally:
            background.stop()
