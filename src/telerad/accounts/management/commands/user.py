from __future__ import annotations

import getpass
import sys
from typing import Any

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from telerad.accounts import roles, users as accounts
from telerad.audit import events as audit
from telerad.core import runtime

ROLE_NAMES = ", ".join(role.value for role in roles.Role)


class Command(BaseCommand):
    help = "Add, list, disable and enable user accounts, set their roles, and reset their two-factor login."

    def add_arguments(self, parser: Any) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{add,list,disable,enable,roles,reset-two-factor}")
        add = actions.add_parser("add", help="create an account with one or more roles")
        add.add_argument("username")
        add.add_argument("--role", action="append", required=True, help=f"a role to give; repeat for several ({ROLE_NAMES})")
        add.add_argument("--email", default="")
        add.add_argument("--first-name", default="")
        add.add_argument("--last-name", default="")
        add.add_argument(
            "--password-stdin", action="store_true",
            help="read the password from the first line of standard input instead of asking twice at the terminal",
        )
        actions.add_parser("list", help="list accounts with their roles and state")
        disable = actions.add_parser("disable", help="stop an account from signing in, end its sessions and revoke its API tokens")
        disable.add_argument("username")
        enable = actions.add_parser("enable", help="let a disabled account sign in again (its old sessions and tokens stay ended)")
        enable.add_argument("username")
        set_roles = actions.add_parser("roles", help="replace the roles of an account")
        set_roles.add_argument("username")
        set_roles.add_argument("role", nargs="*", help=f"the roles the account keeps ({ROLE_NAMES})")
        set_roles.add_argument("--none", action="store_true", help="take every role away; the account can still sign in but opens no page")
        reset = actions.add_parser(
            "reset-two-factor",
            help="delete the account's authenticator and recovery codes and end its sessions; the user sets up two-factor login again",
        )
        reset.add_argument("username")

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
        elif action in ("disable", "enable"):
            self._set_active(options["username"], active=action == "enable")
        elif action == "reset-two-factor":
            self._reset_two_factor(options["username"])
        else:
            self._set_roles(options["username"], options["role"], remove_all=options["none"])

    def _add(self, options: dict[str, Any]) -> None:
        users = get_user_model()
        username = options["username"]
        requested = _parse_roles(options["role"])
        if users.objects.filter(username=username).exists():
            raise CommandError(f"a user named {username!r} exists already")
        candidate = users(username=username, email=options["email"], first_name=options["first_name"], last_name=options["last_name"])
        password = self._read_password(options["password_stdin"])
        try:
            password_validation.validate_password(password, candidate)
        except ValidationError as exc:
            raise CommandError("the password is too weak: " + " ".join(exc.messages)) from None

        with transaction.atomic():
            candidate.set_password(password)
            candidate.save()
            roles.set_roles(candidate, requested)
            audit.record_event(
                action=audit.Action.USER_CREATED,
                user="cli",
                detail=f"user {username} with roles {', '.join(sorted(requested))}",
            )
        self.stdout.write(f"Created user {username} with roles {', '.join(sorted(requested))}.")

    def _read_password(self, from_stdin: bool) -> str:
        if from_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
            if not password:
                raise CommandError("standard input held no password")
            return password
        if not sys.stdin.isatty():
            raise CommandError("no terminal to ask for the password; give --password-stdin and pipe the password in")
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Password (again): "):
            raise CommandError("the two passwords differ")
        return first

    def _list(self) -> None:
        rows = get_user_model().objects.order_by("username").prefetch_related("groups")
        if not rows:
            self.stdout.write("No users.")
            return
        self.stdout.write(f"{'user':<24} {'state':<9} {'last login':<17} roles")
        for user in rows:
            state = "active" if user.is_active else "disabled"
            last_login = f"{user.last_login:%Y-%m-%d %H:%M}" if user.last_login else "never"
            names = ", ".join(accounts.role_names(user))
            self.stdout.write(f"{user.get_username():<24} {state:<9} {last_login:<17} {names or '(none)'}")

    def _set_active(self, username: str, *, active: bool) -> None:
        user = _get_user(username)
        if user.is_active == active:
            self.stdout.write(f"User {username} is {'active' if active else 'disabled'} already.")
            return
        if active:
            accounts.enable_user(user, actor="cli")
            self.stdout.write(f"Enabled user {username}.")
        else:
            accounts.disable_user(user, actor="cli")
            self.stdout.write(f"Disabled user {username}; ended their sessions and revoked their API tokens.")

    def _set_roles(self, username: str, names: list[str], *, remove_all: bool) -> None:
        if remove_all and names:
            raise CommandError("give either roles or --none, not both")
        if not remove_all and not names:
            raise CommandError(f"give at least one role ({ROLE_NAMES}), or --none to take every role away")
        user = _get_user(username)
        requested = set() if remove_all else _parse_roles(names)
        accounts.replace_roles(user, requested, actor="cli")
        if requested:
            self.stdout.write(f"User {username} now has roles {', '.join(sorted(requested))}.")
        else:
            self.stdout.write(f"User {username} now has no role: they can sign in but open no page.")

    def _reset_two_factor(self, username: str) -> None:
        user = _get_user(username)
        accounts.reset_two_factor(user, actor="cli")
        self.stdout.write(f"Reset two-factor login of user {username}. They set up a new authenticator at their next login when two-factor login is required.")


def _parse_roles(names: list[str]) -> set[roles.Role]:
    try:
        return {roles.parse_role(name) for name in names}
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _get_user(username: str) -> Any:
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"no user named {username!r}")
    return user
