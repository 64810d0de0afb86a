#!/usr/bin/env python3
"""The NTIRE ESR online phase's scoring program: a team's uploaded SR images against the hidden HR images.

Built into a zip by ``python -m esrkit.submission scoring-program``; the platform runs it as its ``metadata``
file says::

    python3 $program/score.py $input $output          (CodaLab / CodaBench)
    python3 score.py --ref HR_FOLDER --res SR_FOLDER OUTPUT   (a run by hand)

``$input/ref`` holds the HR images (flat, or in a layout the organisers keep: ``DIV2K_valid_HR/``,
``DIV2K_LSDIR_valid_HR/``, ``HR/``, ... -- config.json lists the folders and their splits), ``$input/res``
the team's upload: PNG files named as the HR images (``0801.png``), flat or in one folder. ``$output``
receives ``scores.txt`` (CodaLab: ``key: value`` lines), ``scores.json`` (CodaBench) and
``detailed_results.html`` -- all three, or none: any problem with the upload is a message on stderr, exit
code 2 and no score.

The numbers are esrkit's (and the official kits'): HR modcropped to the scale, SR exactly that size, a border
of ``scale`` pixels removed, uint8 images, float64 arithmetic, PSNR on RGB over all channels, the mean of the
per-image values (``sum / len``); Y-PSNR on BT.601 luma; SSIM with an 11x11 Gaussian window (sigma 1.5), valid
region only. Needs Python 3.8+, numpy and Pillow, nothing else: it runs on the platforms' default images.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import struct
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

CONFIG_NAME = "config.json"
OUTPUT_NAMES = ("detailed_results.html", "scores.txt", "scores.json")  # written in this order, each whole
EXIT_OK, EXIT_REFUSED, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 2, 70, 130
LISTED = 8  # names listed per problem before "... and N more"

# In an upload, accepted without a word: the kit's upload zip carries readme.txt; CodaBench's prediction step
# leaves its own "metadata" file beside the submission's files; the rest is what zip tools and desktops add.
QUIET_FILES = frozenset({"readme.txt", "metadata", "thumbs.db", "desktop.ini"})
QUIET_FOLDERS = frozenset({"__macosx"})
OTHER_IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"})
ARCHIVE_SUFFIXES = frozenset({".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar"})

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FORMAT_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"BM", "BMP"), (b"GIF8", "GIF"), (b"RIFF", "WebP"),
                     (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"PK\x03\x04", "zip"))

SSIM_C1 = (0.01 * 255.0) ** 2
SSIM_C2 = (0.03 * 255.0) ** 2
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
LUMA = (65.481, 128.553, 24.966)  # BT.601 (MATLAB rgb2ycbcr) for values in [0, 255]; Y = 16 + (...) / 255
LUMA_OFFSET = 16.0


class Refused(Exception):
    """The upload (or the reference data) cannot be scored: a headline and one line per problem."""

    def __init__(self, headline: str, problems: list[str] | None = None) -> None:
        super().__init__(headline)
        self.headline = headline
        self.problems = problems or []


class BadConfig(Exception):
    """config.json is missing or not what this scorer reads: the zip was not made by the kit's builder."""


# --- settings -----------------------------------------------------------------------------------


class Config:
    """config.json, written by the kit's builder beside this file."""

    def __init__(self, data: dict) -> None:
        try:
            self.challenge = str(data["challenge"])
            self.year = data["year"]
            self.scale = int(data["scale"])
            self.metrics = [(str(m["name"]), str(m["label"]), int(m["decimals"])) for m in data["metrics"]]
            self.reference_folders = {str(k): str(v) for k, v in data["reference_folders"].items()}
            self.foreign_folders = {str(k): str(v) for k, v in data["foreign_folders"].items()}
            self.flat_split = str(data["flat_split"])
            self.bars = {str(k): float(v) for k, v in data["bars"].items()}
            self.set_sizes = {str(k): int(v) for k, v in data["set_sizes"].items()}
            self.sets = str(data["sets"])
            self.max_pixels = int(data["max_pixels"])
            self.built_by = str(data["built_by"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadConfig(f"{CONFIG_NAME} lacks or mistypes {exc}") from None
        unknown = [name for name, _, _ in self.metrics if name not in METRICS]
        if unknown or not self.metrics:
            raise BadConfig(f"{CONFIG_NAME} names metrics this scorer does not compute: {unknown or 'none at all'}")
        if self.scale < 1:
            raise BadConfig(f"{CONFIG_NAME}: scale {self.scale}")

    @classmethod
    def load(cls, path: Path) -> "Config":
        try:
            return cls(json.loads(path.read_text(encoding="utf-8")))
        except OSError as exc:
            raise BadConfig(f"cannot read {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise BadConfig(f"{path} is not JSON: {exc}") from None


# --- the metrics (esrkit/metrics.py's arithmetic, in numpy alone) -------------------------------


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Height and width cut down to multiples of ``scale``, top-left kept."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 Y of an HxWx3 image in [0, 255], float64, not rounded."""
    x = rgb.astype(np.float64)
    return LUMA_OFFSET + (LUMA[0] * x[..., 0] + LUMA[1] * x[..., 1] + LUMA[2] * x[..., 2]) / 255.0


def _planes(sr: np.ndarray, hr: np.ndarray, border: int, y: bool) -> tuple[np.ndarray, np.ndarray]:
    """Both images without their border, as float64 RGB (or Y)."""
    h, w = hr.shape[:2]
    if border:
        sr, hr = sr[border : h - border, border : w - border], hr[border : h - border, border : w - border]
    if y:
        return luma(sr), luma(hr)
    return sr.astype(np.float64), hr.astype(np.float64)


def psnr(sr: np.ndarray, hr: np.ndarray, border: int, y: bool = False) -> float:
    """``20 log10(255 / sqrt(MSE))`` over every remaining pixel and channel; ``inf`` for identical images."""
    a, b = _planes(sr, hr, border, y)
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0.0 else 20.0 * math.log10(255.0 / math.sqrt(mse))


def gaussian_taps() -> tuple[float, ...]:
    """The 11 taps of a sigma-1.5 Gaussian, normalised to sum 1 (OpenCV's getGaussianKernel(11, 1.5))."""
    x = np.arange(SSIM_WINDOW, dtype=np.float64) - (SSIM_WINDOW - 1) / 2.0
    taps = np.exp(-(x ** 2) / (2.0 * SSIM_SIGMA ** 2))
    return tuple(float(t) for t in taps / taps.sum())


def window_means(plane: np.ndarray, taps: tuple[float, ...]) -> np.ndarray:
    """The Gaussian-weighted mean around every pixel whose window lies inside ``plane`` (rows, then columns)."""
    n = len(taps)
    rows_out, cols_out = plane.shape[0] - n + 1, plane.shape[1] - n + 1
    rows = np.zeros((rows_out, plane.shape[1]))
    for k, tap in enumerate(taps):
        rows += tap * plane[k : k + rows_out, :]
    out = np.zeros((rows_out, cols_out))
    for k, tap in enumerate(taps):
        out += tap * rows[:, k : k + cols_out]
    return out


def ssim_plane(a: np.ndarray, b: np.ndarray, taps: tuple[float, ...]) -> float:
    """The mean of one plane's SSIM map."""
    mu_a, mu_b = window_means(a, taps), window_means(b, taps)
    var_a = window_means(a * a, taps) - mu_a * mu_a
    var_b = window_means(b * b, taps) - mu_b * mu_b
    cov = window_means(a * b, taps) - mu_a * mu_b
    numerator = (2.0 * mu_a * mu_b + SSIM_C1) * (2.0 * cov + SSIM_C2)
    denominator = (mu_a * mu_a + mu_b * mu_b + SSIM_C1) * (var_a + var_b + SSIM_C2)
    return float((numerator / denominator).mean())


def ssim(sr: np.ndarray, hr: np.ndarray, border: int, y: bool = False) -> float:
    """SSIM (Wang et al. 2004) with C1 = (0.01*255)^2, C2 = (0.03*255)^2; the mean over RGB's channels."""
    a, b = _planes(sr, hr, border, y)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise Refused(f"SSIM needs {SSIM_WINDOW}x{SSIM_WINDOW} pixels after the border, the image has "
                      f"{a.shape[1]}x{a.shape[0]}")
    taps = gaussian_taps()
    if a.ndim == 2:
        return float(np.mean([ssim_plane(a, b, taps)]))
    return float(np.mean([ssim_plane(a[..., c], b[..., c], taps) for c in range(a.shape[2])]))


METRICS = {  # config name -> (function, on Y)
    "psnr": (psnr, False),
    "psnr_y": (psnr, True),
    "ssim": (ssim, False),
    "ssim_y": (ssim, True),
}


# --- reading PNG files ------------------------------------------------------------------------------


class PngHeader:
    """What a PNG's IHDR chunk says: read from the file's first 33 bytes, nothing decoded."""

    def __init__(self, width: int, height: int, bit_depth: int, colour_type: int) -> None:
        self.width, self.height, self.bit_depth, self.colour_type = width, height, bit_depth, colour_type

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def file_kind(head: bytes) -> str:
    """What a file that is not a PNG looks like, for the message."""
    for signature, kind in FORMAT_SIGNATURES:
        if head.startswith(signature):
            return f"a {kind} file"
    return "empty" if not head else "not an image this program knows"


def png_header(path: Path, shown: str) -> PngHeader:
    """The PNG header of ``path`` (``shown`` names it in messages); a file that is no PNG is a problem."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(33)
    except OSError as exc:
        raise Refused(f"{shown} cannot be read: {exc.strerror or exc}") from None
    if len(head) < 33 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        kind = "truncated before its header" if head[:8] == PNG_SIGNATURE else file_kind(head)
        raise Refused(f"{shown} is not a PNG file ({kind}): save it as PNG")
    width, height, bit_depth, colour_type = struct.unpack(">IIBB", head[16:26])
    return PngHeader(width, height, bit_depth, colour_type)


def check_depth(header: PngHeader, shown: str, reference: bool = False) -> None:
    if header.bit_depth != 16:
        return
    if reference:
        raise Refused(f"{shown} is a 16-bit PNG: this program reads 8-bit HR images, as DIV2K and LSDIR ship them")
    raise Refused(f"{shown} is a 16-bit PNG: the challenge's SR images are 8-bit (test_demo.py and the kit's package "
                  f"command write them so); save it with 8 bits per channel")


def decode_rgb(path: Path, shown: str) -> np.ndarray:
    """An 8-bit PNG as an HxWx3 uint8 RGB array, as esrkit reads images: grayscale becomes three equal channels,
    an alpha channel is dropped, a palette is expanded. Damaged or truncated files are a problem naming them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                mode = img.mode
                if mode == "RGB":
                    rgb = np.asarray(img)
                elif mode == "RGBA":
                    rgb = np.asarray(img)[:, :, :3]
                elif mode in ("1", "L", "LA"):
                    gray = np.asarray(img.convert("L") if mode == "1" else img)
                    gray = gray[:, :, 0] if gray.ndim == 3 else gray
                    rgb = np.repeat(gray[:, :, None], 3, axis=2)
                elif mode in ("P", "PA"):
                    rgb = np.asarray(img.convert("RGBA"))[:, :, :3]
                else:
                    raise Refused(f"{shown}: pixel mode {mode} is not supported; save it as an 8-bit RGB PNG")
    except Refused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Refused(f"{shown} is too large to decode ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError, zlib.error ...
        raise Refused(f"{shown} cannot be decoded ({type(exc).__name__}: {exc}): the file is damaged or "
                      f"truncated; upload it again") from None
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def verify_png(path: Path, shown: str) -> None:
    """Every chunk's checksum and the end marker, without decoding the pixels: a damaged file is found
    before anything is scored."""
    try:
        with Image.open(path) as img:
            img.verify()
    except Exception as exc:  # noqa: BLE001
        raise Refused(f"{shown} is damaged or truncated ({type(exc).__name__}: {exc}): upload it again") from None


# --- what ref and res hold ------------------------------------------------------------------------


def visible(folder: Path) -> list[Path]:
    """The entries of ``folder`` but hidden ones (``.DS_Store``, ``._0801.png``, the kit's ``.esrkit_run.json``)."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def listing(names: list[str]) -> str:
    shown = ", ".join(names[:LISTED])
    return shown if len(names) <= LISTED else f"{shown}, ... and {len(names) - LISTED} more"


def png_files(folder: Path) -> list[Path]:
    return [p for p in visible(folder) if p.is_file() and p.suffix.lower() == ".png"]


class Reference:
    """The HR images of one split: name -> path, in the kits' order (sorted by file name)."""

    def __init__(self, split: str, shown: str, images: dict[str, Path], from_layout: bool) -> None:
        self.split, self.shown, self.images, self.from_layout = split, shown, images, from_layout


def find_reference(root: Path, config: Config, label: str) -> Reference:
    """The split's HR folder in ``root`` (a known layout folder, the PNGs themselves, or either inside one
    folder the reference zip was made from); ``label`` names ``root`` in messages."""
    if not root.is_dir():
        raise Refused(f"the reference folder {root} does not exist: give the phase its reference data (the HR images)")
    folder, shown = root, label
    for _ in range(2):
        entries = visible(folder)
        foreign = [p for p in entries if p.is_dir() and p.name in config.foreign_folders]
        if foreign:
            name = foreign[0].name
            raise Refused(f"{shown} holds {name}/, the HR folder of {config.foreign_folders[name]}: this program "
                          f"scores {config.challenge} (its reference folders: {expected_folders(config)})")
        known = [p for p in entries if p.is_dir() and p.name in config.reference_folders]
        if len(known) > 1:
            raise Refused(f"{shown} holds several splits ({', '.join(p.name for p in known)}): give each phase the "
                          f"HR folder of its own split")
        if known:
            inside = f"{shown}/{known[0].name}"
            return Reference(config.reference_folders[known[0].name], inside, hr_images(known[0], inside), True)
        if png_files(folder):
            return Reference(config.flat_split, shown, hr_images(folder, shown), False)
        folders = [p for p in entries if p.is_dir()]
        if len(folders) != 1:
            break
        folder, shown = folders[0], f"{shown}/{folders[0].name}"
    found = listing([p.name + ("/" if p.is_dir() else "") for p in visible(folder)]) or "nothing"
    raise Refused(f"{shown} holds no HR images: expected one of {expected_folders(config)} or the HR PNG files "
                  f"themselves; found {found}")


def expected_folders(config: Config) -> str:
    return ", ".join(f"{name}/" for name in sorted(config.reference_folders))


def hr_images(folder: Path, shown: str) -> dict[str, Path]:
    images: dict[str, Path] = {}
    for path in png_files(folder):
        if path.stem in images:
            raise Refused(f"{shown}: {images[path.stem].name} and {path.name} are one image name twice")
        images[path.stem] = path
    if not images:
        raise Refused(f"{shown} holds no PNG image: the reference data are the split's HR PNG files")
    return dict(sorted(images.items(), key=lambda item: item[1].name))


class Upload:
    """What the team uploaded: the PNG files by name (more than one file may claim a name), and what was set
    aside (quietly, or with a warning)."""

    def __init__(self) -> None:
        self.prefix = ""  # the folder the images were found in, relative to input/res ("" or "name/")
        self.pngs: dict[str, list[Path]] = {}
        self.ignored: list[str] = []  # stray files and folders: warned about, never scored
        self.problems: list[str] = []


def find_upload(root: Path, example: str) -> Upload:
    """Sort the upload's files; one folder level is looked into (a zip made of the folder, not its files)."""
    if not root.is_dir():
        raise Refused(f"the upload folder {root} does not exist: nothing was uploaded")
    upload = Upload()
    folder, prefix = root, ""
    quiet: list[str] = []
    for level in range(2):
        pngs, images, archives, folders, strays = [], [], [], [], []
        for path in visible(folder):
            name = path.name.lower()
            if path.is_dir():
                if name not in QUIET_FOLDERS:
                    folders.append(path)
            elif name in QUIET_FILES:
                quiet.append(prefix + path.name)
            elif path.suffix.lower() == ".png":
                pngs.append(path)
            elif path.suffix.lower() in OTHER_IMAGE_SUFFIXES:
                images.append(path)
            elif path.suffix.lower() in ARCHIVE_SUFFIXES:
                archives.append(path)
            else:
                strays.append(path)
        if pngs or images or archives or len(folders) != 1:
            break
        if level == 1:
            raise Refused(f"the upload's files are two folders deep ({prefix}{folders[0].name}/): zip the PNG "
                          f"files themselves (or one folder holding them)")
        upload.ignored += [prefix + p.name for p in strays]
        folder, prefix = folders[0], f"{prefix}{folders[0].name}/"
    upload.prefix = prefix
    upload.ignored += [prefix + p.name for p in strays] + [prefix + p.name + "/" for p in folders]
    if archives:
        upload.problems.append(f"the upload holds an archive ({listing([prefix + p.name for p in archives])}) "
                               f"where the images belong: zip the PNG files themselves, not a zip inside a zip")
    for path in images:
        upload.problems.append(f"{prefix}{path.name} is not a PNG file: SR images are lossless PNG, named as their "
                               f"HR image ({path.stem}.png)")
    for path in pngs:
        upload.pngs.setdefault(path.stem, []).append(path)
    if not pngs and not images and not archives:
        held = listing(quiet + upload.ignored)
        raise Refused(f"the upload holds no PNG image{f' (only {held})' if held else ' (it is empty)'}: upload one "
                      f"zip of the SR images, named as the HR images ({example}, ...)")
    return upload


# --- matching and checking ------------------------------------------------------------------------


class Pair:
    """One HR image and the SR image the team uploaded for it."""

    def __init__(self, name: str, hr: Path, sr: Path, sr_shown: str, size: tuple[int, int]) -> None:
        self.name, self.hr, self.sr, self.sr_shown, self.size = name, hr, sr, sr_shown, size


def match(reference: Reference, upload: Upload, config: Config) -> list[Pair]:
    """Pair every HR image with its SR image and check every SR file's header, size and integrity -- all
    before anything is scored; every problem is collected, then refused at once."""
    problems = list(upload.problems)
    for name, paths in sorted(upload.pngs.items()):
        if len(paths) > 1:
            problems.append(f"{listing([upload.prefix + p.name for p in paths])} are one image name twice: keep one")
    missing = [name for name in reference.images if name not in upload.pngs]
    extra = sorted(name for name in upload.pngs if name not in reference.images)
    scale = config.scale
    lr_named = [n for n in missing if f"{n}x{scale}" in upload.pngs]  # 0801x4.png: the LR file's name
    if missing:
        hint = (f"; {listing([f'{n}x{scale}.png' for n in lr_named])} named like the LR files: name each SR image as "
                f"its HR image ({lr_named[0]}.png)" if lr_named else "")
        problems.append(f"{len(missing)} of the {len(reference.images)} HR images have no SR image: "
                        f"{listing([n + '.png' for n in missing])} (each HR image NAME.png of {reference.shown} needs "
                        f"an SR image NAME.png){hint}")
    explained = {f"{n}x{scale}" for n in lr_named}
    extra = [n for n in extra if n not in explained]
    if extra:
        problems.append(f"{len(extra)} PNG file(s) match no HR image of {reference.shown}: "
                        f"{listing([upload.prefix + upload.pngs[n][0].name for n in extra])} (remove them: the split's "
                        f"images are {first_last(reference)})")
    pairs = []
    for name, hr_path in reference.images.items():
        paths = upload.pngs.get(name)
        if not paths or len(paths) > 1:
            continue
        sr_shown = upload.prefix + paths[0].name
        hr_header = png_header(hr_path, f"{reference.shown}/{hr_path.name}")
        hr_w, hr_h = hr_header.width - hr_header.width % scale, hr_header.height - hr_header.height % scale
        if hr_header.width * hr_header.height > config.max_pixels:
            raise Refused(f"{reference.shown}/{hr_path.name} claims {hr_header.width}x{hr_header.height} pixels, "
                          f"above this program's limit of {config.max_pixels}: the reference data are damaged")
        try:
            header = png_header(paths[0], sr_shown)
            check_depth(header, sr_shown)
            if header.size != (hr_w, hr_h):
                lr = f"{hr_w // scale}x{hr_h // scale}"
                bomb = " (more pixels than this program decodes: refused before decoding)" \
                    if header.width * header.height > config.max_pixels else ""
                raise Refused(f"{sr_shown} is {header.width}x{header.height} but must be {hr_w}x{hr_h}: the size of "
                              f"HR {hr_path.name} modcropped to a multiple of {scale} (x{scale} of its {lr} LR){bomb}")
            verify_png(paths[0], sr_shown)
        except Refused as exc:
            problems.append(exc.headline)
            continue
        pairs.append(Pair(name, hr_path, paths[0], sr_shown, (hr_w, hr_h)))
    if problems:
        raise Refused("the upload cannot be scored", problems)
    return pairs


def first_last(reference: Reference) -> str:
    names = [p.name for p in reference.images.values()]
    return names[0] if len(names) == 1 else f"{names[0]} ... {names[-1]} ({len(names)} files)"


# --- scoring --------------------------------------------------------------------------------------


def score_pairs(pairs: list[Pair], reference: Reference, config: Config) -> list[dict[str, float]]:
    """Every metric of every image, in the HR images' order."""
    border = config.scale
    rows = []
    for pair in pairs:
        hr_shown = f"{reference.shown}/{pair.hr.name}"
        check_depth(png_header(pair.hr, hr_shown), hr_shown, reference=True)
        hr = modcrop(decode_rgb(pair.hr, hr_shown), config.scale)
        sr = decode_rgb(pair.sr, pair.sr_shown)
        if sr.shape != hr.shape:  # the header said otherwise: a file that lies
            raise Refused(f"{pair.sr_shown} decodes to {sr.shape[1]}x{sr.shape[0]}, not {hr.shape[1]}x{hr.shape[0]}")
        if 2 * border >= min(hr.shape[:2]):
            raise Refused(f"{hr_shown} is {hr.shape[1]}x{hr.shape[0]}: nothing is left inside a {border}-pixel border")
        row = {}
        for name, _, _ in config.metrics:
            function, on_y = METRICS[name]
            row[name] = function(sr, hr, border, on_y)
        rows.append(row)
        shown = ", ".join(f"{label} {row[name]:.{decimals}f}" for name, label, decimals in config.metrics)
        print(f"{pair.name}: {shown}", flush=True)
    return rows


def bar_note(reference: Reference, means: dict[str, float], config: Config) -> str | None:
    """Whether the split's mean PSNR reaches the year's bar, where a bar applies (the full set of the split)."""
    bar = config.bars.get(reference.split)
    if config.year is None or bar is None or "psnr" not in means:
        return None
    size = config.set_sizes.get(reference.split)
    if size is not None and len(reference.images) != size:
        return (f"The NTIRE {config.year} PSNR bar ({reference.split} {bar:.2f} dB) is defined on {config.sets}; this "
                f"reference holds {len(reference.images)} images, so it is not applied.")
    verdict = "reaches" if means["psnr"] >= bar else "is BELOW"
    return f"PSNR {means['psnr']:.2f} dB {verdict} the NTIRE {config.year} {reference.split} bar of {bar:.2f} dB."


def key(split: str, metric: str) -> str:
    """The leaderboard key: the official results.json's name of the split's average (``valid_ave_psnr``)."""
    return f"{split}_ave_{metric}"


def scores_txt(scores: dict[str, float]) -> str:
    return "".join(f"{name}: {value!r}\n" for name, value in scores.items())


def detailed_html(reference: Reference, pairs: list[Pair], rows: list[dict[str, float]], means: dict[str, float],
                  notes: list[str], config: Config) -> str:
    """One self-contained page (inline style, no script, nothing fetched): the means, every image, the notes."""
    e = html.escape
    metrics = config.metrics

    def number(value: float, decimals: int, metric_key: str, image: str = "") -> str:
        text = "inf" if math.isinf(value) else f"{value:.{decimals}f}"
        data = f' data-image="{e(image)}"' if image else ""
        return f'<td class="num" data-key="{e(metric_key)}"{data} data-value="{value!r}">{text}</td>'

    summary = "".join(
        f"<tr><th>{e(label)}</th>{number(means[name], decimals, key(reference.split, name))}"
        f"<td><code>{e(key(reference.split, name))}</code></td></tr>" for name, label, decimals in metrics)
    head = "".join(f"<th>{e(label)}</th>" for _, label, _ in metrics)
    body = "".join(
        f"<tr><td>{i}</td><td>{e(pair.name)}</td><td>{pair.size[0]}x{pair.size[1]}</td>"
        + "".join(number(row[name], decimals + 1, name, pair.name) for name, _, decimals in metrics) + "</tr>"
        for i, (pair, row) in enumerate(zip(pairs, rows), 1))
    note_items = "".join(f"<li>{e(note)}</li>" for note in notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{e(config.challenge)}: scores of this upload</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 60em; color: #1c1c1c; padding: 0 1em; }}
h1 {{ font-size: 1.3em; }} h2 {{ font-size: 1.05em; margin-top: 1.6em; }}
table {{ border-collapse: collapse; }}
th, td {{ padding: .25em .8em; border-bottom: 1px solid #ddd; text-align: left; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.notes li {{ margin: .2em 0; }} footer {{ margin-top: 2em; color: #666; font-size: .9em; }}
</style></head><body>
<h1>{e(config.challenge)}: scores of this upload</h1>
<p>{len(pairs)} SR images of the <b>{e(reference.split)}</b> split scored against {e(reference.shown)}:
HR modcropped to a multiple of {config.scale}, a {config.scale}-pixel border removed, uint8 images, float64
arithmetic, the mean of the per-image values.</p>
<table class="summary"><thead><tr><th>metric</th><th>mean</th><th>key</th></tr></thead><tbody>{summary}</tbody></table>
{f'<h2>Notes</h2><ul class="notes">{note_items}</ul>' if notes else ''}
<h2>Per image</h2>
<table class="images"><thead><tr><th>#</th><th>image</th><th>size</th>{head}</tr></thead><tbody>{body}</tbody></table>
<footer>Scored by the scoring program of {e(config.built_by)}: PSNR on RGB as the official NTIRE ESR kits compute it;
Y-PSNR on BT.601 luma; SSIM with an 11x11 Gaussian window (sigma 1.5), valid region.</footer>
</body></html>
"""


def write_outputs(output: Path, texts: dict[str, str]) -> None:
    """Every file written in full to a temporary file beside its target first, then renamed into place; should
    anything fail, the files already renamed are removed again: all of them appear, or none."""
    output.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    try:
        for name, text in texts.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=output)
            staged.append((Path(tmp), output / name))
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
        for tmp, final in staged:
            os.replace(tmp, final)
            placed.append(final)
    except BaseException:
        for final in placed:
            final.unlink()
        raise
    finally:
        for tmp, _ in staged:
            if tmp.exists():
                tmp.unlink()


def run(ref: Path, res: Path, output: Path, config: Config, ref_label: str = "input/ref") -> dict[str, float]:
    """Score ``res`` against ``ref`` into ``output``; returns the scores (raises :class:`Refused`)."""
    for name in OUTPUT_NAMES:  # a previous run's files: this run's scores appear, or none
        if (output / name).exists():
            (output / name).unlink()
    reference = find_reference(ref, config, ref_label)
    upload = find_upload(res, next(iter(reference.images)) + ".png")
    notes = []
    if upload.ignored:
        notes.append(f"Ignored {len(upload.ignored)} file(s) and folder(s) that are not SR images: "
                     f"{listing(upload.ignored)}.")
        print(f"warning: {notes[-1]}", file=sys.stderr)
    if upload.prefix:
        notes.append(f"The images were found in the upload's folder {upload.prefix}.")
    pairs = match(reference, upload, config)
    rows = score_pairs(pairs, reference, config)
    means = {name: sum(row[name] for row in rows) / len(rows) for name, _, _ in config.metrics}
    bar = bar_note(reference, means, config)
    if bar:
        notes.append(bar)
    if not reference.from_layout:
        notes.append(f"The reference is a folder of HR images, scored as the {reference.split} split.")
    scores = {key(reference.split, name): means[name] for name, _, _ in config.metrics}
    write_outputs(output, {
        "detailed_results.html": detailed_html(reference, pairs, rows, means, notes, config),
        "scores.txt": scores_txt(scores),
        "scores.json": json.dumps(scores, indent=2) + "\n",
    })
    return scores


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="score.py", description="Score a team's SR images against the HR images (NTIRE ESR online phase).",
        usage="score.py INPUT OUTPUT  |  score.py --ref HR_DIR --res SR_DIR OUTPUT")
    parser.add_argument("paths", nargs="+", type=Path, help="INPUT (holding ref/ and res/) and OUTPUT; or OUTPUT alone "
                                                            "with --ref and --res")
    parser.add_argument("--ref", type=Path, default=None, help="the HR images (instead of INPUT/ref)")
    parser.add_argument("--res", type=Path, default=None, help="the SR images (instead of INPUT/res)")
    parser.add_argument("--config", type=Path, default=Path(__file__).resolve().with_name(CONFIG_NAME),
                        help=f"the settings (default: {CONFIG_NAME} beside this file)")
    args = parser.parse_args(argv)
    by_hand = args.ref is not None or args.res is not None
    if by_hand and (args.ref is None or args.res is None or len(args.paths) != 1):
        parser.error("give --ref and --res together, with OUTPUT alone")
    if not by_hand and len(args.paths) != 2:
        parser.error("give INPUT and OUTPUT (INPUT holds ref/ and res/)")
    args.ref_label = str(args.ref) if by_hand else "input/ref"
    if not by_hand:
        args.ref, args.res = args.paths[0] / "ref", args.paths[0] / "res"
    args.output = args.paths[-1]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = Config.load(args.config)
        previous_limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = config.max_pixels  # Pillow's decompression-bomb limit: the kit's image limit
        try:
            scores = run(args.ref, args.res, args.output, config, args.ref_label)
        finally:
            Image.MAX_IMAGE_PIXELS = previous_limit
    except Refused as exc:
        print(f"error: {exc.headline} -- no score was written", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_REFUSED
    except BadConfig as exc:
        print(f"internal error: {exc} -- rebuild the zip with: python -m esrkit.submission scoring-program",
              file=sys.stderr)
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        print("interrupted: no score was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:  # noqa: BLE001 - the platform's error log is the organisers' only view: the whole traceback
        print("internal error: the scoring program failed on something it did not foresee (not a problem found in "
              "the upload); no score was written. The traceback:", file=sys.stderr)
        traceback.print_exc()
        return EXIT_INTERNAL
    print("scores: " + ", ".join(f"{name} = {value:.6f}" for name, value in scores.items()))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
