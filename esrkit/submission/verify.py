"""``verify``: are the SR images a team uploaded to the online server what its submitted code produces?

Before publishing, the organisers check that the images behind a team's leaderboard PSNR come from the code and
weights it submitted: images from a bigger model, or with an x8 self-ensemble its code does not do, disqualify it.
The kit reproduces the split with the team's code -- through the batch, in the team's own confined process
(:mod:`esrkit.submission.batch`), never in this one -- and compares, image by image, with the upload:

- ``identical``: equal pixels (the PNG files may still differ byte for byte: another encoder, other settings);
- ``within one grey level``: no pixel differs by more than 1 -- device or library rounding (another GPU,
  another torch or oneDNN rounds a few values to the other side of .5), said so;
- ``different``: some image differs by more; each is named with the PSNR of the upload against the reproduced
  image (whole image, RGB, 255 peak) and its largest difference;
- ``incomplete``: nothing differs, but an image is missing, extra, unreadable, or of another size.

The upload is read as the scoring program reads it (:mod:`esrkit.submission.scoring_program.score`'s
``find_upload``): a zip or a folder of ``NAME.png`` files, flat or inside one folder, ``readme.txt`` and hidden
files ignored; pixels are read as the kit reads images (:func:`esrkit.imageio.read_rgb`). The verdict is a record
(:mod:`esrkit.verdicts`) that ``verify --results_dir`` and ``batch --verify_uploads`` write into the team's
results entry, as the kit's own (:func:`esrkit.submission.status.amend_entry`, and the batch's
``Round.write``).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from esrkit.errors import KitError
from esrkit.imageio import read_header, read_rgb
from esrkit.metrics import psnr
from esrkit.spec import TeamSpec
from esrkit.submission.scoring_program.score import Refused, find_upload, listing
from esrkit.submission.shards import team_number
from esrkit.submission.status import now
from esrkit.verdicts import (DIFFERENT, IDENTICAL, INCOMPLETE, NO_UPLOAD, WITHIN_ONE, difference_text, problem_text,
                             summary)

ZIP_LIMIT = 4 << 30  # bytes an upload zip may hold unpacked: far above a split's SR PNGs, far below a zip bomb's
UPLOAD_NAME = re.compile(r"^(?:team(\d+)|(\d+)_.*)$", re.IGNORECASE)  # team07 / 07_NanoSR: the team's number


def check_upload(path: Path, flag: str = "--upload") -> None:
    """An upload is a zip file or a folder (what it holds is the verdict's to judge)."""
    if not path.exists():
        raise KitError(f"{flag} {path} does not exist: give the team's upload (a zip, or a folder of its SR PNGs)")
    if path.is_file() and path.suffix.lower() != ".zip":
        raise KitError(f"{flag} {path} is neither a .zip file nor a folder: give the team's upload as it was sent")
    if not path.is_file() and not path.is_dir():
        raise KitError(f"{flag} {path} is neither a file nor a folder: give the team's upload")


@contextlib.contextmanager
def opened_upload(path: Path) -> Iterator[Path]:
    """The upload as a folder: itself, or a zip unpacked into a temporary folder (member names made safe by
    :mod:`zipfile`; at most :data:`ZIP_LIMIT` bytes). A zip that cannot be read raises :class:`Refused`."""
    if path.is_dir():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="esrkit-upload-") as tmp:
        try:
            with zipfile.ZipFile(path) as zf:
                size = sum(info.file_size for info in zf.infolist())
                if size > ZIP_LIMIT:
                    raise Refused(f"the zip holds {size / 2**30:.1f} GiB unpacked, more than the {ZIP_LIMIT >> 30} GiB "
                                  f"an upload of SR images may")
                zf.extractall(tmp)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, ValueError) as exc:
            raise Refused(f"the zip cannot be read ({type(exc).__name__}: {exc})") from None
        except OSError as exc:
            raise Refused(f"the zip cannot be unpacked: {exc.strerror or exc}") from None
        yield Path(tmp)


def _problem(name: str, kind: str, detail: str) -> dict[str, str]:
    return {"name": name, "kind": kind, "detail": detail}


def compare_upload(upload: Path, reproduced: Path, names: Sequence[str], split: str) -> dict[str, Any]:
    """The verdict record (:mod:`esrkit.verdicts`) of ``upload`` against the images the team's code reproduced,
    ``reproduced/<name>.png`` for each of the split's ``names``. Whatever is wrong with the upload is a finding of
    the record, never raised; ``upload`` must exist (:func:`check_upload`)."""
    identical = within = 0
    different: list[dict[str, Any]] = []
    problems: list[dict[str, str]] = []
    ignored: list[str] = []
    try:
        with opened_upload(upload) as folder:
            found = find_upload(folder, f"{names[0]}.png" if names else "NAME.png")
            ignored = list(found.ignored)
            problems += [_problem(found.prefix or ".", "not an SR image", text) for text in found.problems]
            wanted = set(names)
            for name, paths in sorted(found.pngs.items()):
                shown = [found.prefix + p.name for p in paths]
                if len(paths) > 1:
                    problems.append(_problem(shown[0], "twice", f"{listing(shown)} are one image name twice"))
                elif name not in wanted:
                    problems.append(_problem(shown[0], "extra", f"matches no image of the {split} split"))
            for name in names:
                paths = found.pngs.get(name, [])
                if not paths:
                    problems.append(_problem(f"{name}.png", "missing", f"the upload has no {name}.png"))
                    continue
                if len(paths) > 1:
                    continue
                try:
                    largest, mine, theirs = _pixels(paths[0], reproduced / f"{name}.png", found.prefix + paths[0].name)
                except _CannotCompare as exc:
                    problems.append(exc.problem)
                    continue
                if largest == 0:
                    identical += 1
                elif largest == 1:
                    within += 1
                else:
                    different.append({"name": name, "psnr_vs_reproduced": psnr(mine, theirs, crop_border=0),
                                      "max_abs_diff": largest})
    except Refused as exc:
        problems.append(_problem(upload.name, "unreadable", "; ".join([exc.headline, *exc.problems])))
    except OSError as exc:
        problems.append(_problem(upload.name, "unreadable", f"cannot be read: {exc.strerror or exc}"))
    verdict = (DIFFERENT if different else INCOMPLETE if problems else WITHIN_ONE if within else IDENTICAL)
    return {"verdict": verdict, "split": split, "images": len(names), "identical": identical, "within_one": within,
            "different": different, "problems": problems, "ignored": ignored,
            "upload": str(upload.absolute()), "date": now()}


class _CannotCompare(Exception):
    def __init__(self, shown: str, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.problem = _problem(shown, kind, detail)


def _pixels(uploaded: Path, reproduced: Path, shown: str) -> tuple[int, np.ndarray, np.ndarray]:
    """The largest difference between the uploaded image and the reproduced one, and both images' pixels; an
    uploaded image that cannot be compared (``shown`` names it) raises :class:`_CannotCompare`."""
    try:
        header = read_header(uploaded, verify=True)
    except KitError as exc:
        raise _CannotCompare(shown, "unreadable", str(exc)) from None
    if header.format != "PNG":
        raise _CannotCompare(shown, "not a PNG", f"a {header.format} file named .png: SR images are lossless PNG")
    want = read_header(reproduced)
    if (header.width, header.height) != (want.width, want.height):
        raise _CannotCompare(shown, "wrong size", f"{header.width}x{header.height}, the reproduced image is "
                                                  f"{want.width}x{want.height}")
    try:
        mine = read_rgb(uploaded)
    except KitError as exc:
        raise _CannotCompare(shown, "unreadable", str(exc)) from None
    theirs = read_rgb(reproduced)
    return int(np.abs(mine.astype(np.int16) - theirs.astype(np.int16)).max()), mine, theirs


def no_upload(uploads: Path) -> dict[str, Any]:
    """The record of a team that has no upload in ``uploads`` (said, not an error)."""
    return {"verdict": NO_UPLOAD, "detail": f"none in {uploads} for this team", "uploads": str(uploads.absolute()),
            "date": now()}


def verdict_lines(key: str, record: dict[str, Any]) -> list[str]:
    """What the command prints: one line per differing image and per finding, then the summary."""
    lines = [f"{key}: {difference_text(d)}" for d in record.get("different", [])]
    lines += [f"{key}: {problem_text(p)}" for p in record.get("problems", [])]
    return lines + [f"{key}: upload {record.get('upload', '')}: {summary(record, named=False)}"]


@dataclass(frozen=True)
class Uploads:
    """A folder of uploads, one per team (``batch --verify_uploads``): a zip or a folder named by the team's results
    key (``07_NanoSR.zip``, ``07_NanoSR/``) or its number (``team07.zip``, ``team7/``, ``07_anything.zip``).
    A team with a number takes the one upload its number names; a team without one (a registered entry) the one
    named exactly as its key. Hidden entries and other files are not uploads."""

    folder: Path

    @classmethod
    def open(cls, folder: Path) -> "Uploads":
        if not folder.is_dir():
            raise KitError(f"--verify_uploads {folder} is not a folder: give the folder holding one upload per team "
                           f"(07_NanoSR.zip, team08/, ...)")
        return cls(Path(folder).absolute())

    def entries(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if not p.name.startswith(".")
                      and (p.is_dir() or (p.is_file() and p.suffix.lower() == ".zip")))

    @staticmethod
    def _number(path: Path) -> int | None:
        match = UPLOAD_NAME.match(path.name[:-4] if path.suffix.lower() == ".zip" else path.name)
        return None if match is None else int(match.group(1) or match.group(2))

    def candidates(self, spec: TeamSpec, key: str | None) -> list[Path]:
        """The uploads that name this team (by its number; without one, by its results ``key``)."""
        number = team_number(spec)
        if number is not None:
            return [p for p in self.entries() if self._number(p) == number]
        return [p for p in self.entries() if key is not None and p.name in (key, f"{key}.zip")]

    def check(self, teams: Sequence[tuple[TeamSpec, str | None]]) -> list[str]:
        """Before anything runs: a team that two uploads name is refused (KitError naming them); the uploads no team
        of the batch takes are returned, to be said."""
        taken: set[Path] = set()
        for spec, key in teams:
            found = self.candidates(spec, key)
            if len(found) > 1:
                raise KitError(f"--verify_uploads {self.folder}: {', '.join(p.name for p in found)} all name "
                               f"{spec.label}: keep one upload per team")
            taken.update(found)
        return [p.name for p in self.entries() if p not in taken]

    def verdict(self, spec: TeamSpec, key: str, reproduced: Path, names: Sequence[str], split: str) -> dict[str, Any]:
        """The team's verdict: its upload against ``reproduced``, or "no upload"."""
        found = self.candidates(spec, key)
        if not found:
            return no_upload(self.folder)
        if len(found) > 1:  # a team whose key was known only once it ran
            return {"verdict": INCOMPLETE, "split": split, "images": len(names), "identical": 0, "within_one": 0,
                    "different": [], "problems": [_problem(p.name, "ambiguous", f"{len(found)} uploads name this "
                                                  f"team") for p in found], "upload": str(self.folder), "date": now()}
        return compare_upload(found[0], reproduced, names, split)
