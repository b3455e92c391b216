"""Reading an image file as an (H, W, C) array: uint8 for 8-bit files, float32 for deeper ones, never cut to 8 bits."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import Image

SINGLE_CHANNEL_MODES = ("L", "I", "I;16", "F")
TIFF_SUFFIXES = (".tif", ".tiff")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_image(path: Path, keep_single_channel: bool) -> np.ndarray:
    """(H, W, C). 8-bit files: uint8, grayscale, palette and RGBA becoming RGB unless a single channel is kept.
    TIFFs (any bit depth, any number of bands) and 16-bit PNGs keep their channels as stored, one per band; their
    values come as float32 (uint16 exactly) unless they are 8-bit. Normalisation treats every input alike,
    (x / 255 - mean) / std, so 16-bit data needs its own statistics (``python -m datamodules.summary --channel-stats``).

    OpenCV decodes JPEGs about twice as fast as Pillow here; Pillow reads what OpenCV cannot and keeps
    single-channel modes; tifffile reads TIFFs of every layout (planar or interleaved bands, float samples)."""
    if Path(path).suffix.lower() in TIFF_SUFFIXES:
        return read_tiff(Path(path))
    data = np.fromfile(path, dtype=np.uint8)  # raises FileNotFoundError itself
    if data[:8].tobytes() == PNG_SIGNATURE and len(data) > 24 and data[24] == 16:  # IHDR bit depth: a 16-bit PNG
        decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if decoded is None:
            raise UnreadableImage(path, ValueError("OpenCV cannot decode this 16-bit PNG"))
        if decoded.ndim == 3:  # OpenCV's BGR(A) -> RGB(A)
            decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB if decoded.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
        return as_channels(decoded)
    if not keep_single_channel:
        if data[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in data[-32:].tobytes():  # JPEG by content
            # OpenCV decodes a truncated JPEG without complaint, the missing part grey: refuse it instead
            raise UnreadableImage(path, EOFError("no end-of-image marker: the file is truncated"))
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if bgr is not None:
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    try:
        with Image.open(path) as image:
            if keep_single_channel and image.mode in SINGLE_CHANNEL_MODES:
                return np.array(image.convert("L"))[..., None]
            return np.array(image.convert("RGB"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, SyntaxError) as error:  # PIL: UnidentifiedImageError, truncated files, bad headers
        raise UnreadableImage(path, error) from error


class UnreadableImage(ValueError):
    """A file that should be an image and cannot be decoded: named, with what to do."""

    def __init__(self, path: Path, error: BaseException, kind: str = "image") -> None:
        self.path = Path(path)
        self.reason = f"{type(error).__name__}: {str(error)[:160]}"  # what the decoder said, for a one-line report
        super().__init__(f"{kind} {path} cannot be decoded ({type(error).__name__}: {str(error)[:160]}); the file is "
                         f"corrupt, truncated or not an image. Replace it (re-export or re-download), or remove its id "
                         f"from the split file; dataset.check_images=true finds every such file before training")


def as_channels(array: np.ndarray) -> np.ndarray:
    """(H, W, C): uint8 kept, anything else as float32."""
    array = array[..., None] if array.ndim == 2 else array
    return array if array.dtype == np.uint8 else array.astype(np.float32)


def read_tiff(path: Path) -> np.ndarray:
    """Every band of the first series as a channel, whatever the order tifffile reports (``YXS``, ``CYX`` ...)."""
    try:
        with tifffile.TiffFile(path) as tiff:
            series = tiff.series[0]
            array, axes = series.asarray(), series.axes
    except FileNotFoundError:
        raise
    except Exception as error:  # tifffile: TiffFileError, truncated strips, unknown compression
        raise UnreadableImage(path, error) from error
    if "Y" not in axes or "X" not in axes:
        raise UnreadableImage(path, ValueError(f"TIFF axes {axes!r} have no Y and X"))
    order = [axes.index("Y"), axes.index("X")] + [i for i, axis in enumerate(axes) if axis not in "YX"]
    array = array.transpose(order)
    return as_channels(array.reshape(array.shape[0], array.shape[1], -1))


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header: tifffile for TIFFs (Pillow misreads planar multi-band ones), else Pillow."""
    if Path(path).suffix.lower() in TIFF_SUFFIXES:
        with tifffile.TiffFile(path) as tiff:
            series = tiff.series[0]
            shape = dict(zip(series.axes, series.shape))
            return shape["X"], shape["Y"]
    with Image.open(path) as image:
        return image.size
