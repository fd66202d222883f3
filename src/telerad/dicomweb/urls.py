"""DICOMweb resources under /dicom-web (PS3.18 10.4 to 10.6)."""

from __future__ import annotations

from django.urls import path, register_converter

from telerad.dicomweb import qido, rendered, stow, wado
from telerad.dicomweb.http import by_method


class UidConverter:
    regex = r"[0-9][0-9.]{0,63}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class FrameListConverter:
    regex = r"[0-9]+(?:,[0-9]+)*"

    def to_python(self, value: str) -> list[int]:
        return [int(number) for number in value.split(",")]

    def to_url(self, value: list[int]) -> str:
        return ",".join(str(number) for number in value)


register_converter(UidConverter, "uid")
register_converter(FrameListConverter, "frames")

app_name = "dicomweb"

STUDY = "studies/<uid:study>"
SERIES = STUDY + "/series/<uid:series>"
INSTANCE = SERIES + "/instances/<uid:instance>"

urlpatterns = [
    # Search (QIDO-RS) and store (STOW-RS) share the study resources.
    path("studies", by_method(GET=qido.search_studies, POST=stow.store_instances), name="studies"),
    path("series", by_method(GET=qido.search_series), name="series"),
    path("instances", by_method(GET=qido.search_instances), name="instances"),
    path(STUDY, by_method(GET=wado.retrieve_study, POST=stow.store_instances), name="study"),
    path(STUDY + "/series", by_method(GET=qido.search_series), name="study-series"),
    path(STUDY + "/instances", by_method(GET=qido.search_instances), name="study-instances"),
    path(SERIES + "/instances", by_method(GET=qido.search_instances), name="series-instances"),
    # Retrieve (WADO-RS).
    path(STUDY + "/metadata", by_method(GET=wado.study_metadata), name="study-metadata"),
    path(SERIES, by_method(GET=wado.retrieve_series), name="series-resource"),
    path(SERIES + "/metadata", by_method(GET=wado.series_metadata), name="series-metadata"),
    path(INSTANCE, by_method(GET=wado.retrieve_instance), name="instance"),
    path(INSTANCE + "/metadata", by_method(GET=wado.instance_metadata), name="instance-metadata"),
    path(INSTANCE + "/frames/<frames:frames>", by_method(GET=wado.retrieve_frames), name="frames"),
    path(INSTANCE + "/bulkdata/<path:attribute>", by_method(GET=wado.retrieve_bulkdata), name="bulkdata"),
    # Rendered images and thumbnails.
    path(STUDY + "/rendered", by_method(GET=rendered.study_rendered), name="study-rendered"),
    path(STUDY + "/thumbnail", by_method(GET=rendered.study_thumbnail), name="study-thumbnail"),
    path(SERIES + "/rendered", by_method(GET=rendered.series_rendered), name="series-rendered"),
    path(SERIES + "/thumbnail", by_method(GET=rendered.series_thumbnail), name="series-thumbnail"),
    path(INSTANCE + "/rendered", by_method(GET=rendered.instance_rendered), name="instance-rendered"),
    path(INSTANCE + "/thumbnail", by_method(GET=rendered.instance_thumbnail), name="instance-thumbnail"),
    path(INSTANCE + "/frames/<frames:frames>/rendered", by_method(GET=rendered.frames_rendered), name="frames-rendered"),
    path(INSTANCE + "/frames/<frames:frames>/thumbnail", by_method(GET=rendered.frames_thumbnail), name="frames-thumbnail"),
]
