"""QIDO-RS searches by dicomweb-client against a real ``telerad serve`` over HTTPS.

Samples go in with DCMTK's storescu; the searches come from
``dicomweb_client.api.DICOMwebClient`` with an API token, verifying the
server's self-signed certificate.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pydicom.dataset import Dataset

from tests.conftest import pydicom_charset_files, pydicom_test_files

from .conftest import Index, ServerFactory, TeleradServer
from .peers import storescu

pytestmark = pytest.mark.e2e

STORESCU_AE = "E2E_QIDO"
USER = "qido-reader"
CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
MR_STUDY = "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"
JAPANESE_STUDY = "1.3.6.1.4.1.5962.1.2.0.1175775771.5702.0"
PET_SERIES = "1.2.826.0.1.3680043.8.498.2001"
PET_INSTANCE = "1.2.826.0.1.3680043.8.498.2002"


def pet_copy_of_ct(folder: Path) -> Path:
    """Write the CT sample as a PET instance of a second series in the same study."""
    ds = dcmread(pydicom_test_files() / "CT_small.dcm")
    ds.SeriesInstanceUID = PET_SERIES
    ds.SOPInstanceUID = PET_INSTANCE
    ds.file_meta.MediaStorageSOPInstanceUID = PET_INSTANCE
    ds.Modality = "PT"
    ds.SeriesNumber = 2
    path = folder / "pet.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def server(module_server_factory: ServerFactory) -> TeleradServer:
    return module_server_factory.start(calling_ae_titles=[STORESCU_AE], http_tls=True)


@pytest.fixture(scope="module")
def stored(server: TeleradServer, tmp_path_factory: pytest.TempPathFactory) -> Index:
    folder = tmp_path_factory.mktemp("qido-samples")
    files = [
        pydicom_test_files() / "CT_small.dcm",
        pet_copy_of_ct(folder),
        pydicom_test_files() / "MR_small.dcm",
        pydicom_charset_files() / "chrH31.dcm",
    ]
    runs = storescu(server, STORESCU_AE, files)
    assert all(run.returncode == 0 for run in runs), "\n".join(run.stdout + run.stderr for run in runs)
    index = server.index()
    assert len(index.rows) == len(files)
    return index


@pytest.fixture(scope="module")
def client(server: TeleradServer, stored: Index) -> DICOMwebClient:
    server.add_user(USER, "radiologist")
    token = server.run("token", "create", USER).stdout.strip()
    session = requests.Session()
    # requests lets REQUESTS_CA_BUNDLE from the environment override
    # Session.verify (seen with requests 2.34), so the environment is not read.
    session.trust_env = False
    session.verify = str(server.data_dir / "tls" / "telerad.crt")
    session.headers["Authorization"] = f"Bearer {token}"
    return DICOMwebClient(url=f"https://127.0.0.1:{server.http_port}/dicom-web", session=session)


def first(result: dict, tag: str):
    return result[tag]["Value"][0]


def test_search_for_studies_lists_stored_studies(client, stored):
    studies = client.search_for_studies()

    assert {first(study, "0020000D") for study in studies} == {row.study_instance_uid for row in stored.rows}


def test_search_for_studies_by_patient_id(client):
    (study,) = client.search_for_studies(search_filters={"PatientID": "1CT1"})

    assert first(study, "0020000D") == CT_STUDY
    assert sorted(study["00080061"]["Value"]) == ["CT", "PT"]
    assert study["00201206"]["Value"] == [2]
    assert study["00201208"]["Value"] == [2]


def test_search_for_studies_by_series_modality(client):
    studies = client.search_for_studies(search_filters={"Modality": "MR"})

    assert [first(study, "0020000D") for study in studies] == [MR_STUDY]


def test_search_for_studies_by_date_range(client):
    studies = client.search_for_studies(search_filters={"StudyDate": "20040101-20040131"})

    assert [first(study, "0020000D") for study in studies] == [CT_STUDY]


def test_fuzzy_search_decodes_japanese_name(client):
    (study,) = client.search_for_studies(fuzzymatching=True, search_filters={"PatientName": "tarou"})

    dataset = Dataset.from_json(study)
    assert dataset.StudyInstanceUID == JAPANESE_STUDY
    assert dataset.PatientName.alphabetic == "Yamada^Tarou"
    assert dataset.PatientName.ideographic == "山田^太郎"
    assert dataset.PatientName.phonetic == "やまだ^たろう"


def test_includefield_adds_study_description(client):
    (study,) = client.search_for_studies(fields=["StudyDescription"], search_filters={"PatientID": "1CT1"})

    assert first(study, "00081030") == "e+1"


def test_paging_collects_every_study(client, stored):
    first_page = client.search_for_studies(limit=1)
    everything = client.search_for_studies(limit=1, get_remaining=True)

    assert len(first_page) == 1
    assert len(everything) == len({row.study_instance_uid for row in stored.rows})


def test_empty_search_returns_no_results(client):
    assert client.search_for_studies(search_filters={"PatientID": "nobody"}) == []


def test_search_for_series_of_a_study(client, stored):
    series = client.search_for_series(study_instance_uid=CT_STUDY)

    expected = {row.series_instance_uid for row in stored.rows if row.study_instance_uid == CT_STUDY}
    assert {first(result, "0020000E") for result in series} == expected
    assert {first(result, "00080060") for result in series} == {"CT", "PT"}


def test_search_for_series_across_studies(client):
    (series,) = client.search_for_series(search_filters={"Modality": "PT"})

    assert first(series, "0020000E") == PET_SERIES
    assert first(series, "00100020") == "1CT1"


def test_search_for_instances_of_a_series(client):
    (instance,) = client.search_for_instances(study_instance_uid=CT_STUDY, series_instance_uid=PET_SERIES)

    assert first(instance, "00080018") == PET_INSTANCE
    assert first(instance, "00280010") == 128
    # dicomweb-client 0.61 sends a Host header without the port, and the
    # Retrieve URL names the host the request named.
    assert first(instance, "00081190") == (
        f"https://127.0.0.1/dicom-web/studies/{CT_STUDY}/series/{PET_SERIES}/instances/{PET_INSTANCE}"
    )


def test_search_for_instances_by_patient(client, stored):
    instances = client.search_for_instances(search_filters={"PatientID": "4MR1"})

    expected = {row.sop_instance_uid for row in stored.rows if row.patient_id == "4MR1"}
    assert {first(instance, "00080018") for instance in instances} == expected


def test_bad_query_raises_http_400(client):
    with pytest.raises(requests.HTTPError) as raised:
        client.search_for_studies(search_filters={"StudyDate": "2004-13"})

    assert raised.value.response.status_code == 400
    assert "StudyDate" in raised.value.response.text


def test_searches_are_audited_for_the_token_user(client, server):
    client.search_for_studies(search_filters={"PatientID": "4MR1"})

    events = [event for event in server.index().events("query") if event["user"] == USER]
    assert events
    assert events[-1]["patient_id"] == "4MR1"
    assert "DICOMweb GET /dicom-web/studies" in events[-1]["detail"]
