"""RFDN: Residual Feature Distillation Network (Liu, Tang and Wu, ECCV Workshops 2020, AIM 2020 winner).

RFDB (Sec. 3.2): three distillation steps, each a 1x1 "distilled" conv (to nf/2 channels) beside a
3x3 "refined" conv wrapped in a shallow residual (the SRB, LeakyReLU after the addition); a fourth
3x3 conv on the last refined features; concatenation of the four nf/2-channel outputs, a 1x1
fusion conv and ESA (:class:`models.esa.RFDNESA`, f = nf/4). LeakyReLU slope 0.05 throughout.
Network: conv3x3 head, 4 RFDBs, 1x1 fusion of all block outputs + LeakyReLU, conv3x3, add the
head's output, conv3x3 to 3*16 channels + PixelShuffle(4). No output clamp.

Registered entry ``RFDN`` (id 0): the NTIRE 2023 baseline (``team00_rfdn.pth``, identical to the
2022 kit's ``rfdn_baseline.pth``), nf = 50, data range 255. Keys: ``fea_conv``, ``B1..B4``,
``c.0``, ``LR_conv``, ``upsampler.0``.
"""

from __future__ import annotations

import torch
from torch import nn

from esrkit.entry import Entry
from esrkit.registry import register
from models.esa import RFDNESA

NEGATIVE_SLOPE = 0.05


def _conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    """A same-padded conv with bias."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


class RFDB(nn.Module):
    """Residual feature distillation block; ``self.act`` is one LeakyReLU module used seven times."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        distilled = channels // 2
        self.c1_d = _conv(channels, distilled, 1)
        self.c1_r = _conv(channels, channels, 3)
        self.c2_d = _conv(channels, distilled, 1)
        self.c2_r = _conv(channels, channels, 3)
        self.c3_d = _conv(channels, distilled, 1)
        self.c3_r = _conv(channels, channels, 3)
        self.c4 = _conv(channels, distilled, 3)
        self.act = nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True)
        self.c5 = _conv(distilled * 4, channels, 1)
        self.esa = RFDNESA(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.act(self.c1_d(x))
        r1 = self.act(self.c1_r(x) + x)
        d2 = self.act(self.c2_d(r1))
        r2 = self.act(self.c2_r(r1) + r1)
        d3 = self.act(self.c3_d(r2))
        r3 = self.act(self.c3_r(r2) + r2)
        d4 = self.act(self.c4(r3))
        return self.esa(self.c5(torch.cat([d1, d2, d3, d4], dim=1)))


class RFDN(nn.Module):
    """The whole network; ``forward`` takes and returns images in [0, 255] (no clamp)."""

    def __init__(self, in_channels: int = 3, channels: int = 50, out_channels: int = 3, upscale: int = 4) -> None:
        super().__init__()
        self.fea_conv = _conv(in_channels, channels, 3)
        self.B1 = RFDB(channels)
        self.B2 = RFDB(channels)
        self.B3 = RFDB(channels)
        self.B4 = RFDB(channels)
        self.c = nn.Sequential(_conv(channels * 4, channels, 1), nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True))
        self.LR_conv = _conv(channels, channels, 3)
        self.upsampler = nn.Sequential(_conv(channels, out_channels * upscale**2, 3), nn.PixelShuffle(upscale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.fea_conv(x)
        b1 = self.B1(head)
        b2 = self.B2(b1)
        b3 = self.B3(b2)
        b4 = self.B4(b3)
        fused = self.c(torch.cat([b1, b2, b3, b4], dim=1))
        return self.upsampler(self.LR_conv(fused) + head)


register(Entry(
    "RFDN",
    RFDN,
    model_id=0,
    scale=4,
    data_range=255.0,
    weights="team00_rfdn.pth",
    description="RFDN (AIM 2020 winner), NTIRE 2023 baseline: nf 50, 4 RFDB, ESA f=12",
))
