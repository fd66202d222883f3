"""``telerad critical check``: escalate the critical results nobody acknowledged in time, and send the due e-mails, once."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from telerad.clinicians import critical, mail
from telerad.core import runtime, workers


class Command(BaseCommand):
    help = "Follow critical results."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        subcommands = parser.add_subparsers(dest="subcommand", required=True, metavar="{check}")
        subcommands.add_parser(
            "check",
            help="escalate the critical results not acknowledged in time and send the due notification e-mails, as the servers do every few seconds",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            runtime.require_valid_configuration()
        except runtime.ConfigurationInvalid as exc:
            raise CommandError(str(exc)) from None
        escalated = critical.check_escalations()
        sent = mail.send_due_email(workers.new_owner())
        waiting = critical.open_results().count()
        self.stdout.write(f"{escalated} critical results escalated, {waiting} not acknowledged yet, {sent} e-mails attempted")
