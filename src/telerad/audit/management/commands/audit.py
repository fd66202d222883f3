from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from telerad.audit.events import verify_chain
from telerad.audit.models import AuditEvent
from telerad.core import runtime


class Command(BaseCommand):
    help = "Check the audit trail: every event's hash and its link to the previous event."

    def add_arguments(self, parser: Any) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{verify}")
        actions.add_parser("verify", help="report altered, inserted or deleted events; exit status 1 when any")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            runtime.require_migrated_database()
        except runtime.ConfigurationInvalid as exc:
            raise CommandError(str(exc)) from None

        problems = verify_chain()
        count = AuditEvent.objects.count()
        if not problems:
            self.stdout.write(f"The audit trail is intact: {count} events checked.")
            return
        for problem in problems:
            self.stdout.write(f"event {problem.sequence}: {problem.message}")
        self.stdout.write(f"The audit trail was changed: {len(problems)} problems in {count} events.")
        sys.exit(1)
