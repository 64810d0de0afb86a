"""Reading and writing images as the official kits do (OpenCV, RGB uint8), with predictable conversions.

- grayscale -> three equal channels (as the kits' ``imread_uint`` does: GGG);
- RGBA / grayscale+alpha -> the alpha channel is dropped (the kits' reader fails on it);
- 16-bit -> 8-bit by round(x / 257), which maps 65535 to 255 exactly.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from esrkit.atomic import atomic_write
from esrkit.errors import KitError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as an HxWx3 RGB uint8 array."""
    path = Path(path)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise KitError(f"cannot read image {path}: {exc.strerror or exc}") from None
    img = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if img is None:
        raise KitError(f"cannot decode image {path}: the file is corrupt, truncated or not an image; replace or remove it")
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
