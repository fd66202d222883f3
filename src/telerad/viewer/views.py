"""Serve the OHIF viewer under /viewer/ on telerad's own origin, with a configuration made for each request.

The viewer rides on the user's session: its DICOMweb requests go to
/dicom-web on the same origin with the session cookie, so it needs no token
and no CORS. Every page and file here requires a logged-in user, like the
rest of telerad; a browser without a session gets the login page.
"""

from __future__ import annotations

import functools
import hashlib
import json
import mimetypes
import re
from pathlib import Path
from typing import Any

from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseNotModified, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe

from telerad.accounts.roles import Permission, requires
from telerad.archive.models import Study
from telerad.clinicians.access import restrict_to_visible_studies, sees_all_studies
from telerad.core.caching import not_modified, same_for_everyone
from telerad.viewer import install

# Hashed bundle names (for example 1602.bundle.94f12cceab7c2762.js or
# 0ddf166f7a343eda.wasm) never change content; browsers may keep them a year.
HASHED_NAME = re.compile(r"(^|\.)[0-9a-f]{16}\.")
IMMUTABLE = "private, max-age=31536000, immutable"
# index.html and the configuration must be checked on every load, so that an
# upgrade or a configuration change reaches the browser at once.
REVALIDATE = "no-cache"
MIME_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".woff2": "font/woff2",
    ".svg": "image/svg+xml",
    ".onnx": "application/octet-stream",
}
DICOMWEB_ROOT = "/dicom-web"
# The same resources, with metadata that leaves out private attributes (see telerad.urls).
VIEWER_DICOMWEB_ROOT = "/viewer/dicom-web"
# The Accept header of the viewer's frame requests: one frame as the whole body first, multipart after.
SINGLE_FRAME_ACCEPT = "application/octet-stream; transfer-syntax=*, multipart/related; type=application/octet-stream; transfer-syntax=*; q=0.9"
# Studies one Invoke Image Display request opens at most.
MAX_IID_STUDIES = 20


def viewer_directory() -> Path:
    return install.DEFAULT_DESTINATION


@functools.lru_cache(maxsize=4)
def _manifest(directory: Path) -> dict[str, Any] | None:
    return install.installed_manifest(directory)


def content_security_policy(script_hashes: list[str], *, worker: bool = False) -> str:
    """Allow what OHIF needs and nothing more: its own files, its inline start-up scripts by hash, wasm codecs and blob workers.

    A web worker runs under the policy of its own script. The image decoding
    worker compiles JavaScript from strings (the wasm codecs' glue code does),
    so worker scripts, and only they, may evaluate strings.

    OHIF's PDF viewport (Encapsulated PDF, such as telerad's own reports)
    fetches the document, makes a blob: URL of it and shows it in an
    ``<object type="application/pdf">``, which it first renders without
    data. Chromium 156 checks that first, data-less load against object-src
    as the page's own URL, and blocks the later blob: load too when it was
    refused. It then shows the PDF in a child frame of the blob: URL, which
    frame-src governs. The only other frames in OHIF's bundle belong to its
    OpenID Connect login, which telerad does not configure.
    """
    hashes = " ".join(f"'{value}'" for value in script_hashes)
    evaluation = "'unsafe-eval' 'wasm-unsafe-eval'" if worker else "'wasm-unsafe-eval'"
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' {hashes} {evaluation}",
            # React and cornerstone set inline styles.
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "worker-src 'self' blob:",
            "object-src 'self' blob:",
            "frame-src blob:",
            "base-uri 'self'",
            "frame-ancestors 'self'",
            "form-action 'self'",
        ]
    )


def _with_viewer_headers(response: HttpResponse, manifest: dict[str, Any], *, worker: bool = False) -> HttpResponse:
    response["Content-Security-Policy"] = content_security_policy(list(manifest.get("inline_script_hashes", [])), worker=worker)
    # Cross-origin isolation gives the viewer SharedArrayBuffer, which its
    # multi-threaded decoders use; everything it loads is same-origin.
    response["Cross-Origin-Opener-Policy"] = "same-origin"
    response["Cross-Origin-Embedder-Policy"] = "require-corp"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    response["X-Content-Type-Options"] = "nosniff"
    # The exam page embeds the viewer; other sites may not (frame-ancestors
    # 'self' above, and this header for browsers without CSP level 2).
    response["X-Frame-Options"] = "SAMEORIGIN"
    return response


class ViewerFileResponse(FileResponse):
    """A file sent in blocks of 1 MB.

    Served as WSGI under uvicorn, each block is handed from the request
    thread to the event loop on its own. With Django's default of 4 KB, the
    3.4 MB main bundle went out in over 800 blocks and cost the server
    121 ms of CPU. In 1 MB blocks it cost 9 ms.
    """

    block_size = 1024 * 1024


def _not_installed(request: HttpRequest) -> HttpResponse:
    return render(request, "viewer/not_installed.html", {"version": install.OHIF_VERSION}, status=503)


def _file_response(request: HttpRequest, path: Path, manifest: dict[str, Any]) -> HttpResponse:
    hashed = HASHED_NAME.search(path.name) is not None
    worker = path.name in manifest.get("worker_scripts", ())
    tag = None if hashed else _content_tag(path)
    if tag is not None and not_modified(request, tag):
        unchanged = HttpResponseNotModified()
        unchanged["ETag"] = tag
        return _with_caching(unchanged, hashed=False, worker=worker, manifest=manifest)
    content_type = MIME_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    compressed = path.with_name(path.name + ".gz")
    accepts_gzip = "gzip" in request.headers.get("Accept-Encoding", "")
    if accepts_gzip and compressed.is_file():
        response = ViewerFileResponse(compressed.open("rb"), content_type=content_type, filename=path.name)
        response["Content-Encoding"] = "gzip"
    else:
        response = ViewerFileResponse(path.open("rb"), content_type=content_type, filename=path.name)
    if tag is not None:
        response["ETag"] = tag
    return _with_caching(response, hashed=hashed, worker=worker, manifest=manifest)


def _with_caching(response: HttpResponse, *, hashed: bool, worker: bool, manifest: dict[str, Any]) -> HttpResponse:
    """Let browsers keep a viewer file: a year for a hashed name, else until its entity tag changes.

    No viewer file contains patient data, so none varies with the session.
    A request for the viewer's page is still checked for a session and for
    access to the study before any 304.
    """
    response["Vary"] = "Accept-Encoding"
    response["Cache-Control"] = IMMUTABLE if hashed else REVALIDATE
    same_for_everyone(response)
    return _with_viewer_headers(response, manifest, worker=worker)


def _content_tag(path: Path) -> str:
    # The OHIF package gives most files one fixed date (1985-10-26), so the
    # date cannot tell an upgraded file from the one a browser keeps.
    status = path.stat()
    return _digest_tag(str(path), status.st_ino, status.st_mtime_ns, status.st_size)


@functools.lru_cache(maxsize=256)
def _digest_tag(path: str, inode: int, modified_ns: int, size: int) -> str:
    """Return a weak entity tag of the file's content; the other arguments key the cache."""
    return 'W/"' + hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest() + '"'


def _resolve(directory: Path, relative: str) -> Path | None:
    """Find the file `relative` names inside `directory`; None for a missing file or a path outside it."""
    if not relative or relative.endswith("/"):
        return None
    candidate = (directory / relative).resolve()
    if directory.resolve() not in candidate.parents or not candidate.is_file():
        return None
    if candidate.name == install.MANIFEST_NAME or candidate.suffix == ".gz":
        return None
    return candidate


@require_safe
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def serve(request: HttpRequest, relative: str = "") -> HttpResponse:
    """Send a file of the viewer, or index.html for the viewer's own routes (/viewer/viewer?StudyInstanceUIDs=...)."""
    directory = viewer_directory()
    manifest = _manifest(directory)
    if manifest is None:
        return _not_installed(request)
    path = _resolve(directory, relative)
    if path is not None:
        return _file_response(request, path, manifest)
    if Path(relative).suffix:
        # A missing bundle or image is a 404, not the page, so that errors show as such.
        raise Http404(_("The viewer has no file %(name)s.") % {"name": relative})
    if relative.startswith(VIEWER_DICOMWEB_ROOT.removeprefix("/viewer/") + "/"):
        # A DICOMweb address that matched no resource, such as a malformed UID, is not a viewer route.
        raise Http404(_("No DICOMweb resource has the address %(path)s.") % {"path": request.path})
    if not _opens_visible_study(request):
        raise Http404(_("None of the studies named in StudyInstanceUIDs was found."))
    return _file_response(request, directory / "index.html", manifest)


def _opens_visible_study(request: HttpRequest) -> bool:
    """Return whether a viewer route's StudyInstanceUIDs, when given, name a study the user may see.

    The page itself contains no patient data, and the DICOMweb requests it makes
    are checked anyway. But a clinician who opens another's study gets 404
    here at once, as for an unknown one, rather than an empty viewer.
    """
    named = [uid.strip() for uid in request.GET.get("StudyInstanceUIDs", "").split(",") if uid.strip()]
    if not named or sees_all_studies(request.user):
        return True
    studies = Study.objects.filter(study_instance_uid__in=named[:MAX_IID_STUDIES])
    return restrict_to_visible_studies(studies, request.user).exists()


def app_configuration(request: HttpRequest) -> dict[str, Any]:
    """OHIF's configuration: one DICOMweb data source at this origin, routes under /viewer."""
    root = request.build_absolute_uri(DICOMWEB_ROOT)
    retrieve_root = request.build_absolute_uri(VIEWER_DICOMWEB_ROOT)
    return {
        "routerBasename": "/viewer",
        "showStudyList": True,
        "extensions": [],
        "modes": [],
        # No onboarding tour over the first images of every new browser.
        "customizationService": {"global": {"ohif.tours": {"$set": []}}},
        "maxNumberOfWebWorkers": 3,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": True,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "investigationalUseDialog": {"option": "never"},
        "maxNumRequests": {"interaction": 100, "thumbnail": 10, "prefetch": 25},
        "defaultDataSourceName": "telerad",
        "dataSources": [
            {
                "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
                "sourceName": "telerad",
                "configuration": {
                    "friendlyName": "telerad",
                    "name": "telerad",
                    "wadoUriRoot": retrieve_root,
                    "qidoRoot": root,
                    "wadoRoot": retrieve_root,
                    "qidoSupportsIncludeField": True,
                    "imageRendering": "wadors",
                    # Series pictures in the study browser come rendered from
                    # /thumbnail (a few kB, cached on disk), instead of a frame
                    # per series that the browser fetches and draws itself
                    # while it loads the first image.
                    "thumbnailRendering": "thumbnailDirect",
                    "enableStudyLazyLoad": True,
                    "supportsFuzzyMatching": True,
                    "supportsWildcard": True,
                    "staticWado": False,
                    "singlepart": "bulkdata,video",
                    "bulkDataURI": {"enabled": True, "relativeResolution": "studies"},
                    "omitQuotationForMultipartRequest": True,
                    # Uncompressed frames come as the whole body: the image
                    # loader then takes the pixels as they are, where a
                    # multipart body made it scan every frame's bytes for the
                    # closing boundary on the page's main thread.
                    "acceptHeader": [SINGLE_FRAME_ACCEPT],
                },
            }
        ],
    }


# A DICOMweb response of 401 means the session ended: send the browser to the login page.
_ERROR_HANDLER = """
window.config.httpErrorHandler = function (error) {
  if (error && error.status === 401) {
    window.location.assign(%s + "?next=" + encodeURIComponent(window.location.pathname + window.location.search));
  }
};
"""


@require_safe
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def app_config_script(request: HttpRequest) -> HttpResponse:
    manifest = _manifest(viewer_directory())
    if manifest is None:
        return _not_installed(request)
    script = "window.config = " + json.dumps(app_configuration(request), indent=2) + ";\n"
    script += _ERROR_HANDLER % json.dumps(reverse("login"))
    response = HttpResponse(script, content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = REVALIDATE
    return _with_viewer_headers(response, manifest)


def _plain(status: int, message: str) -> HttpResponse:
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")


@require_safe
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def invoke_image_display(request: HttpRequest) -> HttpResponse:
    """Open a study by its UID or accession number, as IHE Invoke Image Display requests do.

    Accepts ``studyUID`` (several separated by commas) or ``accessionNumber``
    (with optional ``patientID``). An accession number is unique only within
    the system that issued it: when it matches studies of several patients,
    the request must add ``patientID``, so that no one reads one patient's
    images as another's. A clinician's request finds only the studies they
    may see, and one that names no such study gets 404.
    """
    study_uids = [uid.strip() for uid in request.GET.get("studyUID", "").split(",") if uid.strip()]
    accession = request.GET.get("accessionNumber", "").strip()
    if study_uids and not sees_all_studies(request.user):
        # A clinician's list keeps the studies they may see, in the order given.
        named = Study.objects.filter(study_instance_uid__in=study_uids[:MAX_IID_STUDIES])
        found = set(restrict_to_visible_studies(named, request.user).values_list("study_instance_uid", flat=True))
        if not found:
            return _plain(404, _("Study %(uid)s not found.") % {"uid": study_uids[0]})
        study_uids = [uid for uid in study_uids if uid in found]
    if not study_uids and accession:
        studies = restrict_to_visible_studies(Study.objects.filter(accession_number=accession), request.user)
        patient_id = request.GET.get("patientID", "").strip()
        if patient_id:
            studies = studies.filter(patient__patient_id=patient_id)
        matches = list(studies.values_list("study_instance_uid", "patient_id")[:MAX_IID_STUDIES])
        if not matches:
            return _plain(404, _("No study has accession number %(accession)s.") % {"accession": accession})
        if len({patient for _uid, patient in matches}) > 1:
            return _plain(409, _("Accession number %(accession)s belongs to studies of several patients; add patientID to choose one.") % {"accession": accession})
        study_uids = [uid for uid, _patient in matches]
    if not study_uids:
        return _plain(400, _("Name a study with studyUID or accessionNumber."))
    return HttpResponseRedirect("/viewer/viewer?" + urlencode({"StudyInstanceUIDs": ",".join(study_uids)}))
