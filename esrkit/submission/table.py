"""The round's table: ``batch.md`` (and the table a batch prints), one row per team -- its status, every count,
PSNR and runtime, and its notes in words -- over the whole results folder, never only the batch at hand
(:func:`round_table`), with a warning above it where entries were measured on different devices or under different
software environments."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

from esrkit.challenge import FVCORE, Convention
from esrkit.datasets import Split
from esrkit.environment import label as environment_label
from esrkit.results import ResultsFiles
from esrkit.submission.shards import Shard
from esrkit.submission.status import STATUS_NAME, read_status
from esrkit.submission.teamrun import SKIPPED, TeamOutcome
from esrkit.verdicts import IDENTICAL, short, verification_of

TABLE_NAME = "batch.md"


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
