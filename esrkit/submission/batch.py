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

Here: what a batch runs and skips (:func:`_plan`, from the ledger), and in what order and where
(:class:`Dispatch`, :func:`run_batch`); one team's process and every write of its outcome are
:mod:`esrkit.submission.round`'s; the round's table, :mod:`esrkit.submission.table`'s.

The team processes run one at a time on the batch's device, or -- with several slots (every GPU of a
machine, ``--devices``; N CPU workers, ``--workers``) -- one per slot at a time, taken from one queue
(:mod:`esrkit.submission.workers`); ``--team_timeout`` stops a team that hangs. ``batch.md`` is written at the end
and covers the whole round -- every team of the ledger and every entry of results.json, not only this batch's --
so that a batch over a subset never replaces the round's table with a partial one; a shard's table
(``batch_shard-K-of-N.md``) covers its own teams.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from esrkit.atomic import atomic_write, check_writable_file, check_writable_folder
from esrkit.challenge import Convention
from esrkit.errors import KitError
from esrkit.fingerprint import split_fingerprint
from esrkit.progress import QUIET, Progress
from esrkit.results import ResultsFiles
from esrkit.sandbox import Sandbox
from esrkit.spec import InvalidTable, TeamSpec, resolve
from esrkit.submission.round import Round, Started, TeamJob, remove_folders
from esrkit.submission.shards import Shard, team_number
from esrkit.submission.status import (
    OK,
    RUNNING,
    STATUS_NAME,
    changed_entries,
    claimed_by_another,
    now,
    read_status,
    update_team_status,
)
from esrkit.submission.table import round_table, table_markdown, table_name
from esrkit.submission.teamrun import FAILED, SKIPPED, BatchSettings, TeamOutcome, spec_to_json
from esrkit.submission.verify import Uploads
from esrkit.submission.workers import Paused, Pool, Slot, Stop, device_model
from esrkit.teamfile import find_weights, team_from_file_name

__all__ = ["OK", "FAILED", "SKIPPED", "STATUS_NAME", "REFRESH", "BatchSettings", "Dispatch", "TeamOutcome",
           "read_status", "run_batch", "fingerprint"]

REFRESH = ("missing", "all")


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
                    remove_folders(started.sr_dir)
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


