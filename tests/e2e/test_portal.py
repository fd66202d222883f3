"""Referring clinicians against a real ``telerad serve`` over HTTPS: DICOMweb with dicomweb-client, and the portal with OHIF in Chromium.

``welby`` referred the CT exam (matched by Referring Physician's Name) and
``kildare`` the MR exam. Each may open only their own study, by DICOMweb and in
the viewer.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from tests.conftest import pydicom_test_files

from .conftest import ServerFactory, TeleradServer
from .test_viewer import ARTIFACTS, CHROMIUM, FIRST_IMAGE_TIMEOUT_MS, wait_for_image

pytestmark = pytest.mark.e2e

PASSWORD = "a long passphrase for the portal test"
CLINICIANS = {"welby": "WELBY^MARCUS", "kildare": "KILDARE^JAMES"}
SAMPLES = {"welby": ("CT_small.dcm", "E2E-PORTAL-CT"), "kildare": ("MR_small.dcm", "E2E-PORTAL-MR")}


@pytest.fixture(scope="module")
def server(module_server_factory: ServerFactory) -> TeleradServer:
    # The browser test logs in without a second factor; tests/accounts covers it.
    server = module_server_factory.start(http_tls=True, two_factor_required=False)
    for username, name in CLINICIANS.items():
        server.add_user(username, "clinician", password=PASSWORD)
        server.run("clinician", "names", username, name)
    return server


@pytest.fixture(scope="module")
def studies(server: TeleradServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, pydicom.Dataset]:
    """Import a CT referred by welby and an MR referred by kildare, and make their exams; return the datasets by clinician."""
    folder = tmp_path_factory.mktemp("portal-samples")
    datasets = {}
    for username, (name, accession) in SAMPLES.items():
        dataset = pydicom.dcmread(pydicom_test_files() / name)
        dataset.ReferringPhysicianName = CLINICIANS[username]
        dataset.AccessionNumber = accession
        path = folder / name
        dataset.save_as(path, enforce_file_format=True)
        datasets[username] = dataset
    server.run("import", "--quiet", str(folder))
    server.run("exams", "sync")
    return datasets


def dicomweb_client(server: TeleradServer, username: str) -> DICOMwebClient:
    token = server.run("token", "create", username).stdout.strip().splitlines()[-1]
    session = requests.Session()
    # requests lets REQUESTS_CA_BUNDLE from the environment override
    # Session.verify, so the environment is not read.
    session.trust_env = False
    session.verify = str(server.data_dir / "tls" / "telerad.crt")
    session.headers["Authorization"] = f"Bearer {token}"
    return DICOMwebClient(url=f"https://127.0.0.1:{server.http_port}/dicom-web", session=session)


def study_uids(results: list[dict]) -> set[str]:
    return {result["0020000D"]["Value"][0] for result in results}


def test_dicomweb_client_finds_only_referred_study(server, studies):
    client = dicomweb_client(server, "welby")

    everything = client.search_for_studies()
    by_other_patient = client.search_for_studies(search_filters={"PatientID": studies["kildare"].PatientID})

    assert study_uids(everything) == {studies["welby"].StudyInstanceUID}
    assert by_other_patient == []


def test_dicomweb_client_retrieves_referred_study(server, studies):
    client = dicomweb_client(server, "welby")
    own = studies["welby"]

    (instance,) = client.retrieve_study(own.StudyInstanceUID)

    assert instance.SOPInstanceUID == own.SOPInstanceUID
    assert instance.PixelData == own.PixelData


def test_dicomweb_client_gets_404_for_other_study(server, studies):
    client = dicomweb_client(server, "welby")
    other = studies["kildare"]

    with pytest.raises(requests.HTTPError) as study_error:
        client.retrieve_study(other.StudyInstanceUID)
    with pytest.raises(requests.HTTPError) as metadata_error:
        client.retrieve_series_metadata(other.StudyInstanceUID, other.SeriesInstanceUID)

    assert study_error.value.response.status_code == 404
    assert metadata_error.value.response.status_code == 404


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail(f"Chromium is not installed at {CHROMIUM}; scripts/setup-environment test installs it")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def test_clinician_opens_portal_and_images(server, studies, browser):
    from telerad.viewer import install

    if install.installed_manifest() is None:
        pytest.fail("the OHIF viewer is not installed; scripts/setup-environment installs it")
    context = browser.new_context(ignore_https_errors=True, base_url=f"https://127.0.0.1:{server.http_port}", viewport={"width": 1280, "height": 900})
    dicomweb_errors: list[str] = []
    context.on("response", lambda response: dicomweb_errors.append(f"{response.status} {response.url}") if "/dicom-web/" in response.url and response.status >= 400 else None)
    page = context.new_page()
    try:
        page.goto("/login/")
        page.fill("input[name=username]", "welby")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/portal/")
        assert page.get_by_text("E2E-PORTAL-CT").is_visible()
        assert page.get_by_text("E2E-PORTAL-MR").count() == 0

        page.locator("table.portal-exams a").first.click()
        page.wait_for_url("**/portal/exams/*/")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "portal-exam.png"), full_page=True)
        with context.expect_page(timeout=FIRST_IMAGE_TIMEOUT_MS) as opened:
            page.get_by_role("button", name="View images").click()
        viewer = opened.value
        wait_for_image(viewer)
        viewer.screenshot(path=str(ARTIFACTS / "portal-viewer.png"))
    finally:
        context.close()

    assert dicomweb_errors == []
    retrievals = [event for event in server.index().events("retrieve") if event["user"] == "welby"]
    assert {event["study_instance_uid"] for event in retrievals} == {studies["welby"].StudyInstanceUID}
