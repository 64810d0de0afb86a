"""RLFN: Residual Local Feature Network (Kong et al., CVPR Workshops 2022, NTIRE 2022 ESR winner).

RLFB (Sec. 3.2): three 3x3 conv + LeakyReLU(0.05) layers (feature -> mid -> mid -> feature),
add the block input (local residual), a 1x1 conv and RLFN's simplified ESA
(:class:`models.esa.RLFNESA`, 16 channels). Network: conv3x3 head, 4 RLFBs, conv3x3, add the
head's output, conv3x3 to 3*16 channels + PixelShuffle(4). No output clamp.

Registered entry ``RLFN`` (id 1): the pruned model (46 feature / 48 mid channels) that was the
NTIRE 2024 baseline, data range 255. Native keys follow the 2024 file ``team00_rlfn.pth``
(``conv_1``, ``block_1..4``, ``conv_2``, ``upsampler.0``); the 2022 file ``team04_rlfn.pth`` holds
the same tensors as ``fea_conv``, ``B1..B4``, ``LR_conv``, which :func:`rlfn_2022_filter` renames.
"""

from __future__ import annotations

import torch
from torch import nn

from esrkit.entry import Entry
from esrkit.registry import register
from models.esa import RLFNESA

NEGATIVE_SLOPE = 0.05
# 2022 (RLFN_cut) key prefix -> 2024 (RLFN_Prune) key prefix; ``upsampler.`` is the same in both.
KEYS_2022_TO_2024 = {"fea_conv.": "conv_1.", "LR_conv.": "conv_2.", **{f"B{i}.": f"block_{i}." for i in range(1, 5)}}


def _conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    """A same-padded conv with bias."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


class RLFB(nn.Module):
    """Residual local feature block; ``self.act`` is one LeakyReLU module used three times."""

    def __init__(self, channels: int, mid_channels: int, esa_channels: int = 16) -> None:
        super().__init__()
        self.c1_r = _conv(channels, mid_channels, 3)
        self.c2_r = _conv(mid_channels, mid_channels, 3)
        self.c3_r = _conv(mid_channels, channels, 3)
        self.c5 = _conv(channels, channels, 1)
        self.esa = RLFNESA(channels, esa_channels)
        self.act = nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.c1_r(x))
        out = self.act(self.c2_r(out))
        out = self.act(self.c3_r(out))
        return self.esa(self.c5(out + x))


class RLFN(nn.Module):
    """The whole network; ``forward`` takes and returns images in [0, 255] (no clamp)."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        channels: int = 46,
        mid_channels: int = 48,
        esa_channels: int = 16,
        upscale: int = 4,
    ) -> None:
        super().__init__()
        self.conv_1 = _conv(in_channels, channels, 3)
        self.block_1 = RLFB(channels, mid_channels, esa_channels)
        self.block_2 = RLFB(channels, mid_channels, esa_channels)
        self.block_3 = RLFB(channels, mid_channels, esa_channels)
        self.block_4 = RLFB(channels, mid_channels, esa_channels)
        self.conv_2 = _conv(channels, channels, 3)
        self.upsampler = nn.Sequential(_conv(channels, out_channels * upscale**2, 3), nn.PixelShuffle(upscale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.conv_1(x)
        feat = self.block_4(self.block_3(self.block_2(self.block_1(head))))
        return self.upsampler(self.conv_2(feat) + head)


def rlfn_2022_filter(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename 2022 keys (``fea_conv``, ``B1..B4``, ``LR_conv``) to the 2024 ones; others pass unchanged."""
    renamed = {}
    for key, value in state.items():
        old = next((p for p in KEYS_2022_TO_2024 if key.startswith(p)), None)
        renamed[key if old is None else KEYS_2022_TO_2024[old] + key[len(old):]] = value
    return renamed


register(Entry(
    "RLFN",
    RLFN,
    model_id=1,
    scale=4,
    data_range=255.0,
    weights="team00_rlfn.pth",
    checkpoint_filter=rlfn_2022_filter,
    description="RLFN pruned (NTIRE 2022 winner), NTIRE 2024 baseline: 46/48 channels, 4 RLFB, ESA 16",
))
