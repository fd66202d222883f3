"""Forms of the report pages: signing, addenda, and editing and importing templates."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.validators import RegexValidator
from django.forms import formset_factory, inlineformset_factory, modelformset_factory
from django.utils.translation import gettext_lazy as _

from telerad.reading.models import Phrase, ReportTemplate
from telerad.reading.reports_signing import MAX_ADDENDUM_CHARACTERS
from telerad.reading.reports_templates import MAX_IMPORT_BYTES, SECTION_KEY_PATTERN


class ConfirmSignatureForm(forms.Form):
    """The password or authenticator code that confirms a signature, and the critical result flag."""

    password = forms.CharField(
        label=_("Password"), required=False, strip=False, max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    code = forms.CharField(
        label=_("or authenticator code"), required=False, max_length=16,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )
    critical = forms.BooleanField(
        label=_("Critical result"), required=False,
        help_text=_("The referring clinician must hear of this finding at once."),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("password") and cleaned.get("code"):
            raise forms.ValidationError(_("Enter your password or an authenticator code, not both."))
        return cleaned


class AddendumForm(ConfirmSignatureForm):
    text = forms.CharField(label=_("Addendum"), max_length=MAX_ADDENDUM_CHARACTERS, widget=forms.Textarea(attrs={"rows": 5}))

    field_order = ["text", "password", "code", "critical"]


class ReportTemplateForm(forms.ModelForm):
    class Meta:
        model = ReportTemplate
        fields = ["name", "modality", "exam_type", "active"]
        help_texts = {
            "modality": _("DICOM modality such as CT, MR or DX; several separated by backslashes (CR\\DX). Empty fits every modality."),
            "exam_type": _("Words that the exam description or requested procedure contains, such as “head” or “knee”. Empty fits every exam."),
        }

    def clean_modality(self) -> str:
        return self.cleaned_data["modality"].strip().upper()


class SectionForm(forms.Form):
    key = forms.CharField(
        label=_("Key"), max_length=64,
        validators=[RegexValidator(SECTION_KEY_PATTERN, _("Use lower-case letters, digits and underscores, starting with a letter."))],
        help_text=_("For example findings or impression."),
    )
    title = forms.CharField(label=_("Title"), max_length=200)
    text = forms.CharField(label=_("Starting text"), required=False, widget=forms.Textarea(attrs={"rows": 3}))


class BaseSectionFormSet(forms.BaseFormSet):
    def clean(self) -> None:
        if any(self.errors):
            return
        keys = []
        for form in self.forms:
            if not form.has_changed() or self._should_delete_form(form):
                continue
            key = form.cleaned_data["key"]
            if key in keys:
                raise forms.ValidationError(_("The section key “%(key)s” is used twice.") % {"key": key})
            keys.append(key)
        if not keys:
            raise forms.ValidationError(_("A template needs at least one section."))

    def sections(self) -> list[dict[str, str]]:
        return [
            {"key": form.cleaned_data["key"], "title": form.cleaned_data["title"], "text": form.cleaned_data["text"].replace("\r\n", "\n")}
            for form in self.forms
            if form.has_changed() and not self._should_delete_form(form)
        ]


SectionFormSet = formset_factory(SectionForm, formset=BaseSectionFormSet, extra=2, can_delete=True)
PhraseFormSet = inlineformset_factory(
    ReportTemplate, Phrase, fields=["section_key", "label", "text"], extra=2, can_delete=True,
    labels={"section_key": _("Section key"), "label": _("Label"), "text": _("Text")},
    help_texts={"section_key": _("Empty offers the phrase in every section.")},
    widgets={"text": forms.Textarea(attrs={"rows": 2})},
)


class GlobalPhraseForm(forms.ModelForm):
    """A phrase offered with every template, in one section or in all."""

    class Meta:
        model = Phrase
        fields = ["section_key", "label", "text"]
        labels = {"section_key": _("Section key"), "label": _("Label"), "text": _("Text")}
        help_texts = {
            "section_key": _("The key of the sections that offer the phrase, such as findings or impression. Empty offers it in every section."),
        }
        widgets = {"text": forms.Textarea(attrs={"rows": 2})}

    def clean_section_key(self) -> str:
        key = self.cleaned_data["section_key"].strip()
        if key and not SECTION_KEY_PATTERN.match(key):
            raise forms.ValidationError(_("Use lower-case letters, digits and underscores, starting with a letter."))
        return key


GlobalPhraseFormSet = modelformset_factory(Phrase, form=GlobalPhraseForm, extra=2, can_delete=True)


class TemplateImportForm(forms.Form):
    file = forms.FileField(label=_("Template file (JSON)"))

    def clean_file(self) -> bytes:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_IMPORT_BYTES:
            raise forms.ValidationError(_("The file is larger than %(size)d MiB.") % {"size": MAX_IMPORT_BYTES // (1024 * 1024)})
        return upload.read()
