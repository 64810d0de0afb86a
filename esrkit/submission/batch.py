"""``batch``: the organisers' intake -- every team of a spec file (or a folder of team files), measured as
the organisers measure, into one results.json / results.txt and one table.

Per team: its spec is resolved (class, arguments, weights, state_dict, strictness, data range,
post-load step), the network is loaded and re-parameterised as deployed, counted (params, FLOPs under
both counters, activations, #conv; input dependence checked) and run on the split with the challenge
protocol (:mod:`esrkit.submission.teamrun`). As the organisers do, every team runs in a process of its own:
its first image carries the cold start as in a separate ``test_demo.py`` run, its memory peak is its own, and
its imports, CUDA redirects and crashes stay in that process. That process is **confined** (:mod:`esrkit.sandbox`:
it sees its own files and the data, read-only, writes only its scratch and its SR folder, has no network, and
takes whatever it started with it when it ends), and it **writes none of the organiser's files**: it replies with
the entry it measured, which the batch checks (:mod:`esrkit.submission.reply`) and alone writes. ``unconfined``
runs team processes with the organiser's rights instead (said in every entry they give), ``isolate=False`` runs
every team in this process (unconfined by nature: faster, for tests and dry runs).

Each team's entry is merged into results.json as soon as it is done, so a batch cut short keeps every finished
team. A team that fails -- a package that is not installed, a class that is not there, wrong constructor
arguments, a weights file of another network, a forward that raises or gives NaN, a reply that is not a results
entry of its own -- is one line naming the team and the fix, and the batch goes on. ``batch_status.json`` beside
results.json is the round's ledger (:mod:`esrkit.submission.status`): every team's status, what it was measured
from, and the digest of the entry the kit wrote for it, so that a re-run measures only what is missing -- new
teams, failed ones, those whose files, data or settings changed, and those whose entry was changed outside the kit
(``--refresh missing``, the default) -- or every team again (``--refresh all``). An entry changed by anything else
while the batch runs is put back as the kit wrote it, and said. What a team was measured from is its spec, its
files, the settings and the data's *contents* (:func:`esrkit.fingerprint.split_fingerprint`); the software
environment is recorded in its entry, not fingerprinted, so that a second environment (for teams that need other
packages) measures only the teams still missing.

The team processes run one at a time on the batch's device, or -- with several slots (every GPU of a
machine, ``--devices``; N CPU workers, ``--workers``) -- one per slot at a time, taken from one queue
(:mod:`esrkit.submission.workers`); ``--team_timeout`` stops a team that hangs. ``batch.md`` is written at the end
and covers the whole round -- every team of the ledger and every entry of results.json, not only this batch's --
so that a batch over a subset never replaces the round's table with a partial one; a shard's table
(``batch_shard-K-of-N.md``) covers its own teams.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from esrkit.atomic import StagedFolder, atomic_write, check_writable_file, check_writable_folder
from esrkit.challenge import FVCORE, Convention
from esrkit.datasets import Split
from esrkit import environment
from esrkit.environment import label as environment_label
from esrkit.errors import KitError
from esrkit.fingerprint import data_fingerprint, split_fingerprint
from esrkit.imageio import read_header
from esrkit.names import child_folder
from esrkit.outputs import DataIdentity, carried_files, write_marker
from esrkit.progress import QUIET, Progress
from esrkit.digests import entry_digest
from esrkit.results import ResultsFiles
from esrkit.sandbox import Sandbox, View
from esrkit.spec import InvalidTable, TeamSpec, resolve
from esrkit.submission.plausibility import BATCH_IMAGES, BATCH_MARGIN_DB, SCALE, below_bicubic, bicubic_psnr
from esrkit.submission.reply import Expectation, accept
from esrkit.submission.shards import Shard, team_number
from esrkit.submission.status import (OK, RUNNING, STATUS_NAME, changed_entries, claim, claimed_by_another, now,
                                      read_status, update_team_status)
from esrkit.submission.teamrun import (FAILED, SKIPPED, BatchSettings, TeamOutcome, TeamRequest, measure_team,
                                       reply_json, spec_to_json)
from esrkit.submission.verify import Uploads
from esrkit.submission.workers import Paused, Pool, Slot, Stop, TeamProcess, device_model, see_through
from esrkit.teamfile import WEIGHT_SUFFIXES, find_weights, team_from_file_name
from esrkit.verdicts import IDENTICAL, VERIFICATION_KEY, short, summary, verification_of

__all__ = ["OK", "FAILED", "SKIPPED", "STATUS_NAME", "REFRESH", "BatchSettings", "Dispatch", "TeamOutcome",
           "read_status", "run_batch", "table_markdown", "table_name", "device_mix", "fingerprint"]

TABLE_NAME = "batch.md"
REFRESH = ("missing", "all")
INCOMING_PREFIX = ".esrkit-incoming-"  # a team's own SR folder inside --save_dir, moved into place by the batch


@dataclass(frozen=True)
class Dispatch:
    """Where the team processes run (one slot per GPU or CPU worker; one slot: one team after another) and
    how long one may run before it is stopped."""

    slots: tuple[Slot, ...]
    team_timeout: float | None = None

    @property
    def parallel(self) -> bool:
        return len(self.slots) > 1


def _file_stamp(path: Path | None) -> list[Any] | None:
    if path is None or not path.is_file():
        return None
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def fingerprint(spec: TeamSpec, settings: BatchSettings, data_digest: str | None = None) -> str:
    """What a team's figures depend on: its spec, its files (size, mtime), the data (its path and a digest of
    its contents), the settings, the kind of device (``cuda <model>``, not which one of a machine's GPUs).
    Not the software environment: it is recorded in the entry (a second environment measures only the teams
    the first could not).

    ``data_digest`` is :func:`esrkit.fingerprint.split_fingerprint` of the settings' split, which a batch
    computes once for all its teams; it is computed here when not given.
    """
    weights = spec.weights if spec.weights is not None else (find_weights(spec.model_file) if spec.model_file else None)
    if data_digest is None:
        data_digest = split_fingerprint(settings.open_split())
    facts = {"spec": spec_to_json(spec), "model_file": _file_stamp(spec.model_file), "weights": _file_stamp(weights),
             "data": str(Path(settings.data_dir).resolve()), "data_digest": data_digest, "split": settings.split,
             "layout": settings.layout, "year": settings.year, "device": device_model(settings.device),
             "threads": settings.threads, "ssim": settings.ssim, "warm_runs": settings.warm_runs,
             "default_data_range": settings.default_data_range}
    return hashlib.sha1(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def table_name(shard: Shard | None) -> str:
    """``batch.md``; a shard's own table beside it: ``batch_shard-2-of-4.md``."""
    return TABLE_NAME if shard is None else f"batch_shard-{shard.index}-of-{shard.count}.md"


def _giga(value: Any) -> str:
    """A number with two decimals, ``-`` when absent or not a number."""
    return f"{value:.2f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def _mix(records: Iterable[Any], read: Callable[[dict], str | None], what: str, then: str) -> str | None:
    groups: dict[str, int] = {}
    for r in records:
        value = read(r) if isinstance(r, dict) else None
        if value is not None:
            groups[value] = groups.get(value, 0) + 1
    if len(groups) < 2:
        return None
    return f"measured {what} (" + "; ".join(f"{g}: {n}" for g, n in groups.items()) + f"): {then}"


def device_mix(records: Iterable[Any]) -> str | None:
    """A warning when results entries were measured on different devices (their runtimes do not compare)."""
    return _mix(records, lambda r: r["device"] if isinstance(r.get("device"), str) else None, "on different devices",
                "runtimes compare only between entries of one device")


def environment_mix(records: Iterable[Any]) -> str | None:
    """A note when results entries were measured under different software environments (Python, torch)."""
    return _mix(records, lambda r: environment_label(r.get("environment", r.get("torch_version")))
                if ("environment" in r or "torch_version" in r) else None,
                "under different environments", "counts and PSNR are the same network's, runtimes may differ by the "
                "library versions")


def table_markdown(outcomes: Sequence[TeamOutcome], convention: Convention, split: Split,
                   shard: Shard | None = None, total: int | None = None) -> str:
    """The batch table: per team its status and, where measured, every count, PSNR and runtime. A shard's table
    says so in its heading (its teams of the batch's ``total``)."""
    primary = "fvcore" if convention.flops_counter == FVCORE else "hook counter"
    other = "hook counter" if convention.flops_counter == FVCORE else "fvcore"
    holds = "fvcore's count" if convention.flops_counter == FVCORE else "the official hook counter's"
    where = f"on {split.root} ({split.name}, {split.layout} layout, {len(split)} images)"
    heading = (f"# Batch: {len(outcomes)} teams {where}" if shard is None else
               f"# Batch shard {shard}: its {len(outcomes)} of the batch's {total if total is not None else '?'} "
               f"teams {where}; the other teams are in the other shards' tables")
    lines = [
        heading,
        "",
        f"Results convention: {convention.label}; `flops` holds {holds}. Runtime: challenge protocol mean "
        f"(fp32, batch 1, no warm-up, first image cold).",
        "",
    ]
    for mix in (device_mix(o.record for o in outcomes), environment_mix(o.record for o in outcomes)):
        if mix is not None:
            lines += [f"**Warning**: {mix}.", ""]
    lines += [
        f"| Team | Status | #Params | FLOPs [G] ({primary}) | FLOPs [G] ({other}) | #Acts [M] | #Conv | "
        f"PSNR {split.name} [dB] | Runtime [ms] | Notes |",
        "|:---|:---|---:|---:|---:|---:|---:|---:|---:|:---|",
    ]
    for o in outcomes:
        r = o.record
        if r is None:
            lines.append(f"| {o.key or o.label} | {o.status} | | | | | | | | {o.error.replace('|', '/')} |")
            continue
        other_flops = r.get("flops_hook") if convention.flops_counter == FVCORE else r.get("flops_fvcore")
        notes = []
        if "complexity_input_dependent" in r:
            notes.append("counts INPUT-DEPENDENT: " + ", ".join(r["complexity_input_dependent"]))
        if r.get(f"{split.name}_deterministic") is False:
            notes.append(f"NOT DETERMINISTIC: PSNR spread {_giga(r.get(f'{split.name}_psnr_spread'))} dB over runs")
        if r.get("confined") is False:
            notes.append("measured unconfined")
        if isinstance(r.get("psnr_implausible"), str):
            notes.append(f"IMPLAUSIBLE PSNR: {r['psnr_implausible']}")
        verification = verification_of(r)
        if verification is not None and verification["verdict"] != IDENTICAL:
            notes.append(short(verification))
        notes += [n for n in r.get("notes", [])] if isinstance(r.get("notes"), list) else []
        if o.status == SKIPPED:
            notes.append("already measured (not re-run)")
        if o.error:
            notes.append(o.error)
        params = r.get("num_parameters")
        lines.append(
            f"| {o.key} | {o.status} | {'-' if not isinstance(params, (int, float)) else f'{round(params * 1e6):,}'} | "
            f"{_giga(r.get('flops'))} | {_giga(other_flops)} | {_giga(r.get('activations'))} | {r.get('num_conv', '-')} | "
            f"{_giga(r.get(f'{split.name}_ave_psnr'))} | {_giga(r.get(f'{split.name}_ave_runtime'))} | "
            f"{'; '.join(map(str, notes)).replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"


def team_tag(spec: TeamSpec, convention: Convention) -> str:
    """The results key a team will get, as far as it can be told without importing its file (its number and
    the name its spec or file name gives): what prefixes its process's relayed lines."""
    if spec.entry is not None:
        try:
            return convention.key(resolve(spec, require_data_range=False))
        except KitError:
            return spec.entry
    assert spec.model_file is not None
    named = team_from_file_name(spec.model_file)
    name = spec.name or (named[1] if named else spec.model_file.stem)
    team = team_number(spec)
    return name if team is None else f"{team:02d}_{name}"


def expected_key(spec: TeamSpec, convention: Convention) -> str | None:
    """The results key a team's entry must have, when the batch can tell it without running the team's code: a
    registered entry's (the kit's own code), or a team's whose spec names it (number and name). A team whose name
    comes from its file may name itself (a registration): then only its number is known (:func:`team_number`)."""
    if spec.entry is not None:
        try:
            return convention.key(resolve(spec, require_data_range=False))
        except KitError:
            return None
    if spec.name is not None and team_number(spec) is not None:
        return team_tag(spec, convention)
    return None


class _Lines:
    """The batch's output lines, one at a time (workers and relayed team processes write concurrently)."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock:
            self._progress.write(line)


@dataclass
class TeamJob:
    """One team of a batch: its place in the table, its spec, its fingerprint, the key its entry must have (when
    known beforehand), and its outcome when it is not run (already measured, measured by another batch now, or
    refused before it ran)."""

    index: int
    spec: TeamSpec
    stamp: str
    key: str | None = None
    skipped: TeamOutcome | None = None


def _plan(specs: Sequence[TeamSpec], settings: BatchSettings, data_digest: str, status: Mapping[str, Any],
          existing: Mapping[str, Any], refresh: str, convention: Convention,
          say: Callable[[str], None]) -> list[TeamJob]:
    """Every team's job (see :class:`TeamJob`); what is not run, and why, is said."""
    jobs = []
    changed = changed_entries(existing, status)
    for index, spec in enumerate(specs):
        job = TeamJob(index, spec, fingerprint(spec, settings, data_digest), expected_key(spec, convention))
        previous = status.get(spec.label, {}) if isinstance(status.get(spec.label), dict) else {}
        key = previous.get("key")
        other = claimed_by_another(previous)
        if other is not None:
            job.skipped = TeamOutcome(spec.label, key, SKIPPED, f"being measured by another batch ({other}): not "
                                                                f"measured twice", existing.get(key))
        elif key in changed and previous.get("fingerprint") == job.stamp:
            say(f"{key}: its results.json entry was changed outside the kit since the kit wrote it: measuring it again")
        elif (refresh == "missing" and previous.get("status") == OK and previous.get("fingerprint") == job.stamp
              and isinstance(existing.get(key), dict)):
            job.skipped = TeamOutcome(spec.label, key, SKIPPED, record=existing[key])
        jobs.append(job)
    by_key: dict[str, list[TeamJob]] = {}
    for job in jobs:
        if job.key is not None and job.skipped is None:
            by_key.setdefault(job.key, []).append(job)
    for key, same in by_key.items():
        if len(same) > 1:
            for job in same:
                job.skipped = TeamOutcome(job.spec.label, None, FAILED, f"{job.spec.label}: {len(same)} teams of the "
                                          f"batch ({', '.join(j.spec.label for j in same)}) would all be written as "
                                          f"{key}: give each its own team number or name in the spec")
    for key, label in changed.items():
        if not any(job.spec.label == label for job in jobs):
            say(f"warning: {key} ({label}, not in this batch): its results.json entry was changed outside the kit "
                f"since the kit wrote it; `batch --refresh missing` over that team measures it again")
    return jobs


def _absolute(spec: TeamSpec) -> TeamSpec:
    """The spec with absolute paths (a team process works in its own folder)."""
    return dataclasses.replace(spec, **{k: Path(os.path.abspath(getattr(spec, k))) for k in ("model_file", "weights")
                                        if getattr(spec, k) is not None})


def team_files(spec: TeamSpec) -> list[Path]:
    """What a confined team process may read of the submission: its model file, and its weights -- the spec's, or
    the files of ``model_zoo/`` named for it (its file's stem, or ``teamNN_``) -- never another team's. A
    registered entry's weights are the kit's to find (its code is the kit's)."""
    files: list[Path] = []
    if spec.entry is not None:
        try:
            entry = resolve(spec, require_data_range=False)
            files.append(entry.weights_path(spec.weights))
        except KitError:
            pass  # its process says why
        return files
    assert spec.model_file is not None
    files.append(spec.model_file)
    if spec.weights is not None:
        files.append(spec.weights)
        return files
    zoo = spec.model_file.parent.parent / "model_zoo"
    number = team_number(spec)
    if zoo.is_dir():
        stem = spec.model_file.stem.lower()
        for path in sorted(zoo.iterdir()):
            name = path.name.lower()
            if path.is_file() and path.suffix in WEIGHT_SUFFIXES and (
                    name.startswith(stem) or (number is not None and name.startswith(f"team{number:02d}_"))):
                files.append(path)
    return files


def data_files(split: Split) -> list[Path]:
    """What a team process reads of the data: the split's folder(s), and the folders its files lead to through
    symbolic links (a split assembled from links)."""
    paths = {Path(split.root).absolute()}
    for pair in split.pairs:
        for path in (pair.hr_path, pair.lr_path):
            if path is not None:
                paths.add(Path(path).absolute().parent)
                paths.add(path.resolve().parent)
    return sorted(paths)


def sr_problem(sr_dir: Path, split: Split) -> str | None:
    """Why a team's SR folder does not hold exactly the split's SR images (plain PNG files named for its images),
    or None. Checked before anything of it is moved into place."""
    wanted = {f"{pair.name}.png": pair for pair in split.pairs}
    entries = sorted(sr_dir.iterdir())
    if [p.name for p in entries] != [split.name] or entries[0].is_symlink() or not entries[0].is_dir():
        return f"its SR folder holds {', '.join(p.name for p in entries[:3]) or 'nothing'}, not one folder {split.name}/"
    files = sorted(entries[0].iterdir())
    names = {p.name for p in files}
    if names != set(wanted):
        extra, missing = sorted(names - set(wanted)), sorted(set(wanted) - names)
        return (f"its SR folder holds {len(names)} files for {len(wanted)} images"
                f"{' (not the kit: ' + ', '.join(extra[:3]) + ')' if extra else ''}"
                f"{' (missing: ' + ', '.join(missing[:3]) + ')' if missing else ''}")
    for path in files:
        if path.is_symlink() or not path.is_file():
            return f"{path.name} in its SR folder is not a plain file"
        try:
            header = read_header(path)
        except KitError as exc:
            return str(exc)
        pair = wanted[path.name]
        source = pair.lr_path or pair.hr_path
        if header.format != "PNG" or source is None:
            return f"{path.name} in its SR folder is not a PNG"
        lr = read_header(source)
        if header.width % lr.width or header.height % lr.height or header.width // lr.width != header.height // lr.height:
            return f"{path.name} in its SR folder is {header.width}x{header.height}, not the LR's {lr.width}x{lr.height} upscaled"
    return None


@dataclass
class Round:
    """The results folder as this batch writes it: the only writer of results.json, results.txt, the ledger and the
    SR folders (see the module docstring). ``known`` holds every entry the kit wrote or checked in this batch, as
    written: anything else that changes one is undone at the next write, and said."""

    results: ResultsFiles
    settings: BatchSettings
    split: Split
    convention: Convention
    data_digest: str  # the split's (what a team's fingerprint holds)
    confined: bool
    say: Callable[[str], None]
    known: dict[str, Any] = field(default_factory=dict)
    claims: dict[str, str] = field(default_factory=dict)  # results key -> the label of the team that holds it
    uploads: Uploads | None = None  # --verify_uploads: each team measured gets its upload's verdict
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _bicubic: list[float] | None = None  # bicubic's PSNR on the split's first images (plausibility)

    @functools.cached_property
    def identity_digest(self) -> str:
        """The data's digest as an entry and an SR folder record it (:func:`esrkit.fingerprint.data_fingerprint`)."""
        return data_fingerprint([self.split])

    def expectation(self, job: TeamJob) -> Expectation:
        images = {self.split.name: tuple(pair.name for pair in self.split.pairs)}
        with self._lock:
            claimed = dict(self.claims)
        return Expectation(job.spec.label, images, str(self.split.root), self.split.layout, self.identity_digest,
                           self.confined, key=job.key, team=team_number(job.spec) if job.spec.entry is None else None,
                           claimed=claimed)

    def implausible(self, record: Mapping[str, Any]) -> str | None:
        """Why a team's PSNR cannot be a trained network's (far below bicubic on the split's first images: a wrong
        data range, most often), with the fix; None when it is plausible (:mod:`esrkit.submission.plausibility`)."""
        psnr = record.get(f"{self.split.name}_psnr")
        if not isinstance(psnr, list) or not self.split.has_hr:
            return None
        with self._lock:
            if self._bicubic is None:  # once per batch
                self._bicubic = [bicubic_psnr(pair, SCALE) for pair in self.split.pairs[:BATCH_IMAGES]]
        problem = below_bicubic(psnr[:len(self._bicubic)], self._bicubic, BATCH_MARGIN_DB)
        if problem is None:
            return None
        return (f"{problem} (x{SCALE}): not a trained network's figure -- most often a wrong data range (it ran with "
                f"data_range {record.get('data_range'):g}): check the team's data_range (`python -m esrkit.submission "
                f"check` reports the range that fits)")

    def incoming(self) -> Path | None:
        """A new SR folder for one team's process, inside ``--save_dir`` (so that its images move into place)."""
        if self.settings.save_dir is None:
            return None
        return Path(tempfile.mkdtemp(prefix=INCOMING_PREFIX, dir=self.settings.save_dir))

    def verify(self, entries: dict[str, Any] | None = None) -> None:
        """Merge ``entries`` (none: only check): every entry the kit knows that something else changed is put back
        as the kit wrote it, and said; so is a results.txt that is not results.json's."""
        with self._lock:
            known = dict(self.known)
        if not known and not entries:
            return
        merged = self.results.merge_checked(entries or {}, known=known)
        for key in merged.restored:
            self.say(f"warning: {key}: its results.json entry was changed by something other than the kit while "
                     f"this batch ran (a team run unconfined?): put back as the kit wrote it")
        if merged.txt_changed:
            self.say("warning: results.txt was changed by something other than the kit: written again from "
                     "results.json")

    def started(self, job: TeamJob) -> None:
        update_team_status(self.results.folder, job.spec.label, {RUNNING: claim()})

    def write(self, job: TeamJob, outcome: TeamOutcome, sr_dir: Path | None, device: str) -> TeamOutcome:
        """Everything of one team's outcome that is written, by the kit alone: its entry merged into results.json
        and results.txt (entries changed by anything else put back first), its SR images moved into place, its
        ledger record (with the entry's digest). A problem found on the way makes the outcome a failure."""
        if outcome.status == OK and sr_dir is not None:
            problem = sr_problem(sr_dir, self.split)
            if problem is not None:
                outcome = TeamOutcome(job.spec.label, None, FAILED, f"{job.spec.label}: {problem}")
        if outcome.status == OK and outcome.record is not None:
            problem = self.implausible(outcome.record)
            if problem is not None:  # measured as it is, and said: the organisers decide (check names the fix)
                outcome.record["psnr_implausible"] = problem
                self.say(f"warning: {outcome.key}: {problem}")
        if outcome.status == OK:
            assert outcome.key is not None and outcome.record is not None
            if self.uploads is not None and sr_dir is not None:  # in the entry before it is written and digested
                verdict = self.uploads.verdict(job.spec, outcome.key, sr_dir / self.split.name,
                                               [pair.name for pair in self.split.pairs], self.split.name)
                outcome.record[VERIFICATION_KEY] = verdict
                self.say(f"{outcome.key}: upload verification: {summary(verdict)}")
            self.verify({outcome.key: outcome.record})
            with self._lock:
                self.known[outcome.key] = outcome.record
                self.claims[outcome.key] = job.spec.label
            if sr_dir is not None:
                final = child_folder(Path(self.settings.save_dir), outcome.key, "--save_dir")  # type: ignore[arg-type]
                write_marker(sr_dir, DataIdentity.of([self.split], self.identity_digest), [self.split])
                try:
                    StagedFolder.adopt(final, sr_dir, carried_files(final)).commit()
                except KitError as exc:
                    outcome = TeamOutcome(job.spec.label, outcome.key, FAILED, f"{job.spec.label}: its SR images "
                                          f"could not be moved into place: {exc}", outcome.record)
        record = {"key": outcome.key, "status": outcome.status, "error": outcome.error, "fingerprint": job.stamp,
                  "date": now(), "device": device, "confined": self.confined}
        if outcome.status == OK and outcome.record is not None:
            record["digest"] = entry_digest(outcome.record)
            record["environment"] = environment_label(outcome.record.get("environment"))
        update_team_status(self.results.folder, job.spec.label, record, replace=True)
        return outcome

    def start_child(self, job: TeamJob, sandbox: Sandbox | None, slot: Slot, write: Callable[[str], None],
                    tag: str, paused: Paused | None = None) -> "Started":
        """Start one team's process (confined by ``sandbox`` when given): it imports what it needs and waits for
        :func:`finish_child` to tell it to go. ``paused``: the processes started ahead, which its timed part pauses."""
        settings = dataclasses.replace(self.settings, device=slot.device)
        scratch = Path(tempfile.mkdtemp(prefix="esrkit-team-"))
        sr_dir = self.incoming()
        try:
            request = TeamRequest(_absolute(job.spec), settings, self.identity_digest, sr_dir,
                                  confined=sandbox is not None)
            view = View(scratch, readable=(*team_files(request.spec), *data_files(self.split)),
                        writable=() if sr_dir is None else (sr_dir,))
            env = dict(slot.env)
            if settings.threads is not None:  # the libraries' own thread pools too, not only torch's
                env.update(OMP_NUM_THREADS=str(settings.threads), MKL_NUM_THREADS=str(settings.threads))
            process = TeamProcess([sys.executable, "-m", "esrkit.submission.teamrun", "--request", request.to_json()],
                                  env, write, tag, sandbox, view, on_timing=None if paused is None else paused.timing,
                                  on_timed=None if paused is None else paused.timed)
        except BaseException:
            _remove(scratch, sr_dir)
            raise
        return Started(job, process, scratch, sr_dir, sandbox is not None)

    def finish_child(self, started: "Started", timeout: float | None, stop: Stop) -> TeamOutcome | None:
        """Tell a started team process to go and follow it to its end; its checked outcome, its SR folder left in
        ``started.sr_dir`` for :meth:`write`. None when ``stop`` was set before it ended (the batch is stopping)."""
        try:
            ended = see_through(started.process, timeout, stop)
        finally:
            shutil.rmtree(started.scratch, ignore_errors=True)
        if ended is None:
            return None
        label = started.job.spec.label
        if ended.timed_out:
            return TeamOutcome(label, None, FAILED, f"{label}: timed out: still running after --team_timeout "
                                                    f"{timeout:g} s, so its process group was killed")
        if ended.reply is None:  # the process died before replying: a crash in the team's code, a kill
            return TeamOutcome(label, None, FAILED, f"{label}: {died(ended.code, started.confined)}")
        return self._with_environment(accept(ended.reply, self.expectation(started.job)), started.job)

    def _with_environment(self, outcome: TeamOutcome, job: TeamJob) -> TeamOutcome:
        """The software environment the team was measured in, added by the kit (:mod:`esrkit.environment`)."""
        if outcome.record is not None:
            outcome.record["environment"] = environment.describe(job.spec.model_file)
        return outcome

    def run_here(self, job: TeamJob, progress: Progress) -> tuple[TeamOutcome, Path | None]:
        """Measure one team in this process (unconfined by nature), checked as a team process's reply would be."""
        sr_dir = self.incoming()
        request = TeamRequest(job.spec, self.settings, self.identity_digest, sr_dir, confined=False)
        return self._with_environment(accept(reply_json(measure_team(request, progress)), self.expectation(job)),
                                      job), sr_dir


@dataclass
class Started:
    """A team process started (:meth:`Round.start_child`), with its scratch and SR folders."""

    job: TeamJob
    process: TeamProcess
    scratch: Path
    sr_dir: Path | None
    confined: bool

    def abandon(self) -> None:
        """Stop it and remove its folders (the batch is stopping, or it was started ahead for nothing)."""
        with contextlib.suppress(Exception):
            self.process.resume()  # a paused process takes no SIGTERM until it runs again
            self.process.terminate()
            self.process.finish()
        _remove(self.scratch, self.sr_dir)


def _remove(*folders: Path | None) -> None:
    for folder in folders:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def died(code: int, confined: bool = False) -> str:
    """How a team process that ended without replying ended, in words. A confined one's signal comes as the exit
    code 128 + N (bubblewrap's, as a shell's)."""
    if confined and 128 < code < 128 + signal.NSIG:
        code = 128 - code
    if code < 0:
        sig = signal.Signals(-code)
        if sig == signal.SIGKILL:
            why = "killed by SIGKILL (the out-of-memory killer, or a kill)"
        elif sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT):
            why = (f"killed by {sig.name}: a crash in native code its forward reached (a compiled extension or an "
                   f"operation the library does not support here)")
        else:
            why = f"killed by {sig.name}"
        return f"its process was {why} before reporting (see the lines above)"
    return f"its process ended with exit code {code} before reporting (see the lines above)"


def run_batch(specs: Sequence[TeamSpec], settings: BatchSettings, results: ResultsFiles, refresh: str = "missing",
              isolate: bool = True, progress: Progress = QUIET, dispatch: Dispatch | None = None,
              shard: Shard | None = None, invalid: Sequence[InvalidTable] = (),
              sandbox: Sandbox | None = None, uploads: Uploads | None = None) -> list[TeamOutcome]:
    """Measure every team (see the module docstring); the outcome of each, in spec order.

    ``sandbox`` confines each team process (None: unconfined, said in each entry); ``isolate`` False runs the teams
    in this process (unconfined). ``dispatch`` says where the team processes run (default: one after another on
    ``settings.device``); ``shard`` narrows the batch to that shard's teams (none: an empty list, nothing written);
    ``invalid`` are the spec's tables that could not be read: each is a failed team of the batch, the others go on.
    ``uploads`` (``--verify_uploads``, with ``settings.save_dir``): each team measured gets the verdict of its
    upload against its SR images in its entry.
    """
    if refresh not in REFRESH:
        raise KitError(f"--refresh {refresh!r}: choose one of {', '.join(REFRESH)}")
    if not isolate and dispatch is not None and (dispatch.parallel or dispatch.team_timeout is not None):
        raise KitError("--devices, --workers and --team_timeout run each team in a process of its own: drop --in_process")
    if not isolate and sandbox is not None:
        raise KitError("--in_process runs every team's code in this process, which cannot be confined: add --unconfined")
    if uploads is not None and settings.save_dir is None:
        raise KitError("--verify_uploads compares each team's upload with the SR images its code gives: add --save_dir "
                       "(where the batch keeps them)")
    settings = dataclasses.replace(settings, data_dir=Path(os.path.abspath(settings.data_dir)),
                                   save_dir=None if settings.save_dir is None else Path(os.path.abspath(settings.save_dir)))
    split = settings.open_split()
    convention = Convention.for_run(settings.year, split.layout)
    existing = results.preflight()
    status_path = results.folder / STATUS_NAME
    table_path = results.folder / table_name(shard)
    for path, flag in ((status_path, "--results_dir"), (table_path, "--results_dir")):
        check_writable_file(path, flag)
    if settings.save_dir is not None:
        check_writable_folder(settings.save_dir, "--save_dir")
    teams = list(specs) if shard is None else shard.select(specs)
    rejected = list(invalid) if shard is None else shard.select_invalid(invalid)
    if not teams and not rejected:
        return []
    say = _Lines(progress)
    status = read_status(status_path)
    data_digest = split_fingerprint(split)
    jobs = _plan(teams, settings, data_digest, status, existing, refresh, convention, say)
    round_ = Round(results, settings, split, convention, data_digest, isolate and sandbox is not None, say,
                   uploads=uploads)
    changed = changed_entries(existing, status)
    round_.known.update({k: v for k, v in existing.items() if k not in changed and isinstance(v, dict)})
    round_.claims.update({r["key"]: label for label, r in status.items()
                          if isinstance(r, dict) and r.get("status") == OK and isinstance(r.get("key"), str)})
    round_.claims.update({job.key: job.spec.label for job in jobs if job.key is not None})
    outcomes: list[TeamOutcome | None] = [None] * len(jobs)
    where = dispatch or Dispatch((Slot(settings.device, settings.device),))
    with progress.bar(len(jobs), "teams", unit="team") as bar:

        def done(job: TeamJob, outcome: TeamOutcome, slot: Slot | None) -> None:
            outcomes[job.index] = outcome
            line = f"{outcome.key or outcome.label}: {outcome.status}"
            if outcome.error:
                line += f" -- {outcome.error.removeprefix(job.spec.label + ': ')}"
            if where.parallel and slot is not None and outcome.status != SKIPPED:
                line += f" (on {slot.name})"
            say(line)
            bar.advance(outcome.status)

        def measured(job: TeamJob, outcome: TeamOutcome, sr_dir: Path | None, slot: Slot | None) -> TeamOutcome:
            try:
                return round_.write(job, outcome, sr_dir, settings.device if slot is None else slot.name)
            finally:
                if sr_dir is not None:
                    shutil.rmtree(sr_dir, ignore_errors=True)

        def skipped_or_refused(job: TeamJob) -> TeamOutcome:
            assert job.skipped is not None
            if job.skipped.status == FAILED:
                update_team_status(results.folder, job.spec.label, {
                    "key": None, "status": FAILED, "error": job.skipped.error, "fingerprint": job.stamp, "date": now()},
                    replace=True)
            return job.skipped

        if isolate:
            # One slot: each team's process is started one team ahead -- its imports overlap the team before it
            # (paused while that team times; it begins the team's work only once that team has ended).
            paused = None if where.parallel else Paused()
            order = [job for job in jobs if job.skipped is None]
            ahead: dict[int, Started] = {}

            def start(job: TeamJob, slot: Slot) -> Started:
                started = round_.start_child(job, sandbox, slot, say, team_tag(job.spec, convention), paused)
                if paused is not None:
                    paused.ahead.append(started.process)
                return started

            def run(job: TeamJob, slot: Slot, stop: Stop) -> TeamOutcome | None:
                if job.skipped is not None:
                    return skipped_or_refused(job)
                if not where.parallel:
                    bar.status(job.spec.label)
                round_.started(job)
                started = ahead.pop(job.index, None) or start(job, slot)
                following = order.index(job) + 1
                if paused is not None and following < len(order) and not stop.is_set():
                    ahead[order[following].index] = start(order[following], slot)
                outcome = round_.finish_child(started, where.team_timeout, stop)
                if paused is not None:
                    paused.ahead.remove(started.process)
                    paused.timed()  # it may have ended inside its timed part: the ones it paused go on
                if outcome is None:
                    update_team_status(results.folder, job.spec.label, {}, drop=(RUNNING,))
                    _remove(started.sr_dir)
                    return None
                return measured(job, outcome, started.sr_dir, slot)

            try:
                Pool(where.slots, run, done).map(jobs)
            finally:
                for started in ahead.values():
                    started.abandon()
        else:
            for job in jobs:
                if job.skipped is not None:
                    done(job, skipped_or_refused(job), None)
                    continue
                bar.status(job.spec.label)
                round_.started(job)
                outcome, sr_dir = round_.run_here(job, progress)
                done(job, measured(job, outcome, sr_dir, None), None)
    round_.verify()  # a team's process that tampered after its reply (run unconfined) is caught here too
    finished = [o for o in outcomes if o is not None]
    for table in rejected:  # a table the spec's schema refused: that team fails, the batch went on
        update_team_status(results.folder, table.label, {
            "key": None, "status": FAILED, "error": table.message, "fingerprint": None, "date": now()}, replace=True)
        finished.append(TeamOutcome(table.label, None, FAILED, table.message))
        say(f"{table.label}: {FAILED} -- {table.message}")
    rows = finished if shard is not None else round_table(finished, results)
    atomic_write(table_path, table_markdown(rows, convention, split, shard, len(specs) + len(invalid)))
    return finished


def round_table(outcomes: Sequence[TeamOutcome], results: ResultsFiles) -> list[TeamOutcome]:
    """The rows of the round's table: this batch's outcomes, then every other team of the ledger and every other
    entry of results.json (measured by an earlier batch over other teams, or written by another command) -- so a
    batch over a subset never leaves a partial table."""
    from esrkit.results import read_results

    entries = read_results(results.json_path)
    status = read_status(results.folder / STATUS_NAME)
    rows = list(outcomes)
    seen_labels = {o.label for o in outcomes}
    seen_keys = {o.key for o in outcomes if o.key is not None}
    for label, record in sorted(status.items()):
        if label in seen_labels or not isinstance(record, dict):
            continue
        key = record.get("key") if isinstance(record.get("key"), str) else None
        entry = entries.get(key) if key is not None else None
        rows.append(TeamOutcome(label, key, str(record.get("status", "?")), str(record.get("error") or ""),
                                entry if isinstance(entry, dict) else None))
        if key is not None:
            seen_keys.add(key)
    for key, entry in sorted(entries.items()):
        if key not in seen_keys:
            rows.append(TeamOutcome(key, key, "measured elsewhere", "", entry if isinstance(entry, dict) else None))
    return rows
