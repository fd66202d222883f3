from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from telerad.core import runtime, workers
from telerad.reading.delivery import outbox


class Command(BaseCommand):
    help = "Run only the background work: the delivery of signed reports (for nodes apart from the web servers)."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="attempt the deliveries that are due now, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            runtime.require_valid_configuration()
        except runtime.ConfigurationInvalid as exc:
            raise CommandError(str(exc)) from None
        if options["once"]:
            attempted = outbox.process_due_jobs(workers.new_owner())
            self.stdout.write(f"{attempted} report deliveries attempted")
            return

        stopping = threading.Event()
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, lambda *_: stopping.set())
        worker = outbox.start()
        self.stdout.write(f"report delivery worker {worker.owner} running; stop it with Ctrl-C or SIGTERM")
        try:
            stopping.wait()
        finally:
            outbox.stop()
