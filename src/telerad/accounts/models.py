"""API tokens: long random secrets that let programs call telerad's HTTP APIs as a user.

Only a SHA-256 digest of each token is kept, so that a copy of the database
does not hand out working credentials. The token text is shown once, when it
is made.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(_("name"), max_length=100, blank=True)
    # The first characters of the token, shown in lists so that a user can tell tokens apart.
    prefix = models.CharField(_("prefix"), max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @property
    def is_active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()


class LoginThrottle(models.Model):
    """The recent failed logins of one account name or one source address, and the lock they caused.

    The account name is the one typed at login, whether or not such a user
    exists, so that a lock reveals nothing about which names are real.
    """

    class Kind(models.TextChoices):
        ACCOUNT = "account", _("account")
        ADDRESS = "address", _("source address")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    # The lower-cased user name, or the client's IP address.
    key = models.CharField(_("key"), max_length=150)
    failures = models.PositiveIntegerField(_("failures"), default=0)
    # Start of the period in which `failures` were counted.
    first_failure_at = models.DateTimeField(_("first failure"), null=True, blank=True)
    locked_until = models.DateTimeField(_("locked until"), null=True, blank=True)

    class Meta:
        verbose_name = _("login throttle")
        verbose_name_plural = _("login throttles")
        constraints = [models.UniqueConstraint(fields=["kind", "key"], name="accounts_loginthrottle_unique_key")]

    def __str__(self) -> str:
        return f"{self.kind} {self.key}"


class UserSession(models.Model):
    """A browser session of a signed-in user, kept so that the user's other sessions can be ended."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="browser_sessions")
    session_key = models.CharField(_("session key"), max_length=40, unique=True)
    started_at = models.DateTimeField(_("started"), auto_now_add=True)
    address = models.CharField(_("source address"), max_length=64, blank=True)

    class Meta:
        verbose_name = _("user session")
        verbose_name_plural = _("user sessions")

    def __str__(self) -> str:
        return f"{self.user} since {self.started_at:%Y-%m-%d %H:%M}"
