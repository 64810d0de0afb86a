"""The four official baselines (RFDN, RLFN, EFDN, IMDN) against their official weights and figures.

Exact integers come from ``reference/baselines_complexity.csv`` (measured with the official kits'
code); the rounded figures are the published ones (weights README / kits' READMEs). Weights and
images are read from the shared folder, never copied into the repository.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from esrkit.checkpoint import read_checkpoint, select_state_dict
from esrkit.measure.complexity import fvcore_counts, official_counts, ptflops_counts
from esrkit.imageio import read_rgb, tensor_to_uint8, uint8_to_tensor
from esrkit.imresize import imresize
from esrkit.metrics import psnr
from esrkit.registry import get_entry


@dataclass(frozen=True)
class Published:
    """One row of the published table: params, FLOPs [G] of both official counters, acts [M], #conv."""

    params: int
    flops_model_summary_g: float
    flops_fvcore_g: float
    acts_m: float
    num_conv: int


# entry name -> (file in shared/weights, row in baselines_complexity.csv, data range, published figures)
BASELINES = {
    "RFDN": ("rfdn_ntire2023_team00.pth", "rfdn", 255.0, Published(433_448, 27.10, 27.05, 112.03, 64)),
    "RLFN": ("rlfn_ntire2024_team00.pth", "rlfn", 255.0, Published(317_218, 19.70, 19.67, 80.05, 39)),
    "EFDN": ("efdn_ntire2025_team00.pth", "efdn", 1.0, Published(276_192, 16.73, 16.70, 111.12, 65)),
    "IMDN": ("imdn_ntire2022_baseline.pth", "imdn", 1.0, Published(893_936, 58.53, 58.43, 154.14, 43)),
}
NAMES = list(BASELINES)
OFFICIAL_FILE_NAMES = {
    "RFDN": "team00_rfdn.pth",
    "RLFN": "team00_rlfn.pth",
    "EFDN": "team00_EFDN.pth",
    "IMDN": "imdn_baseline.pth",
}
MODEL_IDS = {"RFDN": 0, "RLFN": 1, "EFDN": 2, "IMDN": 3}
# First key component of the 2024 RLFN file -> the 2022 one, to fabricate a 2022-style checkpoint.
RLFN_2022_NAMES = {"conv_1": "fea_conv", "conv_2": "LR_conv", **{f"block_{i}": f"B{i}" for i in range(1, 5)}}


@pytest.fixture(scope="module")
def models(official_weights_dir: Path) -> dict[str, nn.Module]:
    """Each baseline built from its entry and loaded strictly from its official file."""
    loaded = {}
    for name, (file_name, _, _, _) in BASELINES.items():
        entry = get_entry(name)
        loaded[name] = entry.load(official_weights_dir / file_name).model
    return loaded


@pytest.fixture(scope="module")
def reference(official_weights_dir: Path) -> dict[str, dict[str, str]]:
    """Rows of ``reference/baselines_complexity.csv`` keyed by model."""
    path = official_weights_dir.parent / "reference" / "baselines_complexity.csv"
    if not path.exists():
        pytest.skip(f"{path} is not available")
    with path.open(newline="") as f:
        return {row["model"]: row for row in csv.DictReader(f)}


@pytest.mark.parametrize("name", NAMES)
def test_entry_metadata(name: str) -> None:
    entry = get_entry(name)
    assert (entry.model_id, entry.scale, entry.data_range, entry.weights) == (
        MODEL_IDS[name],
        4,
        BASELINES[name][2],
        OFFICIAL_FILE_NAMES[name],
    )
    assert get_entry(MODEL_IDS[name]) is entry


@pytest.mark.parametrize("name", NAMES)
def test_strict_load_covers_every_tensor(models: dict[str, nn.Module], official_weights_dir: Path, name: str) -> None:
    state, where = select_state_dict(read_checkpoint(official_weights_dir / BASELINES[name][0]))
    assert where is None  # the official files are plain state_dicts
    own = models[name].state_dict()
    assert own.keys() == state.keys()
    assert all(torch.equal(own[k], state[k]) for k in state)


@pytest.mark.parametrize("name", NAMES)
def test_complexity_matches_reference_exactly(
    models: dict[str, nn.Module], reference: dict[str, dict[str, str]], name: str
) -> None:
    row = reference[BASELINES[name][1]]
    counts = official_counts(models[name])
    fv = fvcore_counts(models[name])
    pt = ptflops_counts(models[name])
    assert counts.params == int(row["params"]) == pt.params
    assert counts.flops == int(row["ms_flops"])
    assert counts.activations == int(row["ms_acts"])
    assert counts.num_conv == int(row["ms_num_conv"])
    assert fv.macs == int(row["fvcore_total"])
    assert fv.macs_by_operator["conv"] == int(row["fvcore_conv"])
    assert fv.macs_by_operator.get("upsample_bilinear2d", 0) == int(row["fvcore_upsample_bilinear2d"])
    assert fv.unsupported_ops == json.loads(row["fvcore_unsupported"])
    assert pt.macs == int(row["ptflops_pytorch_macs"])

    published = BASELINES[name][3]
    assert counts.params == published.params
    assert round(counts.flops / 1e9, 2) == published.flops_model_summary_g
    assert round(fv.macs / 1e9, 2) == published.flops_fvcore_g
    assert round(counts.activations / 1e6, 2) == published.acts_m
    assert counts.num_conv == published.num_conv


def test_rlfn_2022_key_naming_loads_via_filter(
    models: dict[str, nn.Module], official_weights_dir: Path, tmp_path: Path
) -> None:
    state, _ = select_state_dict(read_checkpoint(official_weights_dir / BASELINES["RLFN"][0]))
    renamed = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        renamed[f"{RLFN_2022_NAMES.get(head, head)}.{rest}"] = value
    assert any(k.startswith("B1.") for k in renamed) and any(k.startswith("fea_conv.") for k in renamed)
    path_2022 = tmp_path / "team04_rlfn.pth"
    torch.save(renamed, path_2022)

    entry = get_entry("RLFN")
    model_2022 = entry.load(path_2022).model
    x = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        assert torch.equal(model_2022(x), models["RLFN"](x))


@pytest.mark.parametrize("name", NAMES)
def test_forward_shape(models: dict[str, nn.Module], name: str) -> None:
    x = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(2)) * BASELINES[name][2]
    with torch.no_grad():
        assert models[name](x).shape == (1, 3, 96, 96)


def test_efdn_output_is_clamped(models: dict[str, nn.Module]) -> None:
    x = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(3)) * 4 - 2
    with torch.no_grad():
        y = models["EFDN"](x)
    assert y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("name", NAMES)
def test_data_range_on_set5(models: dict[str, nn.Module], benchmarks_dir: Path, name: str) -> None:
    """At its data range each baseline beats bicubic clearly on Set5 img_001; at the other it does not."""
    hr_path = benchmarks_dir / "Set5" / "HR" / "img_001.png"
    lr_path = benchmarks_dir / "Set5" / "LR_bicubic" / "X4" / "img_001x4.png"
    if not (hr_path.exists() and lr_path.exists()):
        pytest.skip("Set5 img_001 is not available")
    lr = read_rgb(lr_path)
    hr = read_rgb(hr_path)[: 4 * lr.shape[0], : 4 * lr.shape[1]]  # the kits' modcrop, LR = floor(HR / 4)
    bicubic = psnr(imresize(lr, 4), hr, crop_border=4)

    def sr_psnr(data_range: float) -> float:
        with torch.no_grad():
            sr = models[name](uint8_to_tensor(lr, data_range))
        return psnr(tensor_to_uint8(sr, data_range), hr, crop_border=4)

    right = BASELINES[name][2]
    wrong = 1.0 if right == 255.0 else 255.0
    assert sr_psnr(right) > bicubic + 1.0
    assert sr_psnr(wrong) < bicubic - 2.0
