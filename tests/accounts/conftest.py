"""Helpers for the sign-in tests: users with roles, switches for the login settings, and codes computed from a device's key."""

from __future__ import annotations

import dataclasses
import time

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from telerad.accounts import two_factor
from telerad.accounts.roles import Role, set_roles

PASSWORD = "a long enough password"
PERMISSION_MIDDLEWARE = "telerad.accounts.middleware.PermissionMiddleware"


@pytest.fixture
def enforced_permissions(settings):
    """Check that requests run through the permission middleware and the role backend, as on the servers."""
    assert PERMISSION_MIDDLEWARE in settings.MIDDLEWARE
    assert settings.AUTHENTICATION_BACKENDS == ["telerad.accounts.backends.RoleBackend"]


@pytest.fixture
def login_settings(settings):
    """Return a function that replaces fields of settings.TELERAD for one test."""

    def change(**fields):
        settings.TELERAD = dataclasses.replace(settings.TELERAD, **fields)

    return change


@pytest.fixture
def two_factor_off(login_settings):
    login_settings(two_factor_required=False)


def make_user(username: str = "reader", roles=(Role.RADIOLOGIST,)) -> User:
    user = User.objects.create_user(username, password=PASSWORD)
    set_roles(user, roles)
    return user


def totp_code(device: TOTPDevice, steps_ahead: int = 0) -> str:
    """Compute the device's code for now, or for a later time step (the device accepts one step ahead).

    A device never accepts the same time step twice, so a test that uses two
    codes within 30 seconds takes the second one a step ahead.
    """
    device.refresh_from_db()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def enrol(user: User) -> tuple[TOTPDevice, list[str]]:
    """Give `user` a confirmed authenticator and recovery codes, through the same functions the pages use."""
    device = two_factor.pending_authenticator(user)
    assert two_factor.confirm_authenticator(device, totp_code(device))
    return device, two_factor.create_recovery_codes(user)


def post_password(client: Client, username: str = "reader", password: str = PASSWORD, **extra):
    return client.post("/login/", {"username": username, "password": password, "next": "/studies/"}, **extra)
