"""``batch``: the organisers' intake -- every team of a spec file (or a folder of team files), measured as
the organisers measure, into one results.json / results.txt and one table.

Per team: its spec is resolved (class, arguments, weights, state_dict, strictness, data range,
post-load step), the network is loaded and re-parameterised as deployed, counted (params, FLOPs under
both counters, activations, #conv; counted twice to catch input-dependent networks) and run on the
split with the challenge protocol. Its results entry is merged into results.json as soon as it is
done, so a batch cut short keeps every finished team. A team that fails -- a package that is not
installed, a class that is not there, wrong constructor arguments, a weights file of another
network, a forward that raises or gives NaN -- is one line naming the team and the fix, and the
batch goes on. ``batch_status.json`` beside results.json records every team's status, so that a
re-run measures only what is missing -- new teams and those that failed (``--refresh missing``, the
default) -- or every team again (``--refresh all``); ``--teams`` narrows either to some teams.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from esrkit.atomic import atomic_write, check_writable_file
from esrkit.challenge import FVCORE, Convention
from esrkit.datasets import Split
from esrkit.errors import KitError
from esrkit.progress import QUIET, Progress
from esrkit.results import ResultsFiles
from esrkit.run import EntryRun, RunOptions, result_record, run_entry
from esrkit.spec import TeamSpec, resolve

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
    run: EntryRun | None = None
    record: dict[str, Any] | None = None


def _status_key(spec: TeamSpec) -> str:
    return spec.label


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
    lines = [
        f"# Batch: {len(outcomes)} teams on {split.root} ({split.name}, {split.layout} layout, {len(split)} images)",
        "",
        f"Results convention: {convention.label}; `flops` is the {primary}. Runtime: challenge protocol mean "
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


def run_batch(specs: Sequence[TeamSpec], split: Split, convention: Convention, options: RunOptions,
              results: ResultsFiles, refresh: str = "missing", save_dir: Path | None = None,
              progress: Progress = QUIET) -> list[TeamOutcome]:
    """Measure every team (see the module docstring); the outcome of each, in spec order."""
    if refresh not in REFRESH:
        raise KitError(f"--refresh {refresh!r}: choose one of {', '.join(REFRESH)}")
    existing = results.preflight()
    status_path = results.folder / STATUS_NAME
    table_path = results.folder / TABLE_NAME
    check_writable_file(status_path, "--results_dir")
    status = read_status(status_path)
    outcomes: list[TeamOutcome] = []
    with progress.bar(len(specs), "teams", unit="team") as bar:
        for spec in specs:
            bar.status(spec.label)
            outcome = _one_team(spec, split, convention, options, results, status, existing, refresh, save_dir)
            outcomes.append(outcome)
            if outcome.status != SKIPPED:  # a skipped team keeps its record (ok, and when it was measured)
                status[_status_key(spec)] = {"key": outcome.key, "status": outcome.status, "error": outcome.error,
                                             "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
                atomic_write(status_path, json.dumps(status, indent=2) + "\n")
            line = f"{outcome.key or outcome.label}: {outcome.status}" + (f" -- {outcome.error}" if outcome.error else "")
            progress.write(line)
            bar.advance(outcome.status)
    atomic_write(table_path, table_markdown(outcomes, convention, split))
    return outcomes


def _one_team(spec: TeamSpec, split: Split, convention: Convention, options: RunOptions, results: ResultsFiles,
              status: dict[str, Any], existing: dict[str, Any], refresh: str, save_dir: Path | None) -> TeamOutcome:
    previous = status.get(_status_key(spec), {})
    if refresh == "missing" and previous.get("status") == OK and isinstance(existing.get(previous.get("key")), dict):
        key = previous["key"]
        return TeamOutcome(spec.label, key, SKIPPED, record=existing[key])
    try:
        entry = resolve(spec)
        key = convention.key(entry)
        run = run_entry(entry, [split], convention, options, save_root=None if save_dir is None else save_dir / key)
        record = result_record(run)
        results.merge({key: record})
        return TeamOutcome(spec.label, key, OK, run=run, record=record)
    except KitError as exc:
        message = str(exc)
        return TeamOutcome(spec.label, None, FAILED, message if message.startswith(spec.label) else f"{spec.label}: {message}")
    except Exception as exc:  # noqa: BLE001 - a team's code failing in a way no check foresaw: still one line
        first = (str(exc).strip().splitlines() or ["(no message)"])[0]
        return TeamOutcome(spec.label, None, FAILED, f"{spec.label}: {type(exc).__name__}: {first}")
