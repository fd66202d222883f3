"""Offer the starting phrase "Clinical correlation" in the Impression section only.

Migration 0004 gave it no section, so the report editor offered it in every
section, Clinical information and Technique included. Only the unchanged
starting phrase moves: a phrase that a department edited keeps its section.
"""

from django.db import migrations

LABEL = "Clinical correlation"
TEXT = "Clinical correlation is recommended."
SECTION_KEY = "impression"


def move_to_impression(apps, schema_editor):
    Phrase = apps.get_model("reading", "Phrase")
    Phrase.objects.filter(template=None, section_key="", label=LABEL, text=TEXT).update(section_key=SECTION_KEY)


def offer_in_every_section(apps, schema_editor):
    Phrase = apps.get_model("reading", "Phrase")
    Phrase.objects.filter(template=None, section_key=SECTION_KEY, label=LABEL, text=TEXT).update(section_key="")


class Migration(migrations.Migration):

    dependencies = [
        ("reading", "0011_recheck_exams_for_images"),
    ]

    operations = [
        migrations.RunPython(move_to_impression, offer_in_every_section),
    ]
