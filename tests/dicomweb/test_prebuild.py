"""Metadata documents built ahead of the first request, by the worker thread of the servers."""

from __future__ import annotations

import json
import time

import pytest

from telerad.archive.ingest import Source, store_file
from telerad.dicomweb import metadata, prebuild, wado
from telerad.dicomweb.models import InstanceMetadata

pytestmark = pytest.mark.django_db(transaction=True)

SOURCE = Source("import", user="test")
WAIT_S = 30.0


@pytest.fixture
def stored(sample_file):
    return store_file(sample_file("CT_small.dcm").read_bytes(), source=SOURCE)


def test_build_study_stores_documents(stored):
    assert prebuild.build_study(stored.study_instance_uid) == 1

    document = InstanceMetadata.objects.get()
    assert document.encoder_version == metadata.ENCODER_VERSION
    assert prebuild.build_study(stored.study_instance_uid) == 0


def test_build_study_of_an_unknown_study_builds_nothing():
    assert prebuild.build_study("1.2.3.4.5.6") == 0


def test_schedule_without_worker_does_nothing(stored, monkeypatch):
    monkeypatch.setattr(prebuild, "_worker", None)

    prebuild.schedule([stored.study_instance_uid])

    assert prebuild._pending.empty()


def test_worker_builds_scheduled_studies(stored):
    prebuild.start_worker()
    prebuild.schedule([stored.study_instance_uid])

    deadline = time.monotonic() + WAIT_S
    while not InstanceMetadata.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.05)

    assert InstanceMetadata.objects.count() == 1


def test_metadata_leaves_out_a_zero_pixel_spacing(sample_file):
    result = store_file(sample_file("RG1_UNCR.dcm").read_bytes(), source=SOURCE)
    prebuild.build_study(result.study_instance_uid)

    document = metadata.documents([(instance, None) for instance in wado.find({"study": result.study_instance_uid}, None).instances])[0]

    assert json.loads(document)["00280030"] == {"vr": "DS"}
