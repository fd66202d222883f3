from __future__ import annotations

import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from telerad.accounts import tokens
from telerad.accounts.models import ApiToken
from telerad.core import runtime


class Command(BaseCommand):
    help = "Create, list and revoke API tokens, which programs send as `Authorization: Bearer TOKEN`."

    def add_arguments(self, parser: Any) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{create,list,revoke}")
        create = actions.add_parser("create", help="make a token for a user and print it")
        create.add_argument("username")
        create.add_argument("--name", default="", help="what the token is for, shown in lists")
        create.add_argument("--days", type=int, help="days until the token expires (default: never)")
        listing = actions.add_parser("list", help="list tokens, of one user or of all")
        listing.add_argument("username", nargs="?")
        revoke = actions.add_parser("revoke", help="revoke a token by the prefix shown in the list")
        revoke.add_argument("prefix")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            runtime.require_migrated_database()
        except runtime.ConfigurationInvalid as exc:
            raise CommandError(str(exc)) from None
        action = options["action"]
        if action == "create":
            self._create(options["username"], options["name"], options["days"])
        elif action == "list":
            self._list(options["username"])
        else:
            self._revoke(options["prefix"])

    def _create(self, username: str, name: str, days: int | None) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        if not user.is_active:
            raise CommandError(f"user {username!r} is inactive")
        if days is not None and days < 1:
            raise CommandError("--days must be at least 1")
        lifetime = datetime.timedelta(days=days) if days is not None else None
        _token, text = tokens.create_token(user, name=name, lifetime=lifetime, created_by="cli")
        # The token alone on stdout, so that scripts can capture it.
        self.stdout.write(text)

    def _list(self, username: str | None) -> None:
        rows = ApiToken.objects.select_related("user").order_by("user__username", "created_at")
        if username:
            rows = rows.filter(user__username=username)
        if not rows:
            self.stdout.write("No API tokens.")
            return
        self.stdout.write(f"{'prefix':<12} {'user':<20} {'state':<8} {'created':<17} {'expires':<17} name")
        for token in rows:
            state = "revoked" if token.revoked_at else ("active" if token.is_active else "expired")
            expires = f"{token.expires_at:%Y-%m-%d %H:%M}" if token.expires_at else "never"
            self.stdout.write(f"{token.prefix:<12} {token.user.get_username():<20} {state:<8} {token.created_at:%Y-%m-%d %H:%M} {expires:<17} {token.name}")

    def _revoke(self, prefix: str) -> None:
        matches = list(ApiToken.objects.select_related("user").filter(prefix=prefix, revoked_at__isnull=True))
        if not matches:
            raise CommandError(f"no active token with prefix {prefix!r}")
        if len(matches) > 1:
            raise CommandError(f"{len(matches)} tokens share the prefix {prefix!r}; revoke them in the admin")
        tokens.revoke_token(matches[0], revoked_by="cli")
        self.stdout.write(f"Revoked {prefix}")
