from __future__ import annotations

import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from telerad.audit import atna, forwarder
from telerad.audit.events import verify_chain
from telerad.audit.models import AuditEvent
from telerad.core import runtime


class Command(BaseCommand):
    help = "Check the audit trail, or send its pending events to the audit repository."

    def add_arguments(self, parser: Any) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{verify,forward}")
        actions.add_parser("verify", help="report altered, inserted or deleted events; exit status 1 when any")
        actions.add_parser(
            "forward",
            help="send the events the audit repository has not received yet, then exit; exit status 1 when sending failed",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            runtime.require_migrated_database()
        except runtime.ConfigurationInvalid as exc:
            raise CommandError(str(exc)) from None

        if options["action"] == "forward":
            self.forward()
        else:
            self.verify()

    def verify(self) -> None:
        problems = verify_chain()
        count = AuditEvent.objects.count()
        if not problems:
            self.stdout.write(f"The audit trail is intact: {count} events checked.")
            return
        for problem in problems:
            self.stdout.write(f"event {problem.sequence}: {problem.message}")
        self.stdout.write(f"The audit trail was changed: {len(problems)} problems in {count} events.")
        sys.exit(1)

    def forward(self) -> None:
        config = settings.TELERAD
        if not config.audit_forwarding:
            raise CommandError("no audit repository is configured; set TELERAD_AUDIT_SYSLOG_HOST and TELERAD_AUDIT_SYSLOG_CA_FILE")
        sender = forwarder.sender_from_config(config)
        owner = forwarder.new_owner()
        try:
            sent = forwarder.forward_pending(sender, atna.AuditSource.from_config(config), owner)
        except forwarder.ForwardingBusy as exc:
            raise CommandError(f"{exc}; nothing was sent, try again when it is done") from None
        except OSError as exc:
            pending = forwarder.pending_count()
            self.stderr.write(f"Sending to the audit repository {sender.address} failed: {exc}")
            self.stderr.write(f"{pending} events are still pending; run this command again, or let telerad serve retry.")
            sys.exit(1)
        finally:
            sender.close()
            forwarder.release_lease(owner)
        self.stdout.write(f"Sent {sent} audit events to {sender.address}.")
