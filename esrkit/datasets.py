"""Validation/test sets in the official layouts, paired by name (never by sort order).

Layouts (``--layout`` forces one; by default it is detected from the folder):

=============  ============================  ===========================  ======================
layout         split: HR folder              LR folder                    LR file name
=============  ============================  ===========================  ======================
ntire2023      valid: DIV2K_valid_HR          DIV2K_valid_LR               ``{stem}x4.png``
               test: DIV2K_test_HR            DIV2K_test_LR                ``{stem}.png`` (no x4)
               hybrid_test: LSDIR_DIV2K_test_HR  LSDIR_DIV2K_test_LR     ``{stem}x4.png``
ntire2024      valid: DIV2K_LSDIR_valid_HR    DIV2K_LSDIR_valid_LR         ``{stem}x4.png``
               test: DIV2K_LSDIR_test_HR      DIV2K_LSDIR_test_LR          ``{stem}x4.png``
benchmark      valid: HR                      LR_bicubic/X4                ``{stem}x4.png``
folder         valid: the folder itself       made by the kit's MATLAB-bicubic ``imresize``
=============  ============================  ===========================  ======================

HR images are modcropped to the scale; an LR image must be exactly HR/scale. Whatever a split's HR or LR
folder holds that the split does not use (a non-image file, a broken link, an LR image no HR image is named
for) is skipped with a warning naming it.

LR-only splits (``lr_only=True``): the 2024/2025 test phase gives teams the LR images alone. The
split is then listed from its LR folder (for ``folder``, the folder's images are the LR), names
come from the LR file names (``0901x4.png`` -> ``0901``), and there is nothing to measure PSNR
against: a run gives runtimes and SR images only.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from esrkit.errors import KitError
from esrkit.imageio import is_image_file, read_header, read_rgb


@dataclass(frozen=True)
class SplitSpec:
    """Where one split's HR and LR files are, relative to the data folder."""

    hr_dir: str
    lr_dir: str | None  # None: LR is made from HR by imresize
    lr_name: str = "{stem}x{scale}.png"


LAYOUTS: dict[str, dict[str, SplitSpec]] = {
    "ntire2023": {
        "valid": SplitSpec("DIV2K_valid_HR", "DIV2K_valid_LR"),
        "test": SplitSpec("DIV2K_test_HR", "DIV2K_test_LR", "{stem}.png"),
        "hybrid_test": SplitSpec("LSDIR_DIV2K_test_HR", "LSDIR_DIV2K_test_LR"),
    },
    "ntire2024": {
        "valid": SplitSpec("DIV2K_LSDIR_valid_HR", "DIV2K_LSDIR_valid_LR"),
        "test": SplitSpec("DIV2K_LSDIR_test_HR", "DIV2K_LSDIR_test_LR"),
    },
    "benchmark": {"valid": SplitSpec("HR", "LR_bicubic/X{scale}")},
    "folder": {"valid": SplitSpec(".", None)},
}


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop height and width down to multiples of ``scale`` (top-left kept, as the kits do)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


@dataclass(frozen=True)
class ImagePair:
    """One HR image and its LR counterpart.

    ``lr_path`` None: the kit makes the LR from the HR. ``hr_path`` None: an LR-only split (no metrics).
    """

    name: str
    hr_path: Path | None
    lr_path: Path | None

    def load(self, scale: int) -> tuple[np.ndarray, np.ndarray]:
        """(HR modcropped to ``scale``, LR), both HxWx3 RGB uint8; the LR is checked to be HR/scale."""
        if self.hr_path is None:
            raise KitError(f"{self.name}: this split was opened LR-only ({self.lr_path}); metrics need the HR images")
        hr = modcrop(read_rgb(self.hr_path), scale)
        if self.lr_path is None:
            from esrkit.imresize import imresize

            return hr, imresize(hr, 1.0 / scale)
        lr = read_rgb(self.lr_path)
        self._check_lr_size(lr.shape[1], lr.shape[0], hr.shape[1], hr.shape[0], scale)
        return hr, lr

    def _check_lr_size(self, lr_w: int, lr_h: int, hr_w: int, hr_h: int, scale: int) -> None:
        """The LR must be exactly the (modcropped) HR / ``scale``."""
        hr_w, hr_h = hr_w - hr_w % scale, hr_h - hr_h % scale
        if (lr_w, lr_h) != (hr_w // scale, hr_h // scale):
            raise KitError(
                f"LR {self.lr_path} is {lr_w}x{lr_h} but HR {self.hr_path} (modcropped to {hr_w}x{hr_h}) needs an "
                f"x{scale} LR of {hr_w // scale}x{hr_h // scale}: regenerate the LR from this HR"
            )

    def check_files(self, scale: int) -> None:
        """What can be known without decoding, checked now: every file's header (a corrupt, truncated or
        oversized file is an error naming it) and the LR's size against the HR's."""
        hr = read_header(self.hr_path, verify=True) if self.hr_path is not None else None
        lr = read_header(self.lr_path, verify=True) if self.lr_path is not None else None
        if hr is not None and lr is not None:
            self._check_lr_size(lr.width, lr.height, hr.width, hr.height, scale)

    def load_lr(self, scale: int) -> np.ndarray:
        """The LR image alone (no HR needed when it is on disk)."""
        return self.load(scale)[1] if self.lr_path is None else read_rgb(self.lr_path)

    def load_inputs(self, scale: int) -> tuple[np.ndarray | None, np.ndarray]:
        """(HR, LR) as :meth:`load`, or (None, LR) for an LR-only pair: what an inference run reads."""
        return (None, self.load_lr(scale)) if self.hr_path is None else self.load(scale)


@dataclass(frozen=True)
class Split:
    """An ordered list of pairs (sorted by HR file name, as the official kits' sorted glob)."""

    name: str
    layout: str
    root: Path
    pairs: tuple[ImagePair, ...]

    def check_files(self, scale: int = 4) -> None:
        """Every pair's files checked from their headers (:meth:`ImagePair.check_files`) -- before any model is
        loaded, so that a bad image is found in a second rather than after loading, counting and every image
        before it."""
        for pair in self.pairs:
            pair.check_files(scale)

    @property
    def lr_made_by_kit(self) -> bool:
        return any(p.lr_path is None for p in self.pairs)

    @property
    def has_hr(self) -> bool:
        """False for an LR-only split: no PSNR/SSIM can be measured on it."""
        return all(p.hr_path is not None for p in self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)


def detect_layout(data_dir: str | Path, scale: int = 4) -> str:
    """The layout of ``data_dir`` (see the module docstring), from its HR or LR folders."""
    root = _existing_dir(data_dir)
    for layout in ("ntire2024", "ntire2023", "benchmark"):
        for spec in LAYOUTS[layout].values():
            folders = (spec.hr_dir,) if spec.lr_dir is None else (spec.hr_dir, spec.lr_dir.format(scale=scale))
            if any((root / folder).is_dir() for folder in folders):
                return layout
    if any(is_image_file(p) for p in root.iterdir() if p.is_file()):
        return "folder"
    raise KitError(
        f"{root} holds no images and none of the known layouts (DIV2K_valid_HR/, DIV2K_LSDIR_valid_HR/, "
        f"HR/ + LR_bicubic/X4/, or a folder of HR images): point --data_dir at the folder that contains them"
    )


def open_split(
    data_dir: str | Path, split: str = "valid", layout: str = "auto", scale: int = 4, lr_only: bool = False
) -> Split:
    """Pair the HR and LR files of one split; every HR must have its LR; every file's header is checked.

    ``lr_only``: list the split's LR images alone (see the module docstring), HR or not.
    """
    root = _existing_dir(data_dir)
    layout = detect_layout(root, scale) if layout == "auto" else layout
    if layout not in LAYOUTS:
        raise KitError(f"unknown layout {layout!r}; choose one of: auto, {', '.join(LAYOUTS)}")
    if split not in LAYOUTS[layout]:
        raise KitError(
            f"layout {layout!r} has no {split!r} split (it has: {', '.join(LAYOUTS[layout])}); "
            f"check --data_dir / --layout and the --include_test / --hybrid_test flags"
        )
    spec = LAYOUTS[layout][split]
    if lr_only:
        return _checked(Split(split, layout, root, _lr_only_pairs(root, spec, scale)), scale)
    hr_dir = root / spec.hr_dir
    lr_dir = None if spec.lr_dir is None else root / spec.lr_dir.format(scale=scale)
    if not hr_dir.is_dir():
        hint = (f"; its LR folder {lr_dir} is there: to run without HR (runtimes and SR images, no PSNR) use "
                f"test_demo.py or package with --lr_only"
                if lr_dir is not None and lr_dir.is_dir() else "")
        raise KitError(f"split {split!r} of layout {layout!r} needs the folder {hr_dir}, which does not exist{hint}")
    hr_files = _image_files(hr_dir)
    if not hr_files:
        raise KitError(f"no images in {hr_dir}: put the HR images of the {split!r} split there")
    if lr_dir is None:
        pairs = tuple(ImagePair(p.stem, p, None) for p in hr_files)
    else:
        if not lr_dir.is_dir():
            raise KitError(f"HR images found in {hr_dir} but the LR folder {lr_dir} does not exist")
        _warn_unpaired_lr(lr_dir, {spec.lr_name.format(stem=p.stem, scale=scale) for p in hr_files}, hr_dir,
                          spec.lr_name.format(stem="NAME", scale=scale))
        pairs = tuple(_pair(p, lr_dir, spec.lr_name, scale) for p in hr_files)
    return _checked(Split(split, layout, root, pairs), scale)


def _checked(split: Split, scale: int) -> Split:
    """Every file of a split is checked when it is opened (:meth:`Split.check_files`: headers only, a second
    for DIV2K), so that no run starts on data it would stop on."""
    split.check_files(scale)
    return split


def open_splits(
    data_dir: str | Path, names: Sequence[str], layout: str = "auto", scale: int = 4, lr_only: bool = False
) -> list[Split]:
    """Several splits of one folder (e.g. valid and test), each opened and checked by :func:`open_split`."""
    return [open_split(data_dir, name, layout, scale, lr_only=lr_only) for name in names]


def _lr_only_pairs(root: Path, spec: SplitSpec, scale: int) -> tuple[ImagePair, ...]:
    """The split's LR images as HR-less pairs, named by inverting the LR file-name template."""
    lr_dir = root / (spec.hr_dir if spec.lr_dir is None else spec.lr_dir.format(scale=scale))
    if not lr_dir.is_dir():
        raise KitError(f"--lr_only needs the LR folder {lr_dir}, which does not exist: check --data_dir / --layout")
    prefix, _, suffix = spec.lr_name.format(scale=scale, stem="{stem}").partition("{stem}")
    pairs, strays = [], []
    # Named by the template, two files cannot give one name; a plain folder's a.png and a.jpg would.
    for path in _image_files(lr_dir) if spec.lr_dir is None else _listed_images(lr_dir):
        if spec.lr_dir is None:
            pairs.append(ImagePair(path.stem, None, path))
        elif path.name.startswith(prefix) and path.name.endswith(suffix) and len(path.name) > len(prefix + suffix):
            pairs.append(ImagePair(path.name[len(prefix) : len(path.name) - len(suffix)], None, path))
        else:
            strays.append(path.name)
    if strays:
        print(f"warning: ignoring {len(strays)} file(s) in {lr_dir} not named like "
              f"{spec.lr_name.format(stem='NAME', scale=scale)}: {_names(strays)}", file=sys.stderr)
    if not pairs:
        raise KitError(f"no LR images named {spec.lr_name.format(stem='NAME', scale=scale)} in {lr_dir}")
    return tuple(pairs)


def _warn_unpaired_lr(lr_dir: Path, expected: set[str], hr_dir: Path, template: str) -> None:
    """The LR folder of a paired split is read by name; what else it holds is named in a warning (an LR image
    misnamed, or one whose HR is missing, would otherwise be left out without a word)."""
    strays = [p.name for p in _listed_images(lr_dir) if p.name not in expected]
    if strays:
        print(f"warning: ignoring {len(strays)} image(s) in {lr_dir} that are not the LR ({template}) of an HR image "
              f"in {hr_dir}: {_names(strays)}", file=sys.stderr)


def _pair(hr: Path, lr_dir: Path, template: str, scale: int) -> ImagePair:
    lr = lr_dir / template.format(stem=hr.stem, scale=scale)
    if not lr.is_file():
        raise KitError(f"HR {hr} has no LR: expected {lr} (x{scale} LR named {template.format(stem='NAME', scale=scale)})")
    return ImagePair(hr.stem, hr, lr)


def _existing_dir(data_dir: str | Path) -> Path:
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise KitError(f"data folder {root} does not exist or is not a folder: check --data_dir")
    return root


def _names(names: list[str], shown: int = 5) -> str:
    """The first few of ``names``, and how many more there are."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _listed_images(folder: Path) -> list[Path]:
    """The image files of ``folder`` in sorted order; other files are skipped with a warning, and so are broken
    links (hidden files, such as ``.DS_Store``, silently)."""
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    broken = [p.name for p in entries if p.is_symlink() and not p.exists()]
    if broken:
        print(f"warning: ignoring {len(broken)} broken link(s) in {folder}: {_names(broken)}", file=sys.stderr)
    files = [p for p in entries if p.is_file()]
    skipped = [p.name for p in files if not is_image_file(p)]
    if skipped:
        print(f"warning: ignoring {len(skipped)} non-image file(s) in {folder}: {_names(skipped)}", file=sys.stderr)
    return [p for p in files if is_image_file(p)]


def _image_files(folder: Path) -> list[Path]:
    """The images a split is listed from (:func:`_listed_images`).

    Two images whose names differ only in the extension (``a.png``, ``a.jpg``) would give one SR file
    and one results entry for both: that is an error naming them.
    """
    images = _listed_images(folder)
    by_stem: dict[str, Path] = {}
    for path in images:
        if path.stem in by_stem:
            raise KitError(f"{by_stem[path.stem]} and {path} have the same name {path.stem!r}: their SR images and "
                           f"results would overwrite each other; rename or remove one")
        by_stem[path.stem] = path
    return images


# Colour photos that scikit-image ships inside its wheel (no download): the embedded demo set.
DEMO_IMAGES = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")


def demo_split() -> Split:
    """A small demo set of real photos (not DIV2K); the LR is made by the kit's MATLAB-bicubic imresize."""
    try:
        import skimage.data
    except ImportError:
        raise KitError("the demo set needs scikit-image (pip install scikit-image), or pass --data_dir") from None
    root = Path(skimage.data.__file__).parent
    missing = [n for n in DEMO_IMAGES if not (root / n).is_file()]
    if missing:
        raise KitError(f"scikit-image's sample photos {missing} are missing from {root}; pass --data_dir instead")
    pairs = tuple(ImagePair(Path(n).stem, root / n, None) for n in DEMO_IMAGES)
    return Split("valid", "demo", root, pairs)
