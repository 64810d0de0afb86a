"""results.json and results.txt in the official kits' format, written safely.

results.json holds one entry per ``f"{id:02}_{Name}"`` key with the official keys (``valid_runtime``,
``valid_psnr``, ``valid_memory``, ``valid_ave_runtime``, ``valid_ave_psnr``, ``num_parameters`` [M],
``flops`` [G, official hook counter], ``activations`` [M], ``num_conv``, and the ``test_`` /
``hybrid_test_`` / ``_ssim`` variants) plus this kit's extras beside them (never instead of them).
It is merged under a file lock and replaced atomically: a crash, Ctrl-C or two runs at once never
truncate it or drop another entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import statistics
from pathlib import Path
from typing import Any, Iterator

from esrkit.atomic import atomic_write
from esrkit.errors import KitError
from esrkit.runner import SplitResult


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def split_record(r: SplitResult) -> dict[str, Any]:
    """The official per-split keys of one split, then the extras (prefixed the same way).

    An LR-only split has no PSNR/SSIM keys at all (never a made-up value); ``<split>_lr_only`` says why.
    """
    m = r.split
    rec: dict[str, Any] = {f"{m}_runtime": r.runtime_ms, f"{m}_memory": r.memory_mib,
                           f"{m}_ave_runtime": _mean(r.runtime_ms)}
    _add_series(rec, m, "psnr", r.psnr)
    _add_series(rec, m, "ssim", r.ssim)
    # Extras: same split prefix, names that do not collide with the official keys.
    rec[f"{m}_images"] = r.names
    if not r.has_metrics:
        rec[f"{m}_lr_only"] = True
    _add_series(rec, m, "psnr_y", r.psnr_y)
    _add_series(rec, m, "ssim_y", r.ssim_y)
    rec[f"{m}_cold_runtime"] = r.runtime_ms[0]
    if len(r.runtime_ms) > 1:
        rec[f"{m}_ave_runtime_excl_first"] = _mean(r.runtime_ms[1:])
    if r.warm_runtime_ms is not None:
        rec[f"{m}_warm_runtime"] = r.warm_runtime_ms
        rec[f"{m}_ave_warm_runtime"] = _mean(r.warm_runtime_ms)
        rec[f"{m}_median_warm_runtime"] = statistics.median(r.warm_runtime_ms)
    rec[f"{m}_split_peak_memory"] = r.split_peak_mib
    if r.tiled:
        rec[f"{m}_tiled_images"] = r.tiled
    if r.oom_fallback:
        rec[f"{m}_oom_tiled_fallback"] = r.oom_fallback
    return rec


def _add_series(rec: dict[str, Any], split: str, key: str, values: list[float] | None) -> None:
    """``<split>_<key>`` (per image) and ``<split>_ave_<key>`` (their mean), when there are values."""
    if values:
        rec[f"{split}_{key}"] = values
        rec[f"{split}_ave_{key}"] = _mean(values)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the folder that holds ``path`` (no lock file is left behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def read_results(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise KitError(
            f"{path} is not valid JSON ({exc}); it was left untouched: move it away or fix it, then run again"
        ) from None
    if not isinstance(data, dict):
        raise KitError(f"{path} does not hold a JSON object of entries; move it away and run again")
    return data


def merge_results(path: Path, key: str, record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Replace entry ``key`` in results.json (as the official kit does) and keep every other entry."""
    with _locked(path):
        results = read_results(path)
        results[key] = record
        atomic_write(path, json.dumps(results, indent=2) + "\n")
    return results


def render_results_txt(results: dict[str, dict[str, Any]], include_test: bool, hybrid_test: bool) -> str:
    """The official tab-separated table, built from every entry in results.json.

    The first split is ``hybrid_test`` in hybrid mode, else ``valid``. An entry that lacks a column's
    keys shows ``-`` there (the official code raises KeyError instead); so does GPU memory of a CPU run.
    """
    first = "hybrid_test" if hybrid_test else "valid"
    if include_test:
        fmt = "{:20s}\t{:10s}\t{:10s}\t{:14s}\t{:14s}\t{:14s}\t{:10s}\t{:10s}\t{:8s}\t{:8s}\t{:8s}\n"
        header = ("Model", "Val PSNR", "Test PSNR", "Val Time [ms]", "Test Time [ms]", "Ave Time [ms]",
                  "Params [M]", "FLOPs [G]", "Acts [M]", "Mem [M]", "Conv")
    else:
        fmt = "{:20s}\t{:10s}\t{:14s}\t{:10s}\t{:10s}\t{:8s}\t{:8s}\t{:8s}\n"
        header = ("Model", "Val PSNR", "Val Time [ms]", "Params [M]", "FLOPs [G]", "Acts [M]", "Mem [M]", "Conv")
    lines = [fmt.format(*header)]
    for name, v in results.items():

        def get(key: str, spec: str) -> str:
            return "-" if v.get(key) is None else format(v[key], spec)

        common = (get("num_parameters", "2.3f"), get("flops", "2.2f"), get("activations", "2.2f"),
                  get(f"{first}_memory", "2.2f"), get("num_conv", "4d"))
        if include_test:
            ave = ("-" if f"{first}_ave_runtime" not in v or "test_ave_runtime" not in v
                   else f"{(v[f'{first}_ave_runtime'] + v['test_ave_runtime']) / 2:3.2f}")
            row = (name, get(f"{first}_ave_psnr", "2.2f"), get("test_ave_psnr", "2.2f"),
                   get(f"{first}_ave_runtime", "3.2f"), get("test_ave_runtime", "3.2f"), ave, *common)
        else:
            row = (name, get(f"{first}_ave_psnr", "2.2f"), get(f"{first}_ave_runtime", "3.2f"), *common)
        lines.append(fmt.format(*row))
    return "".join(lines)


def write_results_txt(path: Path, results: dict[str, dict[str, Any]], include_test: bool, hybrid_test: bool) -> None:
    atomic_write(path, render_results_txt(results, include_test, hybrid_test))
