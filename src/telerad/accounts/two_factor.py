"""Two-factor login: an authenticator app (TOTP, RFC 6238) and single-use recovery codes, stored as django-otp devices."""

from __future__ import annotations

import base64
import re

import segno
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

RECOVERY_CODE_COUNT = 10
# The length of django-otp's StaticToken.random_token(): 5 random bytes in base32.
RECOVERY_CODE_LENGTH = 8
AUTHENTICATOR_NAME = "authenticator"
RECOVERY_DEVICE_NAME = "recovery codes"


def is_required() -> bool:
    return settings.TELERAD.two_factor_required


def authenticator(user: AbstractBaseUser) -> TOTPDevice | None:
    """Return the user's confirmed authenticator, or None when two-factor login is not set up."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("-pk").first()


def is_enrolled(user: AbstractBaseUser) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def pending_authenticator(user: AbstractBaseUser) -> TOTPDevice:
    """Return the unconfirmed authenticator whose secret the enrolment page shows, creating it on first use.

    The same secret is shown until the user confirms it with a first code,
    so reloading the page does not invalidate a QR code already scanned.
    """
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=AUTHENTICATOR_NAME, confirmed=False)
    return device


def secret_text(device: TOTPDevice) -> str:
    """Return the base32 secret in groups of four, for typing into an authenticator app."""
    secret = base64.b32encode(device.bin_key).decode("ascii").rstrip("=")
    return " ".join(secret[index:index + 4] for index in range(0, len(secret), 4))


def qr_code_svg(device: TOTPDevice, title: str) -> str:
    """Return the device's otpauth:// address as an inline SVG QR code, with fixed colours that also scan in dark mode."""
    code = segno.make(device.config_url, error="m")
    return code.svg_inline(scale=5, border=4, dark="#000", light="#fff", title=title)


def confirm_authenticator(device: TOTPDevice, code: str) -> bool:
    """Confirm `device` when `code` is its current code; it then replaces any earlier authenticator of the user."""
    code = normalize_code(code)
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        if not device.verify_token(code):
            return False
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        TOTPDevice.objects.filter(user=device.user).exclude(pk=device.pk).delete()
    return True


def create_recovery_codes(user: AbstractBaseUser) -> list[str]:
    """Replace the user's recovery codes with new ones and return them.

    NOTE: django-otp stores recovery codes and TOTP keys unhashed, so the
    database is as secret as the codes themselves.
    """
    with transaction.atomic():
        device, _created = StaticDevice.objects.get_or_create(user=user, name=RECOVERY_DEVICE_NAME, defaults={"confirmed": True})
        device.token_set.all().delete()
        codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
        StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


def remaining_recovery_codes(user: AbstractBaseUser) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def remove_two_factor(user: AbstractBaseUser) -> None:
    """Delete the user's authenticators and recovery codes."""
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        StaticDevice.objects.filter(user=user).delete()


def normalize_code(code: str) -> str:
    # Authenticator apps show "123 456", and people copy recovery codes with
    # spaces, dashes or in upper case.
    return re.sub(r"[\s-]", "", code).lower()


def verify_code(user: AbstractBaseUser, code: str) -> Device | None:
    """Return the device that accepts `code` (an authenticator code or an unused recovery code), or None.

    A recovery code is deleted as it is accepted. django-otp's throttling
    applies: after a wrong code a device rejects codes for 1, 2, 4... seconds.
    """
    code = normalize_code(code)
    if not code:
        return None
    device_sets = []
    if code.isdigit():
        device_sets.append(TOTPDevice.objects.filter(user=user, confirmed=True))
    # Recovery codes are base32 (a-z, 2-7), so one may consist of digits
    # alone. Only codes of their length are tried, because every wrong code
    # also slows down the device it was tried on.
    if not code.isdigit() or len(code) == RECOVERY_CODE_LENGTH:
        device_sets.append(StaticDevice.objects.filter(user=user, confirmed=True))
    with transaction.atomic():
        for devices in device_sets:
            for device in devices.select_for_update():
                if device.verify_token(code):
                    return device
    return None


def is_recovery_device(device: Device) -> bool:
    return isinstance(device, StaticDevice)
