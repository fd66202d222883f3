"""The remote application entities telerad exchanges DICOM with."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from telerad.config import AE_TITLE_PATTERN

validate_ae_title = RegexValidator(
    AE_TITLE_PATTERN,
    _("An AE title is 1 to 16 printable ASCII characters without backslash."),
)


class RemoteAE(models.Model):
    ae_title = models.CharField(_("AE title"), max_length=16, unique=True, validators=[validate_ae_title])
    # An IP address or host name; empty accepts the AE title from any address.
    host = models.CharField(_("host"), max_length=255, blank=True)
    port = models.PositiveIntegerField(_("port"), null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    description = models.CharField(_("description"), max_length=200, blank=True)
    allow_store = models.BooleanField(_("may store (C-STORE)"), default=True)
    allow_find = models.BooleanField(_("may query (C-FIND)"), default=True)
    allow_move = models.BooleanField(_("may retrieve (C-MOVE)"), default=True)
    allow_get = models.BooleanField(_("may retrieve (C-GET)"), default=True)
    tls_required = models.BooleanField(_("requires TLS"), default=False)
    enabled = models.BooleanField(_("enabled"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("remote AE")
        verbose_name_plural = _("remote AEs")
        ordering = ["ae_title"]

    def __str__(self) -> str:
        return self.ae_title
