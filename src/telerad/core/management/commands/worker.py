from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from telerad.core import background, runtime, workers


class Command(BaseCommand):
    help = (
        "Run only the background work of `telerad serve`: exam sync and lapsed claims, critical result escalation, "
        "notification e-mails, report deliveries and audit forwarding (for nodes apart from the web servers)."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--once", action="store_true",
            help="do one pass now (exam sync, lapsed claims, critical result escalations, due e-mails and report deliveries), then exit",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            runtime.require_valid_configuration()
        except runtime.ConfigurationInvalid as exc:
            raise CommandError(str(exc)) from None
        if options["once"]:
            self._run_once()
            return

        stopping = threading.Event()
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, lambda *_: stopping.set())
        background.start()
        self.stdout.write("background worker running; stop it with Ctrl-C or SIGTERM")
        try:
            stopping.wait()
        finally:
            background.stop()

    def _run_once(self) -> None:
        summary = background.run_once(workers.new_owner())
        self.stdout.write(f"{summary.studies_linked} studies linked to exams")
        self.stdout.write(f"{summary.claims_cleared} lapsed claims cleared")
        self.stdout.write(f"{summary.critical_results_escalated} critical results escalated")
        self.stdout.write(f"{summary.emails_attempted} e-mails attempted")
        self.stdout.write(f"{summary.deliveries_attempted} report deliveries attempted")
