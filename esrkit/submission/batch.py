"""``batch``: the organisers' intake -- every team of a spec file (or a folder of team files), measured as
the organisers measure, into one results.json / results.txt and one table.

Per team: its spec is resolved (class, arguments, weights, state_dict, strictness, data range,
post-load step), the network is loaded and re-parameterised as deployed, counted (params, FLOPs under
both counters, activations, #conv; counted twice to catch input-dependent networks) and run on the
split with the challenge protocol. As the organisers do, every team runs in a process of its own
(``python -m esrkit.submission.batch --one ...``): its first image carries the cold start as in a
separate ``test_demo.py`` run, its memory peak is its own, and its imports, CUDA redirects and crashes
stay in that process (``isolate=False`` runs the teams in this process instead: faster, for tests
and dry runs, with those differences). Its results entry is merged into results.json as soon as it
is done, so a batch cut short keeps every finished team. A team that fails -- a package that is not
installed, a class that is not there, wrong constructor arguments, a weights file of another
network, a forward that raises or gives NaN -- is one line naming the team and the fix, and the
batch goes on. ``batch_status.json`` beside results.json records every team's status and what it
was measured from, so that a re-run measures only what is missing -- new teams, failed ones, and
those whose files, data or settings changed (``--refresh missing``, the default) -- or every team
again (``--refresh all``). What a team was measured from is its spec, its files, the settings and the
data's *contents* (:func:`esrkit.fingerprint.split_fingerprint`: an HR image replaced in place is other
data, though the folder's path is the same).

The team processes run one at a time on the batch's device, or -- with several slots (every GPU of a
machine, ``--devices``; N CPU workers, ``--workers``) -- one per slot at a time, taken from one queue
(:mod:`esrkit.submission.workers`); ``--team_timeout`` stops a team that hangs. ``batch_status.json``
is then written by several workers (and, with a shared results folder, by several machines running
shards, :mod:`esrkit.submission.shards`), so each team's record is read, changed and written alone,
under the folder's lock. ``batch.md`` is written at the end from the outcomes; a shard's table
(``batch_shard-K-of-N.md``) covers its own teams, so that the shards of one shared folder do not
overwrite each other's.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from esrkit.atomic import atomic_write, check_writable_file, check_writable_folder
from esrkit.challenge import FVCORE, Convention
from esrkit.cli import EXIT_OK, EXIT_USAGE, run_guarded
from esrkit.datasets import Split, open_split
from esrkit.device import free_device, pick_device, torch_threads
from esrkit.errors import KitError, first_line
from esrkit.fingerprint import split_fingerprint
from esrkit.names import child_folder
from esrkit.progress import QUIET, Progress, run_log
from esrkit.results import ResultsFiles, entry_record, folder_lock, read_results
from esrkit.run import RunOptions, run_entry
from esrkit.spec import InvalidTable, TeamSpec, resolve
from esrkit.submission.shards import Shard, team_number
from esrkit.submission.workers import REPLY_MARK, Pool, Slot, Stop, device_model, run_team_process
from esrkit.teamfile import find_weights, team_from_file_name

STATUS_NAME = "batch_status.json"
TABLE_NAME = "batch.md"
REFRESH = ("missing", "all")
OK, FAILED, SKIPPED = "ok", "failed", "skipped"


@dataclass
class TeamOutcome:
    """One team's line of the batch table."""

    label: str
    key: str | None
    status: str
    error: str = ""
    record: dict[str, Any] | None = None


@dataclass(frozen=True)
class BatchSettings:
    """What every team of a batch is measured with (and what a re-run must match to skip a team)."""

    data_dir: Path
    split: str
    layout: str
    year: int | None
    device: str
    ssim: bool = False
    warm_runs: int = 0
    default_data_range: float | None = None  # for the teams whose spec (and file) declare none
    save_dir: Path | None = None
    threads: int | None = None  # torch threads per team (None: torch's default)

    def open_split(self) -> Split:
        return open_split(self.data_dir, self.split, self.layout)


@dataclass(frozen=True)
class Dispatch:
    """Where the team processes run (one slot per GPU or CPU worker; one slot: one team after another) and
    how long one may run before it is stopped."""

    slots: tuple[Slot, ...]
    team_timeout: float | None = None

    @property
    def parallel(self) -> bool:
        return len(self.slots) > 1


def spec_to_json(spec: TeamSpec) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(spec).items() if v is not None}


def spec_from_json(data: dict[str, Any]) -> TeamSpec:
    values = dict(data)
    for key in ("model_file", "weights"):
        if key in values:
            values[key] = Path(values[key])
    if "init_args" in values:
        values["init_args"] = tuple(values["init_args"])
    return TeamSpec(**values)


def _file_stamp(path: Path | None) -> list[Any] | None:
    if path is None or not path.is_file():
        return None
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def fingerprint(spec: TeamSpec, settings: BatchSettings, data_digest: str | None = None) -> str:
    """What a team's figures depend on: its spec, its files (size, mtime), the data (its path and a digest of
    its contents), the settings, the kind of device (``cuda <model>``, not which one of a machine's GPUs).

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
             "default_data_range": settings.default_data_range, "torch": torch.__version__}
    return hashlib.sha1(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def read_status(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KitError(f"{path} cannot be read ({exc}): move it away (the batch then re-runs every team)") from None
    return data if isinstance(data, dict) else {}


def write_team_status(folder: Path, label: str, record: Mapping[str, Any]) -> None:
    """Replace one team's record of ``folder``'s batch_status.json, from a fresh read under the folder's lock
    (other workers, other machines' shards write theirs meanwhile), written atomically."""
    path = Path(folder) / STATUS_NAME
    with folder_lock(Path(folder)):
        status = read_status(path)
        status[label] = dict(record)
        atomic_write(path, json.dumps(status, indent=2) + "\n")


def table_name(shard: Shard | None) -> str:
    """``batch.md``; a shard's own table beside it: ``batch_shard-2-of-4.md``."""
    return TABLE_NAME if shard is None else f"batch_shard-{shard.index}-of-{shard.count}.md"


def _giga(value: Any) -> str:
    """A number with two decimals, ``-`` when absent or not a number."""
    return f"{value:.2f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def device_mix(records: Iterable[Any]) -> str | None:
    """A warning when results entries were measured on different devices (their runtimes do not compare)."""
    devices: dict[str, int] = {}
    for r in records:
        if isinstance(r, dict) and isinstance(r.get("device"), str):
            devices[r["device"]] = devices.get(r["device"], 0) + 1
    if len(devices) < 2:
        return None
    return ("measured on different devices (" + "; ".join(f"{d}: {n}" for d, n in devices.items()) +
            "): runtimes compare only between entries of one device")


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
    mix = device_mix(o.record for o in outcomes)
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
        notes += [n for n in r.get("notes", [])]
        if o.status == SKIPPED:
            notes.append("already measured (not re-run)")
        params = r.get("num_parameters")
        lines.append(
            f"| {o.key} | {o.status} | {'-' if params is None else f'{round(params * 1e6):,}'} | "
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
    """One team of a batch: its place in the table, its spec, its fingerprint, and its outcome when it is
    skipped (already measured from the same fingerprint)."""

    index: int
    spec: TeamSpec
    stamp: str
    skipped: TeamOutcome | None = None


def _plan(specs: Sequence[TeamSpec], settings: BatchSettings, split: Split, status: Mapping[str, Any],
          existing: Mapping[str, Any], refresh: str) -> list[TeamJob]:
    """Every team's job, its fingerprint computed from one digest of the data."""
    data_digest = split_fingerprint(split)
    jobs = []
    for index, spec in enumerate(specs):
        stamp = fingerprint(spec, settings, data_digest)
        previous = status.get(spec.label, {})
        job = TeamJob(index, spec, stamp)
        if (refresh == "missing" and previous.get("status") == OK and previous.get("fingerprint") == stamp
                and isinstance(existing.get(previous.get("key")), dict)):
            job.skipped = TeamOutcome(spec.label, previous["key"], SKIPPED, record=existing[previous["key"]])
        jobs.append(job)
    return jobs


def run_batch(specs: Sequence[TeamSpec], settings: BatchSettings, results: ResultsFiles, refresh: str = "missing",
              isolate: bool = True, progress: Progress = QUIET, dispatch: Dispatch | None = None,
              shard: Shard | None = None, invalid: Sequence[InvalidTable] = ()) -> list[TeamOutcome]:
    """Measure every team (see the module docstring); the outcome of each, in spec order.

    ``dispatch`` says where the team processes run (default: one after another on ``settings.device``);
    ``shard`` narrows the batch to that shard's teams (none: an empty list, nothing written); ``invalid`` are
    the spec's tables that could not be read: each is a failed team of the batch, the others go on.
    """
    if refresh not in REFRESH:
        raise KitError(f"--refresh {refresh!r}: choose one of {', '.join(REFRESH)}")
    if not isolate and dispatch is not None and (dispatch.parallel or dispatch.team_timeout is not None):
        raise KitError("--devices, --workers and --team_timeout run each team in a process of its own: drop --in_process")
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
    jobs = _plan(teams, settings, split, read_status(status_path), existing, refresh)
    outcomes: list[TeamOutcome | None] = [None] * len(jobs)
    say = _Lines(progress)
    where = dispatch or Dispatch((Slot(settings.device, settings.device),))
    with progress.bar(len(jobs), "teams", unit="team") as bar:

        def done(job: TeamJob, outcome: TeamOutcome, slot: Slot | None) -> None:
            if outcome.status != SKIPPED:
                write_team_status(results.folder, job.spec.label, {
                    "key": outcome.key, "status": outcome.status, "error": outcome.error, "fingerprint": job.stamp,
                    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "device": settings.device if slot is None else slot.name})
                if outcome.status == OK and outcome.record is None:  # measured in a child: read what it merged
                    outcome.record = read_results(results.json_path).get(outcome.key)
            outcomes[job.index] = outcome
            line = f"{outcome.key or outcome.label}: {outcome.status}"
            if outcome.error:
                line += f" -- {outcome.error.removeprefix(job.spec.label + ': ')}"
            if where.parallel and slot is not None and outcome.status != SKIPPED:
                line += f" (on {slot.name})"
            say(line)
            bar.advance(outcome.status)

        if isolate:
            def run(job: TeamJob, slot: Slot, stop: Stop) -> TeamOutcome | None:
                if job.skipped is not None:
                    return job.skipped
                if not where.parallel:
                    bar.status(job.spec.label)
                return measure_in_child(job.spec, dataclasses.replace(settings, device=slot.device), results.folder,
                                        env=slot.env, timeout=where.team_timeout, stop=stop, write=say,
                                        relay_stderr=where.parallel, tag=team_tag(job.spec, convention))

            Pool(where.slots, run, done).map(jobs)
        else:
            for job in jobs:
                bar.status(job.spec.label)
                done(job, job.skipped or measure_team(job.spec, settings, results, progress), None)
    finished = [o for o in outcomes if o is not None]
    for table in rejected:  # a table the spec's schema refused: that team fails, the batch went on
        write_team_status(results.folder, table.label, {
            "key": None, "status": FAILED, "error": table.message, "fingerprint": None,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
        finished.append(TeamOutcome(table.label, None, FAILED, table.message))
        say(f"{table.label}: {FAILED} -- {table.message}")
    atomic_write(table_path, table_markdown(finished, convention, split, shard, len(specs) + len(invalid)))
    return finished


def measure_team(spec: TeamSpec, settings: BatchSettings, results: ResultsFiles,
                 progress: Progress = QUIET) -> TeamOutcome:
    """One team in this process: resolve, run, merge its entry; a failure is the outcome, never raised."""
    device = pick_device(settings.device)
    options = RunOptions(device, ssim=settings.ssim, warm_runs=settings.warm_runs, progress=progress)
    try:
        with torch_threads(settings.threads):
            split = settings.open_split()
            convention = Convention.for_run(settings.year, split.layout)
            entry = resolve(spec, require_data_range=settings.default_data_range is None)
            if entry.data_range is None:  # neither the spec nor the file says it: the organisers' default
                entry = entry.replace(data_range=settings.default_data_range)
            key = convention.key(entry)
            record: dict[str, Any] = {}

            def merge(run: Any) -> None:
                record.update(entry_record(run))
                results.merge({key: record})

            run_entry(entry, [split], convention, options, finish=merge, weights_flag="weights (in the spec)",
                      save_root=None if settings.save_dir is None else
                      child_folder(settings.save_dir, key, "--save_dir"))
        return TeamOutcome(spec.label, key, OK, record=record)
    except KitError as exc:
        message = str(exc)
        return TeamOutcome(spec.label, None, FAILED, message if message.startswith(spec.label) else f"{spec.label}: {message}")
    except Exception as exc:  # noqa: BLE001 - a team's code failing in a way no check foresaw: still one line
        return TeamOutcome(spec.label, None, FAILED, f"{spec.label}: {first_line(exc)}")
    finally:
        free_device(device)  # the next team's memory figure must not hold this team's weights


# --- one team in a process of its own ---------------------------------------------------------------


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def measure_in_child(spec: TeamSpec, settings: BatchSettings, results_dir: Path, env: Mapping[str, str] | None = None,
                     timeout: float | None = None, stop: Stop | None = None, write: Callable[[str], None] = _stderr_line,
                     relay_stderr: bool = False, tag: str | None = None) -> TeamOutcome | None:
    """Measure one team in a fresh ``python -m esrkit.submission.batch --one`` process (see the module docstring).

    ``env`` is added to its environment (a slot's ``CUDA_VISIBLE_DEVICES``); ``timeout`` [s] stops it;
    ``write`` takes its relayed lines (prefixed with ``tag``), its stderr too when ``relay_stderr``.
    None when ``stop`` was set before it ended (the batch is being interrupted).
    """
    job = {"spec": spec_to_json(spec), "settings": {k: (str(v) if isinstance(v, Path) else v)
                                                     for k, v in dataclasses.asdict(settings).items()},
           "results_dir": str(results_dir)}
    extra = dict(env or {})
    if settings.threads is not None:  # the libraries' own thread pools too, not only torch's
        extra.update(OMP_NUM_THREADS=str(settings.threads), MKL_NUM_THREADS=str(settings.threads))
    ended = run_team_process([sys.executable, "-m", "esrkit.submission.batch", "--one", json.dumps(job)], extra,
                             write, tag or spec.label, relay_stderr, timeout, stop or Stop())
    if ended is None:
        return None
    if ended.timed_out:
        return TeamOutcome(spec.label, None, FAILED, f"{spec.label}: timed out: still running after --team_timeout "
                                                     f"{timeout:g} s, so its process group was killed")
    try:
        reply = json.loads(ended.reply) if ended.reply is not None else None
    except json.JSONDecodeError:
        reply = None
    if not isinstance(reply, dict):  # the process died (a crash in the team's code, the OOM killer, a kill)
        if ended.code < 0:
            how = f"was killed by {signal.Signals(-ended.code).name}"
            return TeamOutcome(spec.label, None, FAILED, f"{spec.label}: its process {how} before reporting "
                                                         f"(the out-of-memory killer, or a kill; see the lines above)")
        return TeamOutcome(spec.label, None, FAILED, f"{spec.label}: its process ended with exit code "
                                                     f"{ended.code} before reporting (see the lines above)")
    return TeamOutcome(spec.label, reply.get("key"), reply["status"], reply.get("error", ""))


def child_main(argv: Sequence[str] | None = None) -> int:
    """The team process: one JSON job on the command line, one marked JSON reply line on stdout.

    SIGTERM (the batch stopping it: a time limit, Ctrl-C) is taken as Ctrl-C, so that a results merge in
    progress is undone rather than cut between its two files.
    """
    parser = argparse.ArgumentParser(prog="python -m esrkit.submission.batch",
                                     description="one team of a batch (run by `python -m esrkit.submission batch`)")
    parser.add_argument("--one", required=True, help="the job, as JSON")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    def body() -> int:
        job = json.loads(args.one)
        values = dict(job["settings"])
        for key in ("data_dir", "save_dir"):
            values[key] = None if values.get(key) is None else Path(values[key])
        settings = BatchSettings(**values)
        results_dir = Path(job["results_dir"])
        outcome = measure_team(spec_from_json(job["spec"]), settings, ResultsFiles(results_dir),
                               Progress(log=run_log(results_dir)))  # per-image lines in the batch's run log too
        reply = json.dumps({"key": outcome.key, "status": outcome.status, "error": outcome.error})
        stdout = sys.__stdout__ or sys.stdout  # the real stdout, whatever the team's code did with sys.stdout
        stdout.write(f"\n{REPLY_MARK}{reply}\n")  # on a line of its own, after whatever a team printed
        stdout.flush()
        return EXIT_OK if outcome.status == OK else EXIT_USAGE

    return run_guarded(body, "this team was not written")


if __name__ == "__main__":
    sys.exit(child_main())
