"""Training data made like DIV2K's, held on the training device, cropped there in batched ops.

Loading (once, on the host, in a thread pool):

- every image file under the ``--train_dir`` folders (searched recursively, sorted) is decoded
  with the kit's :func:`~esrkit.imageio.read_rgb` and modcropped to the scale;
- its LR is the whole modcropped HR downscaled once with the kit's MATLAB-bicubic
  :func:`~esrkit.imresize.imresize` (never PIL/torch resizing), optionally cached on disk under a
  key made of the file's absolute path, size and mtime, the scale and the resize version;
- images smaller than the HR patch are skipped and counted; unreadable files are skipped and named;
  no usable image at all is a :class:`~esrkit.errors.KitError`.

Sampling (every step, on the device, no per-sample host work): all images are packed into one flat
uint8 tensor per resolution (HWC, row-major). An overlapping ``as_strided`` view of it, whose row
``k`` is the ``row_bytes`` bytes starting at byte ``k``, lets one indexing op gather the patch rows of
the whole batch. A patch's LR crop is ``patch/scale`` at ``position // scale`` of the HR crop, so the
two stay exactly aligned. Random vertical flips are folded into the row indices; horizontal flips
and transposes (which with the flips give the 90/180/270 rotations) are batched ``torch.where``.
"""

from __future__ import annotations

import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from esrkit.atomic import atomic_path, check_writable_folder
from esrkit.datasets import modcrop
from esrkit.errors import KitError
from esrkit.imageio import is_image_file, read_rgb
from esrkit.imresize import imresize
from esrkit.progress import Progress

# Bump when the LR recipe changes, so stale cache files are never reused.
LR_CACHE_VERSION = "matlab-bicubic-v1"
MAX_NAMED = 10


def find_images(folders: Iterable[str | Path]) -> list[Path]:
    """Every image file under ``folders`` (recursively; hidden files and folders skipped), sorted."""
    found: list[Path] = []
    for folder in folders:
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise KitError(f"training folder {root} does not exist or is not a folder: check --train_dir")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found.extend(
                Path(dirpath) / name for name in filenames if not name.startswith(".") and is_image_file(name)
            )
    return sorted(dict.fromkeys(p.resolve() for p in found))


class LRCache:
    """LR images on disk as ``.npy``, keyed by (absolute path, size, mtime, scale, resize version).

    The folder is made and checked when the cache is opened (before any work). One that exists but
    cannot be written is only read (a shared cache); after a failed write (disk full) nothing more
    is stored, with one warning.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()
        self.writable = True
        try:
            check_writable_folder(self.folder, "--cache_dir")
        except KitError as exc:
            if not self.folder.is_dir():
                raise KitError(f"{exc} (or leave it out)") from None
            self.writable = False
            print(f"warning: --cache_dir {self.folder} cannot be written: its cached LR images are read, "
                  f"new ones are not stored", file=sys.stderr)

    def path_for(self, image: Path, scale: int) -> Path:
        stat = image.stat()
        key = f"{image.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|x{scale}|{LR_CACHE_VERSION}"
        return self.folder / f"{hashlib.sha1(key.encode()).hexdigest()}.npy"

    def get(self, image: Path, scale: int, hr_shape: tuple[int, ...]) -> np.ndarray | None:
        """The cached LR, or None when absent, unreadable or of the wrong shape."""
        path = self.path_for(image, scale)
        expected = (hr_shape[0] // scale, hr_shape[1] // scale, 3)
        try:
            lr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        return lr if lr.shape == expected and lr.dtype == np.uint8 else None

    def put(self, image: Path, scale: int, lr: np.ndarray) -> None:
        """Store ``lr`` atomically; a failure (disk full) only costs the cache entries from then on."""
        if not self.writable:
            return
        try:
            with atomic_path(self.path_for(image, scale)) as tmp, open(tmp, "wb") as fh:
                np.save(fh, lr, allow_pickle=False)
        except (OSError, KitError) as exc:
            if self.writable:  # one warning, not one per image
                self.writable = False
                reason = (exc.strerror or exc) if isinstance(exc, OSError) else exc
                print(f"warning: could not write the LR cache for {image} ({reason}); "
                      f"the LR images are not cached from here on", file=sys.stderr)


@dataclass
class TrainingImages:
    """Decoded HR/LR pairs (host memory) plus what was skipped and why."""

    names: list[str]
    hr: list[np.ndarray]
    lr: list[np.ndarray]
    scale: int
    too_small: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.hr) + sum(a.nbytes for a in self.lr)

    def summary(self) -> str:
        mpix = sum(a.shape[0] * a.shape[1] for a in self.hr) / 1e6
        text = f"{len(self.hr)} training images ({mpix:.1f} MPix HR, {self.nbytes / 2**20:.0f} MiB HR+LR as uint8)"
        if self.too_small:
            text += f"; skipped {len(self.too_small)} smaller than the patch"
        if self.unreadable:
            text += f"; skipped {len(self.unreadable)} unreadable"
        return text


def _load_one(
    path: Path, scale: int, patch_size: int, cache: LRCache | None
) -> tuple[np.ndarray, np.ndarray] | str:
    """(HR, LR) for one file, or the reason it is skipped: 'small' or the error message."""
    try:
        hr = modcrop(read_rgb(path), scale)
    except KitError as exc:
        return str(exc)
    if min(hr.shape[:2]) < patch_size:
        return "small"
    lr = cache.get(path, scale, hr.shape) if cache is not None else None
    if lr is None:
        lr = imresize(hr, 1.0 / scale)
        if cache is not None:
            cache.put(path, scale, lr)
    return hr, lr


def load_training_images(
    folders: Sequence[str | Path],
    scale: int,
    patch_size: int,
    workers: int = 4,
    cache_dir: str | Path | LRCache | None = None,
    progress: bool = True,
) -> TrainingImages:
    """Decode every image under ``folders`` and make its LR (see the module docstring).

    ``cache_dir``: a folder or an opened :class:`LRCache`; ``progress``: a bar when standard error is
    a terminal (see :class:`esrkit.progress.Progress`), never with False.
    """
    if patch_size % scale:
        raise KitError(f"--patch_size {patch_size} must be a multiple of the scale {scale}")
    files = find_images(folders)
    if not files:
        raise KitError(
            f"no image files under {', '.join(map(str, folders))}: point --train_dir at folders of HR images "
            f"(PNG, JPEG, WebP, ...; subfolders are searched)"
        )
    cache = cache_dir if isinstance(cache_dir, LRCache) or cache_dir is None else LRCache(cache_dir)
    display = Progress(None if progress else False)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
            display.bar(len(files), "loading training images", unit="img") as bar:
        results = []
        for result in pool.map(lambda p: _load_one(p, scale, patch_size, cache), files):
            results.append(result)
            bar.advance()
    images = TrainingImages([], [], [], scale)
    for path, result in zip(files, results):
        if result == "small":
            images.too_small.append(str(path))
        elif isinstance(result, str):
            images.unreadable.append(result)
        else:
            images.names.append(str(path))
            images.hr.append(result[0])
            images.lr.append(result[1])
    if images.unreadable:
        shown = "\n  ".join(images.unreadable[:MAX_NAMED])
        more = f"\n  (+{len(images.unreadable) - MAX_NAMED} more)" if len(images.unreadable) > MAX_NAMED else ""
        print(f"warning: skipped {len(images.unreadable)} unreadable file(s):\n  {shown}{more}", file=sys.stderr)
    if images.too_small:
        print(f"warning: skipped {len(images.too_small)} of {len(files)} image(s) smaller than the "
              f"{patch_size}x{patch_size} HR patch (after modcrop to x{scale})", file=sys.stderr)
    if not images.hr:
        reasons = []
        if images.too_small:
            reasons.append(f"{len(images.too_small)} are smaller than the {patch_size}px patch (lower --patch_size)")
        if images.unreadable:
            reasons.append(f"{len(images.unreadable)} could not be decoded")
        raise KitError(f"no usable training images among the {len(files)} found under "
                       f"{', '.join(map(str, folders))}: {'; '.join(reasons)}")
    return images


def _pack(arrays: Sequence[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """All arrays flattened into one uint8 tensor on ``device``, and each one's start offset."""
    sizes = torch.tensor([a.size for a in arrays], dtype=torch.int64)
    offsets = torch.cumsum(sizes, 0) - sizes
    flat = torch.empty(int(sizes.sum()), dtype=torch.uint8, device=device)
    for array, start, size in zip(arrays, offsets.tolist(), sizes.tolist()):
        flat[start:start + size].copy_(torch.from_numpy(np.ascontiguousarray(array).reshape(-1)))
    return flat, offsets.to(device)


def pick_data_device(nbytes: int, train_device: torch.device, requested: str = "auto") -> torch.device:
    """Where to keep the images: the training device when they fit in half its free memory."""
    if requested != "auto":
        return train_device if requested == "train" else torch.device(requested)
    if train_device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(train_device)
        if nbytes > free // 2:
            print(f"note: the training images ({nbytes / 2**30:.1f} GiB) do not fit in half the free GPU memory "
                  f"({free / 2**30:.1f} GiB); keeping them in host memory (slower cropping)", file=sys.stderr)
            return torch.device("cpu")
    return train_device


@dataclass(frozen=True)
class CropParams:
    """Per-sample image index, LR top-left corner and flips (1-D tensors of the batch size).

    The patch is the crop, then flipped vertically, then horizontally, then transposed, each where
    its flag is set; the eight combinations are the identity, the flips and the 90/180/270 rotations.
    """

    index: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor
    vflip: torch.Tensor
    hflip: torch.Tensor
    transpose: torch.Tensor


class PatchSampler:
    """Random aligned (LR, HR) patch pairs with random flips/rotations, sampled on ``data_device``.

    ``sample`` returns uint8 tensors shaped (B, p, p, 3) and (B, P, P, 3) with P = p * scale, on
    ``out_device``. Each sample picks an image uniformly, then a uniform LR position. The only random
    source is this sampler's own generator, so its state fully determines the patch stream.
    """

    def __init__(
        self,
        images: TrainingImages,
        patch_size: int,
        seed: int,
        data_device: torch.device,
        out_device: torch.device | None = None,
    ) -> None:
        self.scale = images.scale
        self.hr_patch = patch_size
        self.lr_patch = patch_size // images.scale
        self.device = data_device
        self.out_device = out_device or data_device
        self.num_images = len(images.hr)
        self.hr_flat, self.hr_offsets = _pack(images.hr, data_device)
        self.lr_flat, self.lr_offsets = _pack(images.lr, data_device)
        self.lr_h = torch.tensor([a.shape[0] for a in images.lr], dtype=torch.int64, device=data_device)
        self.lr_w = torch.tensor([a.shape[1] for a in images.lr], dtype=torch.int64, device=data_device)
        self.hr_rows = self._row_view(self.hr_flat, self.hr_patch * 3)
        self.lr_rows = self._row_view(self.lr_flat, self.lr_patch * 3)
        self.generator = torch.Generator(device=data_device)
        self.generator.manual_seed(seed)

    @staticmethod
    def _row_view(flat: torch.Tensor, row_bytes: int) -> torch.Tensor:
        """Overlapping view: row ``k`` is ``flat[k : k + row_bytes]`` (no copy)."""
        return flat.as_strided((flat.numel() - row_bytes + 1, row_bytes), (1, 1))

    def _gather(
        self, rows_view: torch.Tensor, offsets: torch.Tensor, width: torch.Tensor,
        top: torch.Tensor, left: torch.Tensor, size: int, vflip: torch.Tensor,
    ) -> torch.Tensor:
        """(B, size, size, 3) crops at (top, left); rows reversed where ``vflip``."""
        steps = torch.arange(size, device=self.device)
        steps = torch.where(vflip[:, None], size - 1 - steps, steps)
        starts = offsets[:, None] + ((top[:, None] + steps) * width[:, None] + left[:, None]) * 3
        return rows_view[starts.reshape(-1)].view(-1, size, size, 3)

    @staticmethod
    def _flip_transpose(patches: torch.Tensor, hflip: torch.Tensor, transpose: torch.Tensor) -> torch.Tensor:
        patches = torch.where(hflip[:, None, None, None], patches.flip(2), patches)
        return torch.where(transpose[:, None, None, None], patches.transpose(1, 2), patches)

    def draw(self, batch: int) -> CropParams:
        """Random crop positions and flips for ``batch`` samples (advances the generator)."""
        g, dev = self.generator, self.device
        index = torch.randint(self.num_images, (batch,), generator=g, device=dev)
        u = torch.rand((2, batch), generator=g, device=dev, dtype=torch.float64)
        top = (u[0] * (self.lr_h[index] - self.lr_patch + 1)).long()
        left = (u[1] * (self.lr_w[index] - self.lr_patch + 1)).long()
        vflip, hflip, transpose = torch.randint(2, (3, batch), generator=g, device=dev).bool()
        return CropParams(index, top, left, vflip, hflip, transpose)

    def crop(self, p: CropParams) -> tuple[torch.Tensor, torch.Tensor]:
        """The (LR, HR) uint8 NHWC patches that ``p`` describes, on ``out_device``."""
        s = self.scale
        lr_w = self.lr_w[p.index]
        lr = self._gather(self.lr_rows, self.lr_offsets[p.index], lr_w, p.top, p.left, self.lr_patch, p.vflip)
        hr = self._gather(self.hr_rows, self.hr_offsets[p.index], lr_w * s, p.top * s, p.left * s,
                          self.hr_patch, p.vflip)
        lr = self._flip_transpose(lr, p.hflip, p.transpose)
        hr = self._flip_transpose(hr, p.hflip, p.transpose)
        if self.out_device != self.device:
            lr = lr.pin_memory().to(self.out_device, non_blocking=True)
            hr = hr.pin_memory().to(self.out_device, non_blocking=True)
        return lr, hr

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch of (LR, HR) uint8 patches, NHWC."""
        return self.crop(self.draw(batch))

    def get_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


def to_model_input(patches: torch.Tensor, data_range: float, channels_last: bool) -> torch.Tensor:
    """NHWC uint8 -> NCHW float32 in [0, data_range] (channels_last memory when asked: no copy then)."""
    x = patches.permute(0, 3, 1, 2).float()
    if data_range != 255.0:
        x = x.mul_(data_range / 255.0)
    return x if channels_last else x.contiguous()
