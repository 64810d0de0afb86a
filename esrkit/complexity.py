"""Model complexity as the official NTIRE kits count it, on a 3x256x256 LR input.

``official_counts`` re-implements the convention of the kits' ``utils/model_summary.py`` (the
hook counter behind the 2022-2023 FLOPs column and every year's activations and #conv), written
from its documented rules (``OFFICIAL_KITS.md`` section 2), quirks included:

- hooks see ``nn.Module`` instances only; functional calls and tensor operators count nothing;
- conv FLOPs are MACs without bias: prod(kernel) * C_in * C_out / groups * H_out * W_out;
  a transposed conv uses the *output* size (the kit's overcount by stride^2);
- nn.ReLU/PReLU/ELU/LeakyReLU/ReLU6 count their output elements; GELU, SiLU, sigmoid, pooling,
  interpolation and pixel shuffle count 0; BatchNorm2d counts elements x (2 if affine);
  nn.Linear counts batch * in.shape[1] * out.shape[1] (the kit's formula, wrong for 3-D input);
- activations = sum of output elements of every nn.Conv2d / nn.ConvTranspose2d call;
  #conv = number of such calls (a module called twice counts twice).

Each count runs on a fresh copy of the model, because hooks of different counters interfere.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from math import prod

import torch
from torch import nn

INPUT_SHAPE = (3, 256, 256)
RELU_FAMILY = (nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6)
CONVS = (nn.Conv2d, nn.ConvTranspose2d)


@dataclass(frozen=True)
class OfficialCounts:
    """Counts under the official convention. ``flops`` are MACs, as the kits (and Table 3) use."""

    params: int
    flops: int
    activations: int
    num_conv: int


def count_params(model: nn.Module) -> int:
    """All parameters, no buffers (``sum(p.numel() for p in model.parameters())``)."""
    return sum(p.numel() for p in model.parameters())


def _layer_flops(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    if isinstance(module, CONVS):
        # The kit multiplies by the output spatial size for transposed convs too.
        k = prod(module.kernel_size)
        return k * module.in_channels * module.out_channels // module.groups * output.numel() // module.out_channels
    if isinstance(module, RELU_FAMILY):
        return output.numel()
    if isinstance(module, nn.BatchNorm2d):
        return inputs[0].numel() * (2 if module.affine else 1)
    if isinstance(module, nn.Linear):
        return inputs[0].shape[0] * inputs[0].shape[1] * output.shape[1]
    return 0


def official_counts(model: nn.Module, input_shape: tuple[int, ...] = INPUT_SHAPE) -> OfficialCounts:
    """Params, FLOPs (MACs), activations and #conv of ``model`` under the official convention."""
    model = copy.deepcopy(model).eval().cpu()
    totals = {"flops": 0, "acts": 0, "convs": 0}

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        totals["flops"] += _layer_flops(module, inputs, output)
        if isinstance(module, CONVS):
            totals["acts"] += output.numel()
            totals["convs"] += 1

    counted = CONVS + RELU_FAMILY + (nn.BatchNorm2d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, counted)]
    try:
        with torch.no_grad():
            model(torch.rand(1, *input_shape, generator=torch.Generator().manual_seed(0)))
    finally:
        for h in handles:
            h.remove()
    return OfficialCounts(count_params(model), totals["flops"], totals["acts"], totals["convs"])
