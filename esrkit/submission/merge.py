"""``merge``: shards' results folders joined into one -- results.json + results.txt, and the
batch_status.json files found beside the inputs -- for a round run over machines without a shared
folder.

Two inputs may hold the same key (a team measured by two shards, or measured again): that is fine when
the two entries hold the same figures, and refused otherwise -- one line naming the key, both files
and the keys that differ -- unless ``--prefer`` says which wins (``newest``: the later ``date``, of
two equally new the later input; ``first`` / ``last``: the input given first / last). "The same
figures" means equal on every key but :data:`BOOKKEEPING` and ``*_wall_s`` (when the entry was
written, how long the whole pass took): runtimes are figures, so one team timed twice is two
different entries.

Entries that do not rank together -- another year's results convention, another FLOPs counter, other
data (:mod:`esrkit.comparability`) than the round's baseline (else than the entry most others agree
with) -- are refused, one line naming each and what differs, unless ``allow_mixed``: then they are kept,
and the results page marks them and leaves them unranked.

An input whose entry the kit wrote (its digest is in the batch_status.json beside it) but that was changed
since, by anything else, is refused, naming the entry: an edit is never merged as the kit's figure.

Nothing is written unless every input reads and every key is settled; the output folder's
results.json and results.txt are replaced together (:class:`esrkit.results.ResultsFiles`), its
batch_status.json atomically, each under the folder's lock. An output folder that already holds
results is merged into only when it is one of the inputs (nothing of it is replaced silently). A merge
that fails removes the output folder it created (never one that was there before).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from esrkit.atomic import atomic_write
from esrkit.comparability import describe_setting, mismatches, reference_key
from esrkit.errors import KitError
from esrkit.results import JSON_NAME, ResultsFiles, folder_lock, read_results
from esrkit.submission.status import OK, STATUS_NAME, changed_entries, read_status

PREFER = ("newest", "first", "last")
BOOKKEEPING = ("date",)  # and every key ending in BOOKKEEPING_SUFFIX
BOOKKEEPING_SUFFIX = "_wall_s"
SHOWN = 6  # entries (or keys) a one-line message names before "and N more"


def figure_keys(entry: Any) -> dict[str, Any]:
    """What is compared between two entries of one key: every key but the bookkeeping ones."""
    if not isinstance(entry, dict):
        return {"": entry}
    return {k: v for k, v in entry.items() if k not in BOOKKEEPING and not k.endswith(BOOKKEEPING_SUFFIX)}


def differing_keys(a: Any, b: Any) -> list[str]:
    """The figure keys on which two entries differ (none: the same figures)."""
    fa, fb = figure_keys(a), figure_keys(b)
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k, _MISSING) != fb.get(k, _MISSING))


_MISSING = object()


def _first_few(items: Sequence[str]) -> str:
    return ", ".join(items[:SHOWN]) + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def _date(entry: Any, key: str, source: Path) -> datetime.datetime:
    value = entry.get("date") if isinstance(entry, dict) else None
    try:
        date = datetime.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        date = None
    if date is None:
        raise KitError(f"{key} in {source} has no date to tell which is newer: choose --prefer first or --prefer last")
    return date if date.tzinfo is not None else date.replace(tzinfo=datetime.timezone.utc)


@dataclass
class MergeResult:
    """What a merge wrote: the entries (each with the input it came from), the keys settled by ``--prefer``,
    the keys several inputs held identically, the batch_status records merged, and the entries kept by
    ``allow_mixed`` though measured otherwise than ``reference`` (each with how)."""

    entries: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)
    preferred: list[str] = field(default_factory=list)
    identical: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    status_files: list[Path] = field(default_factory=list)
    reference: str | None = None
    mixed: dict[str, list[str]] = field(default_factory=dict)


def input_paths(inputs: Sequence[Path]) -> list[Path]:
    """Each input as a results.json path (a folder stands for the results.json in it), each once."""
    paths, seen = [], set()
    for given in inputs:
        path = Path(given).expanduser()
        path = path / JSON_NAME if path.is_dir() else path
        if not path.is_file():
            raise KitError(f"{given}: no such results file (give A/results.json, or the folder that holds it)")
        if path.resolve() in seen:
            raise KitError(f"{given} is given twice: give each results file once")
        seen.add(path.resolve())
        paths.append(path)
    if not paths:
        raise KitError("merge needs results files: merge A/results.json B/results.json ... --out DIR")
    return paths


def merge_entries(paths: Sequence[Path], prefer: str | None = None) -> MergeResult:
    """Join the inputs' entries (see the module docstring); order: by first appearance."""
    if prefer is not None and prefer not in PREFER:
        raise KitError(f"--prefer {prefer!r}: choose one of {', '.join(PREFER)}")
    result = MergeResult()
    for path in paths:
        for key, entry in read_results(path).items():
            if key not in result.entries:
                result.entries[key], result.sources[key] = entry, path
                continue
            kept, kept_from = result.entries[key], result.sources[key]
            differ = differing_keys(kept, entry)
            if not differ:
                result.identical.append(key)
                if prefer == "last":
                    result.sources[key] = path
                continue
            if prefer is None:
                shown = _first_few(differ)
                raise KitError(f"{key}: {kept_from} and {path} hold different figures ({shown}): choose which wins "
                               f"with --prefer newest|first|last, or leave one file out; nothing was written")
            if prefer == "last" or (prefer == "newest" and _date(entry, key, path) >= _date(kept, key, kept_from)):
                result.entries[key], result.sources[key] = entry, path
            result.preferred.append(key)
    return result


def merge_status(paths: Sequence[Path], result: MergeResult) -> None:
    """The batch_status.json files beside the inputs, joined per team: the record from the input whose results
    entry was kept for its key; for a team without one (failed everywhere), an ``ok`` record before others,
    then the newest."""
    records: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    for path in paths:
        status_path = path.parent / STATUS_NAME
        if status_path.is_file():
            result.status_files.append(status_path)
            for label, record in read_status(status_path).items():
                if isinstance(record, dict):
                    records.setdefault(label, []).append((path, record))
    for label, candidates in records.items():
        chosen = [r for p, r in candidates if result.sources.get(r.get("key")) == p]
        if not chosen:
            chosen = sorted((r for _, r in candidates),
                            key=lambda r: (r.get("status") == OK, str(r.get("date", ""))))[-1:]
        result.status[label] = chosen[-1]


def check_output(out: Path, paths: Sequence[Path]) -> None:
    """``out``'s results.json / batch_status.json are written over only when they are inputs (or beside one)."""
    inputs = {p.resolve() for p in paths}
    folders = {p.resolve().parent for p in paths}
    existing = out / JSON_NAME
    if existing.exists() and existing.resolve() not in inputs:
        raise KitError(f"{existing} exists and is not one of the inputs: add it as an input (to merge into it) or "
                       f"choose an empty --out")
    status = out / STATUS_NAME
    if status.exists() and out.resolve() not in folders:
        raise KitError(f"{status} exists and no input is beside it: add {existing} as an input or choose an "
                       f"empty --out")


def check_unchanged(paths: Sequence[Path]) -> None:
    """Refuse an input whose entries the kit wrote (their digests are in the batch_status.json beside it) but that
    no longer holds them as written: an edit made outside the kit is never merged as the kit's figure."""
    changed = []
    for path in paths:
        status_path = path.parent / STATUS_NAME
        if status_path.is_file():
            changed += [f"{key} in {path}" for key in changed_entries(read_results(path), read_status(status_path))]
    if changed:
        raise KitError(f"{_first_few(changed)}: changed outside the kit since the kit wrote it (its digest in the "
                       f"{STATUS_NAME} beside it differs): measure it again there (batch --refresh missing) or leave "
                       f"that file out; nothing was written")


def check_mixed(result: MergeResult, allow_mixed: bool) -> None:
    """Refuse entries measured otherwise than the reference (see the module docstring) unless ``allow_mixed``;
    either way ``result`` records them."""
    result.reference = reference_key(result.entries)
    result.mixed = mismatches(result.entries, result.reference)
    if not result.mixed or allow_mixed:
        return
    named = [f"{k} in {result.sources[k]} ({'; '.join(how)})" for k, how in result.mixed.items()]
    reference = result.entries[result.reference]
    raise KitError(f"entries measured otherwise than {result.reference} in {result.sources[result.reference]} "
                   f"({describe_setting(reference)}): {_first_few(named)}: their figures do not rank together; "
                   f"leave them out, or keep them with --allow_mixed (the results page marks them and does not "
                   f"rank them); nothing was written")


def check_out_folder(out: Path) -> None:
    """``--out`` names a folder, or a place one can be made."""
    for place in (out, *out.parents):
        if place.exists() and not place.is_dir():
            hint = f" (--out {out.parent} writes {out.parent / JSON_NAME})" if place == out and out.name == JSON_NAME else ""
            raise KitError(f"--out {out}: {place} is a file, not a folder: give --out a folder, where merge writes "
                           f"{JSON_NAME}, results.txt and {STATUS_NAME}{hint}")
        if place.exists():
            break


def _make_out(out: Path) -> Path | None:
    """Make ``out``; the topmost folder made (to remove if the merge fails), None when it was there."""
    made = next((p for p in reversed((out, *out.parents)) if not p.exists()), None)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KitError(f"--out {out} cannot be created ({exc.strerror or exc}): choose another --out") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise KitError(f"--out {out} is not writable: choose another --out")
    return made


def run_merge(inputs: Sequence[Path], out: Path, prefer: str | None = None, allow_mixed: bool = False) -> MergeResult:
    """Merge the inputs into ``out`` (see the module docstring)."""
    paths = input_paths(inputs)
    out = Path(out).expanduser()
    check_out_folder(out)
    check_output(out, paths)
    check_unchanged(paths)
    result = merge_entries(paths, prefer)
    check_mixed(result, allow_mixed)
    merge_status(paths, result)
    made = _make_out(out)
    try:
        results = ResultsFiles(out)
        results.preflight()
        values = [v for v in result.entries.values() if isinstance(v, dict)]
        results.include_test = any("test_ave_runtime" in v for v in values)
        results.hybrid_test = any("hybrid_test_ave_runtime" in v for v in values) and not any(
            "valid_ave_runtime" in v for v in values)
        results.merge(result.entries)
        if result.status:
            with folder_lock(out):
                atomic_write(out / STATUS_NAME, json.dumps(result.status, indent=2) + "\n")
    except BaseException:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise
    return result
