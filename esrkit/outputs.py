"""What a run writes -- its results.json entry and its SR folder -- carries the identity of the data it measured,
so that a run on other data never replaces them silently.

The official kit keys results by model alone: running an entry on Set14 and then on B100 left only the
B100 row, and B100's ``img_001.png`` overwrote Set14's in the same SR folder. Here a run first asks
(:func:`replacement_problem`, :func:`sr_folder_problem`) whether it would replace an entry or an SR folder
made from *other* data -- another folder, or the same folder with other contents (:class:`DataIdentity`:
the content digest of :mod:`esrkit.fingerprint`) -- and stops before any work unless ``--replace`` says
so. The same data again replaces them, as the official kit does; an entry of the embedded demo set (a
trial, not a measurement) is replaced with a note. SR folders are replaced whole, one folder per split
(:class:`esrkit.atomic.StagedFolder`), with a marker file naming the data, so they never mix two runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from esrkit.datasets import Split
from esrkit.fingerprint import data_fingerprint
from esrkit.imageio import is_image_file

MARKER_NAME = ".esrkit_run.json"  # in an SR folder: the data its images came from
DEMO_LAYOUT = "demo"


@dataclass(frozen=True)
class DataIdentity:
    """The data a run measured: its folder, layout, splits and the digest of their files' contents."""

    data_dir: str
    layout: str
    splits: tuple[tuple[str, int], ...]  # (split name, images)
    fingerprint: str

    @classmethod
    def of(cls, splits: Sequence[Split], fingerprint: str | None = None) -> "DataIdentity":
        """The identity of ``splits``; ``fingerprint`` is their digest when the caller has it already."""
        return cls(str(Path(splits[0].root).resolve()), splits[0].layout, tuple((s.name, len(s)) for s in splits),
                   data_fingerprint(splits) if fingerprint is None else fingerprint)

    def describe(self) -> str:
        shown = ", ".join(f"{name} {n} images" for name, n in self.splits)
        return f"{self.data_dir} ({self.layout} layout: {shown})"

    def record(self) -> dict[str, Any]:
        """The keys a results entry (and an SR folder's marker) keeps of it."""
        return {"data_dir": self.data_dir, "layout": self.layout, "data_fingerprint": self.fingerprint}


def measured_on(record: Mapping[str, Any]) -> str:
    """The data a results entry (or a marker) records, in words: its folder and the images of each split."""
    images = ", ".join(f"{k.removesuffix('_images')} {len(v)} images" for k, v in record.items()
                       if k.endswith("_images") and isinstance(v, list))
    return f"{record.get('data_dir', 'data it does not name')}" + (f" ({images})" if images else "")


def _same_data(record: Mapping[str, Any], identity: DataIdentity) -> bool | None:
    """Whether ``record`` (a results entry or a marker) was made from ``identity``'s data; None: it cannot tell."""
    if isinstance(record.get("data_fingerprint"), str):
        return record["data_fingerprint"] == identity.fingerprint
    if isinstance(record.get("data_dir"), str):  # written before the kit recorded contents: the folder decides
        return str(Path(record["data_dir"]).resolve()) == identity.data_dir
    return None  # another tool's entry (the official kit's): replaced as that tool would


def replacement_problem(existing: Mapping[str, Any], key: str, identity: DataIdentity, replace: bool) -> tuple[str | None, str | None]:
    """(error, note) for writing ``key`` of a run on ``identity`` into results.json holding ``existing``."""
    record = existing.get(key)
    if not isinstance(record, Mapping) or replace:
        return None, (f"--replace: {key} measured on {measured_on(record)} is replaced" if replace and
                      isinstance(record, Mapping) and _same_data(record, identity) is False else None)
    same = _same_data(record, identity)
    if same is None:
        return None, f"note: {key} in results.json records no data folder; it is replaced, as the official kit does"
    if same:
        return None, None
    if record.get("layout") == DEMO_LAYOUT:
        return None, f"note: {key} of the embedded demo set (a trial, not a measurement) is replaced"
    return (f"results.json already holds {key} measured on {measured_on(record)}, and this run is on "
            f"{identity.describe()}: pass --replace to replace it, or --results_dir DIR to keep both"), None


def sr_folder_problem(folder: Path, identity: DataIdentity, splits: Sequence[Split], replace: bool) -> str | None:
    """Why ``folder`` (one entry's SR images, one subfolder per split) must not take this run's images, or None.

    Its marker says which data made it; a folder without one (written by an older kit, or by hand) may be
    replaced when it holds only images this run writes too."""
    if replace or not folder.is_dir():
        return None
    marker = folder / MARKER_NAME
    if marker.is_file():
        try:
            made_from = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            made_from = {}
        same = _same_data(made_from, identity) if isinstance(made_from, dict) else None
        if same or made_from.get("layout") == DEMO_LAYOUT:
            return None
        return (f"{folder} holds the SR images of a run on {made_from.get('data_dir', 'other data')}, and this run is on "
                f"{identity.describe()}: pass --replace to replace them, or --save_dir DIR to keep both")
    ours = {(split.name, pair.name) for split in splits for pair in split.pairs}
    foreign = [f"{sub.name}/{p.name}" for sub in sorted(folder.iterdir()) if sub.is_dir()
               for p in sorted(sub.iterdir()) if is_image_file(p) and (sub.name, p.stem) not in ours]
    if foreign:
        return (f"{folder} holds images this run does not write ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}): they are from another run or data; pass --replace to replace "
                f"the folder, or --save_dir DIR to keep both")
    return None


def write_marker(staging: Path, identity: DataIdentity, splits: Sequence[Split] = ()) -> None:
    """The marker of an SR folder being staged (moved in with the images): the data, and the image files the run
    writes per split (what a later run may replace: :func:`carried_files`)."""
    files = {split.name: [f"{pair.name}.png" for pair in split.pairs] for split in splits}
    (staging / MARKER_NAME).write_text(json.dumps({**identity.record(), "splits": dict(identity.splits),
                                                   **({"files": files} if files else {})}, indent=2) + "\n",
                                       encoding="utf-8")


def carried_files(folder: Path) -> Callable[[Path], list[Path]]:
    """For :class:`esrkit.atomic.StagedFolder` replacing the SR folder ``folder``: which files of one of its split
    folders are *not* the kit's -- every file its marker does not list as a written image (or, for a folder whose
    marker lists none, every file that is not an image) -- so that they are kept, never deleted with the images.
    The marker is read now, before the new run's replaces it."""
    try:
        made = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        made = {}
    listed = made.get("files") if isinstance(made, dict) and isinstance(made.get("files"), dict) else None

    def carried(split_folder: Path) -> list[Path]:
        written = listed.get(split_folder.name) if listed is not None else None
        ours = set(written) if isinstance(written, list) else None
        return [p for p in sorted(split_folder.iterdir())
                if (p.name not in ours if ours is not None else not is_image_file(p)) and not p.is_dir()]

    return carried
