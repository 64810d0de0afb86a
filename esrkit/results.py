"""results.json and results.txt in the official kits' format, rendered from the run's records, written as one.

results.json holds one entry per key (``f"{id:02}_{Name}"``, or as the year's organisers key it: see
:class:`esrkit.challenge.Convention`) with the official keys -- ``valid_runtime``, ``valid_psnr``,
``valid_memory``, ``valid_ave_runtime``, ``valid_ave_psnr``, ``num_parameters`` [M], ``flops`` [G,
the convention's counter], ``activations`` [M], ``num_conv``, and the ``test_`` / ``hybrid_test_`` /
``_ssim`` variants -- plus this kit's extras beside them (never instead of them).

``valid_memory`` is always a number, so the official results.txt writer (which formats it with
``2.2f``) works on every device: the CUDA peak in MiB, or 0.0 off CUDA where nothing is measured
(``memory_measured`` says which). results.txt is what the official writer makes of the same json.

:class:`ResultsFiles` treats the two files as one unit: an existing results.json is checked before
any work starts, the merge happens under a lock on the folder, results.txt is derived from the merged
json, and both are replaced together or not at all. Entries of another shape (another tool's, a hand
edit) are kept as they are and shown as ``-`` where a value cannot be formatted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import statistics
from pathlib import Path
from typing import Any, Iterator

from esrkit.atomic import replace_together
from esrkit.errors import KitError
from esrkit.evaluation import SplitRecord
from esrkit.measure.timing import mean
from esrkit.metrics import METRICS

JSON_NAME = "results.json"
TXT_NAME = "results.txt"


def split_keys(r: SplitRecord, cold_start: bool = True) -> dict[str, Any]:
    """The official per-split keys of one split, then the extras (prefixed the same way).

    An LR-only split has no metric keys at all (never a made-up value); ``<split>_lr_only`` says why.
    ``cold_start`` False leaves out the cold-start extras (a pass whose first image was not cold).
    """
    m = r.split
    runtimes = r.runtime_ms
    rec: dict[str, Any] = {f"{m}_runtime": runtimes, f"{m}_memory": 0.0 if r.memory_mib is None else r.memory_mib,
                           f"{m}_ave_runtime": mean(runtimes)}
    official = [metric.name for metric in METRICS.values() if metric.official]
    extras = [metric.name for metric in METRICS.values() if not metric.official]
    for name in official:
        _add_series(rec, m, name, r.metric(name))
    rec[f"{m}_images"] = r.names
    if not r.has_metrics:
        rec[f"{m}_lr_only"] = True
    for name in extras:
        _add_series(rec, m, name, r.metric(name))
    if cold_start:
        rec[f"{m}_cold_runtime"] = runtimes[0]
        if len(runtimes) > 1:
            rec[f"{m}_ave_runtime_excl_first"] = mean(runtimes[1:])
    warm = r.warm_runtime_ms
    if warm is not None:
        rec[f"{m}_warm_runtime"] = warm
        rec[f"{m}_ave_warm_runtime"] = mean(warm)
        rec[f"{m}_median_warm_runtime"] = statistics.median(warm)
    rec[f"{m}_split_peak_memory"] = r.split_peak_mib
    if r.tiled:
        rec[f"{m}_tiled_images"] = r.tiled
    if r.oom_fallback:
        rec[f"{m}_oom_tiled_fallback"] = r.oom_fallback
    if r.wall_s is not None:
        rec[f"{m}_wall_s"] = r.wall_s
    return rec


def _add_series(rec: dict[str, Any], split: str, key: str, values: list[float]) -> None:
    """``<split>_<key>`` (per image) and ``<split>_ave_<key>`` (their mean), when there are values."""
    if values:
        rec[f"{split}_{key}"] = values
        rec[f"{split}_ave_{key}"] = mean(values)


# --- results.txt ---------------------------------------------------------------------------------


def _cell(entry: Any, key: str, spec: str) -> str:
    """``format(entry[key], spec)``, or ``-`` when absent, null or of a type the format does not take."""
    value = entry.get(key) if isinstance(entry, dict) else None
    if value is None or isinstance(value, bool):
        return "-"
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return "-"


def render_results_txt(results: dict[str, Any], include_test: bool, hybrid_test: bool) -> str:
    """The official tab-separated table, built from every entry in results.json.

    The first split is ``hybrid_test`` in hybrid mode, else ``valid``. An entry that lacks a column's
    keys shows ``-`` there (the official code raises KeyError instead); every other cell is formatted as
    the official writer formats it (GPU memory off CUDA: 0.00, with ``memory_measured`` false in the json).
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
        common = (_cell(v, "num_parameters", "2.3f"), _cell(v, "flops", "2.2f"), _cell(v, "activations", "2.2f"),
                  _cell(v, f"{first}_memory", "2.2f"), _cell(v, "num_conv", "4d"))
        if include_test:
            try:
                ave = f"{(v[f'{first}_ave_runtime'] + v['test_ave_runtime']) / 2:3.2f}"
            except (KeyError, TypeError, ValueError):
                ave = "-"
            row = (str(name), _cell(v, f"{first}_ave_psnr", "2.2f"), _cell(v, "test_ave_psnr", "2.2f"),
                   _cell(v, f"{first}_ave_runtime", "3.2f"), _cell(v, "test_ave_runtime", "3.2f"), ave, *common)
        else:
            row = (str(name), _cell(v, f"{first}_ave_psnr", "2.2f"), _cell(v, f"{first}_ave_runtime", "3.2f"), *common)
        lines.append(fmt.format(*row))
    return "".join(lines)


# --- the two files as one ----------------------------------------------------------------------


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` (no lock file is left behind)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def read_results(path: Path) -> dict[str, Any]:
    """An existing results.json (an empty dict when there is none); an error naming the fix if unreadable."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise KitError(f"cannot read {path} ({exc}); it was left untouched: fix its permissions or move it away") from None
    except json.JSONDecodeError as exc:
        raise KitError(
            f"{path} is not valid JSON ({exc}); it was left untouched: move it away or fix it, then run again"
        ) from None
    if not isinstance(data, dict):
        raise KitError(f"{path} does not hold a JSON object of entries; move it away and run again")
    return data


class ResultsFiles:
    """results.json + results.txt in ``folder`` (see the module docstring)."""

    def __init__(self, folder: Path, include_test: bool = False, hybrid_test: bool = False) -> None:
        self.folder = Path(folder)
        self.include_test = include_test
        self.hybrid_test = hybrid_test

    @property
    def json_path(self) -> Path:
        return self.folder / JSON_NAME

    @property
    def txt_path(self) -> Path:
        return self.folder / TXT_NAME

    def preflight(self) -> dict[str, Any]:
        """Before any work: the folder can be written and an existing results.json can be merged."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise KitError(f"--results_dir {self.folder} cannot be created ({exc.strerror or exc}): choose another") from None
        if not os.access(self.folder, os.W_OK | os.X_OK):
            raise KitError(f"--results_dir {self.folder} is not writable: choose another --results_dir")
        for path in (self.json_path, self.txt_path):
            if path.exists() and not path.is_file():
                raise KitError(f"{path} exists and is not a file: move it away or choose another --results_dir")
        return read_results(self.json_path)

    def merge(self, entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Replace ``entries`` in results.json (as the official kit does), keep every other one, derive results.txt."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with _locked(self.folder):
            results = read_results(self.json_path)
            results.update(entries)
            replace_together({
                self.json_path: json.dumps(results, indent=2) + "\n",
                self.txt_path: render_results_txt(results, self.include_test, self.hybrid_test),
            })
        return results
