"""WADO-RS: retrieve instances, metadata, frames and bulk data (PS3.18 10.4).

Instances go out as the stored Part 10 files, byte for byte, unless the
client asks for Explicit VR Little Endian, which is then made with pydicom.
Responses stream one part at a time (see parts.py). Each request writes a
RETRIEVE audit event for its study; http.record_access folds the many
requests of one viewing into one event.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import itertools
import logging
import re
from typing import Any, Iterable, Iterator, NoReturn

from django.http import HttpRequest, HttpResponse, HttpResponseNotModified
from django.http.response import HttpResponseBase
from django.utils.cache import patch_vary_headers
from django.utils.http import quote_etag
from django.utils.translation import gettext as _

from telerad.accounts.roles import Permission, requires
from telerad.archive.ingest import default_storage
from telerad.archive.models import Instance, Series, Study
from telerad.audit.events import Action
from telerad.clinicians.access import AnyUser, restrict_to_visible_studies
from telerad.core.caching import not_modified
from telerad.dicomweb import bulkdata, frames, metadata
from telerad.dicomweb.accept import MediaRange, Offer, choose, format_media_type, not_acceptable
from telerad.dicomweb.http import VIEWER_NAMESPACE, DicomwebError, endpoint, record_access
from telerad.dicomweb.metadata import InstanceFile
from telerad.dicomweb.models import InstanceMetadata
from telerad.dicomweb.parts import Part, StreamingMultipartResponse, file_part
from telerad.dicomweb.response_cache import ResponseCache
from telerad.dicomweb.transcode import EXPLICIT_VR_LITTLE_ENDIAN, TranscodeError, can_decode, explicit_little_endian_file

logger = logging.getLogger(__name__)

MULTIPART = "multipart/related"
DICOM = "application/dicom"
OCTET_STREAM = "application/octet-stream"
DICOM_JSON = "application/dicom+json"
INSTANCE_FIELDS = (
    "pk", "sop_instance_uid", "series__series_instance_uid", "transfer_syntax_uid", "dataset_sha256", "storage_key",
)
# An Accept-Encoding that names gzip. As in Django's GZipMiddleware, quality values are not read.
GZIP_ACCEPTED = re.compile(r"\bgzip\b")
# Series in the order of their numbers, then instances by theirs. The primary key breaks ties in arrival order.
INSTANCE_ORDER = ("series__series_number", "series__pk", "instance_number", "pk")


@dataclasses.dataclass(frozen=True)
class Found:
    """The study a request names and the stored instances of the requested resource."""

    study_instance_uid: str
    patient_id: str
    instances: list[InstanceFile]


# Lookup ---------------------------------------------------------------------


def find(resource: dict[str, Any], user: AnyUser | None) -> Found:
    """Return the instances of the study, series or instance named by the URL, or raise 404 naming what is missing.

    A study that `user` may not see is missing too, with the same message.
    Background work that serves no user passes None and finds any study.
    One query finds the instances, which matters for a viewer that fetches
    each frame on its own. Further queries run only to name what is missing.
    """
    study_uid = resource["study"]
    rows = Instance.objects.filter(series__study__study_instance_uid=study_uid)
    if user is not None:
        rows = restrict_to_visible_studies(rows, user, "series__study")
    if "series" in resource:
        rows = rows.filter(series__series_instance_uid=resource["series"])
    if "instance" in resource:
        rows = rows.filter(sop_instance_uid=resource["instance"])

    values = list(rows.order_by(*INSTANCE_ORDER).values_list(*INSTANCE_FIELDS, "series__study__patient__patient_id"))
    if not values:
        _raise_not_found(resource, user)
    return Found(
        study_instance_uid=study_uid,
        patient_id=values[0][-1],
        instances=[_instance_file(study_uid, row) for row in values],
    )


def _raise_not_found(resource: dict[str, Any], user: AnyUser | None) -> NoReturn:
    """Raise the 404 for a resource without instances, naming the first missing part: study, series or instance."""
    study_uid = resource["study"]
    studies = Study.objects.filter(study_instance_uid=study_uid)
    if user is not None:
        studies = restrict_to_visible_studies(studies, user)
    study = studies.first()
    if study is None:
        raise DicomwebError(404, _("Study %(study)s not found.") % {"study": study_uid})
    if "series" in resource and not Series.objects.filter(study=study, series_instance_uid=resource["series"]).exists():
        raise DicomwebError(404, _("Series %(series)s not found in study %(study)s.") % {"series": resource["series"], "study": study_uid})
    if "instance" in resource:
        raise DicomwebError(404, _("Instance %(instance)s not found in series %(series)s.") % {"instance": resource["instance"], "series": resource["series"]})
    raise DicomwebError(404, _("No instances stored in %(path)s.") % {"path": study_uid if "series" not in resource else resource["series"]})


def _instance_file(study_uid: str, row: tuple[Any, ...]) -> InstanceFile:
    pk, sop_instance_uid, series_uid, transfer_syntax, dataset_sha256, storage_key = row[:6]
    return InstanceFile(
        pk=pk,
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        sop_instance_uid=sop_instance_uid,
        transfer_syntax_uid=transfer_syntax,
        dataset_sha256=dataset_sha256,
        path=default_storage().path(storage_key),
    )


def require_files(instances: Iterable[InstanceFile]) -> None:
    for instance in instances:
        if not instance.path.is_file():
            logger.error("stored file missing sop_instance_uid=%s path=%s", instance.sop_instance_uid, instance.path)
            raise DicomwebError(500, _("The stored file of instance %(instance)s is missing. An administrator has to restore it.") % {"instance": instance.sop_instance_uid})


def audit(request: HttpRequest, found: Found, detail: str) -> None:
    record_access(request, Action.RETRIEVE, patient_id=found.patient_id, study_instance_uid=found.study_instance_uid, detail=detail)


def entity_tag(request: HttpRequest, found: Found, representation: str) -> str:
    """Return an ETag that changes with the content of any instance and with the Accept header.

    A replaced instance has another dataset digest, so a viewer's cached
    frames and metadata are revalidated rather than trusted by UID alone.
    The tag is weak (RFC 9110 8.8.1) because each multipart response has a
    boundary of its own, so equal content is not equal bytes.
    """
    digest = hashlib.sha256()
    for part in (representation, request.headers.get("Accept", ""), *(instance.dataset_sha256 for instance in found.instances)):
        digest.update(part.encode("utf-8") + b"\n")
    return "W/" + quote_etag(digest.hexdigest()[:32])


def with_validators(response: HttpResponseBase, tag: str) -> HttpResponseBase:
    """Let browsers keep the response but ask each time whether it is still current (a 304 costs no file read)."""
    response["ETag"] = tag
    response["Cache-Control"] = "private, no-cache"
    patch_vary_headers(response, ["Accept"])
    return response


def negotiate(request: HttpRequest, offers: list[Offer]) -> tuple[Offer, MediaRange]:
    header = request.headers.get("Accept", "")
    choice = choose(header, offers)
    if choice is None:
        raise not_acceptable(header, offers)
    return choice


# Instances ------------------------------------------------------------------


@endpoint
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def retrieve_study(request: HttpRequest, **resource: Any) -> HttpResponseBase:
    return _retrieve(request, resource)


@endpoint
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def retrieve_series(request: HttpRequest, **resource: Any) -> HttpResponseBase:
    return _retrieve(request, resource)


@endpoint
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def retrieve_instance(request: HttpRequest, **resource: Any) -> HttpResponseBase:
    return _retrieve(request, resource)


def _retrieve(request: HttpRequest, resource: dict[str, Any]) -> HttpResponseBase:
    found = find(resource, request.user)
    target = _instance_syntax(request, {instance.transfer_syntax_uid for instance in found.instances})
    require_files(found.instances)

    detail = f"{len(found.instances)} instances" + (f" as {target}" if target else "")
    tag = entity_tag(request, found, detail)
    audit(request, found, detail)
    if not_modified(request, tag):
        return with_validators(HttpResponseNotModified(), tag)

    parts = [_instance_part(instance, target) for instance in found.instances]
    return with_validators(StreamingMultipartResponse(parts, part_type=DICOM), tag)


def _instance_syntax(request: HttpRequest, stored: set[str]) -> str | None:
    """Return the transfer syntax to re-encode to, or None to send the files as stored.

    PS3.18 8.7.3 makes Explicit VR Little Endian the default when the
    client names no transfer syntax. telerad sends the stored files then,
    because re-encoding costs time and loses nothing only for lossless
    syntaxes. Each part names its transfer syntax.
    """
    offers = [Offer(MULTIPART, {"type": DICOM})]
    if len(stored) == 1:
        offers.append(Offer(MULTIPART, {"type": DICOM, "transfer-syntax": next(iter(stored))}))
    transcoded = Offer(MULTIPART, {"type": DICOM, "transfer-syntax": EXPLICIT_VR_LITTLE_ENDIAN})
    if all(can_decode(syntax) for syntax in stored):
        offers.append(transcoded)
    offer, _range = negotiate(request, offers)
    return EXPLICIT_VR_LITTLE_ENDIAN if offer is transcoded else None


def _instance_part(instance: InstanceFile, target: str | None) -> Part:
    if target is None or instance.transfer_syntax_uid == target:
        return file_part(f"{DICOM}; transfer-syntax={instance.transfer_syntax_uid}", instance.path)
    return Part(f"{DICOM}; transfer-syntax={target}", _transcoded(instance))


def _transcoded(instance: InstanceFile) -> Iterator[bytes]:
    try:
        yield explicit_little_endian_file(instance.path)
    except TranscodeError as exc:
        # Parts before this one are already sent, so the response can only be cut short.
        logger.error("transcoding failed, response cut short sop_instance_uid=%s: %s", instance.sop_instance_uid, exc)
        raise


# Metadata -------------------------------------------------------------------


@endpoint
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def study_metadata(request: HttpRequest, **resource: Any) -> HttpResponseBase:
    return _metadata(request, resource)


@endpoint
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def series_metadata(request: HttpRequest, **resource: Any) -> HttpResponseBase:
    return _metadata(request, resource)


@endpoint
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def instance_metadata(request: HttpRequest, **resource: Any) -> HttpResponseBase:
    return _metadata(request, resource)


def _metadata(request: HttpRequest, resource: dict[str, Any]) -> HttpResponseBase:
    found = find(resource, request.user)
    offer, _range = negotiate(request, [Offer(DICOM_JSON), Offer("application/json")])

    detail = f"metadata of {len(found.instances)} instances"
    origin = f"{request.scheme}://{request.get_host()}"
    for_viewer = request.resolver_match is not None and request.resolver_match.namespace == VIEWER_NAMESPACE
    # The tag covers every instance's content digest, the origin written into
    # the BulkDataURIs, the encoder version, the viewer's reduced form and the
    # Accept header.
    tag = entity_tag(request, found, f"{origin} metadata {metadata.ENCODER_VERSION}" + (" for the viewer" if for_viewer else ""))
    if not_modified(request, tag):
        audit(request, found, detail)
        return with_validators(HttpResponseNotModified(), tag)

    accepts_gzip = bool(GZIP_ACCEPTED.search(request.headers.get("Accept-Encoding", "")))
    compressed = _compressed_metadata.get(tag) if accepts_gzip else None
    if compressed is not None:
        audit(request, found, detail)
        return with_validators(_gzip_response(compressed, offer.media_type), tag)

    stored = stored_documents(resource, found.instances)
    require_files(instance for instance, cached in zip(found.instances, stored) if cached is None)
    documents = metadata.documents(zip(found.instances, stored))
    if for_viewer:
        documents = [metadata.without_private_attributes(document) for document in documents]
    audit(request, found, detail)
    body = metadata.json_array(documents, origin=origin)
    if not accepts_gzip:
        response = HttpResponse(body, content_type=offer.media_type)
        patch_vary_headers(response, ["Accept-Encoding"])
        return with_validators(response, tag)
    compressed = _gzip(body)
    _compressed_metadata.put(tag, compressed)
    return with_validators(_gzip_response(compressed, offer.media_type), tag)


def stored_documents(resource: dict[str, Any], instances: list[InstanceFile]) -> list[InstanceMetadata | None]:
    """Return the stored metadata document of each instance, in their order, or None where there is none.

    The rows are selected by the resource's UIDs, like the instances, so
    that a study of any size needs no list of instance keys in the query.
    """
    rows = InstanceMetadata.objects.filter(instance__series__study__study_instance_uid=resource["study"])
    if "series" in resource:
        rows = rows.filter(instance__series__series_instance_uid=resource["series"])
    if "instance" in resource:
        rows = rows.filter(instance__sop_instance_uid=resource["instance"])
    fields = ("instance_id", "dataset_sha256", "encoder_version", "document")
    by_instance = {
        instance_id: InstanceMetadata(dataset_sha256=dataset_sha256, encoder_version=encoder_version, document=bytes(document))
        for instance_id, dataset_sha256, encoder_version, document in rows.values_list(*fields)
    }
    return [by_instance.get(instance.pk) for instance in instances]


# Compressed metadata responses sent lately. A viewer that opens a series
# again, or a second reader opening it, then skips reading, decompressing,
# joining and compressing the documents.
METADATA_CACHE_BYTES = 64 * 1024 * 1024
_compressed_metadata = ResponseCache(METADATA_CACHE_BYTES)


def _gzip(body: bytes) -> bytes:
    """Compress a metadata body for clients that accept gzip.

    Series metadata is several megabytes of repetitive JSON. On 5.7 MB of
    metadata of a synthetic 500-slice CT series, level 1 took 21 ms of CPU
    and level 6 took 36 ms. Level 1 still shrank it fifteenfold, though real
    series, whose instances differ more, compress less.
    """
    return gzip.compress(body, compresslevel=1, mtime=0)


def _gzip_response(compressed: bytes, content_type: str) -> HttpResponse:
    response = HttpResponse(compressed, content_type=content_type)
    response["Content-Encoding"] = "gzip"
    patch_vary_headers(response, ["Accept-Encoding"])
    return response


# Frames and bulk data -------------------------------------------------------


@endpoint
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def retrieve_frames(request: HttpRequest, **resource: Any) -> HttpResponseBase:
    found = find(resource, request.user)
    instance = found.instances[0]
    require_files([instance])
    location = _pixel_data(instance)
    numbers: list[int] = resource["frames"]
    _check_frame_numbers(numbers, location, instance)

    encoding = _frame_encoding(request, location, frame_count=len(numbers), single_part_allowed=len(numbers) == 1)
    detail = f"frames {','.join(map(str, numbers))}"
    tag = entity_tag(request, found, detail)
    if not_modified(request, tag):
        audit(request, found, detail)
        return with_validators(HttpResponseNotModified(), tag)

    parts = _frame_parts(location, numbers, encoding.part_type, encoding.syntax)
    audit(request, found, detail)
    if not encoding.multipart:
        part = next(parts)
        return with_validators(HttpResponse(b"".join(part.chunks), content_type=part.content_type), tag)
    return with_validators(StreamingMultipartResponse(parts, part_type=encoding.part_type), tag)


@endpoint
@requires(Permission.VIEW_STUDIES, Permission.VIEW_REFERRED_STUDIES)
def retrieve_bulkdata(request: HttpRequest, **resource: Any) -> HttpResponseBase:
    try:
        steps = bulkdata.parse_tag_path(resource["attribute"])
    except bulkdata.InvalidTagPath as exc:
        raise DicomwebError(400, str(exc)) from None
    found = find(resource, request.user)
    instance = found.instances[0]
    require_files([instance])

    if len(steps) == 1 and steps[0] in frames.PIXEL_DATA_TAGS:
        return _pixel_data_bulk(request, found, instance)
    offer, _range = negotiate(request, [Offer(MULTIPART, {"type": OCTET_STREAM}), Offer(OCTET_STREAM)])
    try:
        value = bulkdata.element_value(instance.path, steps)
    except bulkdata.NoSuchElement as exc:
        raise DicomwebError(404, _("Instance %(instance)s: %(reason)s.") % {"instance": instance.sop_instance_uid, "reason": exc}) from None

    audit(request, found, f"bulk data {resource['attribute']}")
    if offer.media_type == OCTET_STREAM:
        return HttpResponse(value, content_type=OCTET_STREAM)
    return StreamingMultipartResponse([Part(OCTET_STREAM, [value], length=len(value))], part_type=OCTET_STREAM)


def _pixel_data_bulk(request: HttpRequest, found: Found, instance: InstanceFile) -> HttpResponseBase:
    """Return all frames of the pixel data, one part per frame, encoded as for the frames resource."""
    location = _pixel_data(instance)
    numbers = list(range(1, location.number_of_frames + 1))
    encoding = _frame_encoding(request, location, frame_count=len(numbers), single_part_allowed=False)
    parts = _frame_parts(location, numbers, encoding.part_type, encoding.syntax)
    audit(request, found, "bulk data pixel data")
    return StreamingMultipartResponse(parts, part_type=encoding.part_type)


# Cache of pixel data locations of recently viewed files. A stored file's name
# contains its content digest, so a cached path cannot describe other content.
_locate_cached = functools.lru_cache(maxsize=4096)(frames.locate)


def _pixel_data(instance: InstanceFile) -> frames.PixelDataLocation:
    try:
        return _locate_cached(instance.path)
    except frames.NoPixelData:
        raise DicomwebError(404, _("Instance %(instance)s has no pixel data.") % {"instance": instance.sop_instance_uid}) from None


def _check_frame_numbers(numbers: list[int], location: frames.PixelDataLocation, instance: InstanceFile) -> None:
    if 0 in numbers:
        raise DicomwebError(400, _("Frame numbers start at 1, so frame 0 does not exist."))
    beyond = [number for number in numbers if number > location.number_of_frames]
    if beyond:
        raise DicomwebError(404, _("Frame %(frame)d not found: instance %(instance)s has %(count)d frames.") % {"frame": beyond[0], "instance": instance.sop_instance_uid, "count": location.number_of_frames})


@dataclasses.dataclass(frozen=True)
class FrameEncoding:
    """The form of a frames response: a multipart body, or one frame as the whole body, with the media type and transfer syntax."""

    multipart: bool
    part_type: str
    syntax: str


def _frame_encoding(request: HttpRequest, location: frames.PixelDataLocation, *, frame_count: int, single_part_allowed: bool) -> FrameEncoding:
    """Return the encoding of the frames that the client accepts (PS3.18 8.7.3.3).

    A request for one uncompressed frame may also accept it as a single-part
    body (``application/octet-stream; transfer-syntax=*``). A browser then
    reads the pixels as they are, where a multipart body makes it search
    each frame's bytes for the closing boundary. Between equally preferred
    forms, multipart goes first.

    NOTE: compressed frames go out in multipart bodies only. OHIF 3.13.2 drew
    a blank viewport for a JPEG 2000 CR frame (RG1_J2KR) sent as a single
    part, and the reason is not known yet. Compressed frames are smaller, so
    the search costs the browser less.
    """
    stored = str(location.transfer_syntax)
    decoded = {"type": OCTET_STREAM, "transfer-syntax": EXPLICIT_VR_LITTLE_ENDIAN}
    encodings = [decoded]
    if location.encapsulated:
        compressed_type = frames.COMPRESSED_MEDIA_TYPES.get(stored)
        encodings = [{"type": compressed_type, "transfer-syntax": stored}] if compressed_type else []
        encodings += [{"type": other, "transfer-syntax": stored} for other in frames.OTHER_COMPRESSED_MEDIA_TYPES.get(stored, ())]
        if can_decode(stored):
            encodings.append(decoded)
        encodings.append({"type": OCTET_STREAM, "transfer-syntax": stored})

    offers = [Offer(MULTIPART, parameters) for parameters in encodings]
    single_part_offers = [Offer(parameters["type"], {"transfer-syntax": parameters["transfer-syntax"]}) for parameters in encodings]
    if single_part_allowed and not location.encapsulated:
        offers += single_part_offers

    header = request.headers.get("Accept", "")
    choice = choose(header, offers)
    if choice is None:
        raise _frames_not_acceptable(header, offers, single_part_offers, frame_count=frame_count, compressed=location.encapsulated)
    offer, media_range = choice
    multipart = offer.media_type == MULTIPART
    part_type = offer.parameters["type"] if multipart else offer.media_type
    syntax = offer.parameters["transfer-syntax"]
    # transfer-syntax=* leaves the choice to the server, which sends the frames as stored rather than decode them.
    if syntax == EXPLICIT_VR_LITTLE_ENDIAN and part_type == OCTET_STREAM and location.encapsulated and media_range.parameters.get("transfer-syntax") == "*":
        return FrameEncoding(multipart, OCTET_STREAM, stored)
    return FrameEncoding(multipart, part_type, syntax)


def _frames_not_acceptable(header: str, offers: list[Offer], single_part_offers: list[Offer], *, frame_count: int, compressed: bool) -> DicomwebError:
    """Return the 406 error for a frames request.

    When Accept allows only a single-part body, which the frames cannot
    come in, the message names the reason: several frames, or compressed
    ones. It suggests the client's single-part range as the type of a
    multipart/related range, which keeps the client's transfer syntax and
    covers the multipart offer of the same encoding.
    """
    single_part_choice = choose(header, single_part_offers) if compressed or frame_count > 1 else None
    if single_part_choice is None:
        return not_acceptable(header, offers)

    _offer, media_range = single_part_choice
    multipart_accept = format_media_type(MULTIPART, {"type": media_range.media_type, **media_range.parameters})
    if compressed:
        message = _(
            "Compressed frames come only in a multipart/related response, but Accept (%(accept)s) allows only a single-part body. "
            "Request the frames with Accept: %(multipart_accept)s"
        )
    else:
        message = _(
            "Several frames need a multipart/related response, but Accept (%(accept)s) allows only a single-part body, "
            "which carries one frame. Request the frames with Accept: %(multipart_accept)s"
        )
    return DicomwebError(406, message % {"accept": header.strip(), "multipart_accept": multipart_accept})


def _frame_parts(location: frames.PixelDataLocation, numbers: list[int], part_type: str, syntax: str) -> Iterator[Part]:
    """Return the frame parts, the first one already made.

    A frame that cannot be read or decoded is most likely the first, and
    making it before the response starts turns the failure into a clear
    error response rather than a response cut short.
    """
    content_type = f"{part_type}; transfer-syntax={syntax}"
    if location.encapsulated and syntax == EXPLICIT_VR_LITTLE_ENDIAN:
        contents: Iterator[bytes] = frames.decoded_frames(location, numbers)
    else:
        contents = (frames.stored_frame(location, number) for number in numbers)
    try:
        first = next(contents)
    except TranscodeError as exc:
        logger.error("frame extraction failed path=%s: %s", location.path, exc)
        raise DicomwebError(500, _("The pixel data of this instance could not be read: %(reason)s") % {"reason": exc}) from None
    return itertools.chain([Part(content_type, [first])], _remaining_parts(contents, content_type, location))


def _remaining_parts(contents: Iterator[bytes], content_type: str, location: frames.PixelDataLocation) -> Iterator[Part]:
    try:
        for content in contents:
            yield Part(content_type, [content])
    except TranscodeError as exc:
        logger.error("frame extraction failed, response cut short path=%s: %s", location.path, exc)
        raise
