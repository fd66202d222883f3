from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from telerad.accounts.tokens import DEFAULT_LIFETIME_DAYS, MAX_LIFETIME_DAYS


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("Code"),
        max_length=32,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True, "spellcheck": "false", "autocapitalize": "off"}),
    )


class PasswordConfirmForm(forms.Form):
    password = forms.CharField(label=_("Your password"), strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))


class TokenCreateForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100, help_text=_("What the token is for, for example the program that uses it."))
    days = forms.IntegerField(
        label=_("Expires after (days)"),
        min_value=1,
        max_value=MAX_LIFETIME_DAYS,
        initial=DEFAULT_LIFETIME_DAYS,
    )
