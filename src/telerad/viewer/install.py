"""Install the OHIF viewer from its npm package into the folder telerad serves it from.

OHIF's published build expects to sit at the root of a site. telerad serves
it under /viewer/, so the installer rewrites the few places where the build
fixes its location: the public URL and root-relative addresses in
index.html, webpack's public path in each bundle, and font addresses in the
main stylesheet. Each rewrite must find the text it expects. When an OHIF
release changes that text, the install fails with a message, because a
viewer with a stale address loads a blank page.

Run as ``python -m telerad.viewer.install TARBALL [DESTINATION]``.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import re
import sys
import tarfile
import tempfile
from pathlib import Path

# The one OHIF release telerad is tested with, and the npm registry's
# integrity value of its tarball.
OHIF_VERSION = "3.13.2"
OHIF_INTEGRITY = "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="

# Changes whenever this installer writes something different, so that the
# set-up installs again.
INSTALL_ID = f"{OHIF_VERSION}-3"

PREFIX = "/viewer/"
DEFAULT_DESTINATION = Path(__file__).resolve().parent / "ohif"
# Written last, so that a folder without it is an unfinished install.
MANIFEST_NAME = "telerad-viewer.json"
# The build's own copies that telerad replaces or does not serve: the
# configuration is generated per request, and the service worker loader
# fetches a script from a CDN, which the content security policy forbids.
REPLACED_FILES = ("app-config.js", "init-service-worker.js", "sw.js", "_headers", "_redirects")
COMPRESSED_SUFFIXES = (".js", ".css", ".wasm", ".json", ".html", ".map", ".svg", ".txt")
# Smaller files gain too little from compression to be worth a second copy.
COMPRESS_MIN_BYTES = 1024

PUBLIC_PATH = '__webpack_require__.p = "/";'
# Webpack's runtime for loading chunks inside a web worker: the bundles that
# have it are worker entry points.
WORKER_RUNTIME = "webpack/runtime/import_scripts_chunk_loading"


class InstallError(Exception):
    pass


def verify_integrity(tarball: Path, expected: str = OHIF_INTEGRITY) -> None:
    algorithm, _dash, encoded = expected.partition("-")
    digest = hashlib.new(algorithm)
    with tarball.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    if base64.b64encode(digest.digest()).decode("ascii") != encoded:
        raise InstallError(f"{tarball} is not @ohif/app {OHIF_VERSION}: its {algorithm} digest differs from the pinned one")


def _extract_dist(tarball: Path, into: Path) -> Path:
    with tarfile.open(tarball, "r:gz") as archive:
        members = [member for member in archive.getmembers() if member.name.startswith("package/dist/")]
        if not members:
            raise InstallError(f"{tarball} contains no package/dist folder; download it with npm pack @ohif/app@{OHIF_VERSION}")
        archive.extractall(into, members=members, filter="data")
    return into / "package" / "dist"


def _rewrite_index(dist: Path) -> list[str]:
    """Point index.html at /viewer/; return the SHA-256 sources of its inline scripts for the CSP."""
    path = dist / "index.html"
    html = path.read_text(encoding="utf-8")
    html, count = re.subn(r'window\.PUBLIC_URL="/"', f'window.PUBLIC_URL="{PREFIX}"', html)
    if count == 0:
        raise InstallError("index.html no longer sets window.PUBLIC_URL; the viewer layout of this OHIF release is unknown")
    html, count = re.subn(r'<script[^>]*src="/init-service-worker\.js"[^>]*></script>', "", html)
    if count != 1:
        raise InstallError("index.html no longer loads init-service-worker.js as expected")
    html = re.sub(r'(href|src)="/(?!/)', lambda match: f'{match.group(1)}="{PREFIX}', html)
    html = re.sub(r"<title>[^<]*</title>", "<title>telerad viewer</title>", html)
    # Browsers fetch a web app manifest without cookies unless the link sets
    # crossorigin, and telerad redirects a request without a session to the login page.
    html = html.replace('<link rel="manifest" ', '<link rel="manifest" crossorigin="use-credentials" ')
    path.write_text(html, encoding="utf-8")
    hashes = []
    for script in re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", html, flags=re.DOTALL):
        digest = hashlib.sha256(script.encode("utf-8")).digest()
        hashes.append("sha256-" + base64.b64encode(digest).decode("ascii"))
    return hashes


def _rewrite_public_paths(dist: Path) -> int:
    rewritten = 0
    for path in dist.rglob("*.js"):
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        if PUBLIC_PATH in text:
            path.write_text(text.replace(PUBLIC_PATH, f'__webpack_require__.p = "{PREFIX}";'), encoding="utf-8", errors="surrogateescape")
            rewritten += 1
    if rewritten == 0:
        raise InstallError("no bundle sets webpack's public path as expected; the layout of this OHIF release is unknown")
    return rewritten


def _worker_scripts(dist: Path) -> list[str]:
    """Name the bundles that start web workers; a worker runs under the policy sent with its own script."""
    return sorted(path.name for path in dist.glob("*.js") if WORKER_RUNTIME in path.read_text(encoding="utf-8", errors="replace"))


def _rewrite_stylesheet(dist: Path) -> None:
    path = dist / "app.bundle.css"
    if not path.is_file():
        raise InstallError("the OHIF build has no app.bundle.css")
    css = path.read_text(encoding="utf-8")
    path.write_text(re.sub(r"url\(/(?!/)", f"url({PREFIX}", css), encoding="utf-8")


def _compress(dist: Path) -> int:
    """Write a .gz copy beside each large text or wasm file, served to browsers that accept gzip."""
    written = 0
    for path in dist.rglob("*"):
        if path.is_file() and path.suffix in COMPRESSED_SUFFIXES and path.stat().st_size >= COMPRESS_MIN_BYTES:
            data = path.read_bytes()
            packed = gzip.compress(data, compresslevel=6, mtime=0)
            if len(packed) < len(data) * 0.9:
                path.with_name(path.name + ".gz").write_bytes(packed)
                written += 1
    return written


def install(tarball: Path, destination: Path = DEFAULT_DESTINATION, *, check_integrity: bool = True) -> dict[str, object]:
    """Install OHIF from `tarball` into `destination`, replacing an earlier install only once the new one is complete."""
    if check_integrity:
        verify_integrity(tarball)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=".viewer-install-") as work:
        dist = _extract_dist(tarball, Path(work))
        for name in REPLACED_FILES:
            (dist / name).unlink(missing_ok=True)
        script_hashes = _rewrite_index(dist)
        bundles = _rewrite_public_paths(dist)
        _rewrite_stylesheet(dist)
        compressed = _compress(dist)
        manifest = {
            "install_id": INSTALL_ID,
            "ohif_version": OHIF_VERSION,
            "inline_script_hashes": script_hashes,
            "worker_scripts": _worker_scripts(dist),
            "bundles_rewritten": bundles,
            "compressed_files": compressed,
        }
        (dist / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        previous = Path(work) / "previous"
        if destination.exists():
            destination.rename(previous)
        dist.rename(destination)
    return manifest


def installed_manifest(destination: Path = DEFAULT_DESTINATION) -> dict[str, object] | None:
    try:
        return json.loads((destination / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Install the OHIF viewer from its npm tarball for telerad to serve.")
    parser.add_argument("tarball", type=Path, help=f"the @ohif/app {OHIF_VERSION} tarball, as `npm pack @ohif/app@{OHIF_VERSION}` downloads it")
    parser.add_argument("destination", type=Path, nargs="?", default=DEFAULT_DESTINATION)
    arguments = parser.parse_args(argv)
    try:
        manifest = install(arguments.tarball, arguments.destination)
    except (InstallError, OSError, tarfile.TarError) as exc:
        print(f"viewer install failed: {exc}", file=sys.stderr)
        return 1
    print(f"Installed OHIF {manifest['ohif_version']} in {arguments.destination} ({manifest['bundles_rewritten']} bundles rewritten, {manifest['compressed_files']} files compressed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
