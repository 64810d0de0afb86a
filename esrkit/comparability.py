"""Whether results entries can be ranked together, and under which software each was measured.

Two entries rank together only when they were measured under one year's results convention, with one
FLOPs counter, on the same data (:func:`differences`). ``merge`` refuses entries that differ from the
round's reference (its baseline, else the entry most others agree with: :func:`reference_key`) unless
told ``--allow_mixed``; the results page leaves such entries unranked and says why.

The software environment (Python, torch, platform, the packages a team's file imported) does not stop a
ranking -- a round is often measured on machines set up apart -- but the page names the environments
when there are several (:func:`environment_groups`, :func:`package_versions`). An entry written before
the kit recorded ``environment`` has only ``torch_version``.

What an entry does not record (another tool's entry) agrees with everything: nothing is refused on a guess.
"""

from __future__ import annotations

import collections
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping

from esrkit.challenge import FVCORE, HOOKS
from esrkit.outputs import measured_on

CONVENTION_YEARS = re.compile(r"NTIRE (\d{4})(?:-(\d{4}))?")
BASELINE_KEY = re.compile(r"00_.+_baseline")
SPLITS = ("valid", "test", "hybrid_test")


def _text(entry: Mapping[str, Any], key: str) -> str | None:
    value = entry.get(key)
    return value if isinstance(value, str) and value.strip() else None


# --- convention, counter, data -------------------------------------------------------------------------


def convention_years(label: str | None) -> frozenset[int] | None:
    """The challenge years a ``results_convention`` names ("NTIRE 2025", "NTIRE 2024-2025 (...)"); None: none."""
    match = CONVENTION_YEARS.search(label or "")
    if match is None:
        return None
    first, last = int(match.group(1)), int(match.group(2) or match.group(1))
    return frozenset(range(first, last + 1))


def counter_of(entry: Mapping[str, Any]) -> str | None:
    """The FLOPs counter an entry's ``flops_counter`` names (FVCORE or HOOKS); None when it names none."""
    label = (_text(entry, "flops_counter") or "").lower()
    return FVCORE if "fvcore" in label else HOOKS if "hook" in label else None


def _split_sizes(entry: Mapping[str, Any]) -> dict[str, int]:
    return {s: len(v) for s in SPLITS if isinstance(v := entry.get(f"{s}_images"), list)}


def _same_data(entry: Mapping[str, Any], reference: Mapping[str, Any]) -> bool:
    """The data's digests decide where both have one (the same files under two paths are the same data);
    else the folder and the number of images of each split both record."""
    fingerprints = _text(entry, "data_fingerprint"), _text(reference, "data_fingerprint")
    if None not in fingerprints:
        return fingerprints[0] == fingerprints[1]
    folders = _text(entry, "data_dir"), _text(reference, "data_dir")
    if None not in folders and os.path.normpath(folders[0]) != os.path.normpath(folders[1]):
        return False
    sizes, reference_sizes = _split_sizes(entry), _split_sizes(reference)
    return all(sizes[s] == reference_sizes[s] for s in sizes.keys() & reference_sizes.keys())


def differences(entry: Any, reference: Any) -> list[str]:
    """How ``entry`` was measured otherwise than ``reference``, one phrase per setting (empty: they rank
    together): the results convention (years that do not overlap), the FLOPs counter, the data."""
    if not isinstance(entry, Mapping) or not isinstance(reference, Mapping):
        return []
    found = []
    labels = _text(entry, "results_convention"), _text(reference, "results_convention")
    if None not in labels:
        years = convention_years(labels[0]), convention_years(labels[1])
        if (years[0] is None or years[1] is None) and labels[0] != labels[1] or \
                None not in years and not years[0] & years[1]:
            found.append(f"results_convention {labels[0]}, not {labels[1]}")
    counters = counter_of(entry), counter_of(reference)
    if None not in counters and counters[0] != counters[1]:
        found.append(f"flops_counter {_text(entry, 'flops_counter')}, not {_text(reference, 'flops_counter')}")
    if not _same_data(entry, reference):
        found.append(f"data {measured_on(entry)}, not {measured_on(reference)}")
    return found


def describe_setting(entry: Mapping[str, Any]) -> str:
    """An entry's convention, counter and data in a few words (for a message)."""
    parts = [_text(entry, "results_convention"), _text(entry, "flops_counter"),
             measured_on(entry) if _text(entry, "data_dir") or _split_sizes(entry) else None]
    return ", ".join(p for p in parts if p) or "a setting it does not record"


def baseline_of(entries: Mapping[str, Any], baseline: str | None = None) -> str | None:
    """``baseline`` when it is an entry, else the one ``00_*_baseline`` entry; None when there is no such one."""
    if baseline is None:
        named = [k for k in entries if BASELINE_KEY.fullmatch(str(k))]
        baseline = named[0] if len(named) == 1 else None
    return baseline if baseline is not None and isinstance(entries.get(baseline), Mapping) else None


def reference_key(entries: Mapping[str, Any], baseline: str | None = None) -> str | None:
    """The entry the others must agree with: the baseline (:func:`baseline_of`), else the entry most others
    agree with (the first of equals); None without entries."""
    if (found := baseline_of(entries, baseline)) is not None:
        return found
    keys = [k for k, v in entries.items() if isinstance(v, Mapping)]
    agree = {k: sum(not differences(entries[o], entries[k]) for o in keys) for k in keys}
    return max(keys, key=lambda k: (agree[k], -keys.index(k)), default=None)


def mismatches(entries: Mapping[str, Any], reference: str | None) -> dict[str, list[str]]:
    """The entries measured otherwise than ``reference``, each with how (see :func:`differences`)."""
    if reference is None:
        return {}
    found = {k: differences(v, entries[reference]) for k, v in entries.items() if k != reference}
    return {k: v for k, v in found.items() if v}


# --- environments --------------------------------------------------------------------------------------

ENVIRONMENT_FIELDS = ("python", "torch", "platform")


@dataclass(frozen=True)
class Environment:
    """What an entry records of the software it was measured under (None: not recorded)."""

    python: str | None
    torch: str | None
    platform: str | None
    packages: tuple[tuple[str, str], ...] = ()  # (name, version) of what the team's file imported

    @classmethod
    def of(cls, entry: Any) -> "Environment | None":
        """From ``environment``, else the older ``torch_version``; None when the entry records neither."""
        if not isinstance(entry, Mapping):
            return None
        env = entry.get("environment")
        if isinstance(env, Mapping):
            packages = env.get("packages")
            packages = packages if isinstance(packages, Mapping) else {}
            found = cls(*(_text(env, f) for f in ENVIRONMENT_FIELDS),
                        tuple(sorted((str(k), str(v)) for k, v in packages.items())))
        else:
            found = cls(None, _text(entry, "torch_version"), None)
        return found if found.fields() else None

    def fields(self) -> dict[str, str]:
        return {f: v for f in ENVIRONMENT_FIELDS if (v := getattr(self, f)) is not None}

    def fits(self, fields: Mapping[str, str]) -> bool:
        """Every field both record is the same."""
        return all(fields.get(f, v) == v for f, v in self.fields().items())

    def describe(self) -> str:
        names = {"python": "Python", "torch": "torch", "platform": ""}
        return ", ".join(f"{names[f]} {v}".strip() for f, v in self.fields().items())


@dataclass
class EnvironmentGroup:
    """Entries measured under one environment (as far as each records it)."""

    fields: dict[str, str]
    keys: list[str]

    def describe(self) -> str:
        return Environment(*(self.fields.get(f) for f in ENVIRONMENT_FIELDS)).describe()


def environment_groups(entries: Mapping[str, Any]) -> list[EnvironmentGroup]:
    """The entries grouped by environment, the largest group first (entries that record none: in no group).

    An entry that records only some fields (only ``torch_version``) joins the largest group it agrees with.
    """
    envs = {k: e for k, v in entries.items() if (e := Environment.of(v)) is not None}
    complete = collections.Counter(tuple(sorted(e.fields().items())) for e in envs.values())
    groups = [EnvironmentGroup(dict(fields), []) for fields, _ in complete.most_common()]
    groups.sort(key=lambda g: -len(g.fields))  # a complete record before a partial one of the same size
    groups.sort(key=lambda g: -complete[tuple(sorted(g.fields.items()))])
    for key, env in envs.items():
        home = next((g for g in groups if env.fits(g.fields) and set(env.fields()) <= set(g.fields)),
                    next(g for g in groups if g.fields == env.fields()))
        home.keys.append(key)
    groups = [g for g in groups if g.keys]
    groups.sort(key=lambda g: -len(g.keys))
    return groups


def package_versions(entries: Mapping[str, Any]) -> dict[str, dict[str, list[str]]]:
    """The packages imported at more than one version across the entries: {package: {version: [keys]}},
    the most used version first."""
    seen: dict[str, dict[str, list[str]]] = {}
    for key, value in entries.items():
        env = Environment.of(value)
        for name, version in env.packages if env is not None else ():
            seen.setdefault(name, {}).setdefault(version, []).append(key)
    return {name: dict(sorted(versions.items(), key=lambda kv: -len(kv[1])))
            for name, versions in sorted(seen.items()) if len(versions) > 1}
