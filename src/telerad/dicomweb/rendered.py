"""Rendered images and thumbnails (PS3.18 10.4.1.1.3 and 10.4.1.1.4, query parameters of 8.3.5).

Media types: image/jpeg (the default), image/png and image/gif, chosen from
the Accept header or the ``accept`` query parameter (PS3.18 8.3.3.1).
Query parameters of rendered resources:

- ``window=center,width[,function]``: a VOI window over Modality LUT output,
  function ``linear`` (the default), ``linear-exact`` or ``sigmoid``. Colour
  images ignore it.
- ``viewport=vw,vh[,sx,sy,sw,sh]``: fit the image, or its source region
  starting at (sx, sy) and |sw| x |sh| pixels in size (cut at the image's
  edge), into vw x vh keeping the aspect ratio. A negative sw or sh flips
  that axis. NOTE: the region of a negative sw or sh still extends right
  and down from (sx, sy); other servers may read it as extending left or up.
- ``quality=1..100``: JPEG quality.
- ``annotation`` is accepted and ignored: images are rendered without burned-in text.

A multi-frame instance rendered without a frame list comes back as
multipart/related (one part per frame) when the Accept header names
multipart/related. Otherwise it comes back as one image of its first frame.
A single frame comes as multipart/related of one part when only that is
acceptable. A frame list of more than one frame needs multipart/related.
Study and series rendered resources are multipart/related with one image
(the first frame) per image instance, rendered while the response streams.

Thumbnails take ``viewport`` only and default to 128 x 128. A study's
thumbnail is the middle image instance of its first series with images. A
series' thumbnail is its middle image instance, and an instance's thumbnail
its middle frame.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import uuid
from typing import Iterable, Iterator

from django.db.models import F, QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.utils.translation import gettext as _

from telerad.accounts.roles import Permission, requires
from telerad.archive.ingest import default_storage
from telerad.archive.models import Instance, Series, Study
from telerad.audit.events import Action
from telerad.clinicians.access import AnyUser, restrict_to_visible_studies
from telerad.dicomweb import imaging, thumbnails
from telerad.dicomweb.accept import Offer, choose, not_acceptable
from telerad.dicomweb.http import DicomwebError, endpoint, record_access
from telerad.dicomweb.imaging import Region, Viewport, VoiFunction, Window

logger = logging.getLogger(__name__)

IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif")
DEFAULT_QUALITY = 90
THUMBNAIL_VIEWPORT = Viewport(128, 128)
# Larger viewports would let one request allocate gigabytes. 8192 pixels
# still fit the largest radiographs and mammograms at full size.
MAX_VIEWPORT_SIDE = 8192


@dataclasses.dataclass(frozen=True)
class RenderingParameters:
    window: Window | None = None
    viewport: Viewport | None = None
    quality: int = DEFAULT_QUALITY


# Query parameters (PS3.18 8.3.5.1)


def parse_rendering_parameters(query: QueryDict, *, thumbnail: bool = False) -> RenderingParameters:
    """Read window, viewport and quality; raise DicomwebError 400 naming the parameter and the problem."""
    viewport_text = _single_value(query, "viewport")
    viewport = _parse_viewport(viewport_text) if viewport_text is not None else None
    if thumbnail:
        return RenderingParameters(viewport=viewport or THUMBNAIL_VIEWPORT)

    window_text = _single_value(query, "window")
    quality_text = _single_value(query, "quality")
    return RenderingParameters(
        window=_parse_window(window_text) if window_text is not None else None,
        viewport=viewport,
        quality=_parse_quality(quality_text) if quality_text is not None else DEFAULT_QUALITY,
    )


def _single_value(query: QueryDict, name: str) -> str | None:
    values = query.getlist(name)
    if len(values) > 1:
        raise _bad_parameter(name, _("it may appear only once"))
    return values[0] if values else None


def _bad_parameter(name: str, problem: str) -> DicomwebError:
    return DicomwebError(400, _("Invalid query parameter %(name)s: %(problem)s.") % {"name": name, "problem": problem})


def _parse_window(text: str) -> Window:
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (2, 3):
        raise _bad_parameter("window", _("expected center,width[,function], got %(value)r") % {"value": text})
    center = _finite_number("window", "center", parts[0])
    width = _finite_number("window", "width", parts[1])
    function_name = parts[2].lower() if len(parts) == 3 else VoiFunction.LINEAR.value
    if function_name not in {function.value for function in VoiFunction}:
        raise _bad_parameter("window", _("function %(value)r is not one of linear, linear-exact, sigmoid") % {"value": parts[2]})
    function = VoiFunction(function_name)

    # PS3.3 C.11.2.1.2: a linear window is at least 1 wide, linear-exact and sigmoid windows more than 0.
    if width <= 0:
        raise _bad_parameter("window", _("width %(value)s must be greater than 0") % {"value": parts[1]})
    if function is VoiFunction.LINEAR and width < 1:
        raise _bad_parameter("window", _("width %(value)s must be at least 1 for the linear function") % {"value": parts[1]})
    return Window(center, width, function)


def _finite_number(name: str, part: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise _bad_parameter(name, _("%(part)s %(value)r is not a number") % {"part": part, "value": text})
    return value


def _parse_viewport(text: str) -> Viewport:
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (2, 6):
        raise _bad_parameter("viewport", _("expected vw,vh or vw,vh,sx,sy,sw,sh, got %(value)r") % {"value": text})
    numbers = [_integer("viewport", label, value) for label, value in zip(("vw", "vh", "sx", "sy", "sw", "sh"), parts)]

    width, height = numbers[0], numbers[1]
    for label, value in (("vw", width), ("vh", height)):
        if not 0 < value <= MAX_VIEWPORT_SIDE:
            raise _bad_parameter("viewport", _("%(label)s %(value)d must be from 1 to %(max)d") % {"label": label, "value": value, "max": MAX_VIEWPORT_SIDE})
    if len(numbers) == 2:
        return Viewport(width, height)

    x, y, region_width, region_height = numbers[2:]
    if x < 0 or y < 0:
        raise _bad_parameter("viewport", _("sx and sy must not be negative"))
    if region_width == 0 or region_height == 0:
        raise _bad_parameter("viewport", _("sw and sh must not be 0"))
    return Viewport(width, height, Region(x, y, region_width, region_height))


def _integer(name: str, label: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _bad_parameter(name, _("%(label)s %(value)r is not a whole number") % {"label": label, "value": text}) from None


def _parse_quality(text: str) -> int:
    quality = _integer("quality", "quality", text)
    if not 1 <= quality <= 100:
        raise _bad_parameter("quality", _("%(value)d is not from 1 to 100") % {"value": quality})
    return quality


# Media type negotiation (PS3.18 8.7)


@dataclasses.dataclass(frozen=True)
class Choice:
    media_type: str
    multipart: bool


def _accept_header(request: HttpRequest) -> str:
    # PS3.18 8.3.3.1: the accept query parameter replaces the Accept header.
    accept = request.GET.getlist("accept")
    if accept:
        return ", ".join(accept)
    return request.headers.get("Accept", "")


def negotiate(request: HttpRequest, *, single: bool, multipart: bool) -> Choice:
    """Choose a rendered media type, as one image and/or as multipart/related; raise 406 when none fits.

    When both are possible, multipart wins only where the client names
    multipart/related itself, so ``*/*`` and ``image/*`` get one image.
    """
    header = _accept_header(request)
    single_offers = [Offer(media_type) for media_type in IMAGE_MEDIA_TYPES] if single else []
    multipart_offers = [Offer("multipart/related", {"type": media_type}) for media_type in IMAGE_MEDIA_TYPES] if multipart else []
    names_multipart = "multipart/related" in header.lower()
    offers = multipart_offers + single_offers if names_multipart else single_offers + multipart_offers

    chosen = choose(header, offers)
    if chosen is None:
        raise not_acceptable(header, offers)
    offer = chosen[0]
    if offer.media_type == "multipart/related":
        return Choice(offer.parameters["type"], multipart=True)
    return Choice(offer.media_type, multipart=False)


# Resources: a missing one, one outside the named study or series, or one
# of a study the user may not see, is 404.


def _find_study(user: AnyUser, study: str) -> Study:
    try:
        return restrict_to_visible_studies(Study.objects.select_related("patient"), user).get(study_instance_uid=study)
    except Study.DoesNotExist:
        raise DicomwebError(404, _("Study %(study)s not found.") % {"study": study}) from None


def _find_series(user: AnyUser, study: str, series: str) -> Series:
    rows = restrict_to_visible_studies(Series.objects.select_related("study__patient"), user, "study")
    try:
        return rows.get(series_instance_uid=series, study__study_instance_uid=study)
    except Series.DoesNotExist:
        raise DicomwebError(404, _("Series %(series)s not found in study %(study)s.") % {"series": series, "study": study}) from None


def _find_instance(user: AnyUser, study: str, series: str, instance: str) -> Instance:
    rows = restrict_to_visible_studies(Instance.objects.select_related("series__study__patient"), user, "series__study")
    try:
        return rows.get(
            sop_instance_uid=instance, series__series_instance_uid=series, series__study__study_instance_uid=study
        )
    except Instance.DoesNotExist:
        raise DicomwebError(404, _("Instance %(instance)s not found in series %(series)s of study %(study)s.") % {"instance": instance, "series": series, "study": study}) from None


def _image_instances(queryset: QuerySet[Instance]) -> QuerySet[Instance]:
    """Instances with pixel data (the index fills Rows only for them), in series and instance order."""
    return queryset.filter(rows__isnull=False).order_by(
        F("series__series_number").asc(nulls_last=True), "series_id", F("instance_number").asc(nulls_last=True), "pk"
    )


def _require_image(row: Instance) -> None:
    if row.rows is None:
        raise DicomwebError(406, _("Instance %(instance)s has no pixel data (SOP Class %(sop_class)s), so it has no rendered image.") % {"instance": row.sop_instance_uid, "sop_class": row.sop_class_uid})


def _frame_numbers(row: Instance, requested: list[int]) -> list[int]:
    count = row.number_of_frames or 1
    for number in requested:
        if number < 1:
            raise DicomwebError(400, _("Frame numbers start at 1; %(number)d is not a frame number.") % {"number": number})
        if number > count:
            raise DicomwebError(404, _("Frame %(number)d not found: instance %(instance)s has %(count)d frames.") % {"number": number, "instance": row.sop_instance_uid, "count": count})
    return requested


# Rendering


def render_frames(row: Instance, frame_numbers: Iterable[int], parameters: RenderingParameters, media_type: str) -> Iterator[bytes]:
    """Encode each frame (numbered from 1) of a stored instance; the file is read once, frames are decoded one at a time."""
    try:
        dataset = imaging.read_dataset(default_storage().path(row.storage_key))
        for number in frame_numbers:
            display = imaging.render_frame(dataset, number - 1, window=parameters.window)
            image = imaging.to_image(display, parameters.viewport)
            yield imaging.encode(image, media_type, quality=parameters.quality)
    except imaging.NotAnImage as exc:
        raise DicomwebError(406, _("Instance %(instance)s cannot be rendered: %(reason)s.") % {"instance": row.sop_instance_uid, "reason": exc.reason}) from exc
    except imaging.RegionOutsideImage as exc:
        raise _bad_parameter("viewport", str(exc)) from exc
    except imaging.UndecodablePixelData as exc:
        # The stored file is damaged or needs a decoder that is not installed.
        logger.error("rendering failed sop_instance_uid=%s transfer_syntax=%s error=%s", row.sop_instance_uid, row.transfer_syntax_uid, exc.reason)
        raise DicomwebError(500, _("Instance %(instance)s could not be rendered: %(reason)s.") % {"instance": row.sop_instance_uid, "reason": exc.reason}) from exc


def _image_response(content: bytes, media_type: str) -> HttpResponse:
    response = HttpResponse(content, content_type=media_type)
    response["Content-Length"] = str(len(content))
    return response


def _multipart_response(first: bytes, rest: Iterator[bytes], media_type: str) -> StreamingHttpResponse:
    """Stream images as multipart/related (RFC 2387), one part each; `first` is already rendered so errors before it get a status."""
    boundary = uuid.uuid4().hex
    part_header = f"--{boundary}\r\nContent-Type: {media_type}\r\n\r\n".encode("ascii")

    def parts() -> Iterator[bytes]:
        yield part_header + first + b"\r\n"
        try:
            for content in rest:
                yield part_header + content + b"\r\n"
        except DicomwebError as exc:
            # The status is already sent: stop without the closing delimiter
            # so that the client sees an incomplete body.
            logger.error("rendered multipart response cut short boundary=%s error=%s", boundary, exc.message)
            return
        yield f"--{boundary}--\r\n".encode("ascii")

    content_type = f'multipart/related; type="{media_type}"; boundary={boundary}'
    return StreamingHttpResponse(parts(), content_type=content_type)


def _audit(request: HttpRequest, study: Study, detail: str) -> None:
    record_access(request, Action.RETRIEVE, patient_id=study.patient.patient_id, study_instance_uid=study.study_instance_uid, detail=detail)


# Instance and frame resources


def _render_instance(request: HttpRequest, row: Instance, frame_numbers: list[int], *, explicit_frames: bool) -> HttpResponse:
    _require_image(row)
    parameters = parse_rendering_parameters(request.GET)
    several = len(frame_numbers) > 1
    # An instance's several frames may come back as its first frame alone,
    # but an explicit list of several frames may not.
    choice = negotiate(request, single=not (several and explicit_frames), multipart=True)
    if not choice.multipart:
        frame_numbers = frame_numbers[:1]

    images = render_frames(row, frame_numbers, parameters, choice.media_type)
    first = next(images)
    frames = ",".join(map(str, frame_numbers)) if explicit_frames or len(frame_numbers) == 1 else f"all {len(frame_numbers)}"
    _audit(request, row.series.study, f"rendered {choice.media_type} sop_instance_uid={row.sop_instance_uid} frames={frames}")
    if choice.multipart:
        return _multipart_response(first, images, choice.media_type)
    return _image_response(first, choice.media_type)


@endpoint
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def instance_rendered(request: HttpRequest, *, study: str, series: str, instance: str) -> HttpResponse:
    row = _find_instance(request.user, study, series, instance)
    return _render_instance(request, row, list(range(1, (row.number_of_frames or 1) + 1)), explicit_frames=False)


@endpoint
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def frames_rendered(request: HttpRequest, *, study: str, series: str, instance: str, frames: list[int]) -> HttpResponse:
    row = _find_instance(request.user, study, series, instance)
    _require_image(row)
    return _render_instance(request, row, _frame_numbers(row, frames), explicit_frames=True)


# Study and series resources


def _render_instances(request: HttpRequest, study: Study, rows: list[Instance]) -> StreamingHttpResponse:
    if not rows:
        raise DicomwebError(406, _("There are no image instances here, so there is nothing to render."))
    parameters = parse_rendering_parameters(request.GET)
    choice = negotiate(request, single=False, multipart=True)

    first = next(render_frames(rows[0], [1], parameters, choice.media_type))
    _audit(request, study, f"rendered {choice.media_type} instances={len(rows)}")
    return _multipart_response(first, _render_each(rows[1:], parameters, choice.media_type), choice.media_type)


def _render_each(rows: list[Instance], parameters: RenderingParameters, media_type: str) -> Iterator[bytes]:
    for row in rows:
        try:
            yield next(render_frames(row, [1], parameters, media_type))
        except DicomwebError as exc:
            # One unreadable image should not cost the client the rest of the study.
            logger.warning("instance left out of rendered response sop_instance_uid=%s status=%d", row.sop_instance_uid, exc.status)


@endpoint
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def study_rendered(request: HttpRequest, *, study: str) -> HttpResponse:
    study_row = _find_study(request.user, study)
    rows = list(_image_instances(Instance.objects.filter(series__study=study_row)))
    return _render_instances(request, study_row, rows)


@endpoint
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def series_rendered(request: HttpRequest, *, study: str, series: str) -> HttpResponse:
    series_row = _find_series(request.user, study, series)
    rows = list(_image_instances(Instance.objects.filter(series=series_row)))
    return _render_instances(request, series_row.study, rows)


# Thumbnails (PS3.18 10.4.1.1.4)


def _thumbnail(request: HttpRequest, row: Instance | None, frame_number: int | None = None) -> HttpResponse:
    if row is None:
        raise DicomwebError(406, _("There are no image instances here, so there is no thumbnail."))
    _require_image(row)
    parameters = parse_rendering_parameters(request.GET, thumbnail=True)
    choice = negotiate(request, single=True, multipart=False)
    if frame_number is None:
        frame_number = (row.number_of_frames or 1) // 2 + 1

    def render() -> bytes:
        return next(render_frames(row, [frame_number], parameters, choice.media_type))

    if "viewport" in request.GET:
        content = render()
    else:
        content = thumbnails.cached_thumbnail(
            sop_instance_uid=row.sop_instance_uid,
            dataset_sha256=row.dataset_sha256,
            frame_number=frame_number,
            media_type=choice.media_type,
            render=render,
        )
    _audit(request, row.series.study, f"thumbnail {choice.media_type} sop_instance_uid={row.sop_instance_uid} frame={frame_number}")
    return _image_response(content, choice.media_type)


def _middle(rows: QuerySet[Instance]) -> Instance | None:
    count = rows.count()
    return rows.select_related("series__study__patient")[count // 2] if count else None


@endpoint
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def study_thumbnail(request: HttpRequest, *, study: str) -> HttpResponse:
    study_row = _find_study(request.user, study)
    first_image = _image_instances(Instance.objects.filter(series__study=study_row)).first()
    if first_image is None:
        return _thumbnail(request, None)
    return _thumbnail(request, _middle(_image_instances(Instance.objects.filter(series_id=first_image.series_id))))


@endpoint
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def series_thumbnail(request: HttpRequest, *, study: str, series: str) -> HttpResponse:
    series_row = _find_series(request.user, study, series)
    return _thumbnail(request, _middle(_image_instances(Instance.objects.filter(series=series_row))))


@endpoint
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def instance_thumbnail(request: HttpRequest, *, study: str, series: str, instance: str) -> HttpResponse:
    return _thumbnail(request, _find_instance(request.user, study, series, instance))


@endpoint
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def frames_thumbnail(request: HttpRequest, *, study: str, series: str, instance: str, frames: list[int]) -> HttpResponse:
    row = _find_instance(request.user, study, series, instance)
    _require_image(row)
    return _thumbnail(request, row, _frame_numbers(row, frames)[0])
