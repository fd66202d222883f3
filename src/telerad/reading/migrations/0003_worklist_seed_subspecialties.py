"""Seed the usual reading subspecialties and a few rules that administrators can change or remove."""

from django.db import migrations

SUBSPECIALTIES = [
    ("neuro", "Neuroradiology"),
    ("chest", "Chest"),
    ("abdominal", "Abdominal"),
    ("musculoskeletal", "Musculoskeletal"),
    ("breast", "Breast"),
    ("paediatric", "Paediatric"),
    ("cardiac", "Cardiac"),
    ("general", "General"),
]

# (subspecialty code, modality, body part keyword, position). Keywords are
# defined terms of Body Part Examined (PS3.16 CID 4031 / PS3.3 C.7.3.1.1.1).
RULES = [
    ("breast", "MG", "", 10),
    ("breast", "", "BREAST", 20),
    ("cardiac", "", "HEART", 30),
    ("neuro", "", "HEAD", 40),
    ("neuro", "", "BRAIN", 41),
    ("neuro", "", "SPINE", 42),
    ("chest", "", "CHEST", 50),
    ("chest", "", "THORAX", 51),
    ("abdominal", "", "ABDOMEN", 60),
    ("abdominal", "", "PELVIS", 61),
    ("musculoskeletal", "", "KNEE", 70),
    ("musculoskeletal", "", "SHOULDER", 71),
    ("musculoskeletal", "", "HIP", 72),
    ("musculoskeletal", "", "HAND", 73),
    ("musculoskeletal", "", "FOOT", 74),
]


def seed(apps, schema_editor):
    Subspecialty = apps.get_model("reading", "Subspecialty")
    SubspecialtyRule = apps.get_model("reading", "SubspecialtyRule")
    by_code = {}
    for code, name in SUBSPECIALTIES:
        by_code[code], _ = Subspecialty.objects.get_or_create(code=code, defaults={"name": name})
    for code, modality, keyword, position in RULES:
        SubspecialtyRule.objects.get_or_create(
            subspecialty=by_code[code], modality=modality, body_part_keyword=keyword, defaults={"position": position},
        )


def unseed(apps, schema_editor):
    SubspecialtyRule = apps.get_model("reading", "SubspecialtyRule")
    for code, modality, keyword, _position in RULES:
        SubspecialtyRule.objects.filter(subspecialty__code=code, modality=modality, body_part_keyword=keyword).delete()
    # Subspecialties stay: exams and readers may refer to them by now.


class Migration(migrations.Migration):
    dependencies = [("reading", "0002_worklist_rules_readers_views")]

    operations = [migrations.RunPython(seed, unseed)]
