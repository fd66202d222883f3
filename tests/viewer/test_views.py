"""Serving OHIF under /viewer/: login, files with their types and caching, the page for the viewer's routes, IID."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from telerad.archive.ingest import Source, store_file
from telerad.archive.models import Study
from telerad.viewer import install, views

pytestmark = pytest.mark.django_db

INSTALLED = install.installed_manifest() is not None
needs_viewer = pytest.mark.skipif(not INSTALLED, reason="the OHIF viewer is not installed; scripts/setup-environment installs it")


@pytest.fixture
def browser(make_user):
    client = Client()
    client.force_login(make_user("reader", "radiologist"))
    return client


def hashed_bundle() -> str:
    return next(path.name for path in install.DEFAULT_DESTINATION.glob("app.bundle.*.js") if not path.name.endswith(".gz"))


def test_viewer_without_session_redirects_to_login():
    response = Client().get("/viewer/viewer", {"StudyInstanceUIDs": "1.2.3"})

    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/viewer/viewer")


def test_viewer_config_without_a_session_gives_no_configuration():
    response = Client().get("/viewer/app-config.js")

    assert response.status_code == 302


@needs_viewer
def test_viewer_route_answers_the_rewritten_index_page(browser):
    response = browser.get("/viewer/viewer", {"StudyInstanceUIDs": "1.2.3"})
    html = b"".join(response.streaming_content).decode()

    assert response.status_code == 200
    assert 'window.PUBLIC_URL="/viewer/"' in html
    assert 'src="/viewer/app-config.js"' in html
    assert "init-service-worker" not in html
    assert '<link rel="manifest" crossorigin="use-credentials" href="/viewer/manifest.json">' in html
    assert response["Cache-Control"] == views.REVALIDATE


@needs_viewer
def test_viewer_page_carries_isolation_and_a_strict_policy(browser):
    response = browser.get("/viewer/")
    policy = response["Content-Security-Policy"]

    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["Cross-Origin-Embedder-Policy"] == "require-corp"
    assert "default-src 'self'" in policy
    assert "'unsafe-eval'" not in policy
    for digest in install.installed_manifest()["inline_script_hashes"]:
        assert f"'{digest}'" in policy


def directives(policy: str) -> dict[str, str]:
    """Split a content security policy into its directives, name to sources."""
    parsed = {}
    for directive in policy.split(";"):
        name, _, sources = directive.strip().partition(" ")
        parsed[name] = sources
    return parsed


def test_viewer_policy_allows_pdf_viewport_only():
    policy = directives(views.content_security_policy(["sha256-abc"]))

    assert policy["object-src"] == "'self' blob:"
    assert policy["frame-src"] == "blob:"
    assert policy["frame-ancestors"] == "'self'"
    assert policy["default-src"] == "'self'"


@needs_viewer
def test_viewer_page_policy_lets_pdf_load(browser):
    response = browser.get("/viewer/viewer", {"StudyInstanceUIDs": "1.2.3"})
    policy = directives(response["Content-Security-Policy"])

    assert policy["object-src"] == "'self' blob:"
    assert policy["frame-src"] == "blob:"


@needs_viewer
def test_viewer_lets_only_worker_scripts_evaluate_strings(browser):
    worker = install.installed_manifest()["worker_scripts"][0]

    page_policy = browser.get("/viewer/")["Content-Security-Policy"]
    worker_policy = browser.get(f"/viewer/{worker}")["Content-Security-Policy"]

    assert "'unsafe-eval'" not in page_policy
    assert "'unsafe-eval'" in worker_policy


@needs_viewer
def test_viewer_serves_hashed_bundles_compressed_and_immutable(browser):
    name = hashed_bundle()

    response = browser.get(f"/viewer/{name}", headers={"Accept-Encoding": "gzip, br"})
    body = gzip.decompress(b"".join(response.streaming_content))

    assert response["Content-Type"] == "text/javascript"
    assert response["Content-Encoding"] == "gzip"
    assert response["Cache-Control"] == views.IMMUTABLE
    assert body == (install.DEFAULT_DESTINATION / name).read_bytes()


@needs_viewer
def test_viewer_bundles_stay_cached_across_sessions(browser):
    response = browser.get(f"/viewer/{hashed_bundle()}", headers={"Accept-Encoding": "gzip"})

    # Each response sets a new last-activity cookie: a bundle that varied
    # on Cookie would be fetched again on every visit.
    assert "telerad_last_activity" in response.cookies
    assert response["Vary"] == "Accept-Encoding"
    assert response["Cache-Control"] == views.IMMUTABLE


@needs_viewer
@pytest.mark.parametrize(("address", "name"), [("/viewer/app.bundle.css", "app.bundle.css"), ("/viewer/viewer?StudyInstanceUIDs=1.2.3", "index.html")])
def test_viewer_revalidates_unchanged_files_with_304(browser, address, name):
    first = browser.get(address, headers={"Accept-Encoding": "gzip"})
    again = browser.get(address, headers={"Accept-Encoding": "gzip", "If-None-Match": first["ETag"]})
    other = browser.get(address, headers={"If-None-Match": 'W/"0123456789abcdef"'})

    assert first.status_code == 200
    assert first["Cache-Control"] == views.REVALIDATE
    assert first["Vary"] == "Accept-Encoding"
    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == first["ETag"]
    assert again["Content-Security-Policy"] == first["Content-Security-Policy"]
    assert other.status_code == 200
    assert b"".join(other.streaming_content) == (install.DEFAULT_DESTINATION / name).read_bytes()


@needs_viewer
def test_viewer_tags_files_by_content_not_date(browser, monkeypatch, tmp_path):
    # The OHIF package dates most files 1985-10-26, so an upgraded file keeps its date.
    for name in ("1602.css", install.MANIFEST_NAME):
        (tmp_path / name).write_bytes((install.DEFAULT_DESTINATION / name).read_bytes())
    monkeypatch.setattr(views, "viewer_directory", lambda: tmp_path)
    style_sheet = tmp_path / "1602.css"
    before = browser.get("/viewer/1602.css")
    date = style_sheet.stat().st_mtime
    style_sheet.write_bytes(style_sheet.read_bytes() + b"\n/* upgraded */\n")
    os.utime(style_sheet, (date, date))

    after = browser.get("/viewer/1602.css", headers={"If-None-Match": before["ETag"]})

    assert after.status_code == 200
    assert after["ETag"] != before["ETag"]
    assert b"".join(after.streaming_content).endswith(b"/* upgraded */\n")


@needs_viewer
def test_viewer_sends_large_files_in_few_blocks(browser):
    compressed = install.DEFAULT_DESTINATION / (hashed_bundle() + ".gz")

    response = browser.get(f"/viewer/{hashed_bundle()}", headers={"Accept-Encoding": "gzip"})
    blocks = list(response.streaming_content)

    # Each block is handed to the event loop on its own: 4 KB blocks made
    # the main bundle cost the server over 100 ms of CPU.
    assert len(blocks) == -(-compressed.stat().st_size // views.ViewerFileResponse.block_size)
    assert views.ViewerFileResponse.block_size >= 1024 * 1024
    assert b"".join(blocks) == compressed.read_bytes()


@needs_viewer
def test_viewer_serves_plain_files_to_clients_without_gzip(browser):
    wasm = next(install.DEFAULT_DESTINATION.glob("*.wasm"))

    response = browser.get(f"/viewer/{wasm.name}")

    assert response["Content-Type"] == "application/wasm"
    assert "Content-Encoding" not in response
    assert b"".join(response.streaming_content) == wasm.read_bytes()


@needs_viewer
def test_viewer_bundles_load_from_the_viewer_prefix():
    bundles = [path for path in install.DEFAULT_DESTINATION.rglob("*.js") if install.PUBLIC_PATH in path.read_text(errors="replace")]

    assert bundles == []
    assert "url(/viewer/" in (install.DEFAULT_DESTINATION / "app.bundle.css").read_text()


@needs_viewer
@pytest.mark.parametrize("path", ["/viewer/missing.bundle.0123456789abcdef.js", "/viewer/telerad-viewer.json", "/viewer/../settings.py", "/viewer/index.html.gz"])
def test_viewer_refuses_missing_and_private_files(browser, path):
    assert browser.get(path).status_code == 404


@needs_viewer
def test_app_config_points_at_this_origin_dicomweb(browser):
    response = browser.get("/viewer/app-config.js", HTTP_HOST="pacs.example.org", secure=True)
    script = response.content.decode()

    assert response["Content-Type"].startswith("text/javascript")
    assert '"qidoRoot": "https://pacs.example.org/dicom-web"' in script
    assert '"wadoRoot": "https://pacs.example.org/viewer/dicom-web"' in script
    assert '"routerBasename": "/viewer"' in script
    assert "httpErrorHandler" in script


@needs_viewer
def test_viewer_dicomweb_unknown_address_is_404(browser):
    response = browser.get("/viewer/dicom-web/studies/not-a-uid/metadata")

    assert response.status_code == 404
    assert b"app-config.js" not in response.content


def test_viewer_without_an_install_says_how_to_install(browser, monkeypatch, tmp_path):
    monkeypatch.setattr(views, "viewer_directory", lambda: tmp_path)

    response = browser.get("/viewer/")

    assert response.status_code == 503
    assert b"scripts/setup-environment" in response.content


@pytest.fixture
def stored_study(sample_file, storage):
    result = store_file(sample_file("CT_small.dcm").read_bytes(), source=Source("import", user="test"), storage=storage)
    return Study.objects.get(study_instance_uid=result.study_instance_uid)


def test_iid_opens_a_study_by_uid(browser):
    response = browser.get("/viewer/iid", {"studyUID": "1.2.3,1.2.4"})

    assert response.status_code == 302
    assert response["Location"] == "/viewer/viewer?StudyInstanceUIDs=1.2.3%2C1.2.4"


def test_iid_opens_a_study_by_accession_number(browser, stored_study):
    stored_study.accession_number = "ACC-77"
    stored_study.save()

    response = browser.get("/viewer/iid", {"accessionNumber": "ACC-77"})

    assert response["Location"].endswith(stored_study.study_instance_uid)


def test_iid_unknown_accession_number_is_404(browser):
    response = browser.get("/viewer/iid", {"accessionNumber": "NOPE"})

    assert response.status_code == 404
    assert b"No study has accession number NOPE" in response.content


def test_iid_shared_accession_needs_patient(browser, sample_file, storage):
    source = Source("import", user="test")
    for name in ("CT_small.dcm", "MR_small.dcm"):
        result = store_file(sample_file(name).read_bytes(), source=source, storage=storage)
        Study.objects.filter(study_instance_uid=result.study_instance_uid).update(accession_number="SHARED-1")

    rejected = browser.get("/viewer/iid", {"accessionNumber": "SHARED-1"})
    chosen = browser.get("/viewer/iid", {"accessionNumber": "SHARED-1", "patientID": "1CT1"})

    assert rejected.status_code == 409
    assert b"add patientID" in rejected.content
    assert chosen.status_code == 302


def test_iid_without_a_study_is_400(browser):
    response = browser.get("/viewer/iid")

    assert response.status_code == 400
    assert b"studyUID or accessionNumber" in response.content


def test_study_page_links_to_the_viewer(browser, stored_study):
    response = browser.get(f"/studies/{stored_study.pk}/")

    assert f"/viewer/viewer?StudyInstanceUIDs={stored_study.study_instance_uid}".encode() in response.content


def make_tarball(tmp_path: Path, files: dict[str, bytes]) -> Path:
    path = tmp_path / "app.tgz"
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/dist/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_install_refuses_another_release(tmp_path):
    tarball = make_tarball(tmp_path, {"index.html": b"<html></html>"})

    with pytest.raises(install.InstallError, match="digest differs"):
        install.install(tarball, tmp_path / "viewer")


def test_install_unknown_layout_keeps_previous_install(tmp_path):
    destination = tmp_path / "viewer"
    destination.mkdir()
    (destination / "index.html").write_text("previous install")
    tarball = make_tarball(tmp_path, {"index.html": b"<html><head><title>x</title></head></html>", "app.bundle.css": b""})

    with pytest.raises(install.InstallError, match="PUBLIC_URL"):
        install.install(tarball, destination, check_integrity=False)

    assert (destination / "index.html").read_text() == "previous install"
