"""Images in and out: files <-> RGB uint8 arrays (as the official kits read them, with OpenCV) <-> model tensors.

Files:
- grayscale -> three equal channels (as the kits' ``imread_uint`` does: GGG);
- RGBA / grayscale+alpha -> the alpha channel is dropped (the kits' reader fails on it);
- 16-bit -> 8-bit by round(x / 257), which maps 65535 to 255 exactly.

Tensors (the kits' ``uint2tensor4`` and ``tensor2uint``): an HxWx3 uint8 image becomes a 1x3xHxW
float32 tensor in [0, data_range]; a model's output goes back by clamping to [0, data_range],
scaling to 255 and rounding half to even, bit-identical to the official code on every device.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from esrkit.atomic import atomic_write
from esrkit.errors import KitError, NonFiniteOutput

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
MAX_PIXELS_ENV = "ESRKIT_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 2**28  # 268 Mpixels (16384 x 16384): 100x a DIV2K HR image, below OpenCV's own 2^30 assertion
# Headers are read with Pillow, which decodes nothing until asked; its decompression-bomb limit is replaced by
# the kit's own (max_pixels), checked on every header before any decoding.
Image.MAX_IMAGE_PIXELS = None


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def max_pixels() -> int:
    """The largest image (width x height) the kit decodes: ``$ESRKIT_MAX_IMAGE_PIXELS`` or 2^28."""
    value = os.environ.get(MAX_PIXELS_ENV, "")
    return int(value) if value.strip().isdigit() and int(value) > 0 else DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says, read without decoding its pixels."""

    path: Path
    width: int
    height: int
    format: str


class UndecodableImage(KitError):
    """An image file that is corrupt, truncated or not an image at all."""


def _corrupt(path: Path) -> UndecodableImage:
    return UndecodableImage(f"cannot decode image {path}: the file is corrupt, truncated or not an image; replace or "
                            f"remove it")


def read_header(path: str | Path, verify: bool = False) -> ImageHeader:
    """The size and format of an image file from its header (nothing decoded), within :func:`max_pixels`.

    ``verify`` also checks the file's integrity where the format allows it without decoding (PNG: every
    chunk's CRC and the end marker, so a truncated or damaged file is found now rather than when reached).
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's warnings on odd metadata; the pixels are OpenCV's to decode
            with Image.open(path) as img:
                header = ImageHeader(path, img.width, img.height, img.format or "?")
                if header.width * header.height > max_pixels():
                    raise KitError(
                        f"image {path} is {header.width}x{header.height} ({header.width * header.height / 1e6:.0f} "
                        f"Mpixels), above the kit's limit of {max_pixels() / 1e6:.0f} Mpixels: a header that lies, or "
                        f"an image far beyond any challenge set -- remove it, or raise ${MAX_PIXELS_ENV}"
                    )
                if verify:
                    img.verify()
    except KitError:
        raise
    except OSError as exc:
        if isinstance(exc, UnidentifiedImageError) or not exc.strerror:
            raise _corrupt(path) from None
        raise KitError(f"cannot read image {path}: {exc.strerror}") from None
    except Exception:  # noqa: BLE001 - Pillow raises SyntaxError, ValueError, struct.error ... on damaged files
        raise _corrupt(path) from None
    return header


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as an HxWx3 RGB uint8 array (its header checked first: see :func:`read_header`)."""
    path = Path(path)
    try:
        read_header(path)
    except UndecodableImage:
        pass  # a format Pillow does not know: OpenCV's decoder has the last word (and its own pixel limit)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise KitError(f"cannot read image {path}: {exc.strerror or exc}") from None
    try:
        img = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    except cv2.error:
        img = None
    if img is None:
        raise _corrupt(path)
    return to_rgb_uint8(img, source=str(path), bgr=True)


def to_rgb_uint8(img: np.ndarray, source: str = "image", bgr: bool = False) -> np.ndarray:
    """Convert a decoded array (gray, gray+alpha, BGR(A)/RGB(A), 8 or 16 bit) to RGB uint8."""
    if img.dtype == np.uint16:
        img = np.round(img.astype(np.float64) / 257.0).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise KitError(f"{source}: unsupported pixel type {img.dtype}; convert it to an 8- or 16-bit PNG")
    if img.ndim == 2:
        img = img[:, :, None]
    channels = img.shape[2]
    if channels in (1, 2):
        return np.ascontiguousarray(np.repeat(img[:, :, :1], 3, axis=2))
    if channels in (3, 4):
        img = img[:, :, :3]
        return np.ascontiguousarray(img[:, :, ::-1] if bgr else img)
    raise KitError(f"{source}: {channels} channels; expected gray, RGB or RGBA")


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 array as PNG, atomically (no half-written file on a crash)."""
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise KitError(f"cannot encode {path} as PNG")
    atomic_write(path, encoded.tobytes())


# --- tensors ------------------------------------------------------------------------------------


def uint8_to_tensor(img: np.ndarray, data_range: float) -> torch.Tensor:
    """HxWxC (or HxW) uint8 array -> 1xCxHxW float32 tensor ``img / (255 / data_range)`` (``uint2tensor4``).

    The tensor keeps the array's HWC memory order (channels_last strides), as the kits' does.
    """
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3:
        raise ValueError(f"expected an HxW or HxWxC image, got shape {img.shape}")
    chw = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()
    return chw.div(255.0 / data_range).unsqueeze(0)


def _single_image(t: torch.Tensor) -> torch.Tensor:
    """A 1xCxHxW or CxHxW tensor as CxHxW."""
    if t.ndim == 4:
        if t.shape[0] != 1:
            raise ValueError(f"expected a batch of one image, got shape {tuple(t.shape)}")
        t = t[0]
    if t.ndim != 3:
        raise ValueError(f"expected a 1xCxHxW or CxHxW tensor, got shape {tuple(t.shape)}")
    return t


def quantise(t: torch.Tensor, data_range: float) -> torch.Tensor:
    """A model output (1xCxHxW or CxHxW) as an HxWxC uint8 tensor on its own device (``tensor2uint``).

    float32, ``clamp(0, data_range)``, ``* 255``, ``/ data_range``, round half to even. Divides by a
    device tensor rather than a Python number: CUDA turns a division by a scalar into a
    multiplication by its reciprocal, which can round differently from numpy's division.
    """
    x = _single_image(t).detach().float().clamp(0, data_range)
    x.mul_(255.0).div_(torch.full((), data_range, dtype=torch.float32, device=x.device)).round_()
    return x.to(torch.uint8).permute(1, 2, 0).contiguous()


def count_non_finite(t: torch.Tensor) -> int:
    """How many values of ``t`` are NaN or Inf -- to be asked *before* the clamp of :func:`quantise`, which would
    turn an Inf into the range's end (a made-up pixel, then a made-up PSNR). The common all-finite case costs
    one sum and allocates nothing the size of ``t``."""
    if torch.isfinite(t.sum()):
        return 0
    return int((~torch.isfinite(t)).sum())  # a non-finite sum: NaN/Inf inside, or finite values summing past float32


def tensor_to_uint8(t: torch.Tensor, data_range: float, source: str = "the model") -> np.ndarray:
    """:func:`quantise`, brought back to the host as an HxWxC uint8 array; an output holding NaN/Inf is an error
    (:class:`~esrkit.errors.NonFiniteOutput` naming ``source``), never an image."""
    bad = count_non_finite(t)
    if bad:
        raise NonFiniteOutput(f"{source} gave {bad} non-finite value(s) (NaN/Inf) of {t.numel()}: broken weights or "
                              f"a numerically unstable model -- no image or PSNR is made from it")
    return quantise(t, data_range).cpu().numpy()
