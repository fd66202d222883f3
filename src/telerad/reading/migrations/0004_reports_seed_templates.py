"""Add starting report templates (CT head, chest X-ray, MR knee, generic) and a few phrases.

Departments edit, deactivate or replace these through the template pages.
Reversing the migration removes only templates that still carry these names.
"""

from django.db import migrations

STANDARD_SECTIONS = [
    ("clinical_information", "Clinical information", ""),
    ("technique", "Technique", ""),
    ("comparison", "Comparison", "None."),
    ("findings", "Findings", ""),
    ("impression", "Impression", ""),
]


def sections(**texts):
    return [{"key": key, "title": title, "text": texts.get(key, default)} for key, title, default in STANDARD_SECTIONS]


TEMPLATES = [
    {
        "name": "CT head",
        "modality": "CT",
        "exam_type": "head",
        "sections": sections(technique="Axial CT of the head without intravenous contrast, with multiplanar reconstructions."),
        "phrases": [
            ("findings", "Normal CT head", "No intracranial haemorrhage, mass effect or midline shift. Grey-white matter differentiation is preserved. "
             "The ventricles and sulci are normal for age. No extra-axial collection. The calvarium is intact."),
            ("findings", "Small vessel disease", "Periventricular white matter hypodensities, in keeping with chronic small vessel ischaemic change."),
            ("impression", "No acute intracranial abnormality", "No acute intracranial abnormality."),
        ],
    },
    {
        "name": "Chest X-ray",
        "modality": "CR\\DX",
        "exam_type": "chest",
        "sections": sections(technique="Frontal chest radiograph."),
        "phrases": [
            ("findings", "Normal chest", "The lungs are clear. No pleural effusion or pneumothorax. "
             "The cardiomediastinal silhouette is within normal limits. No acute bony abnormality."),
            ("findings", "Lines and tubes", "Support devices are in satisfactory position."),
            ("impression", "No acute cardiopulmonary process", "No acute cardiopulmonary process."),
        ],
    },
    {
        "name": "MR knee",
        "modality": "MR",
        "exam_type": "knee",
        "sections": sections(technique="Multiplanar, multisequence MR imaging of the knee without intravenous contrast."),
        "phrases": [
            ("findings", "Intact menisci", "The medial and lateral menisci are intact."),
            ("findings", "Intact ligaments", "The anterior and posterior cruciate ligaments and the collateral ligaments are intact."),
            ("findings", "Joint effusion", "Small joint effusion."),
            ("impression", "Normal MR knee", "No internal derangement of the knee."),
        ],
    },
    {
        "name": "Generic",
        "modality": "",
        "exam_type": "",
        "sections": sections(),
        "phrases": [],
    },
]

GLOBAL_PHRASES = [
    ("comparison", "No prior", "No prior imaging available for comparison."),
    ("", "Clinical correlation", "Clinical correlation is recommended."),
]


def add_templates(apps, schema_editor):
    ReportTemplate = apps.get_model("reading", "ReportTemplate")
    Phrase = apps.get_model("reading", "Phrase")
    for item in TEMPLATES:
        template, created = ReportTemplate.objects.get_or_create(
            name=item["name"],
            defaults={"modality": item["modality"], "exam_type": item["exam_type"], "sections": item["sections"]},
        )
        if created:
            for section_key, label, text in item["phrases"]:
                Phrase.objects.create(template=template, section_key=section_key, label=label, text=text)
    for section_key, label, text in GLOBAL_PHRASES:
        Phrase.objects.get_or_create(template=None, section_key=section_key, label=label, defaults={"text": text})


def remove_templates(apps, schema_editor):
    ReportTemplate = apps.get_model("reading", "ReportTemplate")
    Phrase = apps.get_model("reading", "Phrase")
    ReportTemplate.objects.filter(name__in=[item["name"] for item in TEMPLATES]).delete()
    for section_key, label, _text in GLOBAL_PHRASES:
        Phrase.objects.filter(template=None, section_key=section_key, label=label).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("reading", "0003_worklist_seed_subspecialties"),
    ]

    operations = [
        migrations.RunPython(add_templates, remove_templates),
    ]
