"""IMDN: Information Multi-Distillation Network (Hui et al., ACM MM 2019, AIM 2019 winner).

IMDB (Sec. 3.2): four 3x3 convs in sequence; after each of the first three (conv + LeakyReLU 0.05)
the output is split channel-wise into a distilled quarter (16 of 64, kept) and the remaining
three quarters (48, passed on); the fourth conv maps the last 48 channels to 16 (no activation);
the four distilled parts are concatenated and fused by a 1x1 conv (no activation), and the block
input is added. (The contrast-aware channel attention of the paper is absent in this version.)
Network: conv3x3 head; a global residual around 8 IMDBs + conv3x3; conv3x3 to 3*16 channels
+ PixelShuffle(4). No output clamp.

Registered entry ``IMDN`` (id 3): the NTIRE 2022 baseline ``imdn_baseline.pth`` (64 channels,
data range 1.0). The key layout is that of a flattened ``nn.Sequential``: ``model.0`` (head),
``model.1.sub.{0..7}`` (IMDBs) and ``model.1.sub.8`` (conv) inside the residual, ``model.2``
(upsampling conv), ``model.3`` (PixelShuffle, no weights).
"""

from __future__ import annotations

import torch
from torch import nn

from esrkit.entry import Entry
from esrkit.registry import register

NEGATIVE_SLOPE = 0.05


def _conv(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Conv2d:
    """A same-padded conv with bias."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


def _conv_lrelu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv + LeakyReLU, as a Sequential so the keys are ``<name>.0.weight``."""
    return nn.Sequential(_conv(in_channels, out_channels), nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True))


class IMDBlock(nn.Module):
    """Information multi-distillation block with a local residual."""

    def __init__(self, channels: int = 64, distill_rate: float = 0.25) -> None:
        super().__init__()
        self.distilled = int(channels * distill_rate)
        self.remaining = channels - self.distilled
        self.conv1 = _conv_lrelu(channels, channels)
        self.conv2 = _conv_lrelu(self.remaining, channels)
        self.conv3 = _conv_lrelu(self.remaining, channels)
        self.conv4 = _conv(self.remaining, self.distilled)
        self.conv1x1 = _conv(self.distilled * 4, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = (self.distilled, self.remaining)
        d1, r1 = torch.split(self.conv1(x), split, dim=1)
        d2, r2 = torch.split(self.conv2(r1), split, dim=1)
        d3, r3 = torch.split(self.conv3(r2), split, dim=1)
        d4 = self.conv4(r3)
        return x + self.conv1x1(torch.cat([d1, d2, d3, d4], dim=1))


class ShortcutBlock(nn.Module):
    """Global residual: ``x + sub(x)``."""

    def __init__(self, sub: nn.Module) -> None:
        super().__init__()
        self.sub = sub

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sub(x)


class IMDN(nn.Module):
    """The whole network; ``forward`` takes and returns images in [0, 1] (no clamp)."""

    def __init__(
        self, in_channels: int = 3, out_channels: int = 3, channels: int = 64, num_blocks: int = 8, upscale: int = 4
    ) -> None:
        super().__init__()
        body = [IMDBlock(channels) for _ in range(num_blocks)] + [_conv(channels, channels)]
        self.model = nn.Sequential(
            _conv(in_channels, channels),
            ShortcutBlock(nn.Sequential(*body)),
            _conv(channels, out_channels * upscale**2),
            nn.PixelShuffle(upscale),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


register(Entry(
    "IMDN",
    IMDN,
    model_id=3,
    scale=4,
    data_range=1.0,
    weights="imdn_baseline.pth",
    description="IMDN (AIM 2019 winner), NTIRE 2022 baseline: 64 channels, 8 IMDB, global residual",
))
