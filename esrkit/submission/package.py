"""``package``: the upload -- SR PNGs of the validation LR images plus ``readme.txt`` in one flat zip --
and a factsheet skeleton prefilled with the entry's measured numbers.

The SR images are named as the 2023 kit saves them: the HR image's name (``0801.png``; on an LR-only
split, the LR's name without its suffix). The zip holds only files, no folder, and replaces an
existing one only once it is complete.
"""

from __future__ import annotations

import datetime
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch

from esrkit import __version__
from esrkit.atomic import atomic_path, atomic_write
from esrkit.datasets import Split, open_split
from esrkit.errors import KitError
from esrkit.runner import SplitResult, SplitRunner, device_name, pick_device, prepare_model
from esrkit.submission.candidate import Candidate
from esrkit.submission.check import Counts, check_forward, count, probe_input

README_NAME = "readme.txt"
PREFLIGHT_SIZE = 64  # LR pixels of the forward pass that must give a valid image before anything is written


@dataclass(frozen=True)
class PackageOptions:
    """Where the LR images are, what goes into readme.txt, and where the zip and factsheet go."""

    data_dir: Path
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


def write_flat_zip(out: Path, files: Sequence[Path], texts: Mapping[str, str]) -> list[str]:
    """Zip ``files`` (by their base names) and ``texts`` (name -> content) with no folders, atomically."""
    names = [f.name for f in files] + list(texts)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise KitError(f"two files would be stored as {duplicates[0]} in {out}: image names must be unique")
    with atomic_path(out) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for f in files:
                zf.write(f, arcname=f.name)
            for name, text in texts.items():
                zf.writestr(name, text)
    return names


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def factsheet_text(
    candidate: Candidate, counts: Counts, split: Split, result: SplitResult, device: torch.device,
    data_range: float, options: PackageOptions,
) -> str:
    """A Markdown factsheet skeleton: the kit's measurements filled in, the team's parts marked TODO."""
    fv = counts.fvcore if isinstance(counts.fvcore, str) else f"{counts.fvcore.macs / 1e9:.2f}"
    memory = "n/a (not measured off CUDA)" if result.memory_mib is None else f"{result.memory_mib:.2f}"
    on = device_name(device)
    runtime_ms = _mean(result.runtime_ms)
    o = counts.official
    rows = [
        ("Params [M]", f"{o.params / 1e6:.3f} ({o.params:,})", "all parameters, no buffers"),
        ("FLOPs [G], official hook counter (2022-2023)", f"{o.flops / 1e9:.2f}", "MACs on a 3x256x256 LR input"),
        ("FLOPs [G], fvcore (2024-2025)", fv, "MACs on a 3x256x256 LR input"),
        ("Activations [M]", f"{o.activations / 1e6:.2f}", "conv outputs on a 3x256x256 LR input"),
        ("#Conv", str(o.num_conv), "conv calls on a 3x256x256 LR input"),
        ("Runtime [ms / image]", f"{runtime_ms:.2f}",
         f"challenge protocol mean over {len(split)} {split.name} images (fp32, batch 1, no warm-up) on {on}"),
        ("GPU memory [MiB]", memory, "max_memory_allocated after the split"),
        (f"PSNR {split.name} [dB]", f"{_mean(result.psnr):.2f}" if result.has_metrics else "n/a (LR only: no HR)",
         f"RGB, 4-pixel border, {split.layout} layout at {split.root}"),
    ]
    table = "\n".join(f"| {name} | {value} | {how} |" for name, value, how in rows)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    return f"""# NTIRE Efficient Super-Resolution challenge: factsheet of {candidate.source_file.stem}

_Skeleton written by esrkit {__version__} on {date}. The measured numbers below are the kit's; every TODO is yours._

## 1. Team details
- Team name: TODO
- Team leader (name, address, phone, email): TODO
- Other members and affiliations: TODO
- User names on the challenge site: TODO
- Best scoring entry: `{candidate.source_file.name}` with `{candidate.weights.name if candidate.weights else 'TODO'}`
- Link to the code and the trained model: TODO

## 2. Method
- Entry: {candidate.described_as}; x{candidate.scale}, data range {data_range:g}
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


def run_package(candidate: Candidate, options: PackageOptions) -> PackageResult:
    """Run the candidate on the split's LR images and write the zip and the factsheet."""
    if candidate.build is None:
        raise KitError(candidate.problem or f"{candidate.source_file} gave no model")
    if candidate.data_range is None:
        raise KitError(f"{candidate.name} declares no data range: pass --data_range (check reports the one that fits)")
    out = options.out
    if out.suffix.lower() != ".zip":
        raise KitError(f"--out {out} must be a .zip file")
    factsheet_path = options.factsheet or out.with_name(f"{out.stem}_factsheet.md")
    split = open_split(options.data_dir, options.split, options.layout, candidate.scale, lr_only=options.lr_only)
    device = pick_device(options.device)
    torch.backends.cudnn.benchmark = False
    model = candidate.load_model()
    counts = count(model)
    model = prepare_model(model, device)
    x = probe_input(PREFLIGHT_SIZE, PREFLIGHT_SIZE, candidate.data_range, device)
    preflight, _ = check_forward("forward", model, x, candidate.scale)
    if not preflight.passed:
        raise KitError(f"{candidate.name} gives no valid output ({preflight.reason}): nothing was written; run check")
    if device.type == "cuda":
        torch.cuda.empty_cache()

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".esrkit_package_", dir=out.parent) as staging:
        runner = SplitRunner(model, scale=candidate.scale, data_range=candidate.data_range, device=device,
                             tile=candidate.tile, tile_overlap=candidate.tile_overlap, save_dir=Path(staging))
        result = runner.run(split)
        runtime_s = _mean(result.runtime_ms) / 1e3
        measured = (f"runtime measured by esrkit {__version__} on {device_name(device)}: "
                    f"challenge protocol, mean of {len(split)} {split.name} images, fp32, batch 1, no warm-up")
        text = readme_text(runtime_s, device.type == "cpu", options.extra_data,
                           f"{options.description.strip()} ({measured})" if options.description.strip() else measured)
        images = [Path(staging) / split.name / f"{name}.png" for name in result.names]
        members = write_flat_zip(out, images, {README_NAME: text})
    atomic_write(factsheet_path, factsheet_text(candidate, counts, split, result, device, candidate.data_range, options))
    return PackageResult(out, members, text, factsheet_path, runtime_s)
