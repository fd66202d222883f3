from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from telerad.audit import events as audit
from telerad.core import runtime
from telerad.dimse.models import RemoteAE

SERVICES = ("store", "find", "move", "get")


class Command(BaseCommand):
    help = "Register, list and remove the remote DICOM application entities allowed to connect."

    def add_arguments(self, parser: Any) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{add,list,remove}")
        add = actions.add_parser("add", help="register or update a remote AE")
        add.add_argument("ae_title", help="the remote AE title (1 to 16 characters)")
        add.add_argument("--host", default="", help="IP address or host name the AE connects from and listens on; empty accepts any address")
        add.add_argument("--port", type=int, help="port the AE listens on, for C-MOVE destinations")
        add.add_argument("--description", default="")
        add.add_argument("--services", default=",".join(SERVICES), help="comma-separated services the AE may use: store, find, move, get (default: all)")
        add.add_argument("--tls", action="store_true", help="require TLS for this AE")
        actions.add_parser("list", help="list the registered AEs")
        remove = actions.add_parser("remove", help="remove a registered AE")
        remove.add_argument("ae_title")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            runtime.require_migrated_database()
        except runtime.ConfigurationInvalid as exc:
            raise CommandError(str(exc)) from None
        action = options["action"]
        if action == "add":
            self._add(options)
        elif action == "list":
            self._list()
        else:
            self._remove(options["ae_title"])

    def _add(self, options: dict[str, Any]) -> None:
        services = {name.strip() for name in options["services"].split(",") if name.strip()}
        unknown = services - set(SERVICES)
        if unknown:
            raise CommandError(f"unknown service {', '.join(sorted(unknown))}; use any of: {', '.join(SERVICES)}")
        title = options["ae_title"].strip()
        remote_ae = RemoteAE.objects.filter(ae_title=title).first() or RemoteAE(ae_title=title)
        created = remote_ae.pk is None
        remote_ae.host = options["host"]
        remote_ae.port = options["port"]
        remote_ae.description = options["description"]
        remote_ae.tls_required = options["tls"]
        for service in SERVICES:
            setattr(remote_ae, f"allow_{service}", service in services)
        try:
            remote_ae.full_clean()
        except ValidationError as exc:
            messages = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
            raise CommandError(f"invalid AE: {messages}") from None
        with transaction.atomic():
            remote_ae.save()
            audit.record_event(action=audit.Action.REMOTE_AE_CHANGED, user="cli", detail=f"{'added' if created else 'updated'} AE {title}")
        self.stdout.write(f"{'Added' if created else 'Updated'} {title}")

    def _list(self) -> None:
        rows = RemoteAE.objects.order_by("ae_title")
        if not rows:
            self.stdout.write("No remote AEs are registered.")
            return
        self.stdout.write(f"{'AE title':<16}  {'host':<24} {'port':>5}  services          TLS  enabled")
        for remote_ae in rows:
            services = ",".join(name for name in SERVICES if getattr(remote_ae, f"allow_{name}"))
            self.stdout.write(
                f"{remote_ae.ae_title:<16}  {remote_ae.host or '*':<24} {remote_ae.port or '':>5}  {services:<17} {'yes' if remote_ae.tls_required else 'no':<4} {'yes' if remote_ae.enabled else 'no'}"
            )

    def _remove(self, title: str) -> None:
        with transaction.atomic():
            deleted, _ = RemoteAE.objects.filter(ae_title=title.strip()).delete()
            if not deleted:
                raise CommandError(f"no remote AE is registered as {title!r}; see: telerad ae list")
            audit.record_event(action=audit.Action.REMOTE_AE_CHANGED, user="cli", detail=f"removed AE {title.strip()}")
        self.stdout.write(f"Removed {title.strip()}")
