"""``telerad exams sync``: make exams of the studies that have none, once."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from telerad.core import runtime
from telerad.reading import claims, exams


class Command(BaseCommand):
    help = "Manage the exams of the reading worklist."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        subcommands = parser.add_subparsers(dest="subcommand", required=True, metavar="{sync}")
        sync = subcommands.add_parser(
            "sync",
            help="make an exam of every study that has none and clear lapsed claims, as the servers do every few seconds",
        )
        sync.add_argument(
            "--full", action="store_true",
            help=(
                "check every study and exam, not only those created or changed since shortly before the previous run, "
                "and remove the exams without images that nobody has started to report"
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            runtime.require_valid_configuration()
        except runtime.ConfigurationInvalid as exc:
            raise CommandError(str(exc)) from None
        result = exams.sync_exams(full=options["full"])
        lapsed = claims.expire_lapsed_claims()
        self.stdout.write(
            f"{result.studies_linked} studies linked to exams, {result.exams_created} exams created, "
            f"{result.exams_updated} exams updated, {result.exams_removed} exams without images removed, {lapsed} lapsed claims cleared"
        )
