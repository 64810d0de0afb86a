"""EFDN: Edge-enhanced Feature Distillation Network (Wang, NTIRE 2022 ESR, team NKU-ESR), deploy form.

At training time each 3x3 layer is an edge-enhanced diverse branch block (EDBB: 3x3, 1x1-3x3,
1x1-Sobel/Laplacian branches...); this is the deploy-time network in which every EDBB is already
re-parameterised into one 3x3 conv (``rep_conv``) followed by a per-channel PReLU.

Cell: 1x1 conv + PReLU, two 3x3 ``rep_conv`` + PReLU in sequence; the cell input and the three
outputs each go through a 1x1 "branch" conv to 24 channels, are concatenated (96) and fused by a
1x1 conv; then ESA (``att``, the same computation as RFDN's, :class:`models.esa.RFDNESA`) and the
cell input is added. Network: conv3x3 head, 4 cells linked by 1x1 ``local_fuse`` convs over pairs
of cell outputs, add the head's output, conv3x3 to 3*16 channels + PixelShuffle(4), clamp to [0, 1].

Forward quirk kept from the original: the second and third ``local_fuse`` both concatenate the
output of cell 2 (``out2``), not that of the preceding cell -- the weights were trained that way.

Registered entry ``EFDN`` (id 2): the NTIRE 2025 baseline ``team00_EFDN.pth`` (identical to the
2022 ``team01_efdn.pth``), 48 channels, data range 1.0.
"""

from __future__ import annotations

import torch
from torch import nn

from esrkit.entry import Entry
from esrkit.registry import register
from models.esa import RFDNESA


class ConvPReLU(nn.Module):
    """``conv1`` of a cell: 1x1 conv + per-channel PReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1x1 = nn.Conv2d(channels, channels, 1)
        self.act = nn.PReLU(num_parameters=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv1x1(x))


class RepConvPReLU(nn.Module):
    """A re-parameterised EDBB: one 3x3 conv (``rep_conv``) + per-channel PReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.rep_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.PReLU(num_parameters=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.rep_conv(x))


class Cell(nn.Module):
    """EFDN cell: three layers, branch-and-fuse distillation, ESA, residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvPReLU(channels)
        self.conv2 = RepConvPReLU(channels)
        self.conv3 = RepConvPReLU(channels)
        self.fuse = nn.Conv2d(channels * 2, channels, 1)
        self.att = RFDNESA(channels)
        self.branch = nn.ModuleList(nn.Conv2d(channels, channels // 2, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(x)
        out2 = self.conv2(out1)
        out3 = self.conv3(out2)
        parts = [branch(t) for branch, t in zip(self.branch, (x, out1, out2, out3))]
        out = self.att(self.fuse(torch.cat(parts, dim=1)))
        out += x
        return out


class EFDN(nn.Module):
    """The whole deploy-time network; ``forward`` takes images in [0, 1] and returns them clamped to [0, 1]."""

    def __init__(self, scale: int = 4, in_channels: int = 3, channels: int = 48, out_channels: int = 3) -> None:
        super().__init__()
        self.head = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.cells = nn.ModuleList(Cell(channels) for _ in range(4))
        self.local_fuse = nn.ModuleList(nn.Conv2d(channels * 2, channels, 1) for _ in range(3))
        self.tail = nn.Sequential(nn.Conv2d(channels, out_channels * scale**2, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out0 = self.head(x)
        out1 = self.cells[0](out0)
        out2 = self.cells[1](out1)
        out2_fuse = self.local_fuse[0](torch.cat([out1, out2], dim=1))
        out3 = self.cells[2](out2_fuse)
        out3_fuse = self.local_fuse[1](torch.cat([out2, out3], dim=1))
        out4 = self.cells[3](out3_fuse)
        out4_fuse = self.local_fuse[2](torch.cat([out2, out4], dim=1))  # out2 again: the original's quirk
        return self.tail(out4_fuse + out0).clamp(0, 1)


register(Entry(
    "EFDN",
    EFDN,
    model_id=2,
    scale=4,
    data_range=1.0,
    weights="team00_EFDN.pth",
    description="EFDN (NTIRE 2022, NKU-ESR), NTIRE 2025 baseline, deploy form: 48 channels, 4 cells, ESA f=12",
))
