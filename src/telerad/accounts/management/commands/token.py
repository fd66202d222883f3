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
        lifetime = create.add_mutually_exclusive_group()
        lifetime.add_argument(
            "--days", type=int,
            help=f"days until the token expires (default: {tokens.DEFAULT_LIFETIME_DAYS})",
        )
        lifetime.add_argument("--no-expiry", action="store_true", help="make a token that never expires, for a service account; revoke it when unused")
        listing = actions.add_parser("list", help="list tokens, of one user or of all")
        listing.add_argument("username", nargs="?")
        revoke = actions.add_parser("revoke", help="revoke a token by the prefix shown in the list")
        revoke.add_argument("prefix", help=f"the {tokens.SHOWN_PREFIX_LENGTH}-character prefix that `token list` shows, or the whole token")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            runtime.require_migrated_database()
        except runtime.ConfigurationInvalid as exc:
            raise CommandError(str(exc)) from None
        action = options["action"]
        if action == "create":
            days = options["days"] if options["days"] is not None else tokens.DEFAULT_LIFETIME_DAYS
            self._create(options["username"], options["name"], None if options["no_expiry"] else days)
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
            raise CommandError(f"--days must be at least 1, not {days}; give --no-expiry for a token that never expires")
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

    def _revoke(self, text: str) -> None:
        active = ApiToken.objects.select_related("user").filter(revoked_at__isnull=True).order_by("prefix")
        if len(text) > tokens.SHOWN_PREFIX_LENGTH:
            # Longer than a prefix: the whole token text, pasted from where a program keeps it.
            matches = list(active.filter(digest=tokens.digest_of(text)))
            if not matches:
                raise CommandError("no active token matches the given token text")
        else:
            matches = list(active.filter(prefix__startswith=text))
            if not matches:
                raise CommandError(f"no active token has a prefix starting with {text!r}; `telerad token list` shows the prefixes")
        if len(matches) > 1:
            raise CommandError(
                f"{len(matches)} active tokens have a prefix starting with {text!r}; give more characters of one of them:\n"
                + "\n".join(self._describe(token) for token in matches)
            )
        token = matches[0]
        if len(text) < tokens.SHOWN_PREFIX_LENGTH:
            raise CommandError(
                f"{text!r} is shorter than a token prefix ({tokens.SHOWN_PREFIX_LENGTH} characters). "
                f"The only active token it matches is:\n{self._describe(token)}\n"
                f"Run `telerad token revoke {token.prefix}` to revoke it."
            )
        tokens.revoke_token(token, revoked_by="cli")
        self.stdout.write(f"Revoked {token.prefix} of user {token.user.get_username()}.")

    @staticmethod
    def _describe(token: ApiToken) -> str:
        return f"  {token.prefix}  user {token.user.get_username()}  created {token.created_at:%Y-%m-%d %H:%M}  {token.name}".rstrip()
