"""Make the next exam sync a full one, which removes the exams of studies without images.

Earlier versions made an exam of every study, also of studies that hold only
structured reports, waveforms or radiotherapy plans. A full run of
telerad.reading.exams.sync_exams removes those exams unless a reader has
started to report them, with the same rule that now decides which studies
become exams. The rule reads stored files, so it runs in the sync rather
than here: clearing the sync state makes the next run of every server full.
"""

from django.db import migrations


def request_full_sync(apps, schema_editor):
    ExamSyncState = apps.get_model("reading", "ExamSyncState")
    ExamSyncState.objects.update(checked_until=None)


class Migration(migrations.Migration):

    dependencies = [
        ("reading", "0010_exam_open_worklist_index"),
    ]

    operations = [
        # Reversing leaves the state as it is: a full run changes nothing that a later incremental run would undo.
        migrations.RunPython(request_full_sync, migrations.RunPython.noop),
    ]
