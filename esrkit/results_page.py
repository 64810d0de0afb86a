"""The organisers' results page: one self-contained ``results.html`` from results.json (and batch_status.json).

The page shows the round's table -- rank under the year's rules (2022/2023: main track by runtime, with
Model Comp. and Overall; 2024/2025: the score relative to the year's baseline), team, PSNR, runtime (the
challenge figure, the warm median, the ratio to the baseline), params, FLOPs under the year's counter
with the other beside it, activations, memory, #conv, the upload's verdict (where one was checked), status,
flags -- sortable by every column, and readable with 60 teams (it scrolls inside its box, rank and team
kept in view; a score too large to mean anything in digits is said in words); the PSNR-runtime and
PSNR-FLOPs plots with their Pareto fronts (inline SVG from :mod:`esrkit.frontier_svg`: log runtime axis,
numbered points whose labels never overlap, a key); each team's flags in words; and per team a drill-down
with its per-image PSNR against the baseline's.

It opens from disk with no network: the style, the script and the figures (inline SVG, and PNG data URIs)
are inside the file, and its Content-Security-Policy lets nothing else load. Everything taken from
results.json is escaped (team names are user input). Every number shown sits in a ``<span class="num">``
whose ``data-value`` is the raw value: ``data-entry`` + ``data-key`` (+ ``data-index`` for a per-image
value) name where it is in results.json, or ``data-derived`` names the formula it comes from (a rank,
the score, a ratio, a mean of two runtimes, a PSNR difference); the text is that value rounded.

Ranking is never silent about what it cannot compare: runtimes from another device than the baseline's
(or, without a baseline, than most entries') are not ranked, CPU runtimes are marked, memory off CUDA is
"not measured" (never 0), entries of another results convention, FLOPs counter or data set than the
baseline's (:mod:`esrkit.comparability`; ``merge --allow_mixed`` keeps them) are flagged and neither
ranked nor plotted, entries measured under several environments are ranked together under a note that
names the groups, and entries of another shape show ``-`` where a value cannot be read.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import jinja2
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from esrkit.atomic import atomic_write
from esrkit.challenge import FVCORE, HOOKS, YEARS, Year, year_rules
from esrkit.comparability import (BASELINE_KEY, Environment, baseline_of, convention_years, counter_of,
                                  environment_groups, mismatches, package_versions, reference_key)
from esrkit.digests import entry_digest
from esrkit.errors import KitError
from esrkit.frontier_svg import BASE, FRONT, POINT, Point, frontier_svg
from esrkit.ranking import score_from_ratios, track_ranks, ordinal
from esrkit.verdicts import IDENTICAL, short as verdict_short, summary as verdict_summary, verification_of

FORMATS: dict[str, str] = {  # how each kind of number is shown (the official results.txt's precision)
    "psnr": ".2f", "runtime": ".2f", "params": ".3f", "flops": ".2f", "acts": ".2f", "memory": ".2f",
    "conv": "d", "ratio": ".2f", "score": ".4f", "rank": "d", "image_psnr": ".3f", "psnr_diff": "+.3f",
}
COUNTER_NAMES = {FVCORE: "fvcore", HOOKS: "hook counter"}
COUNTER_KEYS = {FVCORE: "flops_fvcore", HOOKS: "flops_hook"}
Device = tuple[str | None, str | None]  # (device_type, device) as results.json records them
LARGE_SCORE = 1e6  # a score at least this large is shown as "> 1e6" (its digits say nothing)


# --- reading entries of any shape ------------------------------------------------------------------


def _finite(value: Any) -> float | int | None:
    """``value`` when it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def _number(entry: Mapping[str, Any], key: str) -> float | int | None:
    return _finite(entry.get(key))


def _series(entry: Mapping[str, Any], key: str) -> list[float | int | None]:
    """A per-image list (None for an item that is not a number); empty when absent or not a list."""
    values = entry.get(key)
    return [_finite(v) for v in values] if isinstance(values, list) else []


def _text(entry: Mapping[str, Any], key: str) -> str | None:
    value = entry.get(key)
    return value if isinstance(value, str) and value.strip() else None


# --- the numbers shown -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Num:
    """One number shown: its raw value, where it comes from, how it is rounded."""

    value: float | int | None
    kind: str  # a key of FORMATS
    entry: str | None = None  # the results.json entry ...
    key: str | None = None  # ... and key it is read from
    index: int | None = None  # the position in a per-image list
    derived: str | None = None  # or the formula it is computed by

    @property
    def text(self) -> str:
        if self.value is None:
            return "-"
        if FORMATS[self.kind] == "d" and not isinstance(self.value, int):
            return "-"
        if self.kind == "score" and self.value >= LARGE_SCORE:
            return "overflow" if math.isinf(self.value) else f"> {LARGE_SCORE:.0e}".replace("e+0", "e")
        return format(self.value, FORMATS[self.kind])

    @property
    def title(self) -> str:
        """What a number shown in words stands for."""
        if self.kind != "score" or self.value is None or self.value < LARGE_SCORE:
            return ""
        if math.isinf(self.value):
            return "beyond the largest float (about 1.8e308): exp(2·ratio) with a ratio to the baseline over 355"
        return f"{self.value:.4e}"

    @property
    def raw(self) -> str:
        return repr(self.value)  # 'inf' for a score that overflows

    @property
    def shown(self) -> bool:
        return self.text != "-"


def _read(entry_key: str, entry: Mapping[str, Any], key: str, kind: str) -> Num:
    return Num(_number(entry, key), kind, entry=entry_key, key=key)


@dataclass
class Cell:
    """A table cell: numbers (the first one sorts), else a text; badges say what the value is not."""

    nums: list[Num] = field(default_factory=list)
    text: str = "-"
    badges: list[str] = field(default_factory=list)
    title: str = ""
    link: str | None = None
    sub: str = ""


# --- the round's rules ---------------------------------------------------------------------------------


def infer_year(results: Mapping[str, Any]) -> tuple[int | None, str]:
    """The challenge year every entry's ``results_convention`` names (a range is settled by the baseline
    key present), or None and why not."""
    candidates: set[int] | None = None
    for entry in results.values():
        named = convention_years(_text(entry, "results_convention")) if isinstance(entry, Mapping) else None
        if named is None:
            continue
        years = {y for y in YEARS if y in named}
        candidates = years if candidates is None else candidates & years
    if not candidates:
        why = "the entries' results_convention names no challenge year" if candidates is None else \
            "the entries' results_convention names different challenge years"
        return None, why
    if len(candidates) > 1:
        present = [y for y in sorted(candidates) if f"00_{YEARS[y].baseline}_baseline" in results]
        if len(present) == 1:
            return present[0], ""
        return None, f"results_convention allows NTIRE {' or '.join(map(str, sorted(candidates)))} and no baseline settles it"
    return candidates.pop(), ""


@dataclass(frozen=True)
class Rules:
    """What the page ranks by, and why."""

    year: Year | None
    counter: str  # the FLOPs counter of the FLOPs column (FVCORE or HOOKS)
    baseline: str | None  # the baseline's results.json key
    notes: tuple[str, ...]

    @property
    def mode(self) -> str:
        if self.year is None:
            return "runtime"
        return "score" if self.year.year >= 2024 else "tracks"


def _rules(results: Mapping[str, Any], year: int | None, baseline_key: str | None) -> Rules:
    notes: list[str] = []
    rules = year_rules(year) if year is not None else None
    # the entries that agree with the baseline set the year and the counter (one of another convention kept
    # by merge --allow_mixed does not)
    entries = {k: v for k, v in results.items() if isinstance(v, Mapping)}
    baseline = baseline_of(entries, baseline_key)
    odd = mismatches(entries, baseline) if baseline is not None else {}
    agreeing = {k: v for k, v in entries.items() if k not in odd}
    if rules is None:
        inferred, why = infer_year(agreeing)
        if inferred is not None:
            rules = YEARS[inferred]
            notes.append(f"Year NTIRE {inferred}, read from the entries' results_convention.")
        else:
            notes.append(f"No challenge year ({why}): ranked by runtime alone, with no PSNR bar and no score; "
                         "give the year for its rules.")
    if baseline_key is not None and baseline_key not in results:
        raise KitError(f"baseline {baseline_key!r} is not an entry of results.json; name one of its keys or leave it out")
    if baseline_key is None:
        wanted = [f"00_{rules.baseline}_baseline"] if rules else [k for k in results if BASELINE_KEY.fullmatch(str(k))]
        baseline_key = wanted[0] if len(wanted) == 1 and wanted[0] in results else None
        if rules is not None and baseline_key is None:
            notes.append(f"The year's baseline 00_{rules.baseline}_baseline is not in results.json: no ratio to it"
                         + ("; ranked by runtime instead of the score." if rules.year >= 2024 else "."))
    if rules is not None:
        counter = rules.flops_counter
    else:
        counters = {c for e in agreeing.values() if (c := counter_of(e)) is not None}
        counter = next(iter(counters)) if len(counters) == 1 else HOOKS
    return Rules(rules, counter, baseline_key, tuple(notes))


# --- one row per team ----------------------------------------------------------------------------------


@dataclass
class Row:
    """One team: its entry (empty when it has none, or when it is not a JSON object) and what the page ranks."""

    key: str | None  # the results.json key; None for a failed team with no entry
    label: str
    entry: Mapping[str, Any]
    status: str | None = None
    error: str = ""
    odd: bool = False
    changed: bool = False  # its entry is not what the kit wrote (the digest in batch_status.json differs)
    flags: list["Flag"] = field(default_factory=list)  # found while ranking
    runtime: Num | None = None  # the runtime ranked (valid, or the mean of valid and test)
    not_ranked: str = ""  # why this row has no rank, in a word or two
    rank: int | None = None
    ratio: float | None = None  # runtime / the baseline's, same device
    mismatch: list[str] = field(default_factory=list)  # how it was measured otherwise than the reference entry
    score: dict[str, float] = field(default_factory=dict)  # runtime, flops, params, final
    log_score: float = math.nan  # ln(final), which orders scores that overflow
    tracks: dict[str, float] = field(default_factory=dict)  # model_comp(_rank), overall(_rank)
    # what the page shows of it, filled once the rows are ranked and ordered
    index: int = -1
    all_flags: list["Flag"] = field(default_factory=list)
    cells: dict[str, Cell] = field(default_factory=dict)
    facts: list[tuple[str, str]] = field(default_factory=list)
    images: list["ImageRow"] = field(default_factory=list)
    images_uri: str | None = None
    score_nums: dict[str, Num] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.key if self.key is not None else self.label

    @property
    def device(self) -> Device:
        return _text(self.entry, "device_type"), _text(self.entry, "device")

    @property
    def mismatch_word(self) -> str:
        """How it was measured otherwise than the reference entry, in a word or two ("" when it was not)."""
        if not self.mismatch:
            return ""
        return "other data" if any(m.startswith("data ") for m in self.mismatch) else "other convention"

    @property
    def on_cpu(self) -> bool:
        return bool(self.entry) and self.device[0] != "cuda"

    def flops(self, counter: str, page_counter: bool = True) -> Num:
        """FLOPs under ``counter``: its own key, else ``flops`` when the entry says that it holds that counter,
        or says nothing and ``counter`` is the page's (the official kits' entries name no counter)."""
        own = _read(self.name, self.entry, COUNTER_KEYS[counter], "flops")
        named = counter_of(self.entry)
        if own.value is None and (named == counter or (named is None and page_counter)):
            return _read(self.name, self.entry, "flops", "flops")
        return own

    def memory_measured(self) -> bool:
        measured = self.entry.get("memory_measured")
        if isinstance(measured, bool):
            return measured
        return self.device[0] in (None, "cuda")


def _rows(results: Mapping[str, Any], status: Mapping[str, Mapping[str, Any]] | None) -> list[Row]:
    by_key: dict[str, tuple[str, Mapping[str, Any]]] = {}
    orphans: list[Row] = []
    for label, info in (status or {}).items():
        info = info if isinstance(info, Mapping) else {}
        key = info.get("key") if isinstance(info.get("key"), str) else None
        state = str(info.get("status") or "-")
        error = str(info.get("error") or "")
        if key is not None and key in results:
            by_key[key] = (str(label), info)
        else:
            orphans.append(Row(key=None, label=str(label), entry={}, status=state, error=error))
    rows = []
    for key, entry in results.items():
        label, info = by_key.get(key, (key, {}))
        digest = info.get("digest")
        row = Row(key=str(key), label=label, entry=entry if isinstance(entry, Mapping) else {},
                  odd=not isinstance(entry, Mapping),
                  status=None if status is None else str(info.get("status") or "-"), error=str(info.get("error") or ""),
                  changed=isinstance(digest, str) and digest != entry_digest(entry))
        rows.append(row)
    return rows + orphans


# --- ranking -------------------------------------------------------------------------------------------


def _reference_device(rows: Sequence[Row], baseline: Row | None) -> Device | None:
    """The device ranked runtimes must come from: the baseline's, else the most common one (CUDA first)."""
    if baseline is not None and _number(baseline.entry, "valid_ave_runtime") is not None:
        return baseline.device
    timed = [r.device for r in rows if r.entry and _number(r.entry, "valid_ave_runtime") is not None]
    if not timed:
        return None
    counts = collections.Counter(timed)
    return max(counts, key=lambda d: (d[0] == "cuda", counts[d], -timed.index(d)))


def _device_text(device: Device | None) -> str:
    kind, name = device or (None, None)
    return name or kind or "an unrecorded device"


def _bar_failures(row: Row, rules: Year) -> list[str]:
    failures = []
    for split, bar in rules.bars.items():
        psnr = _number(row.entry, f"{split}_ave_psnr")
        if psnr is not None and psnr < bar:
            failures.append(f"{split} {format(psnr, FORMATS['psnr'])} dB < {bar:.2f} dB")
    return failures


def _bar_applies(row: Row, rules: Year) -> bool:
    return _text(row.entry, "layout") in (None, rules.layout)


def _set_runtimes(rows: list[Row], reference: Device | None) -> list[str]:
    """Each row's runtime ranked: the mean of its valid and test means (the official Ave Time) when every
    entry timed on the reference device has a test split, else its valid mean."""
    timed = [r for r in rows if r.entry and r.device == reference and _number(r.entry, "valid_ave_runtime") is not None]
    with_test = bool(timed) and all(_number(r.entry, "test_ave_runtime") is not None for r in timed)
    for r in rows:
        valid, test = _number(r.entry, "valid_ave_runtime"), _number(r.entry, "test_ave_runtime")
        if with_test and valid is not None and test is not None:
            r.runtime = Num((valid + test) / 2, "runtime", entry=r.name, derived="runtime_ave")
        elif valid is not None:
            r.runtime = Num(valid, "runtime", entry=r.name, key="valid_ave_runtime")
    notes = []
    if timed:
        notes.append("Runtime ranked: the mean of the valid and test means, as the official kits' Ave Time."
                     if with_test else "Runtime ranked: the valid split's mean per image (the challenge protocol).")
    if reference is not None and reference[0] != "cuda":
        notes.append(f"The ranked runtimes were measured on {_device_text(reference)} (wall clock), not on a GPU "
                     "with CUDA events as the challenge measures: the ranking is indicative only.")
    return notes


def _mark_mismatches(rows: list[Row], rules: Rules) -> list[str]:
    """The rows measured under another convention, counter or data than the baseline (else than most
    entries): flagged, and left out of the ranking and the plots (``merge --allow_mixed`` keeps them)."""
    entries = {r.key: r.entry for r in rows if r.key is not None and r.entry}
    reference = reference_key(entries, rules.baseline)
    found = mismatches(entries, reference)
    for r in rows:
        r.mismatch = found.get(r.key, []) if r.key is not None else []
        if r.mismatch:
            r.flags.append(Flag(r.mismatch_word, f"measured otherwise than {reference}: {'; '.join(r.mismatch)}: "
                                                 "not ranked with it, not plotted"))
    if not found:
        return []
    return [f"Not ranked and not plotted, measured otherwise than {reference} (another results convention, FLOPs "
            f"counter or data set; see their flags): {', '.join(found)}."]


def _exclude(rows: list[Row], baseline: Row | None, reference: Device | None, year: Year | None) -> list[str]:
    """Mark the rows that take no part in the ranking, and why (flags say it in words)."""
    bars_skipped = []
    for r in rows:
        if not r.entry:
            r.not_ranked = "not measured" if not r.odd else "unreadable"
        elif r.changed:
            r.not_ranked = "changed outside the kit"
        elif r is baseline:
            r.not_ranked = "baseline"
        elif r.mismatch:
            r.not_ranked = r.mismatch_word
        elif r.runtime is None:
            r.not_ranked = "no runtime"
        elif r.device != reference:
            r.not_ranked = "other device"
            timing = _text(r.entry, "timing")
            r.flags.append(Flag("CPU runtime" if r.on_cpu else "other device",
                                f"runtime measured on {_device_text(r.device)}{f' ({timing})' if timing else ''}, "
                                f"not on {_device_text(reference)} as the ranked runtimes: not ranked"))
        if year is None or not r.entry or r.mismatch:
            continue
        if not _bar_applies(r, year):
            bars_skipped.append(r)
        elif failures := _bar_failures(r, year):
            r.flags.append(Flag("below PSNR bar", f"below the NTIRE {year.year} PSNR bar ({'; '.join(failures)}): "
                                                  "not ranked"))
            r.not_ranked = r.not_ranked or "below PSNR bar"
    if year is None or not bars_skipped:
        return []
    layouts = sorted({_text(r.entry, "layout") or "?" for r in bars_skipped})
    n = len(bars_skipped)
    return [f"PSNR bars ({', '.join(f'{s} {b:.2f} dB' for s, b in year.bars.items())}, defined on {year.sets}) "
            f"not applied to {n} entr{'y' if n == 1 else 'ies'} measured on another layout ({', '.join(layouts)})."]


def _rank(rows: list[Row], rules: Rules) -> tuple[list[str], Device | None]:
    """Fill each row's rank (or why it has none), ratio, score and track sums.

    Returns the page notes this leads to, and the device whose runtimes are ranked.
    """
    baseline = next((r for r in rows if r.key is not None and r.key == rules.baseline), None)
    reference = _reference_device(rows, baseline)
    notes = _mark_mismatches(rows, rules) + _set_runtimes(rows, reference)
    notes += _exclude(rows, baseline, reference, rules.year)
    base_runtime = _costs(baseline, rules)["runtime"] if baseline is not None else math.nan
    for r in rows:
        if baseline is not None and r.device == baseline.device and base_runtime > 0 and not r.mismatch:
            ratio = _costs(r, rules)["runtime"] / base_runtime
            r.ratio = ratio if math.isfinite(ratio) else None
    ranked = [r for r in rows if not r.not_ranked]  # each has a runtime on the reference device
    if rules.year is not None and rules.mode == "score":
        notes += _rank_by_score(ranked, baseline, rules, rules.year)
    elif rules.year is not None and rules.mode == "tracks":
        notes += _rank_by_tracks(ranked, rules, rules.year)
    if rules.mode == "runtime" or (rules.mode == "score" and (baseline is None or not baseline.score)):
        runtimes = [_costs(r, rules)["runtime"] for r in ranked]
        for r, rank in zip(ranked, ordinal(runtimes, np.arange(len(ranked))) if ranked else []):
            r.rank = int(rank)
    return notes, reference


def _costs(row: Row, rules: Rules) -> dict[str, float]:
    """What the year ranks of a row, as floats (NaN: not there): the runtime ranked, params, FLOPs under the
    page's counter, activations, and memory (NaN where it was not measured)."""
    def f(value: float | int | None) -> float:
        return math.nan if value is None else float(value)

    return {"runtime": f(row.runtime.value if row.runtime is not None else None),
            "params": f(_number(row.entry, "num_parameters")), "flops": f(row.flops(rules.counter).value),
            "acts": f(_number(row.entry, "activations")),
            "mem": f(_number(row.entry, "valid_memory") if row.memory_measured() else None)}


def _complete(ranked: list[Row], costs: dict[int, dict[str, float]], keys: tuple[str, ...]) -> list[Row]:
    """The rows that have every one of ``keys``; the others are marked as not ranked."""
    complete = [r for r in ranked if all(math.isfinite(costs[id(r)][k]) for k in keys)]
    for r in ranked:
        if r not in complete:
            r.not_ranked = "incomplete counts"
    return complete


def _rank_by_score(ranked: list[Row], baseline: Row | None, rules: Rules, year: Year) -> list[str]:
    """The 2024/2025 score: runtime, FLOPs (the year's counter) and params relative to the baseline's."""
    if baseline is None:
        return []
    base = _costs(baseline, rules)
    if not all(math.isfinite(base[k]) and base[k] > 0 for k in ("runtime", "flops", "params")):
        return [f"The baseline {baseline.name} lacks a runtime, FLOPs or params: no score; ranked by runtime."]
    costs = {id(r): _costs(r, rules) for r in ranked}
    costs[id(baseline)] = base
    scored = [baseline] + _complete(ranked, costs, ("flops", "params"))
    score = score_from_ratios(*([costs[id(r)][k] / base[k] for r in scored] for k in ("runtime", "flops", "params")))
    for i, r in enumerate(scored):
        r.score = {"runtime": float(score.runtime[i]), "flops": float(score.flops[i]),
                   "params": float(score.params[i]), "final": float(score.final[i])}
        r.log_score = float(score.log_final[i])
    teams = scored[1:]
    # scores that overflow (inf) are ordered by ln(score); every finite one by the score itself
    for r, rank in zip(teams, ordinal([r.score["final"] for r in teams], [r.log_score for r in teams],
                                      np.arange(len(teams)))):
        r.rank = int(rank)
    return [f"Rank: NTIRE {year.year} score relative to {baseline.name}, Score_X = exp(2·X/X_baseline) for "
            f"runtime, FLOPs ({COUNTER_NAMES[rules.counter]}) and params; Score = 0.7·runtime + 0.15·FLOPs + "
            "0.15·params, lower is better (the baseline scores e² = 7.3891)."]


def _rank_by_tracks(ranked: list[Row], rules: Rules, year: Year) -> list[str]:
    """The 2022/2023 main track (runtime rank) with Model Comp. and Overall."""
    costs = {id(r): _costs(r, rules) for r in ranked}
    complete = _complete(ranked, costs, ("params", "flops", "acts"))
    if not complete:
        return []
    t = track_ranks(*([costs[id(r)][k] for r in complete] for k in ("runtime", "params", "flops", "acts", "mem")))
    for i, r in enumerate(complete):
        r.rank = int(t.time[i])
        r.tracks = {"model_comp": t.model_comp[i], "model_comp_rank": t.model_comp_rank[i],
                    "overall": t.overall[i], "overall_rank": t.overall_rank[i]}
    notes = [f"Rank: the NTIRE {year.year} main track, by runtime; Model Comp. = rank(Params) + rank(FLOPs); "
             "Overall = the sum of the ranks of runtime, Params, FLOPs, Acts and Mem (ordinal ranks; ties go to "
             "the better runtime rank, Overall ties to the lower Model Comp.)."]
    if any(not math.isfinite(costs[id(r)]["mem"]) for r in complete):
        notes.append("An entry without GPU memory takes part in no memory rank and has no Overall.")
    return notes


# --- environments ----------------------------------------------------------------------------------------

NAMED = 8  # a note names up to this many entries of a group, and counts a larger one


def _entries(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"


def _named(keys: Sequence[str]) -> str:
    return ", ".join(keys) if len(keys) <= NAMED else _entries(len(keys))


def _environments(rows: Sequence[Row]) -> list[str]:
    """Where the entries were measured under several environments (Python, torch, platform; or one package at
    several versions): a note naming the groups, and a flag on each entry outside the largest group. They are
    ranked together, with this note above the table."""
    entries = {r.key: r.entry for r in rows if r.key is not None and r.entry and not r.mismatch}
    groups = environment_groups(entries)
    versions = package_versions(entries)
    by_key = {r.key: r for r in rows if r.key is not None}
    notes = []
    if len(groups) > 1:
        names = [chr(ord("A") + i) if i < 26 else f"#{i + 1}" for i in range(len(groups))]
        parts = [f"{name}: {g.describe()} — {_entries(len(g.keys))}" + (f" ({_named(g.keys)})" if i > 0 else "")
                 for i, (name, g) in enumerate(zip(names, groups))]
        notes.append(f"Measured under {len(groups)} environments, ranked together here (runtimes, and even "
                     f"outputs, can differ between versions): {'; '.join(parts)}.")
        for name, g in list(zip(names, groups))[1:]:
            for key in g.keys:
                by_key[key].flags.append(Flag("other environment", f"measured under environment {name} "
                                              f"({g.describe()}), not {names[0]} ({groups[0].describe()}) as most "
                                              "entries: ranked with them"))
    for package, found in versions.items():
        usual, *others = found
        notes.append(f"{package} at {len(found)} versions: "
                     + "; ".join(f"{v} ({_named(keys)})" for v, keys in found.items()) + ".")
        for version in others:
            for key in found[version]:
                by_key[key].flags.append(Flag(f"{package} {version}", f"imported {package} {version}, where "
                                              f"{_entries(len(found[usual]))} imported {usual}"))
    return notes


# --- flags in words ------------------------------------------------------------------------------------


class Flag(NamedTuple):
    """A fact a reader must know about a team's figures: a short label for the table, the words in full."""

    short: str
    text: str


def _flags(row: Row) -> list[Flag]:
    """Everything a reader must know about a row's figures, from its entry and its status."""
    e = row.entry
    flags: list[Flag] = []
    if row.odd:
        flags.append(Flag("unreadable entry", "its results.json entry is not a JSON object: nothing can be read from it"))
    if row.status == "failed":
        flags.append(Flag("failed", f"failed: {row.error or 'no reason recorded'}"))
    elif not e and not row.odd:
        flags.append(Flag("no entry", f"status {row.status or '-'} but no entry in results.json"
                                      f"{': ' + row.error if row.error else ''}"))
    if not e:
        return flags + row.flags
    if row.status == "-":
        flags.append(Flag("not in this batch", "batch_status.json has no line for it: measured outside this batch, "
                                               "or kept from before a re-run that failed"))
    if row.changed:
        flags.append(Flag("changed outside the kit", "its results.json entry is not what the kit wrote (its digest in "
                                                     "batch_status.json differs): not the kit's figure, not ranked; "
                                                     "measure it again with batch --refresh missing"))
    if isinstance(e.get("psnr_implausible"), str):
        flags.append(Flag("implausible PSNR", f"{e['psnr_implausible']}"))
    if e.get("confined") is False:
        flags.append(Flag("unconfined", "measured with --unconfined: the team's code ran with the organiser's rights, "
                                        "outside the sandbox"))
    verification = verification_of(e)
    if verification is not None and verification["verdict"] != IDENTICAL:
        flags.append(Flag(verdict_short(verification), f"upload verification: {verdict_summary(verification)} "
                                                      f"(checked {verification.get('date', '?')})"))
    for split in ("valid", "test"):
        if e.get(f"{split}_deterministic") is False:
            spread = _finite(e.get(f"{split}_psnr_spread"))
            flags.append(Flag("not deterministic", f"the same input twice gave different outputs ({split}); its PSNR "
                                                   f"spread over {len(e.get(f'{split}_psnr_runs') or [])} runs: "
                                                   f"{'?' if spread is None else f'{spread:.4f}'} dB"))
    varies = e.get("complexity_input_dependent")
    if isinstance(varies, Mapping) and varies:
        changes = "; ".join(f"{k} {' vs '.join(f'{v:,}' if isinstance(v, int) else str(v) for v in vals)}"
                            if isinstance(vals, list) else str(k) for k, vals in varies.items())
        probe = (_text(e, "complexity_probe") or "on a probe not recorded").split(";")[0]
        flags.append(Flag("input-dependent counts", f"counts are input-dependent ({changes} on two probes); "
                                                     f"the figures shown were {probe}"))
    notes = e.get("notes")
    for note in notes if isinstance(notes, list) else []:
        redirected = "cuda" in str(note).lower() and "redirect" in str(note).lower()
        flags.append(Flag("CUDA calls redirected" if redirected else "note", str(note)))
    loading = _text(e, "weights_loading") or ""
    if "non-strict:" in loading:
        flags.append(Flag("non-strict load", "weights loaded non-strictly, keys left out: "
                          + loading.split("non-strict:", 1)[1].strip()))
    for key, short, what in (("valid_oom_tiled_fallback", "tiled after OOM", "images run in tiles after running out of memory"),
                             ("valid_tiled_images", "tiled", "images run in tiles")):
        if isinstance(e.get(key), list) and e[key]:
            flags.append(Flag(short, f"{len(e[key])} {what}: {', '.join(map(str, e[key]))}"))
    if e.get("valid_lr_only") is True:
        flags.append(Flag("LR only", "LR-only run: no PSNR"))
    return flags + row.flags


# --- cells ---------------------------------------------------------------------------------------------


STICKY = ("rank", "team")  # the first two columns


@dataclass(frozen=True)
class Column:
    """A column of the standings: its id (``data-col``), header and tooltip."""

    id: str
    header: str
    title: str
    numeric: bool = True

    @property
    def classes(self) -> str:
        """``n``: right-aligned numbers; ``stick``: stays in view when the table scrolls sideways."""
        return " ".join(c for c, on in (("n", self.numeric), ("stick", self.id in STICKY)) if on)


def _columns(rows: Sequence[Row], rules: Rules, with_status: bool) -> list[Column]:
    def anywhere(key: str) -> bool:
        return any(_number(r.entry, key) is not None for r in rows)

    other = HOOKS if rules.counter == FVCORE else FVCORE
    cols = [Column("rank", "Rank", {"score": "by the year's score", "tracks": "main track: by runtime",
                                    "runtime": "by runtime"}[_effective_mode(rows, rules)]),
            Column("team", "Team", "results.json key (and how the batch named it)", numeric=False)]
    if any(r.score for r in rows):
        cols.append(Column("score", "Score", "0.7·exp(2·runtime ratio) + 0.15·exp(2·FLOPs ratio) + 0.15·exp(2·params ratio)"))
    if any(r.tracks for r in rows):
        cols += [Column("model_comp", "Model Comp.", "rank(Params) + rank(FLOPs), its rank in parentheses"),
                 Column("overall", "Overall", "sum of five ranks, its rank in parentheses")]
    cols.append(Column("psnr_valid", "PSNR valid [dB]", "valid_ave_psnr (RGB)"))
    if anywhere("test_ave_psnr"):
        cols.append(Column("psnr_test", "PSNR test [dB]", "test_ave_psnr (RGB)"))
    cols.append(Column("runtime_valid", "Runtime valid [ms]", "valid_ave_runtime: the challenge protocol's mean"))
    if anywhere("test_ave_runtime"):
        cols.append(Column("runtime_test", "Runtime test [ms]", "test_ave_runtime"))
    if any(r.runtime is not None and r.runtime.derived for r in rows):
        cols.append(Column("runtime_ave", "Ave runtime [ms]", "(valid + test) / 2, the runtime ranked"))
    if anywhere("valid_median_warm_runtime"):
        cols.append(Column("warm", "Warm median [ms]", "valid_median_warm_runtime: after warm-up, median of repeats"))
    if rules.baseline is not None:
        cols.append(Column("ratio", "× baseline", f"the runtime ranked ÷ {rules.baseline}'s, same device only"))
    cols += [Column("params", "Params [M]", "num_parameters"),
             Column("flops", f"FLOPs [G] ({COUNTER_NAMES[rules.counter]})",
                    f"{'the year’s' if rules.year else 'the entries’'} counter, 3×256×256 input"),
             Column("flops_other", f"FLOPs [G] ({COUNTER_NAMES[other]})", "the other counter, beside it"),
             Column("acts", "Acts [M]", "activations"),
             Column("memory", "Memory [MiB]", "valid_memory: peak CUDA memory"),
             Column("conv", "#Conv", "num_conv")]
    if any(verification_of(r.entry) is not None for r in rows):
        cols.append(Column("upload", "Upload", "the SR images uploaded to the online server against those the team's "
                                               "code reproduces (verify, batch --verify_uploads)", numeric=False))
    if with_status:
        cols.append(Column("status", "Status", "batch_status.json", numeric=False))
    cols.append(Column("flags", "Flags", "what to know about the figures", numeric=False))
    return cols


def _effective_mode(rows: Sequence[Row], rules: Rules) -> str:
    if rules.mode == "score" and not any(r.score for r in rows):
        return "runtime"
    return rules.mode


def _cell(row: Row, col: str, rules: Rules) -> Cell:
    e, name = row.entry, row.name
    read = lambda key, kind: _read(name, e, key, kind)  # noqa: E731
    if col == "rank":
        if row.rank is not None:
            return Cell([Num(row.rank, "rank", entry=name, derived="rank")])
        return Cell(badges=[row.not_ranked] if row.not_ranked else [])
    if col == "team":
        return Cell(text=name, link=f"team-{row.index}" if e else None, sub=row.label if row.label != name else "")
    if col == "score":
        return Cell([Num(row.score["final"], "score", entry=name, derived="score_final")] if row.score else [])
    if col in ("model_comp", "overall"):
        value, rank = row.tracks.get(col, math.nan), row.tracks.get(f"{col}_rank", math.nan)
        if not (math.isfinite(value) and math.isfinite(rank)):
            return Cell()
        return Cell([Num(int(value), "rank", entry=name, derived=col),
                     Num(int(rank), "rank", entry=name, derived=f"{col}_rank")])
    if col in ("runtime_valid", "runtime_test"):
        cell = Cell([read(f"{col.split('_')[1]}_ave_runtime", "runtime")])
        if row.on_cpu and cell.nums[0].shown:
            cell.badges.append("CPU" if row.device[0] == "cpu" else (row.device[0] or "device?"))
            cell.title = _device_text(row.device)
        return cell
    if col == "runtime_ave":
        return Cell([row.runtime] if row.runtime is not None and row.runtime.derived else [])
    if col == "ratio":
        return Cell([Num(row.ratio, "ratio", entry=name, derived="ratio")] if row.ratio is not None else [])
    if col == "memory":
        if e and not row.memory_measured():
            return Cell(text="not measured", title=f"memory is measured on CUDA only ({_device_text(row.device)})")
        return Cell([read("valid_memory", "memory")])
    if col == "flops":
        return Cell([row.flops(rules.counter)])
    if col == "flops_other":
        return Cell([row.flops(HOOKS if rules.counter == FVCORE else FVCORE, page_counter=False)])
    if col == "status":
        return Cell(text=row.status or "-", title=row.error)
    if col == "upload":
        verification = verification_of(e)
        return Cell(text="-") if verification is None else Cell(text=verification["verdict"],
                                                                title=verdict_summary(verification))
    if col == "flags":
        return Cell(text="")
    key, kind = {"psnr_valid": ("valid_ave_psnr", "psnr"), "psnr_test": ("test_ave_psnr", "psnr"),
                 "warm": ("valid_median_warm_runtime", "runtime"), "params": ("num_parameters", "params"),
                 "acts": ("activations", "acts"), "conv": ("num_conv", "conv")}[col]
    return Cell([read(key, kind)])


# --- the drill-down ------------------------------------------------------------------------------------

FACTS = ("device", "timing", "entry", "weights", "weights_loading", "post_load", "results_convention",
         "flops_counter", "complexity_probe", "data_dir", "layout", "lr_source", "data_range", "date",
         "kit_version", "torch_version")


@dataclass
class ImageRow:
    name: str
    psnr: Num
    base: Num | None
    diff: Num | None
    runtime: Num


def _images(row: Row, baseline: Row | None) -> list[ImageRow]:
    """Per image: the team's PSNR and runtime, and the baseline's PSNR on the image of the same name."""
    psnr = _series(row.entry, "valid_psnr")
    names = row.entry.get("valid_images")
    names = [str(n) for n in names] if isinstance(names, list) and len(names) == len(psnr) else [f"#{i + 1}" for i in range(len(psnr))]
    runtime = _series(row.entry, "valid_runtime")
    base_at: dict[str, Num] = {}  # the baseline's PSNR by image name
    if baseline is not None and baseline is not row:
        base_psnr = _series(baseline.entry, "valid_psnr")
        base_names = baseline.entry.get("valid_images")
        if isinstance(base_names, list) and len(base_names) == len(base_psnr):
            base_at = {str(n): Num(v, "image_psnr", entry=baseline.name, key="valid_psnr", index=j)
                       for j, (n, v) in enumerate(zip(base_names, base_psnr))}
    out = []
    for i, image in enumerate(names):
        mine = Num(psnr[i], "image_psnr", entry=row.name, key="valid_psnr", index=i)
        base = base_at.get(image)
        diff = None
        if base is not None and mine.value is not None and base.value is not None:
            diff = Num(mine.value - base.value, "psnr_diff", entry=row.name, index=i, derived="psnr_diff")
        t = Num(runtime[i] if i < len(runtime) else None, "runtime", entry=row.name, key="valid_runtime", index=i)
        out.append(ImageRow(image, mine, base, diff, t))
    return out


def _facts(entry: Mapping[str, Any]) -> list[tuple[str, str]]:
    facts = [(k, str(entry[k])) for k in FACTS if isinstance(entry.get(k), (str, int, float)) and not isinstance(entry.get(k), bool)]
    env = Environment.of(entry) if isinstance(entry.get("environment"), Mapping) else None
    if env is not None:
        facts.append(("environment", env.describe() + "".join(f"; {name} {v}" for name, v in env.packages)))
    return facts


# --- figures -------------------------------------------------------------------------------------------

def _png_uri(fig: Figure) -> str:
    """A figure as a PNG data URI, at twice its size on screen: a third of the SVG of 200 bars, per team."""
    buf = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", dpi=2 * fig.dpi, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _images_figure(row: Row, images: list[ImageRow], baseline: Row) -> str | None:
    """Per image, the team's PSNR minus the baseline's (bars above zero: the team is better there)."""
    diffs = [(im.name, im.diff.value) for im in images if im.diff is not None]
    if not diffs:
        return None
    names, values = zip(*diffs)
    fig = Figure(figsize=(4.6, 2.8), dpi=100, layout="constrained")
    ax: Axes = fig.subplots()
    x = np.arange(len(values))
    v = np.array(values, dtype=float)
    # one collection of lines, not one patch per image: a round of 50 teams x 200 images stays fast
    ax.vlines(x, 0, v, colors=[FRONT if d >= 0 else BASE for d in v], lw=float(np.clip(300 / len(v), 1.2, 18)))
    ax.set_xlim(-0.7, len(v) - 0.3)
    ax.axhline(0, color="#555555", lw=0.8)
    ax.axhline(float(v.mean()), color=POINT, lw=1, ls="--", label=f"mean {v.mean():+.3f} dB")
    if len(names) <= 12:
        ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
    else:
        ax.set_xlabel(f"image (1-{len(names)}, in results.json order)", fontsize=8)
    ax.set_ylabel(f"PSNR − {baseline.name} [dB]", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, axis="y", color="#E5E5E5", lw=0.6)
    ax.set_axisbelow(True)
    ax.legend(fontsize=7, loc="best")
    return _png_uri(fig)


@dataclass(frozen=True)
class Plot:
    """A figure of the page (None: nothing to plot), with its alt text and caption."""

    svg: str | None  # SVG markup, escaped where it holds names
    alt: str
    caption: str


def _point(r: Row, cost: float, psnr: float, rules: Rules) -> Point:
    return Point(str(r.index + 1), r.name, cost, psnr, baseline=r.name == rules.baseline)


def _figures(rows: Sequence[Row], rules: Rules, reference: Device | None) -> tuple[list[Plot], list[Row]]:
    """The PSNR-runtime plot (runtimes of the ranked device only) and the PSNR-FLOPs plot (entries measured
    otherwise than the reference entry in neither), and the rows plotted (for the key to their numbers)."""
    psnr = {id(r): float(v) for r in rows if r.entry and (v := _number(r.entry, "valid_ave_psnr")) is not None}
    plotted = [(r, _costs(r, rules)) for r in rows if id(r) in psnr and not r.mismatch]
    timed = [(r, c) for r, c in plotted if math.isfinite(c["runtime"]) and r.device == reference]
    left_out = [r.name for r, c in plotted if math.isfinite(c["runtime"]) and r.device != reference]
    runtime_points = [_point(r, c["runtime"], psnr[id(r)], rules) for r, c in timed]
    flops_points = [_point(r, c["flops"], psnr[id(r)], rules) for r, c in plotted if math.isfinite(c["flops"])]
    averaged = any(r.runtime is not None and r.runtime.derived for r, _ in timed)
    runtime_label = "Ave runtime [ms]" if averaged else "Runtime valid [ms]"
    caption = "Pareto front: no other entry has a higher PSNR at a lower runtime."
    if reference is not None:
        caption += f" Runtimes measured on {_device_text(reference)}{'' if reference[0] == 'cuda' else ' (not a GPU)'}."
    if left_out:
        caption += f" Not plotted (runtime from another device than the ranked ones): {', '.join(left_out)}."
    figures = [
        Plot(frontier_svg(runtime_points, runtime_label, "PSNR valid [dB]", "PSNR vs runtime", log_x=True),
             "PSNR against runtime", caption),
        Plot(frontier_svg(flops_points, f"FLOPs [G] ({COUNTER_NAMES[rules.counter]})", "PSNR valid [dB]",
                          "PSNR vs FLOPs"),
             "PSNR against FLOPs", f"Pareto front: no other entry has a higher PSNR with fewer FLOPs "
             f"({COUNTER_NAMES[rules.counter]}, 3×256×256 input)."),
    ]
    return figures, [r for r, _ in plotted]


# --- the page ------------------------------------------------------------------------------------------

STYLE = """
:root { color-scheme: light; --line: #d9dde3; --muted: #5b6470; --head: #f3f5f8; --accent: #1f5fa8; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 24px; color: #1d232b; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.muted, .sub { color: var(--muted); } .sub { display: block; font-size: 11px; }
ul.notes { margin: 8px 0 0; padding-left: 20px; } ul.notes li { margin: 2px 0; }
p.caution { margin: 6px 0; padding: 6px 10px; border-left: 4px solid #d89b2b; background: #fff8e8; font-size: 13px; }
.wrap { overflow: auto; max-height: 85vh; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; }
#standings { font-size: 12.5px; }
th, td { padding: 3px 5px; border-bottom: 1px solid var(--line); vertical-align: top; text-align: left; }
th { background: var(--head); position: sticky; top: 0; z-index: 2; font-weight: 600; font-size: 12px; line-height: 1.25; }
th button { font: inherit; border: 0; background: none; padding: 0; cursor: pointer; color: inherit; text-align: inherit; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; } th[aria-sort="descending"] button::after { content: " \\25BC"; }
th.n { text-align: right; }
td.n { text-align: right; font-variant-numeric: tabular-nums; } td.n .num, td.n .txt { white-space: nowrap; }
tbody tr { background: #fff; } tbody tr:nth-child(even) { background: #fafbfc; } tbody tr.failed { background: #fdf1f1; }
.stick { position: sticky; left: 0; z-index: 1; } td.stick { background: inherit; } th.stick { z-index: 3; }
.stick[data-col="team"] { left: var(--rank-width, 0px); box-shadow: inset -1px 0 0 var(--line); }
td[data-col="team"] { min-width: 9em; max-width: 14em; overflow-wrap: anywhere; }
td[data-col="team"] .sub { max-width: 14em; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
td[data-col="flags"] { min-width: 11em; max-width: 22em; } td[data-col="rank"] .badge { margin-left: 0; }
.badge { display: inline-block; font-size: 10px; line-height: 1.5; padding: 0 5px; margin-left: 4px; border-radius: 8px;
         background: #eef0f3; color: #4a525c; white-space: nowrap; }
.badge.cpu { background: #fff1d6; color: #7a4b00; }
ul.flags { margin: 0; padding-left: 16px; font-size: 13px; } ul.flags li { margin: 1px 0; }
a.badge.flag { text-decoration: none; background: #e8eefb; color: #1f3f7a; margin: 1px 4px 1px 0; }
.error { color: #9b1c1c; font-size: 12px; }
dl.flaglist { margin: 0; } dl.flaglist dt { font-weight: 600; margin-top: 6px; } dl.flaglist dd { margin: 0 0 0 4px; }
a { color: var(--accent); }
.figures { display: flex; flex-wrap: wrap; gap: 16px; } .figures figure { margin: 0; }
figcaption { font-size: 12px; color: var(--muted); max-width: 660px; }
svg.plot { display: block; font-family: "DejaVu Sans", Verdana, Arial, sans-serif; }
svg.plot text { font-size: 11px; fill: #333; } svg.plot text.tick { font-size: 10px; fill: #5b6470; }
svg.plot text.ptitle { font-size: 13px; font-weight: 600; } svg.plot text.legend { font-size: 10px; }
svg.plot text.label { font-size: 10px; fill: #1d232b; } svg.plot text.label.front { font-weight: 600; fill: #1b6b33; }
ul.key { columns: 13em auto; column-gap: 18px; list-style: none; padding: 0; margin: 10px 0 0; font-size: 12px; }
ul.key li { display: flex; break-inside: avoid; margin: 1px 0; } ul.key a { min-width: 0; overflow-wrap: anywhere; }
ul.key b { flex: none; min-width: 2.2em; text-align: right; margin-right: 6px; font-variant-numeric: tabular-nums; }
details { border: 1px solid var(--line); border-radius: 6px; margin: 8px 0; padding: 6px 12px; }
details summary { cursor: pointer; font-weight: 600; }
.detail { display: flex; flex-wrap: wrap; gap: 20px; margin-top: 8px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0; font-size: 12px; max-width: 720px; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
table.images { width: auto; font-size: 12px; }
"""

SCRIPT = """
(function () {
  "use strict";
  var table = document.getElementById("standings");
  var body = table.tBodies[0];
  function number(text) { return text === "inf" ? Infinity : text === "-inf" ? -Infinity : Number(text); }
  function keyOf(row, col) {
    var cell = row.cells[col];
    if (cell.hasAttribute("data-sort")) { return { missing: false, number: Number(cell.getAttribute("data-sort")) }; }
    var num = cell.querySelector(".num");
    if (num) { return { missing: false, number: number(num.getAttribute("data-value")) }; }
    var txt = cell.querySelector(".txt");
    var text = txt ? txt.textContent.trim() : "";
    return text === "" || text === "-" ? { missing: true } : { missing: false, text: text };
  }
  function compare(a, b, dir) {
    if (a.missing || b.missing) { return a.missing === b.missing ? 0 : (a.missing ? 1 : -1); }
    var an = a.number !== undefined, bn = b.number !== undefined;
    if (an !== bn) { return an ? -1 : 1; }
    var d = an ? (a.number === b.number ? 0 : a.number < b.number ? -1 : 1)
               : a.text.localeCompare(b.text, undefined, { numeric: true });
    return dir * d;
  }
  var headers = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(headers, function (th) {
    var button = th.querySelector("button");
    button.addEventListener("click", function () {
      var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      var col = th.cellIndex;
      var rows = Array.prototype.map.call(body.rows, function (row, i) { return { row: row, key: keyOf(row, col), i: i }; });
      rows.sort(function (a, b) { return compare(a.key, b.key, dir) || a.i - b.i; });
      rows.forEach(function (r) { body.appendChild(r.row); });
      Array.prototype.forEach.call(headers, function (h) { h.setAttribute("aria-sort", "none"); });
      th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    });
  });
  // the rank and team columns stay in view when the table scrolls sideways; a header scrolled to is not under them
  var wrap = table.parentNode;
  function stickyWidths() {
    var rank = table.tHead.querySelector('th[data-col="rank"]'), team = table.tHead.querySelector('th[data-col="team"]');
    table.style.setProperty("--rank-width", rank.offsetWidth + "px");
    wrap.style.scrollPaddingLeft = (rank.offsetWidth + team.offsetWidth) + "px";
  }
  stickyWidths();
  window.addEventListener("resize", stickyWidths);
  // a team's drill-down opens when a link to it is followed (at once on a click; on load or back, by the hash)
  function openDetails(id) {
    var target = id ? document.getElementById(id) : null;
    if (target && target.tagName === "DETAILS") { target.open = true; }
  }
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest('a[href^="#"]') : null;
    if (link) { openDetails(decodeURIComponent(link.getAttribute("href").slice(1))); }
  });
  function openFromHash() { openDetails(decodeURIComponent(location.hash.slice(1))); }
  window.addEventListener("hashchange", openFromHash);
  openFromHash();
})();
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src '{{ style_hash }}'; script-src '{{ script_hash }}'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{{ title }}</title>
<style>{{ style|safe }}</style>
</head>
<body>
{#- a number: data-entry only where it is not the entry of the enclosing row or drill-down (`owner`) -#}
{%- macro num(n, owner) -%}
<span class="num" data-value="{{ n.raw }}"{% if n.title %} title="{{ n.title }}"{% endif %}{% if n.entry is not none and n.entry != owner %} data-entry="{{ n.entry }}"{% endif %}
{%- if n.key %} data-key="{{ n.key }}"{% endif %}{% if n.index is not none %} data-index="{{ n.index }}"{% endif %}
{%- if n.derived %} data-derived="{{ n.derived }}"{% endif %}>{{ n.text }}</span>
{%- endmacro -%}
{%- macro nums(list, owner) -%}
{%- for n in list -%}
{%- if not loop.first %} ({% endif -%}
{%- if n.shown %}{{ num(n, owner) }}{% else %}<span class="txt">-</span>{% endif -%}
{%- if not loop.first %}){% endif -%}
{%- endfor -%}
{%- endmacro %}
<header>
<h1>{{ title }}</h1>
<div class="muted">{{ subtitle }}</div>
<ul class="notes">{% for note in notes %}<li>{{ note }}</li>{% endfor %}</ul>
</header>

<h2>Standings</h2>
<p class="muted">Click a column header to sort (again to reverse; Flags sorts by how many); a dash is a value that is not
there and sorts last. Runtimes marked <span class="badge cpu">CPU</span> were not measured on a GPU. The table scrolls
sideways with rank and team kept in view.</p>
{%- for note in table_notes %}
<p class="caution">{{ note }}</p>
{%- endfor %}
<div class="wrap">
<table id="standings">
<thead><tr>{% for c in columns %}<th scope="col" data-col="{{ c.id }}"{% if c.classes %} class="{{ c.classes }}"{% endif %} title="{{ c.title }}" aria-sort="{{ 'ascending' if c.id == 'rank' else 'none' }}"><button type="button">{{ c.header }}</button></th>{% endfor %}</tr></thead>
<tbody>
{%- for row in rows %}
<tr data-entry="{{ row.name }}" data-status="{{ row.status or '' }}"{% if not row.entry %} class="failed"{% endif %}>
{%- for c in columns %}{% set cell = row.cells[c.id] %}
<td data-col="{{ c.id }}"{% if c.classes %} class="{{ c.classes }}"{% endif %}{% if cell.title %} title="{{ cell.title }}"{% endif %}
{%- if c.id == 'flags' %} data-sort="{{ row.all_flags|length }}"{% endif %}>
{%- if c.id == 'flags' -%}
{%- if not row.entry and row.error %}<span class="error">{{ row.error }}</span>
{%- else %}{% for f in row.all_flags %}<a class="badge flag" href="#team-{{ row.index }}" title="{{ f.text }}">{{ f.short }}</a>{% endfor %}{% endif -%}
{%- elif cell.nums -%}{{ nums(cell.nums, row.name) }}
{%- elif cell.link -%}<a class="txt" href="#{{ cell.link }}">{{ cell.text }}</a>
{%- else -%}<span class="txt">{{ cell.text }}</span>{%- endif -%}
{%- if cell.sub %}<span class="sub" title="{{ cell.sub }}">{{ cell.sub }}</span>{% endif -%}
{%- for b in cell.badges %}<span class="badge{% if b == 'CPU' %} cpu{% endif %}">{{ b }}</span>{% endfor -%}
</td>
{%- endfor %}
</tr>
{%- endfor %}
</tbody>
</table>
</div>

{%- set flagged = rows|selectattr("all_flags")|list %}
{%- if flagged %}
<h2>Flags</h2>
<dl class="flaglist">
{%- for row in flagged %}
<dt>{% if row.entry %}<a href="#team-{{ row.index }}">{{ row.name }}</a>{% else %}{{ row.name }}{% endif %}</dt>
<dd><ul class="flags">{% for f in row.all_flags %}<li>{{ f.text }}</li>{% endfor %}</ul></dd>
{%- endfor %}
</dl>
{%- endif %}

<h2>Efficiency frontiers</h2>
<div class="figures">
{%- for fig in figures %}
<figure>{% if fig.svg %}{{ fig.svg|safe }}{% else %}<p class="muted">{{ fig.alt }}: nothing to plot.</p>{% endif %}
<figcaption>{{ fig.caption }}</figcaption></figure>
{%- endfor %}
</div>
{%- if plotted %}
<p class="muted">Each point is numbered by its team's row in the standings as first shown: a ranked team's number is
its rank. Hover a point for its name and figures.</p>
<ul class="key">{% for r in plotted|sort(attribute="index") %}<li><b>{{ r.index + 1 }}</b><a href="#team-{{ r.index }}">{{ r.name }}</a></li>{% endfor %}</ul>
{%- endif %}

<h2>Per team</h2>
{%- for row in rows if row.entry %}
<details id="team-{{ row.index }}" data-entry="{{ row.name }}">
<summary>{{ row.name }}{% if row.label != row.name %} <span class="muted">({{ row.label }})</span>{% endif %}</summary>
<div class="detail">
<div>
{% if row.all_flags %}<ul class="flags">{% for f in row.all_flags %}<li>{{ f.text }}</li>{% endfor %}</ul>{% endif %}
{% if row.score %}<p>Score {{ num(row.score_nums.final, row.name) }} = 0.7 × {{ num(row.score_nums.runtime, row.name) }} (runtime)
+ 0.15 × {{ num(row.score_nums.flops, row.name) }} (FLOPs) + 0.15 × {{ num(row.score_nums.params, row.name) }} (params)</p>{% endif %}
<dl class="facts">{% for k, v in row.facts %}<dt>{{ k }}</dt><dd>{{ v }}</dd>{% endfor %}</dl>
</div>
{% if row.images %}
<div>
<table class="images">
<thead><tr><th>Image</th><th>PSNR [dB]</th>{% if baseline_name and row.name != baseline_name %}<th>{{ baseline_name }} [dB]</th><th>Δ [dB]</th>{% endif %}<th>Runtime [ms]</th></tr></thead>
<tbody>
{%- for im in row.images %}
<tr><td>{{ im.name }}</td><td class="n">{{ nums([im.psnr], row.name) }}</td>
{%- if baseline_name and row.name != baseline_name %}<td class="n">{{ nums([im.base], row.name) if im.base else '-' }}</td><td class="n">{{ nums([im.diff], row.name) if im.diff else '-' }}</td>{% endif -%}
<td class="n">{{ nums([im.runtime], row.name) }}</td></tr>
{%- endfor %}
</tbody>
</table>
</div>
{% endif %}
{% if row.images_uri %}<figure><img src="{{ row.images_uri }}" alt="per-image PSNR of {{ row.name }} minus {{ baseline_name }}'s" width="460" height="280">
<figcaption>Per image: {{ row.name }}'s PSNR minus {{ baseline_name }}'s (above zero: {{ row.name }} is better).</figcaption></figure>{% endif %}
</div>
</details>
{%- endfor %}
<script>{{ script|safe }}</script>
</body>
</html>
"""


def _csp_hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def _order(rows: list[Row]) -> list[Row]:
    """Ranked rows by rank, then the baseline, then the other measured rows, then those without an entry."""
    def key(item: tuple[int, Row]) -> tuple[int, float, int]:
        i, r = item
        group = 0 if r.rank is not None else 1 if r.not_ranked == "baseline" else 2 if r.entry else 3
        return group, r.rank if r.rank is not None else 0, i
    return [r for _, r in sorted(enumerate(rows), key=key)]


def render_results_page(results: Mapping[str, Mapping[str, Any]], *, status: Mapping[str, Mapping[str, Any]] | None = None,
                        year: int | None = None, baseline_key: str | None = None, title: str | None = None) -> str:
    """The results page of ``results`` (a results.json's content) as one self-contained HTML document.

    ``status`` (batch_status.json's content) adds each team's status, and rows for the teams that failed.
    ``year`` None: read from the entries' ``results_convention`` where it names one year, else ranked by
    runtime (the page says so). ``baseline_key`` None: the year's ``00_<Baseline>_baseline`` when present
    (without a year: the one ``00_*_baseline`` key, if there is exactly one). A ``baseline_key`` that is not
    an entry raises KitError.
    """
    if not isinstance(results, Mapping):
        raise KitError("results.json does not hold a JSON object of entries; move it away and run again")
    rules = _rules(results, year, baseline_key)
    rows = _rows(results, status)
    rank_notes, reference = _rank(rows, rules)
    notes = list(rules.notes) + rank_notes
    table_notes = _environments(rows)
    rows = _order(rows)
    baseline = next((r for r in rows if r.key is not None and r.key == rules.baseline), None)
    columns = _columns(rows, rules, status is not None)
    for i, r in enumerate(rows):
        r.index = i
        r.all_flags = _flags(r)
        r.cells = {c.id: _cell(r, c.id, rules) for c in columns}
        r.facts = _facts(r.entry)
        r.images = _images(r, baseline) if r.entry else []
        if baseline is not None and r is not baseline:
            r.images_uri = _images_figure(r, r.images, baseline)
        r.score_nums = {k: Num(v, "score", entry=r.name, derived=f"score_{k}") for k, v in r.score.items()}
    year_text = rules.year.describe() if rules.year else "no challenge year: ranked by runtime"
    measured = sum(1 for r in rows if r.entry)
    subtitle = (f"{measured} measured entr{'y' if measured == 1 else 'ies'}"
                f"{f', {len(rows) - measured} without an entry' if len(rows) > measured else ''}; {year_text}"
                f"{f'; baseline {rules.baseline}' if rules.baseline else ''}.")
    if title is None:
        title = f"NTIRE {rules.year.year} Efficient SR — results" if rules.year else "Efficient SR — results"
    figures, plotted = _figures(rows, rules, reference)
    return _ENV.from_string(TEMPLATE).render(
        title=title, subtitle=subtitle, notes=notes, table_notes=table_notes, columns=columns, rows=rows,
        figures=figures, plotted=plotted, baseline_name=rules.baseline, style=STYLE, script=SCRIPT, style_hash=_csp_hash(STYLE),
        script_hash=_csp_hash(SCRIPT))


def write_results_page(path: Path, results: Mapping[str, Mapping[str, Any]], *,
                       status: Mapping[str, Mapping[str, Any]] | None = None, year: int | None = None,
                       baseline_key: str | None = None, title: str | None = None) -> None:
    """:func:`render_results_page` written to ``path`` atomically (a failed write leaves the old page)."""
    atomic_write(path, render_results_page(results, status=status, year=year, baseline_key=baseline_key, title=title))
