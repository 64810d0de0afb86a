"""MLRN: Mixer-based Local Residual Network (Gendy et al., CVPR Workshops 2023, Sec. 3, eqs. 1-10).

MLRB (eqs. 1-5): conv3x3+GELU, conv3x3+GELU, ConvMix (depthwise 3x3+GELU with a residual, then
pointwise 1x1+GELU), add the block input, conv1x1, RLFN's ESA.
Network (eqs. 6-10): conv3x3 head, m MLRBs, conv3x3, add the head's output, conv3x3 to 3*s*s
channels + PixelShuffle, plus bilinear upsampling of the input.

Registered entries:
- ``MLRN-entire``: the NTIRE 2023 entry (Sec. 4.6): 4 blocks, 50 channels, ESA 16, x4, data range 255.
- ``MLRN-x2/x3/x4``: the paper's model (Sec. 4.2): 6 blocks, 58 channels, ESA 16, data range 1.0.
State-dict keys follow RLFN's 2024 naming (``conv_1``, ``block_i``, ``conv_2``, ``upsampler.0``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from esrkit.entry import Entry
from esrkit.registry import register
from models.esa import RLFNESA


class ConvMix(nn.Module):
    """Depthwise 3x3 + GELU with a residual (eq. 3), then pointwise 1x1 + GELU (eq. 4)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.pw = nn.Conv2d(channels, channels, 1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.dw(x)) + x
        return self.act(self.pw(x))


class MLRB(nn.Module):
    """Mixer-based local residual block (eqs. 1-5)."""

    def __init__(self, channels: int, esa_channels: int) -> None:
        super().__init__()
        self.c1_r = nn.Conv2d(channels, channels, 3, padding=1)
        self.c2_r = nn.Conv2d(channels, channels, 3, padding=1)
        self.mix = ConvMix(channels)
        self.c5 = nn.Conv2d(channels, channels, 1)
        self.esa = RLFNESA(channels, esa_channels)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.c1_r(x))
        out = self.act(self.c2_r(out))
        out = self.mix(out) + x
        return self.esa(self.c5(out))


class MLRN(nn.Module):
    """The whole network (eqs. 6-10); ``forward`` takes and returns images in [0, data_range]."""

    def __init__(
        self,
        num_blocks: int = 4,
        channels: int = 50,
        esa_channels: int = 16,
        upscale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        self.upscale = upscale
        self.conv_1 = nn.Conv2d(in_channels, channels, 3, padding=1)
        for i in range(1, num_blocks + 1):
            self.add_module(f"block_{i}", MLRB(channels, esa_channels))
        self.num_blocks = num_blocks
        self.conv_2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.upsampler = nn.Sequential(
            nn.Conv2d(channels, out_channels * upscale**2, 3, padding=1),
            nn.PixelShuffle(upscale),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.conv_1(x)
        feat = head
        for i in range(1, self.num_blocks + 1):
            feat = getattr(self, f"block_{i}")(feat)
        feat = self.conv_2(feat) + head
        bilinear = F.interpolate(x, scale_factor=self.upscale, mode="bilinear", align_corners=False)
        return self.upsampler(feat) + bilinear


register(Entry(
    "MLRN-entire",
    MLRN,
    model_id=10,
    kwargs={"num_blocks": 4, "channels": 50, "esa_channels": 16, "upscale": 4},
    scale=4,
    data_range=255.0,
    weights="mlrn_entire_x4.pth",
    description="MLRN-entire, NTIRE 2023 ESR entry of team GarasSjtu: 4 MLRB, 50 channels, ESA 16",
))

for _scale, _id in ((2, 11), (3, 12), (4, 13)):
    register(Entry(
        f"MLRN-x{_scale}",
        MLRN,
        model_id=_id,
        kwargs={"num_blocks": 6, "channels": 58, "esa_channels": 16, "upscale": _scale},
        scale=_scale,
        data_range=1.0,
        weights=f"mlrn_x{_scale}.pth",
        description=f"MLRN as in the paper (Table 1): 6 MLRB, 58 channels, ESA 16, x{_scale}",
    ))
