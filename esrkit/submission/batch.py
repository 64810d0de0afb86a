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
again (``--refresh all``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from esrkit.atomic import atomic_write, check_writable_file, check_writable_folder
from esrkit.challenge import FVCORE, Convention
from esrkit.cli import EXIT_OK, EXIT_USAGE, run_guarded
from esrkit.datasets import Split, open_split
from esrkit.device import free_device, pick_device
from esrkit.errors import KitError, first_line
from esrkit.progress import QUIET, Progress
from esrkit.results import ResultsFiles, entry_record
from esrkit.run import RunOptions, run_entry
from esrkit.spec import TeamSpec, resolve
from esrkit.teamfile import find_weights

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

    def open_split(self) -> Split:
        return open_split(self.data_dir, self.split, self.layout)


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


def fingerprint(spec: TeamSpec, settings: BatchSettings) -> str:
    """What a team's figures depend on: its spec, its files (size, mtime), the data, the settings."""
    weights = spec.weights if spec.weights is not None else (find_weights(spec.model_file) if spec.model_file else None)
    facts = {"spec": spec_to_json(spec), "model_file": _file_stamp(spec.model_file), "weights": _file_stamp(weights),
             "data": str(Path(settings.data_dir).resolve()), "split": settings.split, "layout": settings.layout,
             "year": settings.year, "device": settings.device, "ssim": settings.ssim, "warm_runs": settings.warm_runs,
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


def _giga(value: Any) -> str:
    """A number with two decimals, ``-`` when absent or not a number."""
    return f"{value:.2f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def table_markdown(outcomes: Sequence[TeamOutcome], convention: Convention, split: Split) -> str:
    """The batch table: per team its status and, where measured, every count, PSNR and runtime."""
    primary = "fvcore" if convention.flops_counter == FVCORE else "hook counter"
    other = "hook counter" if convention.flops_counter == FVCORE else "fvcore"
    holds = "fvcore's count" if convention.flops_counter == FVCORE else "the official hook counter's"
    lines = [
        f"# Batch: {len(outcomes)} teams on {split.root} ({split.name}, {split.layout} layout, {len(split)} images)",
        "",
        f"Results convention: {convention.label}; `flops` holds {holds}. Runtime: challenge protocol mean "
        f"(fp32, batch 1, no warm-up, first image cold).",
        "",
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


def run_batch(specs: Sequence[TeamSpec], settings: BatchSettings, results: ResultsFiles, refresh: str = "missing",
              isolate: bool = True, progress: Progress = QUIET) -> list[TeamOutcome]:
    """Measure every team (see the module docstring); the outcome of each, in spec order."""
    if refresh not in REFRESH:
        raise KitError(f"--refresh {refresh!r}: choose one of {', '.join(REFRESH)}")
    split = settings.open_split()
    convention = Convention.for_run(settings.year, split.layout)
    existing = results.preflight()
    status_path = results.folder / STATUS_NAME
    table_path = results.folder / TABLE_NAME
    for path, flag in ((status_path, "--results_dir"), (table_path, "--results_dir")):
        check_writable_file(path, flag)
    if settings.save_dir is not None:
        check_writable_folder(settings.save_dir, "--save_dir")
    status = read_status(status_path)
    outcomes: list[TeamOutcome] = []
    with progress.bar(len(specs), "teams", unit="team") as bar:
        for spec in specs:
            bar.status(spec.label)
            stamp = fingerprint(spec, settings)
            previous = status.get(spec.label, {})
            if (refresh == "missing" and previous.get("status") == OK and previous.get("fingerprint") == stamp
                    and isinstance(existing.get(previous.get("key")), dict)):
                outcome = TeamOutcome(spec.label, previous["key"], SKIPPED, record=existing[previous["key"]])
            else:
                outcome = (measure_in_child(spec, settings, results.folder) if isolate else
                           measure_team(spec, settings, results, progress))
                status[spec.label] = {"key": outcome.key, "status": outcome.status, "error": outcome.error,
                                      "fingerprint": stamp,
                                      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
                atomic_write(status_path, json.dumps(status, indent=2) + "\n")
                if outcome.status == OK and outcome.record is None:  # measured in a child: read what it merged
                    outcome.record = ResultsFiles(results.folder).preflight().get(outcome.key)
            outcomes.append(outcome)
            line = f"{outcome.key or outcome.label}: {outcome.status}"
            if outcome.error:
                line += f" -- {outcome.error.removeprefix(spec.label + ': ')}"
            progress.write(line)
            bar.advance(outcome.status)
    atomic_write(table_path, table_markdown(outcomes, convention, split))
    return outcomes


def measure_team(spec: TeamSpec, settings: BatchSettings, results: ResultsFiles,
                 progress: Progress = QUIET) -> TeamOutcome:
    """One team in this process: resolve, run, merge its entry; a failure is the outcome, never raised."""
    device = pick_device(settings.device)
    options = RunOptions(device, ssim=settings.ssim, warm_runs=settings.warm_runs, progress=progress)
    try:
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
                  save_root=None if settings.save_dir is None else settings.save_dir / key)
        return TeamOutcome(spec.label, key, OK, record=record)
    except KitError as exc:
        message = str(exc)
        return TeamOutcome(spec.label, None, FAILED, message if message.startswith(spec.label) else f"{spec.label}: {message}")
    except Exception as exc:  # noqa: BLE001 - a team's code failing in a way no check foresaw: still one line
        return TeamOutcome(spec.label, None, FAILED, f"{spec.label}: {first_line(exc)}")
    finally:
        free_device(device)  # the next team's memory figure must not hold this team's weights


# --- one team in a process of its own ---------------------------------------------------------------


def measure_in_child(spec: TeamSpec, settings: BatchSettings, results_dir: Path) -> TeamOutcome:
    """Measure one team in a fresh ``python -m esrkit.submission.batch --one`` process (see the module docstring)."""
    job = {"spec": spec_to_json(spec), "settings": {k: (str(v) if isinstance(v, Path) else v)
                                                     for k, v in dataclasses.asdict(settings).items()},
           "results_dir": str(results_dir)}
    done = subprocess.run([sys.executable, "-m", "esrkit.submission.batch", "--one", json.dumps(job)],
                          stdout=subprocess.PIPE, text=True)
    last = done.stdout.strip().splitlines()[-1:] if done.stdout else []
    try:
        reply = json.loads(last[0]) if last else None
    except json.JSONDecodeError:
        reply = None
    if not isinstance(reply, dict):  # the process died (a crash in the team's code, the OOM killer, Ctrl-C)
        if done.returncode in (130, -2):
            raise KeyboardInterrupt
        return TeamOutcome(spec.label, None, FAILED, f"{spec.label}: its process ended with exit code "
                                                     f"{done.returncode} before reporting (see the lines above)")
    return TeamOutcome(spec.label, reply.get("key"), reply["status"], reply.get("error", ""))


def child_main(argv: Sequence[str] | None = None) -> int:
    """The team process: one JSON job on the command line, one JSON reply as the last line of stdout."""
    parser = argparse.ArgumentParser(prog="python -m esrkit.submission.batch",
                                     description="one team of a batch (run by `python -m esrkit.submission batch`)")
    parser.add_argument("--one", required=True, help="the job, as JSON")
    args = parser.parse_args(argv)

    def body() -> int:
        job = json.loads(args.one)
        values = dict(job["settings"])
        for key in ("data_dir", "save_dir"):
            values[key] = None if values.get(key) is None else Path(values[key])
        settings = BatchSettings(**values)
        outcome = measure_team(spec_from_json(job["spec"]), settings, ResultsFiles(Path(job["results_dir"])),
                               Progress())
        print(json.dumps({"key": outcome.key, "status": outcome.status, "error": outcome.error}), flush=True)
        return EXIT_OK if outcome.status == OK else EXIT_USAGE

    return run_guarded(body, "this team was not written")


if __name__ == "__main__":
    sys.exit(child_main())
