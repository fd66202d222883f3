"""Benchmark the OHIF viewer served by telerad on a 500-slice 512x512 CT, in headless Chromium.

A fresh ``telerad serve`` (HTTPS, its own data folder, SQLite unless
--database names a PostgreSQL server) imports the study built by
common.build_ct_study. ``telerad import`` builds the study's metadata
documents, as the servers do for a study received over DICOM. Chromium
logs in and opens the viewer on the study, and the benchmark records:
- first image: from the navigation to the viewer address until the
  viewport's canvas contains image content (many grey levels), polled every
  20 ms;
- whole series: until all 500 frames have arrived (finished /frames/
  responses), or until the viewer has them in its cache when a warm run
  answers them without the network;
- the viewer's own timers (studyToFirstImage and others it prints).
Each figure is taken cold (a new browser context, empty cache), warm (the
viewer opened again in the same tab) and with the browser restarted (the
third visit in one browser profile on disk, each in a new browser process,
as a radiologist's browser on a later day), over --runs runs. The table
shows medians. Chromium trusts the server's self-signed certificate by its
public key, and so caches as it would for a real certificate.

Orthanc is not measured here: OHIF on Orthanc needs a same-origin proxy in
front of Orthanc's namespace. An earlier measurement of OHIF on Orthanc
1.10.1 on this kind of machine, for the same study, gave a first image in
3.64 s cold and 2.44 s warm and all frames in 12.3 s cold and 11.3 s warm;
the table repeats those figures for comparison.

Usage: .venv/bin/python bench/viewer.py [--runs 3] [--database postgresql://postgres@127.0.0.1:5432/telerad_bench]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

INSTANCES = 500
SEED = 4
USERNAME = "bench-reader"
PASSWORD = "a long passphrase for the viewer benchmark"
TIMEOUT_S = 120.0
POLL_MS = 20
# Visits in a persistent browser profile, each in a new browser process; the last one is measured.
RESTARTS = 3
TEMPERATURES = ("cold", "warm", "restarted")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# OHIF on Orthanc 1.10.1 behind a same-origin proxy, measured earlier on this kind of machine, seconds.
ORTHANC_FIGURES = {("first image", "cold"): 3.64, ("first image", "warm"): 2.44, ("whole series", "cold"): 12.3, ("whole series", "warm"): 11.3}
TARGETS = {"first image": 1.5, "whole series": 10.0}
VIEWER_TIMERS = ("studyToFirstImage", "displaySetsToAllImages", "scriptToView")


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database", help="a PostgreSQL URL; the run uses a fresh database named after it")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "telerad-bench-ct500", help="where the CT study is built or found")
    return parser.parse_args(argv)


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def running_server(study: common.StudyFiles, database_url: str | None) -> Iterator[common.TeleradListener]:
    folder = common.new_work_folder("telerad-bench-viewer-")
    server = common.TeleradListener(data_dir=folder / "data", database_url=database_url, subcommand="serve", http_tls=True)
    try:
        server.migrate()
        progress(f"importing {study.count} instances")
        server.run_command("import", *map(str, study.paths))
        problems = common.check_telerad_index(server, study)
        if problems:
            raise common.BenchmarkError("the import did not store the study as built: " + "; ".join(problems))
        server.run_command(
            "shell", "--no-imports", "-c",
            "from django.contrib.auth.models import User\nfrom telerad.accounts import roles\n"
            f"roles.set_roles(User.objects.create_user({USERNAME!r}, password={PASSWORD!r}), {{roles.Role.RADIOLOGIST}})",
        )
        server.start()
        server.wait_until_ready()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


# Counts the grey levels of the viewport canvas, drawn small into a 2D canvas
# in the page. Encoding the whole canvas as PNG for Python, as this benchmark
# did first, cost the page tens of milliseconds at every poll.
GREY_LEVELS_SCRIPT = """(() => {
    const source = document.querySelector('canvas.cornerstone-canvas');
    if (!source || !source.width || !source.height) { return 0; }
    const small = document.createElement('canvas');
    small.width = 128; small.height = 128;
    const context = small.getContext('2d', {willReadFrequently: true});
    context.drawImage(source, 0, 0, 128, 128);
    const pixels = context.getImageData(0, 0, 128, 128).data;
    const levels = new Set();
    for (let i = 0; i < pixels.length; i += 4) { levels.add((pixels[i] + pixels[i + 1] + pixels[i + 2]) / 3 | 0); }
    return levels.size;
})()"""


def canvas_has_image(page) -> bool:  # type: ignore[no-untyped-def]
    return page.evaluate(GREY_LEVELS_SCRIPT) > 20


def open_viewer(page, url: str, *, frames_expected: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Navigate to `url`; return the seconds until the first image and until every frame arrived."""
    finished: list[float] = []
    timers: dict[str, float] = {}
    start = time.perf_counter()

    def on_finished(request) -> None:  # type: ignore[no-untyped-def]
        if "/frames/" in request.url:
            finished.append(time.perf_counter() - start)

    def on_console(message) -> None:  # type: ignore[no-untyped-def]
        text = message.text
        for name in VIEWER_TIMERS:
            if text.startswith(f"{name}: "):
                timers[name] = float(text.split(": ", 1)[1].split()[0]) / 1000

    page.on("requestfinished", on_finished)
    page.on("console", on_console)
    try:
        page.goto(url)
        first_image = None
        deadline = start + TIMEOUT_S
        while time.perf_counter() < deadline:
            if first_image is None and canvas_has_image(page):
                first_image = time.perf_counter() - start
            if first_image is not None and len(finished) >= frames_expected:
                break
            page.wait_for_timeout(POLL_MS)
        if first_image is None:
            raise common.BenchmarkError(f"no image within {TIMEOUT_S:.0f} s")
        all_frames = finished[frames_expected - 1] if len(finished) >= frames_expected else float("nan")
        return {"first image": first_image, "whole series": all_frames, "frame responses": float(len(finished)), **timers}
    finally:
        page.remove_listener("requestfinished", on_finished)
        page.remove_listener("console", on_console)


def certificate_pin(certificate_path: Path) -> str:
    """Return the base64 SHA-256 of the certificate's public key, as Chromium's --ignore-certificate-errors-spki-list takes it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    certificate = x509.load_pem_x509_certificate(certificate_path.read_bytes())
    public_key = certificate.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(public_key)
    return base64.b64encode(digest.finalize()).decode()


def log_in(page, base: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base}/")
    if "/login/" not in page.url:
        return
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda address: "/login/" not in address)


def record(results: dict[tuple[str, str], list[float]], temperature: str, run: int, figures: dict[str, float]) -> None:
    progress(f"run {run + 1} {temperature}: " + ", ".join(f"{name} {value:.2f}" for name, value in figures.items()))
    for name, value in figures.items():
        results.setdefault((name, temperature), []).append(value)


def measure(server: common.TeleradListener, study: common.StudyFiles, runs: int) -> dict[tuple[str, str], list[float]]:
    from playwright.sync_api import sync_playwright

    results: dict[tuple[str, str], list[float]] = {}
    base = f"https://127.0.0.1:{server.http_port}"
    url = f"{base}/viewer/viewer?StudyInstanceUIDs={study.study_instance_uid}"
    # Chromium trusts the self-signed certificate as it would a real one. With
    # certificate errors merely ignored, the third visit in a restarted browser
    # took 3.4 s, as long as the first: Chromium reused nothing it had cached.
    arguments = ["--no-sandbox", f"--ignore-certificate-errors-spki-list={certificate_pin(server.certificate_path)}"]
    viewport = {"width": 1280, "height": 900}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=arguments)
        try:
            for run in range(runs):
                context = browser.new_context(viewport=viewport)
                page = context.new_page()
                log_in(page, base)
                for temperature in ("cold", "warm"):
                    record(results, temperature, run, open_viewer(page, url, frames_expected=study.count))
                context.close()
        finally:
            browser.close()
        for run in range(runs):
            # A radiologist's browser on a later day: the same profile on
            # disk, a new browser process. In trial runs the third visit was much
            # faster than the second, probably from Chromium's code cache.
            profile = Path(tempfile.mkdtemp(prefix="telerad-bench-profile-"))
            try:
                for visit in range(RESTARTS):
                    context = playwright.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=arguments, viewport=viewport)
                    try:
                        page = context.pages[0] if context.pages else context.new_page()
                        log_in(page, base)
                        figures = open_viewer(page, url, frames_expected=study.count)
                        if visit == RESTARTS - 1:
                            record(results, "restarted", run, figures)
                        # Leave the viewer, so that the browser writes what it caches.
                        page.goto(f"{base}/")
                    finally:
                        context.close()
            finally:
                shutil.rmtree(profile, ignore_errors=True)
    return results


def format_table(results: dict[tuple[str, str], list[float]]) -> list[str]:
    lines = [
        "| what | cold (s) | warm (s) | browser restarted (s) | target | Orthanc cold / warm (earlier) | ratio cold / warm |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    names = ["first image", "whole series", "frame responses", *VIEWER_TIMERS]
    for name in names:
        medians = {temperature: statistics.median(results[(name, temperature)]) if results.get((name, temperature)) else float("nan") for temperature in TEMPERATURES}
        if all(math.isnan(value) for value in medians.values()):
            continue
        orthanc = (ORTHANC_FIGURES.get((name, "cold")), ORTHANC_FIGURES.get((name, "warm")))
        target = f"< {TARGETS[name]:.1f}" if name in TARGETS else ""
        if orthanc[0] is not None and orthanc[1] is not None:
            peer = f"{orthanc[0]:.2f} / {orthanc[1]:.2f}"
            ratio = f"{medians['cold'] / orthanc[0]:.2f} / {medians['warm'] / orthanc[1]:.2f}"
        else:
            peer = ratio = ""
        value_format = "{:.0f}" if name == "frame responses" else "{:.2f}"
        values = " | ".join(value_format.format(medians[temperature]) for temperature in TEMPERATURES)
        lines.append(f"| {name} | {values} | {target} | {peer} | {ratio} |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if not Path(CHROMIUM).exists():
        print(f"Chromium is missing at {CHROMIUM}; install Debian's chromium", file=sys.stderr)
        return 2
    progress(f"building or reusing the {INSTANCES}-slice CT in {arguments.data}")
    study = common.build_ct_study(arguments.data, instances=INSTANCES, seed=SEED)
    postgres = common.PostgresServer(arguments.database) if arguments.database else None
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(postgres.fresh_database()) if postgres else None
        server = stack.enter_context(running_server(study, database_url))
        results = measure(server, study, arguments.runs)
    print(f"OHIF viewer on a {study.count}-slice 512x512 CT ({study.total_bytes / 1e6:.0f} MB), {'PostgreSQL' if postgres else 'SQLite'}, "
          f"medians of {arguments.runs} runs, headless Chromium on the same machine")
    print(f"load average at the end: {Path('/proc/loadavg').read_text().split()[:3]}")
    print("\n".join(format_table(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
