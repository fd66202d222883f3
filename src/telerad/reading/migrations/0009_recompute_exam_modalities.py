"""Compute every exam's modalities again from its image series.

Exams synchronised before exam sync left out non-image series may list DOC,
SR, KO or PR, for instance from the Encapsulated PDF and SR of a signed
report stored back into the exam's study. This migration applies the rule
of telerad.reading.exams.image_modalities to every exam that has series.
Going back leaves the modalities as they are now.
"""

from django.db import migrations

# A copy of the non-image modalities of telerad.reading.exams as they were when this
# migration was written, so that later changes there do not change it.
NON_IMAGE_MODALITIES = frozenset({
    "AU", "DOC", "FID", "KO", "PLAN", "PR", "REG", "RTPLAN", "RTRECORD", "RTSTRUCT", "SEG", "SR",
})
BATCH_SIZE = 1000


def image_modalities(values):
    modalities = {modality for value in values for modality in value.split("\\") if modality}
    images = modalities - NON_IMAGE_MODALITIES
    return "\\".join(sorted(images or modalities))


def recompute_modalities(apps, schema_editor):
    Exam = apps.get_model("reading", "Exam")
    Series = apps.get_model("archive", "Series")
    last_id = 0
    while True:
        exams = list(Exam.objects.filter(pk__gt=last_id).order_by("pk").values_list("pk", "modalities")[:BATCH_SIZE])
        if not exams:
            break
        last_id = exams[-1][0]
        series = (
            Series.objects.filter(study__exam_link__exam_id__in=[pk for pk, _modalities in exams]).exclude(modality="")
            .values_list("study__exam_link__exam_id", "modality")
        )
        by_exam = {}
        for exam_id, modality in series:
            by_exam.setdefault(exam_id, []).append(modality)
        for pk, modalities in exams:
            # An exam without series keeps its modalities.
            if pk not in by_exam:
                continue
            recomputed = image_modalities(by_exam[pk])
            if recomputed != modalities:
                Exam.objects.filter(pk=pk).update(modalities=recomputed)


class Migration(migrations.Migration):

    dependencies = [
        ("archive", "0004_patient_without_identifier"),
        ("reading", "0008_reader_on_duty"),
    ]

    operations = [
        migrations.RunPython(recompute_modalities, migrations.RunPython.noop),
    ]
