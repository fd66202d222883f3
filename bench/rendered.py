"""Time rendered images and thumbnails: the pixel pipeline step by step, then whole DICOMweb requests.

Runs in-process with Django's test client against a fresh SQLite archive in a
temporary data folder, so the figures leave out HTTP parsing and TLS. The
images are pydicom-data's ``693_UNCI.dcm`` (a 512x512 16-bit CT slice,
uncompressed) and ``RG1_J2KI.dcm`` (a 1955x1841 radiograph in lossy JPEG 2000,
to show what the thumbnail cache saves on an image that is slow to decode).

Usage: .venv/bin/python bench/rendered.py [--repeat 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable


def timing_ms(action: Callable[[], object], repeat: int) -> str:
    """Return the minimum and the median of `repeat` timed calls, in milliseconds.

    On a loaded machine the minimum is closer to the cost of the work itself.
    """
    action()  # The first call warms caches and imports.
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        timings.append((time.perf_counter() - start) * 1000)
    return f"min {min(timings):7.2f}  median {statistics.median(timings):7.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200, help="timed calls per figure (default 200)")
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="telerad-bench-rendered-") as data_dir:
        os.environ["TELERAD_DATA_DIR"] = data_dir
        os.environ["TELERAD_DATABASE_URL"] = f"sqlite:///{data_dir}/bench.sqlite3"
        os.environ["TELERAD_HTTP_TLS"] = "false"
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telerad.settings")
        import django

        django.setup()
        run(arguments.repeat)
    return 0


def run(repeat: int) -> None:
    import data_store
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    from telerad.archive.ingest import Source, store_file
    from telerad.archive.models import Instance
    from telerad.dicomweb import imaging, thumbnails

    call_command("migrate", verbosity=0)
    client = Client()
    client.force_login(User.objects.create_user("bench"))
    samples = Path(data_store.DataStore().data_path)

    ct_path = samples / "693_UNCI.dcm"
    ct = Instance.objects.select_related("series__study").get(sop_instance_uid=store_file(ct_path.read_bytes(), source=Source(kind="import")).sop_instance_uid)
    radiograph_path = samples / "RG1_J2KI.dcm"
    radiograph = Instance.objects.select_related("series__study").get(sop_instance_uid=store_file(radiograph_path.read_bytes(), source=Source(kind="import")).sop_instance_uid)

    def url(row: Instance, suffix: str) -> str:
        return f"/dicom-web/studies/{row.series.study.study_instance_uid}/series/{row.series.series_instance_uid}/instances/{row.sop_instance_uid}/{suffix}"

    dataset = imaging.read_dataset(ct_path)
    display = imaging.render_frame(dataset, 0)
    image = imaging.to_image(display, None)
    print(f"pixel pipeline, 512x512 CT, {repeat} calls (ms):")
    print(f"  read file            {timing_ms(lambda: imaging.read_dataset(ct_path), repeat)}")
    print(f"  decode + LUTs + VOI  {timing_ms(lambda: imaging.render_frame(dataset, 0), repeat)}")
    print(f"  encode JPEG q90      {timing_ms(lambda: imaging.encode(image, 'image/jpeg', quality=90), repeat)}")
    print(f"  all of the above     {timing_ms(lambda: imaging.encode(imaging.to_image(imaging.render_frame(imaging.read_dataset(ct_path), 0), None), 'image/jpeg', quality=90), repeat)}")
    print(f"  encode PNG           {timing_ms(lambda: imaging.encode(image, 'image/png', quality=90), repeat)}")
    print(f"  scale to 128x128     {timing_ms(lambda: imaging.to_image(display, imaging.Viewport(128, 128)), repeat)}")
    print(f"  JPEG {len(imaging.encode(image, 'image/jpeg', quality=90))} bytes, PNG {len(imaging.encode(image, 'image/png', quality=90))} bytes")

    def get(path: str, accept: str = "image/jpeg", **query: str) -> None:
        response = client.get(path, query, HTTP_ACCEPT=accept)
        assert response.status_code == 200, response.content

    def clear_cache() -> None:
        for entry in thumbnails.cache_dir().rglob("*.*"):
            entry.unlink()

    def uncached_thumbnail(row: Instance) -> Callable[[], None]:
        def action() -> None:
            clear_cache()
            get(url(row, "thumbnail"))

        return action

    slow_repeat = max(3, repeat // 20)
    print("\nwhole requests through Django's test client (ms):")
    print(f"  CT rendered JPEG               {timing_ms(lambda: get(url(ct, 'rendered')), repeat)}")
    print(f"  CT rendered PNG                {timing_ms(lambda: get(url(ct, 'rendered'), 'image/png'), repeat)}")
    print(f"  CT rendered JPEG, window       {timing_ms(lambda: get(url(ct, 'rendered'), window='40,400'), repeat)}")
    print(f"  CT thumbnail, not cached       {timing_ms(uncached_thumbnail(ct), repeat)}")
    print(f"  CT thumbnail, cached           {timing_ms(lambda: get(url(ct, 'thumbnail')), repeat)}")
    print(f"  radiograph thumbnail, not cached {timing_ms(uncached_thumbnail(radiograph), slow_repeat)}  ({slow_repeat} calls)")
    print(f"  radiograph thumbnail, cached   {timing_ms(lambda: get(url(radiograph, 'thumbnail')), repeat)}")
    print(f"\nmachine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, Python {sys.version.split()[0]}")


if __name__ == "__main__":
    sys.exit(main())
