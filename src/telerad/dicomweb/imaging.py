"""The pixel pipeline of rendered images: decode a frame, map it to 8-bit display values, scale and encode it.

Greyscale frames go through the Modality LUT, the VOI (a requested window,
else the first window in the dataset, else its VOI LUT, else the frame's
minimum and maximum) and MONOCHROME1 inversion, as PS3.3 C.11 orders the
grayscale pipeline. Colour frames come out of pydicom as RGB (YBR converted,
planes interleaved) and palette colour frames go through their lookup
tables. This module does not depend on HTTP, and raises :class:`RenderError`
subclasses for instances it cannot render.
"""

from __future__ import annotations

import dataclasses
import enum
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, pixel_array

# Display values of the 8-bit output (ymin and ymax of PS3.3 C.11.2.1.2.1).
OUTPUT_MAX = 255.0

# Pillow resampling for the viewport: LANCZOS keeps fine structure when a
# large image shrinks to a thumbnail.
RESAMPLING = Image.Resampling.LANCZOS

COLOUR_INTERPRETATIONS = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"})
GREYSCALE_INTERPRETATIONS = frozenset({"MONOCHROME1", "MONOCHROME2"})


class RenderError(Exception):
    """The instance cannot be rendered; `reason` is a message fit for the client."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class NotAnImage(RenderError):
    """The instance has no pixel data or pixel data that cannot be shown as an image."""


class UndecodablePixelData(RenderError):
    """The pixel data is there but could not be decoded."""


class RegionOutsideImage(ValueError):
    """A viewport's source region starts outside the image."""


class VoiFunction(enum.StrEnum):
    """VOI LUT Function (0028,1056), PS3.3 C.11.2.1.3, spelled as the DICOMweb window parameter spells it."""

    LINEAR = "linear"
    LINEAR_EXACT = "linear-exact"
    SIGMOID = "sigmoid"


@dataclasses.dataclass(frozen=True)
class Window:
    """A VOI window over Modality LUT output values."""

    center: float
    width: float
    function: VoiFunction = VoiFunction.LINEAR


@dataclasses.dataclass(frozen=True)
class Region:
    """A source region in image pixels; a negative width or height flips that axis."""

    x: int
    y: int
    width: int
    height: int


@dataclasses.dataclass(frozen=True)
class Viewport:
    """The size the rendered image must fit into, and the part of the image to show (PS3.18 8.3.5.1.3)."""

    width: int
    height: int
    region: Region | None = None


def read_dataset(path: Path) -> Dataset:
    """Read a stored Part 10 file; raise NotAnImage when it carries no pixel data."""
    try:
        dataset = dcmread(path)
    except OSError as exc:
        # The message leaves out the path, which is no business of the client.
        raise UndecodablePixelData(f"the stored file could not be read ({exc.strerror or type(exc).__name__})") from exc
    except (InvalidDicomError, ValueError) as exc:
        raise UndecodablePixelData(f"the stored file is not valid DICOM: {exc}") from exc
    if not any(keyword in dataset for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise NotAnImage(f"the instance has no pixel data (SOP Class {dataset.get('SOPClassUID', 'unknown')}), so it has no image rendering")
    return dataset


def render_frame(dataset: Dataset, index: int, *, window: Window | None = None) -> np.ndarray:
    """Return frame `index` (from 0) as 8-bit display values: rows x columns, or rows x columns x 3 for colour.

    `window` applies to greyscale frames only; colour frames ignore it.
    """
    interpretation = str(dataset.get("PhotometricInterpretation", "")).strip()
    if interpretation not in GREYSCALE_INTERPRETATIONS | COLOUR_INTERPRETATIONS | {"PALETTE COLOR"}:
        raise NotAnImage(f"rendering of photometric interpretation {interpretation or '(missing)'} is not supported")

    pixels = _decode(dataset, index)

    if interpretation == "PALETTE COLOR":
        return _palette_to_rgb(pixels, dataset)
    if interpretation in COLOUR_INTERPRETATIONS:
        return _colour_to_8_bits(pixels, dataset)
    display = _greyscale_to_8_bits(pixels, dataset, index, window)
    if interpretation == "MONOCHROME1":
        # PS3.3 C.7.6.3.1.2: in MONOCHROME1 the minimum value is white.
        np.subtract(255, display, out=display)
    return display


def _decode(dataset: Dataset, index: int) -> np.ndarray:
    try:
        # raw=False converts YBR_FULL and YBR_FULL_422 to RGB; JPEG 2000
        # decoders undo YBR_ICT and YBR_RCT themselves.
        return pixel_array(dataset, index=index, raw=False)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError, KeyError, IndexError) as exc:
        raise UndecodablePixelData(f"frame {index + 1} could not be decoded: {exc}") from exc


# Greyscale


def _greyscale_to_8_bits(pixels: np.ndarray, dataset: Dataset, index: int, window: Window | None) -> np.ndarray:
    values = _modality_values(pixels, dataset, index)
    if window is not None:
        return apply_window(values, window)

    stored_window = _stored_window(dataset, index)
    if stored_window is not None:
        return apply_window(values, stored_window)
    if "VOILUTSequence" in dataset:
        return _apply_voi_lut(values, dataset)
    return _apply_full_range(values)


def _modality_values(pixels: np.ndarray, dataset: Dataset, index: int) -> np.ndarray:
    """Apply the Modality LUT (PS3.3 C.11.1): a Modality LUT Sequence, or Rescale Slope and Intercept."""
    if "ModalityLUTSequence" in dataset:
        return apply_modality_lut(pixels, dataset).astype(np.float32, copy=False)

    rescale = _functional_group_item(dataset, index, "PixelValueTransformationSequence") or dataset
    slope = _first_number(rescale.get("RescaleSlope"), default=1.0)
    intercept = _first_number(rescale.get("RescaleIntercept"), default=0.0)
    values = pixels.astype(np.float32)
    if slope != 1.0:
        values *= np.float32(slope)
    if intercept != 0.0:
        values += np.float32(intercept)
    return values


def _stored_window(dataset: Dataset, index: int) -> Window | None:
    """Return the first valid window of the dataset, or of the frame's functional groups in an enhanced image."""
    source = _functional_group_item(dataset, index, "FrameVOILUTSequence") or dataset
    center = _first_number(source.get("WindowCenter"), default=None)
    width = _first_number(source.get("WindowWidth"), default=None)
    if center is None or width is None:
        return None

    name = str(source.get("VOILUTFunction", "LINEAR")).strip().upper() or "LINEAR"
    function = {"LINEAR": VoiFunction.LINEAR, "LINEAR_EXACT": VoiFunction.LINEAR_EXACT, "SIGMOID": VoiFunction.SIGMOID}.get(name, VoiFunction.LINEAR)
    # PS3.3 C.11.2.1.2: a linear window is at least 1 wide, the others more than 0.
    valid = width >= 1.0 if function is VoiFunction.LINEAR else width > 0.0
    if not valid:
        return None
    return Window(center, width, function)


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """Map Modality LUT output to 0..255 by the VOI LUT Function formulas of PS3.3 C.11.2.1.2 and C.11.2.1.3."""
    center, width = window.center, window.width
    if window.function is VoiFunction.SIGMOID:
        scaled = OUTPUT_MAX / (1.0 + np.exp(-4.0 * (values - np.float32(center)) / np.float32(width)))
        return _round_to_8_bits(scaled)
    if window.function is VoiFunction.LINEAR_EXACT:
        # y = ((x - c) / w + 0.5) * 255, clipped.
        return _linear(values, OUTPUT_MAX / width, OUTPUT_MAX * (0.5 - center / width))
    if width == 1.0:
        # The linear formula divides by w - 1: a width of 1 is a threshold at c - 0.5.
        return np.where(values > center - 0.5, np.uint8(255), np.uint8(0)).astype(np.uint8)
    # y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255, clipped.
    scale = OUTPUT_MAX / (width - 1.0)
    return _linear(values, scale, OUTPUT_MAX * 0.5 - (center - 0.5) * scale)


def _linear(values: np.ndarray, scale: float, offset: float) -> np.ndarray:
    scaled = values * np.float32(scale)
    scaled += np.float32(offset)
    return _round_to_8_bits(scaled)


def _round_to_8_bits(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32)
    values += np.float32(0.5)
    np.clip(values, 0.0, OUTPUT_MAX, out=values)
    return values.astype(np.uint8)


def _apply_voi_lut(values: np.ndarray, dataset: Dataset) -> np.ndarray:
    """Apply the first VOI LUT of the VOI LUT Sequence and scale its output range to 0..255."""
    item = dataset.VOILUTSequence[0]
    # LUT Descriptor (0028,3002): entries, first input value, bits per entry.
    bits = int(item.LUTDescriptor[2])
    mapped = apply_voi(np.rint(values).astype(np.int64), dataset, index=0)
    top = max(float(2**bits - 1), float(np.max(mapped)) if mapped.size else 0.0)
    return _round_to_8_bits(mapped.astype(np.float32) * np.float32(OUTPUT_MAX / top)) if top > 0 else np.zeros(mapped.shape, np.uint8)


def _apply_full_range(values: np.ndarray) -> np.ndarray:
    """Spread the frame's own minimum to maximum over 0..255, for images that name no window."""
    low, high = float(np.min(values)), float(np.max(values))
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return _linear(values, OUTPUT_MAX / (high - low), -low * OUTPUT_MAX / (high - low))


def _functional_group_item(dataset: Dataset, index: int, keyword: str) -> Dataset | None:
    """Return the item of `keyword` for frame `index` of an enhanced multi-frame image, per-frame before shared."""
    for groups, position in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        sequence = dataset.get(groups)
        if not sequence or position >= len(sequence):
            continue
        items = sequence[position].get(keyword)
        if items:
            return items[0]
    return None


def _first_number(value: Any, *, default: float | None) -> float | None:
    if value is None or value == "":
        return default
    if not isinstance(value, (str, bytes)) and hasattr(value, "__len__"):
        if len(value) == 0:
            return default
        value = value[0]
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


# Colour


def _colour_to_8_bits(pixels: np.ndarray, dataset: Dataset) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    bits = int(dataset.get("BitsStored") or pixels.dtype.itemsize * 8)
    return _round_to_8_bits(pixels.astype(np.float32) * np.float32(OUTPUT_MAX / (2**bits - 1)))


def _palette_to_rgb(pixels: np.ndarray, dataset: Dataset) -> np.ndarray:
    try:
        rgb = apply_color_lut(pixels, dataset)
    except (ValueError, AttributeError, KeyError) as exc:
        raise UndecodablePixelData(f"the palette colour lookup tables could not be applied: {exc}") from exc
    if rgb.dtype == np.uint8:
        return rgb
    # PS3.3 C.7.6.3.1.5 notes writers that put 8-bit entries in 16-bit
    # tables; such tables have no entry above 255 and are used as they are.
    if int(rgb.max(initial=0)) <= 255:
        return rgb.astype(np.uint8)
    return (rgb >> 8).astype(np.uint8)


# Viewport and encoding


def to_image(display: np.ndarray, viewport: Viewport | None) -> Image.Image:
    """Return the 8-bit frame as a Pillow image, cut to the viewport's region and scaled to fit it, keeping the aspect ratio."""
    if viewport is not None and viewport.region is not None:
        display = _cut_region(display, viewport.region)
    image = Image.fromarray(np.ascontiguousarray(display))
    if viewport is None:
        return image

    scale = min(viewport.width / image.width, viewport.height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size == image.size:
        return image
    return image.resize(size, RESAMPLING)


def _cut_region(display: np.ndarray, region: Region) -> np.ndarray:
    rows, columns = display.shape[:2]
    if region.x >= columns or region.y >= rows:
        raise RegionOutsideImage(f"the source region starts at ({region.x}, {region.y}), outside the {columns} x {rows} image")
    cut = display[region.y : region.y + abs(region.height), region.x : region.x + abs(region.width)]
    if region.width < 0:
        cut = cut[:, ::-1]
    if region.height < 0:
        cut = cut[::-1, :]
    return cut


MEDIA_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF"}


def encode(image: Image.Image, media_type: str, *, quality: int) -> bytes:
    """Encode `image` as `media_type` (a key of MEDIA_FORMATS); `quality` (1 to 100) applies to JPEG only."""
    output = io.BytesIO()
    image_format = MEDIA_FORMATS[media_type]
    if image_format == "JPEG":
        image.save(output, image_format, quality=quality)
    elif image_format == "PNG":
        # Measured on a 512x512 CT slice: level 1 took 2.3 ms for 23 kB, the
        # default level 6 took 4.9 ms for 20 kB.
        image.save(output, image_format, compress_level=1)
    else:
        image.save(output, image_format)
    return output.getvalue()
