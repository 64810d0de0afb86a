"""``package``: the upload -- SR PNGs of the validation LR images plus ``readme.txt`` in one flat zip --
and a factsheet skeleton prefilled with the entry's measured numbers.

The SR images are named as the 2023 kit saves them: the HR image's name (``0801.png``; on an LR-only
split, the LR's name without its suffix). The zip holds only files, no folder, and replaces an
existing one only once it is complete.
"""

from __future__ import annotations

import datetime
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch

from esrkit import __version__
from esrkit.atomic import check_writable_file, replace_together
from esrkit.challenge import Convention
from esrkit.datasets import Split, demo_split, open_split
from esrkit.device import device_name, pick_device
from esrkit.entry import Entry, Loaded
from esrkit.errors import KitError
from esrkit.evaluation import SplitRecord
from esrkit.measure.complexity import Complexity
from esrkit.progress import QUIET, Progress
from esrkit.run import RunOptions, run_entry

README_NAME = "readme.txt"


@dataclass(frozen=True)
class PackageOptions:
    """Where the LR images are, what goes into readme.txt, and where the zip and factsheet go."""

    data_dir: Path | None  # None: the embedded demo photos (a trial of the packaging path)
    out: Path
    split: str = "valid"
    layout: str = "auto"
    lr_only: bool = False  # the split's LR images alone (no HR, so no PSNR in the factsheet)
    device: str = "auto"
    extra_data: bool = False
    description: str = ""
    factsheet: Path | None = None  # default: <out stem>_factsheet.md beside the zip


@dataclass(frozen=True)
class PackageResult:
    """What was written: the zip (its member names, flat), the readme text and the factsheet."""

    zip_path: Path
    members: list[str]
    readme: str
    factsheet_path: Path
    runtime_s: float


def readme_text(runtime_s: float, on_cpu: bool, extra_data: bool, description: str) -> str:
    """The four lines the challenge's upload page parses (the description is kept on one line)."""
    one_line = " ".join(description.split())
    return (
        f"runtime per image [s] : {runtime_s:.6f}\n"
        f"CPU[1] / GPU[0] : {int(on_cpu)}\n"
        f"Extra Data [1] / No Extra Data [0] : {int(extra_data)}\n"
        f"Other description : {one_line}\n"
    )


def write_flat_zip(out: Path, files: Sequence[Path], texts: Mapping[str, str],
                   beside: Mapping[Path, str] | None = None) -> list[str]:
    """Zip ``files`` (by their base names) and ``texts`` (name -> content) with no folders; the zip and the
    ``beside`` files (path -> text, e.g. the factsheet) replace their targets together, or none does."""
    names = [f.name for f in files] + list(texts)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise KitError(f"two files would be stored as {duplicates[0]} in {out}: image names must be unique")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for f in files:
                zf.write(f, arcname=f.name)
            for member, text in texts.items():
                zf.writestr(member, text)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        replace_together({out: tmp, **dict(beside or {})})
    except OSError as exc:
        raise KitError(f"cannot write {out}: {exc.strerror or exc}; choose another path (or free some space)"
                       f"{' -- the existing file was left as it was' if out.exists() else ''}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return names


def factsheet_text(
    loaded: Loaded, counts: Complexity, split: Split, result: SplitRecord, device: torch.device, options: PackageOptions,
) -> str:
    """A Markdown factsheet skeleton: the kit's measurements filled in, the team's parts marked TODO."""
    entry = loaded.entry
    fv = "n/a (fvcore could not count it)" if counts.flops_fvcore is None else f"{counts.flops_fvcore / 1e9:.2f}"
    memory = "n/a (not measured off CUDA)" if result.memory_mib is None else f"{result.memory_mib:.2f}"
    on = device_name(device)
    runtime_ms = result.mean_runtime_ms
    probe = "3x256x256 LR input" + (" -- INPUT-DEPENDENT, see below" if counts.varies else "")
    rows = [
        ("Params [M]", f"{counts.params / 1e6:.3f} ({counts.params:,})", "all parameters, no buffers"),
        ("FLOPs [G], official hook counter (2022-2023)", f"{counts.flops_official / 1e9:.2f}", f"MACs on a {probe}"),
        ("FLOPs [G], fvcore (2024-2025)", fv, f"MACs on a {probe}"),
        ("Activations [M]", f"{counts.activations / 1e6:.2f}", f"conv outputs on a {probe}"),
        ("#Conv", str(counts.num_conv), f"conv calls on a {probe}"),
        ("Runtime [ms / image]", f"{runtime_ms:.2f}",
         f"challenge protocol mean over {len(split)} {split.name} images (fp32, batch 1, no warm-up) on {on}"),
        ("GPU memory [MiB]", memory, "max_memory_allocated after the split"),
        (f"PSNR {split.name} [dB]", f"{result.mean('psnr'):.2f}" if result.has_metrics else "n/a (LR only: no HR)",
         f"RGB, 4-pixel border, {split.layout} layout at {split.root}"),
    ]
    table = "\n".join(f"| {name} | {value} | {how} |" for name, value, how in rows)
    if counts.varies:
        table += f"\n\nComplexity: {counts.probe_note()}."
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    source = entry.source or Path(f"models/{entry.name}.py")
    return f"""# NTIRE Efficient Super-Resolution challenge: factsheet of {source.stem}

_Skeleton written by esrkit {__version__} on {date}. The measured numbers below are the kit's; every TODO is yours._

## 1. Team details
- Team name: TODO
- Team leader (name, address, phone, email): TODO
- Other members and affiliations: TODO
- User names on the challenge site: TODO
- Best scoring entry: `{source.name}` with `{loaded.weights.name}`
- Link to the code and the trained model: TODO

## 2. Method
- Entry: {loaded.describe()}; x{entry.scale}, data range {entry.data_range:g}
- Architecture (with a figure) and what is new: TODO
- Reparameterisation / pruning / distillation, if any: TODO

## 3. Numbers measured by the kit
| metric | value | how |
|---|---|---|
{table}

## 4. Training
- Training data: TODO
- Extra data: {'yes' if options.extra_data else 'no'} (as declared in readme.txt)
- Losses, schedule, patch and batch size, iterations, hardware, training time: TODO

## 5. Testing
- Self-ensemble or other test-time tricks: TODO (none were used in the runtime above)
- readme.txt description: {" ".join(options.description.split()) or '(none)'}

## 6. Other
- Anything else the organisers should know: TODO
"""


def check_outputs(options: PackageOptions) -> Path:
    """The zip and the factsheet can be written -- checked before anything runs; returns the factsheet path."""
    out = options.out
    if out.suffix.lower() != ".zip":
        raise KitError(f"--out {out} must be a .zip file")
    factsheet = options.factsheet or out.with_name(f"{out.stem}_factsheet.md")
    check_writable_file(out, "--out")
    check_writable_file(factsheet, "--factsheet")
    if factsheet.resolve() == out.resolve():
        raise KitError(f"--factsheet {factsheet} is the zip itself: choose another path")
    return factsheet


def run_package(entry: Entry, options: PackageOptions, progress: Progress = QUIET) -> PackageResult:
    """Run the entry on the split's LR images (as test_demo.py does) and write the zip and the factsheet."""
    if entry.data_range is None:
        raise KitError(f"{entry.name} declares no data range: pass --data_range (check reports the one that fits)")
    factsheet_path = check_outputs(options)
    if options.data_dir is None:
        if options.lr_only or options.split != "valid":
            raise KitError("--lr_only / --split need --data_dir (the demo photos are one valid split with HR)")
        split = demo_split()
    else:
        split = open_split(options.data_dir, options.split, options.layout, entry.scale, lr_only=options.lr_only)
    device = pick_device(options.device)
    out = options.out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".esrkit_package_", dir=out.parent) as staging:
        try:
            run = run_entry(entry, [split], Convention.for_run(None, split.layout), RunOptions(device, progress=progress),
                            save_root=Path(staging))
        except KitError as exc:  # the model on the real images (NaN, a size it refuses): the upload stays as it was
            raise KitError(f"{exc}; nothing was written (run check)") from None
        result = run.records[0]
        runtime_s = result.mean_runtime_ms / 1e3
        measured = (f"runtime measured by esrkit {__version__} on {device_name(device)}: "
                    f"challenge protocol, mean of {len(split)} {split.name} images, fp32, batch 1, no warm-up")
        text = readme_text(runtime_s, device.type == "cpu", options.extra_data,
                           f"{options.description.strip()} ({measured})" if options.description.strip() else measured)
        images = [Path(staging) / split.name / f"{name}.png" for name in result.names]
        sheet = factsheet_text(run.loaded, run.complexity, split, result, device, options)
        members = write_flat_zip(out, images, {README_NAME: text}, beside={factsheet_path: sheet})
    return PackageResult(out, members, text, factsheet_path, runtime_s)
