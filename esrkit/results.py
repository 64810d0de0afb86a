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
import datetime
import json
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import torch
from filelock import FileLock

from esrkit import __version__, environment
from esrkit.atomic import replace_together
from esrkit.challenge import Convention
from esrkit.device import device_name
from esrkit.digests import entry_digest
from esrkit.errors import KitError
from esrkit.evaluation import SplitRecord
from esrkit.fingerprint import data_fingerprint as fingerprint_of
from esrkit.outputs import DataIdentity, replacement_problem
from esrkit.measure.complexity import Complexity
from esrkit.measure.timing import mean

if TYPE_CHECKING:
    from esrkit.run import EntryRun
from esrkit.metrics import METRICS
from esrkit.verdicts import IDENTICAL, summary, verification_of

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
        if len(warm) < len(runtimes):  # a sample of the split: which images
            rec[f"{m}_warm_images"] = r.warm_names
        rec[f"{m}_ave_warm_runtime"] = mean(warm)
        rec[f"{m}_median_warm_runtime"] = statistics.median(warm)
    rec[f"{m}_split_peak_memory"] = r.split_peak_mib
    if r.tiled:
        rec[f"{m}_tiled_images"] = r.tiled
    if r.oom_fallback:
        rec[f"{m}_oom_tiled_fallback"] = r.oom_fallback
    if r.wall_s is not None:
        rec[f"{m}_wall_s"] = r.wall_s
    if r.deterministic is not None:
        rec[f"{m}_deterministic"] = r.deterministic
    if r.psnr_runs:
        rec[f"{m}_psnr_runs"] = r.psnr_runs
        rec[f"{m}_psnr_spread"] = max(r.psnr_runs) - min(r.psnr_runs)
    return rec


def _add_series(rec: dict[str, Any], split: str, key: str, values: list[float]) -> None:
    """``<split>_<key>`` (per image) and ``<split>_ave_<key>`` (their mean), when there are values."""
    if values:
        rec[f"{split}_{key}"] = values
        rec[f"{split}_ave_{key}"] = mean(values)


# --- the results entry of a run ------------------------------------------------------------------


def psnr_differences(fast: SplitRecord, challenge: SplitRecord) -> tuple[float, float]:
    """The fast pass's PSNR against the challenge pass's on the same images: (difference of the means, largest
    per-image absolute difference)."""
    per_image = [abs(a - b) for a, b in zip(fast.metric("psnr"), challenge.metric("psnr"))]
    return fast.mean("psnr") - challenge.mean("psnr"), max(per_image)


def model_keys(complexity: Complexity, convention: Convention) -> dict[str, Any]:
    """The official model-level keys (``flops`` under the convention's counter), then the extras."""
    fv = complexity.flops_fvcore
    flops = complexity.flops(convention.flops_counter)
    keys: dict[str, Any] = {
        "activations": complexity.activations / 1e6, "num_conv": complexity.num_conv,
        "flops": None if flops is None else flops / 1e9, "num_parameters": complexity.params / 1e6,
        "flops_counter": convention.counter_label,
        "flops_hook": complexity.flops_official / 1e9, "flops_fvcore": None if fv is None else fv / 1e9,
        "flops_fvcore_unsupported_ops": complexity.fvcore_unsupported if fv is not None else None,
        "complexity_probe": complexity.probe_note(),
    }
    if complexity.varies:
        keys["complexity_input_dependent"] = {k: list(v) for k, v in complexity.varies.items()}
    return keys


def fast_keys(r: SplitRecord, ref: SplitRecord) -> dict[str, Any]:
    """The fast pass's keys (``<split>_fast_*``): as a split (no cold start: after prepare() no image is cold),
    plus the PSNR differences to the challenge pass."""
    keys = split_keys(r, cold_start=False)
    if r.has_metrics:
        keys[f"{r.split}_ave_psnr_diff"], keys[f"{r.split}_psnr_diff_max"] = psnr_differences(r, ref)
    return keys


def entry_record(run: EntryRun, data_fingerprint: str | None = None, with_environment: bool = True) -> dict[str, Any]:
    """The results.json entry of a run: the official keys, then this kit's extras (never instead of them).
    ``data_fingerprint``: the data's digest, when the caller has it already; ``with_environment`` False leaves the
    software environment out (a batch adds it itself, once: :mod:`esrkit.environment`)."""
    record: dict[str, Any] = {}
    for r in run.records:
        record.update(split_keys(r))
    record["loop"] = run.records[0].loop
    for r, ref in zip(run.fast, run.records):
        record.update(fast_keys(r, ref))
    if run.fast_engine is not None:
        record.update(fast_engine=run.fast_engine.describe(), fast_setup_ms=run.fast_engine.setup_ms,
                      fast_graph_captures=run.fast_engine.captures)
    if run.fast_error is not None:
        record["fast_error"] = run.fast_error
    record.update(model_keys(run.complexity, run.convention))
    device, entry, split = run.device, run.entry, run.splits[0]
    record.update(
        device=device_name(device),
        device_type=device.type,
        memory_measured=device.type == "cuda",
        timing="CUDA events around the forward pass" if device.type == "cuda" else "wall clock around the forward pass",
        entry=entry.call_text(),
        weights=str(run.loaded.weights),
        weights_loading=run.loaded.report.describe(),
        post_load=entry.post_load,
        results_convention=run.convention.label,
        data_dir=str(split.root),
        layout=split.layout,
        data_fingerprint=data_fingerprint if data_fingerprint is not None else fingerprint_of(run.splits),
        lr_source="made by the kit's MATLAB-bicubic imresize" if split.lr_made_by_kit else "LR files",
        lr_only=not split.has_hr,
        data_range=entry.data_range,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        kit_version=__version__,
        torch_version=torch.__version__,
    )
    if with_environment:
        record["environment"] = environment.describe(entry.source)
    if entry.renamed:  # the key spells the name safely ([FEAN] -> FEAN): the name as given, for display
        record["display_name"] = entry.name
    if entry.notes:
        record["notes"] = list(entry.notes)
    return record


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
    Below the table, where there are any: the entries measured unconfined, and the upload verdicts other than
    identical (:mod:`esrkit.verdicts`), as ``#`` lines.
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
    unconfined = [str(name) for name, v in results.items() if isinstance(v, dict) and v.get("confined") is False]
    if unconfined:  # only then: a round measured confined keeps the official table exactly
        lines.append(f"\n# measured unconfined (--unconfined: the team's code ran with the organiser's rights, "
                     f"outside the sandbox): {', '.join(unconfined)}\n")
    verified = [(str(name), verification_of(v)) for name, v in results.items()]
    flagged = [(name, record) for name, record in verified if record is not None and record["verdict"] != IDENTICAL]
    if flagged:  # only then, and after the table: it stays the official one
        lines.append("\n# upload verification (the SR images uploaded to the online server against those the team's "
                     "code reproduces; identical ones not listed):\n")
        lines += [f"# {name}: {summary(record)}\n" for name, record in flagged]
    return "".join(lines)


# --- the two files as one ----------------------------------------------------------------------


LOCK_NAME = ".esrkit.lock"


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on a results folder: every read-modify-write of a file in it (results.json + results.txt,
    batch_status.json) happens under it -- threads, processes, and machines sharing the folder (a Slurm array).

    It is ``filelock``'s lock on a hidden ``.esrkit.lock`` file kept in the folder (a file opened for writing, so
    that NFS, which emulates ``flock`` with byte-range locks, locks it too; the file stays, empty, so that a lock
    is never taken on a file another process is deleting)."""
    folder = Path(folder)
    try:
        lock = FileLock(folder / LOCK_NAME)
        lock.acquire()
    except OSError as exc:
        raise KitError(f"cannot lock {folder} ({exc.strerror or exc}): results folders need a file system with "
                       f"working file locks (on NFS: lockd running)") from None
    try:
        yield
    finally:
        lock.release()


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

    def preflight(self, key: str | None = None, identity: DataIdentity | None = None, replace: bool = False,
                  say: Callable[[str], None] = print) -> dict[str, Any]:
        """Before any work: the folder can be written, an existing results.json can be merged, and -- given the
        ``key`` and the data of the run -- the entry it would replace was measured on the same data (or
        ``replace`` says so; see :mod:`esrkit.outputs`). Notes go to ``say``."""
        existing = self._writable_existing()
        if key is not None and identity is not None:
            problem, note = replacement_problem(existing, key, identity, replace)
            if problem:
                raise KitError(problem)
            if note:
                say(note)
        return existing

    def _writable_existing(self) -> dict[str, Any]:
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

    def merge(self, entries: dict[str, dict[str, Any]], identity: DataIdentity | None = None,
              replace: bool = True) -> dict[str, Any]:
        """Replace ``entries`` in results.json (as the official kit does), keep every other one, derive results.txt.

        With ``identity`` (the data the entries were measured on) and ``replace`` False, an entry measured on other
        data is refused here too, under the lock -- another run may have written it since :meth:`preflight`."""
        return self.merge_checked(entries, identity=identity, replace=replace).results

    def merge_checked(self, entries: dict[str, dict[str, Any]], known: Mapping[str, Any] | None = None,
                      identity: DataIdentity | None = None, replace: bool = True) -> "Merged":
        """:meth:`merge`, and under the same lock: every entry of ``known`` (the entries the caller wrote or checked
        earlier, as it wrote them) that results.json no longer holds as such -- changed by anything but the kit --
        is put back, and its key reported; a results.txt that is not what results.json gives is reported too (it is
        written again from results.json, as on every merge)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with folder_lock(self.folder):
            results = read_results(self.json_path)
            for key in entries if identity is not None else ():
                problem, _ = replacement_problem(results, key, identity, replace)  # type: ignore[arg-type]
                if problem:
                    raise KitError(problem)
            restored = [key for key, entry in (known or {}).items()
                        if key not in entries and entry_digest(results.get(key)) != entry_digest(entry)]
            txt_changed = self.txt_path.is_file() and self._txt_differs(results)
            results.update({key: known[key] for key in restored})  # type: ignore[index]
            results.update(entries)
            replace_together({
                self.json_path: json.dumps(results, indent=2) + "\n",
                self.txt_path: render_results_txt(results, self.include_test, self.hybrid_test),
            })
        return Merged(results, restored, txt_changed)

    def _txt_differs(self, results: dict[str, Any]) -> bool:
        try:
            return self.txt_path.read_text(encoding="utf-8") != render_results_txt(results, self.include_test,
                                                                                  self.hybrid_test)
        except (OSError, UnicodeDecodeError):
            return True


@dataclass(frozen=True)
class Merged:
    """What :meth:`ResultsFiles.merge_checked` wrote, and what it found changed outside the kit."""

    results: dict[str, Any]
    restored: list[str]  # entries put back as the kit had written them
    txt_changed: bool  # results.txt differed from what results.json gives (it was written again)

