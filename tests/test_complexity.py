"""Complexity counters on MLRN (the Table 3 entry and the paper's models) and the official
counter's documented quirks on tiny synthetic nets.

The fvcore and ptflops figures for MLRN-entire are checked against closed-form arithmetic over the
architecture (paper eqs. 1-10, 50 channels, ESA 16, 4 blocks, 256x256 LR input), not against the
counters' own output.
"""

from __future__ import annotations

import logging
import sys

import pytest
import torch
from torch import nn

from esrkit.measure.complexity import count_params, fvcore_counts, official_counts, ptflops_counts
from esrkit.errors import KitError
from esrkit.registry import get_entry

# MLRN-entire geometry on the official 3x256x256 input.
HW = 256 * 256
C, F_ESA, BLOCKS, SCALE = 50, 16, 4, 4
ESA_CONV2_HW = 127 * 127  # 3x3, stride 2, no padding: (256 - 3) // 2 + 1
ESA_POOL_HW = 41 * 41  # max-pool 7 / stride 3 on 127: (127 - 7) // 3 + 1
HR_HW = (256 * SCALE) ** 2


def _mlrn_entire_conv_macs() -> int:
    """Conv MACs without bias: prod(kernel) * C_in / groups * C_out * output pixels, summed."""
    per_block = (
        2 * 9 * C * C * HW  # c1_r, c2_r
        + 9 * C * HW  # depthwise 3x3
        + C * C * HW  # pointwise 1x1
        + C * C * HW  # c5
        + C * F_ESA * HW  # esa.conv1
        + F_ESA * F_ESA * HW  # esa.conv_f
        + 9 * F_ESA * F_ESA * ESA_CONV2_HW  # esa.conv2
        + 9 * F_ESA * F_ESA * ESA_POOL_HW  # esa.conv3
        + F_ESA * C * HW  # esa.conv4
    )
    return 9 * 3 * C * HW + BLOCKS * per_block + 9 * C * C * HW + 9 * C * 3 * SCALE**2 * HW


def _mlrn_entire_conv_outputs() -> int:
    """Output elements of every conv (= official activations = ptflops' bias term)."""
    per_block = 5 * C * HW + 2 * F_ESA * HW + C * HW + F_ESA * ESA_CONV2_HW + F_ESA * ESA_POOL_HW
    return C * HW + BLOCKS * per_block + C * HW + 3 * SCALE**2 * HW


@pytest.fixture(scope="module")
def mlrn_entire() -> nn.Module:
    return get_entry("MLRN-entire").build()


def test_mlrn_entire_official_counts(mlrn_entire: nn.Module) -> None:
    counts = official_counts(mlrn_entire)
    assert counts.params == 274_710
    assert counts.num_conv == 43
    assert counts.activations == 97_870_976 == _mlrn_entire_conv_outputs()
    # GELU counts 0 in the official counter, so its FLOPs are the conv MACs alone.
    assert counts.flops == 16_854_452_224 == _mlrn_entire_conv_macs()
    assert round(counts.flops / 1e9, 2) == 16.85


@pytest.mark.parametrize("name, params", [("MLRN-x2", 487_838), ("MLRN-x3", 495_683), ("MLRN-x4", 506_666)])
def test_mlrn_paper_params(name: str, params: int) -> None:
    assert count_params(get_entry(name).build()) == params


def test_mlrn_entire_fvcore(mlrn_entire: nn.Module, caplog: pytest.LogCaptureFixture) -> None:
    """fvcore = conv MACs + 4 per output element of each bilinear upsample (4 ESA ones, the x4 input one)."""
    bilinear = 4 * (BLOCKS * F_ESA * HW + 3 * HR_HW)
    with caplog.at_level(logging.WARNING):
        fv = fvcore_counts(mlrn_entire)
    assert fv.macs_by_operator == {"conv": _mlrn_entire_conv_macs(), "upsample_bilinear2d": bilinear}
    assert fv.macs == _mlrn_entire_conv_macs() + bilinear == 16_883_812_352
    # 4 GELU per block; adds: ConvMix residual, block residual and ESA per block, global, bilinear.
    assert fv.unsupported_ops == {
        "aten::gelu": 4 * BLOCKS,
        "aten::add": 3 * BLOCKS + 2,
        "aten::max_pool2d": BLOCKS,
        "aten::sigmoid": BLOCKS,
        "aten::mul": BLOCKS,
        "aten::pixel_shuffle": 1,
    }
    assert not [r for r in caplog.records if r.name.startswith("fvcore")], "fvcore's warnings should be silenced"


def test_mlrn_entire_ptflops(mlrn_entire: nn.Module) -> None:
    """ptflops (pytorch backend) = conv MACs
    + bias: one per output element of every conv (all have a bias)
    + GELU: twice the output elements per nn.GELU call (its module hook and its F.gelu patch both fire)
    + F.interpolate: its output elements, once (not 4x as fvcore)
    + F.max_pool2d: its input elements.
    Sigmoid, the ``+`` / ``*`` operators and pixel shuffle add nothing.
    """
    gelu = 2 * (4 * BLOCKS * C * HW)
    interpolate = BLOCKS * F_ESA * HW + 3 * HR_HW
    max_pool = BLOCKS * F_ESA * ESA_CONV2_HW
    pt = ptflops_counts(mlrn_entire)
    assert pt.macs == _mlrn_entire_conv_macs() + _mlrn_entire_conv_outputs() + gelu + interpolate + max_pool
    assert pt.macs == 17_065_553_088
    assert pt.params == 274_710


def test_counters_leave_the_model_untouched(mlrn_entire: nn.Module) -> None:
    before = {k: v.clone() for k, v in mlrn_entire.state_dict().items()}
    flags = [p.requires_grad for p in mlrn_entire.parameters()]
    fvcore_counts(mlrn_entire, (3, 16, 16))
    ptflops_counts(mlrn_entire, (3, 16, 16))
    assert [p.requires_grad for p in mlrn_entire.parameters()] == flags
    assert all(torch.equal(v, before[k]) for k, v in mlrn_entire.state_dict().items())
    assert not any(m._forward_hooks for m in mlrn_entire.modules())


@pytest.mark.parametrize("module_name, counter", [("fvcore", fvcore_counts), ("ptflops", ptflops_counts)])
def test_missing_optional_dependency_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, module_name: str, counter
) -> None:
    monkeypatch.setitem(sys.modules, module_name, None)  # makes ``import module_name`` raise ImportError
    monkeypatch.setitem(sys.modules, f"{module_name}.nn", None)
    with pytest.raises(KitError, match=f"{module_name} is not installed"):
        counter(nn.Conv2d(3, 3, 1), (3, 8, 8))


# --- the official counter's documented quirks -----------------------------------------------------


class TwiceConv(nn.Module):
    """One conv module called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.conv(x))


def test_official_conv_transpose_uses_output_size() -> None:
    counts = official_counts(nn.ConvTranspose2d(4, 4, 2, stride=2), (4, 8, 8))
    assert counts.flops == 16_384  # 2*2 * 4 * 4 * 16*16 output pixels; the true MAC count is 4096
    assert (counts.activations, counts.num_conv) == (4 * 16 * 16, 1)


def test_official_activation_modules() -> None:
    assert official_counts(nn.LeakyReLU(0.05), (3, 8, 8)).flops == 3 * 8 * 8
    assert official_counts(nn.GELU(), (3, 8, 8)).flops == 0


def test_official_linear_on_tokens_counts_batch_n_n() -> None:
    # Linear(16 -> 32) on 64 tokens: the kit's formula gives 1 * 64 * 64, the true MACs 64 * 16 * 32.
    counts = official_counts(nn.Linear(16, 32), (64, 16))
    assert counts.flops == 1 * 64 * 64 == 4096
    assert (counts.activations, counts.num_conv) == (0, 0)


def test_official_counts_calls_not_modules() -> None:
    counts = official_counts(TwiceConv(), (3, 8, 8))
    assert (counts.num_conv, counts.activations, counts.flops) == (2, 2 * 3 * 64, 2 * 3 * 3 * 64)
