"""``scoring-program``: the online phase's scoring program, as the zip the organisers upload to CodaLab / CodaBench.

During the development and test phases the teams upload the SR images of the split's LR images; the
platform unpacks the program into ``$program``, the phase's reference data (the hidden HR images) into
``$input/ref`` and the upload into ``$input/res``, and runs the ``command`` of the program's ``metadata`` file;
the program writes the leaderboard's scores into ``$output`` (``scores.txt`` for CodaLab, ``scores.json`` for
CodaBench, which reads either) and, for the detailed-results page, ``detailed_results.html``.

The zip holds three files: ``metadata``, the standalone scorer ``score.py``
(:mod:`esrkit.submission.scoring_program`, zipped as it is: Python 3.8+, numpy and Pillow, never the kit) and
``config.json``, the choices made here: which metrics (the kit's :data:`esrkit.metrics.METRICS` table), which
reference folders mean which split (:data:`esrkit.datasets.LAYOUTS`), the year's PSNR bars and set sizes
(:data:`esrkit.challenge.YEARS`) and the kit's image-size limit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esrkit import __version__
from esrkit.atomic import check_writable_file
from esrkit.challenge import YEARS, year_rules
from esrkit.datasets import LAYOUTS
from esrkit.errors import KitError
from esrkit.imageio import DEFAULT_MAX_PIXELS
from esrkit.metrics import selected
from esrkit.submission.package import write_flat_zip

SCORER = Path(__file__).with_name("scoring_program") / "score.py"
CONFIG_NAME = "config.json"  # score.py reads it from beside itself
METADATA_NAME = "metadata"
# The platforms replace $program, $input and $output (CodaLab's "Building a Scoring Program" page; CodaBench's
# compute worker does the same for a v1 program) and run the line; `python3` is on the default images' PATH.
COMMAND = "python3 $program/score.py $input $output"
SCALE = 4  # the challenge is x4: HR modcropped to 4, a 4-pixel border
FLAT_SPLIT = "valid"  # a reference that is a plain folder of HR images: the development phase's split
SPLIT_LABELS = {"valid": "Val", "test": "Test", "hybrid_test": "Hybrid test"}  # as the official results.txt


@dataclass(frozen=True)
class Column:
    """One leaderboard column: the key the program writes, and how to show it."""

    key: str
    title: str
    decimals: int


@dataclass(frozen=True)
class ScoringProgram:
    """What was written: the zip, its members, its settings and the leaderboard columns they give."""

    zip_path: Path
    members: list[str]
    config: dict[str, Any]
    columns: list[Column]


def scoring_config(year: int | None, ssim: bool) -> dict[str, Any]:
    """The settings baked into the zip: without ``year`` every layout's HR folder is known and no bar applies."""
    rules = year_rules(year) if year is not None else None
    layouts = [rules.layout] if rules is not None else [name for name in LAYOUTS if name != "folder"]
    folders = {spec.hr_dir: split for name in layouts for split, spec in LAYOUTS[name].items()}
    # Another year's HR folders are refused by name; the benchmark layout's "HR" is too plain a name to refuse.
    foreign = {spec.hr_dir: layout_years(name) for name in LAYOUTS if name not in layouts
               for spec in LAYOUTS[name].values() if spec.hr_dir not in (".", "HR", *folders)}
    return {
        "format": 1,
        "built_by": f"esrkit {__version__}",
        "challenge": f"NTIRE {year} Efficient SR" if year is not None else "Efficient SR (esrkit)",
        "year": year,
        "scale": SCALE,
        "metrics": [{"name": m.name, "label": m.label, "decimals": int(m.fmt.strip(".f"))}
                    for m in selected(ssim=ssim)],
        "reference_folders": folders,
        "foreign_folders": foreign,
        "flat_split": FLAT_SPLIT,
        "bars": dict(rules.bars) if rules is not None else {},
        "set_sizes": dict(rules.set_sizes) if rules is not None else {},
        "sets": rules.sets if rules is not None else "",
        "max_pixels": DEFAULT_MAX_PIXELS,
    }


def layout_years(layout: str) -> str:
    """``the ntire2023 layout (NTIRE 2022-2023)``: how a message names another layout."""
    years = [str(y) for y, rules in YEARS.items() if rules.layout == layout]
    return f"the {layout} layout" + (f" (NTIRE {years[0]}-{years[-1]})" if len(years) > 1 else
                                     f" (NTIRE {years[0]})" if years else "")


def leaderboard_columns(config: dict[str, Any]) -> list[Column]:
    """Every key the program can write, split by split (a phase writes its own split's): ``valid_ave_psnr`` ...,
    the names the official results.json gives the split's averages."""
    splits = list(dict.fromkeys([config["flat_split"], *config["reference_folders"].values()]))
    return [Column(f"{split}_ave_{m['name']}", f"{SPLIT_LABELS.get(split, split)} {m['label']}", m["decimals"])
            for split in splits for m in config["metrics"]]


def codabench_leaderboard(columns: list[Column]) -> str:
    """The ``leaderboards:`` block of a CodaBench competition.yaml for these columns (higher is better)."""
    lines = ["leaderboards:", "  - title: Results", "    key: main", "    columns:"]
    for index, column in enumerate(columns):
        lines += [f"      - title: {column.title}", f"        key: {column.key}", f"        index: {index}",
                  "        sorting: desc"]
    return "\n".join(lines) + "\n"


def metadata_text(config: dict[str, Any]) -> str:
    description = f"{config['challenge']}: PSNR of the uploaded SR images, scored by {config['built_by']}"
    return f"command: {COMMAND}\ndescription: {json.dumps(description)}\n"


def write_scoring_program(out: Path, year: int | None = None, ssim: bool = False) -> ScoringProgram:
    """Write the zip (it replaces ``out`` only once complete)."""
    if out.suffix.lower() != ".zip":
        raise KitError(f"--out {out} must be a .zip file (the platforms take the scoring program as a zip)")
    check_writable_file(out, "--out")
    if not SCORER.is_file():
        raise KitError(f"the scorer {SCORER} is missing from the kit: reinstall it (git checkout -- {SCORER.name})")
    config = scoring_config(year, ssim)
    members = write_flat_zip(out, [SCORER], {METADATA_NAME: metadata_text(config),
                                             CONFIG_NAME: json.dumps(config, indent=2) + "\n"})
    return ScoringProgram(out, members, config, leaderboard_columns(config))
