"""Enhanced Spatial Attention (ESA, Liu et al. 2020) in the variants the registered entries use.

- :class:`RLFNESA`: RLFN's simplified ESA (RLFN, MLRN);
- :class:`RFDNESA`: the original ESA of RFDN (RFDN, and EFDN's ``att``).

The variants really compute different things (extra convolutions, ReLUs), so each is its own
class rather than one class behind flags.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RLFNESA(nn.Module):
    """ESA as simplified by RLFN (Kong et al. 2022), also used by MLRN.

    conv1 (1x1, n->f) -> conv2 (3x3, stride 2, no padding) -> max-pool 7/3 -> conv3 (3x3)
    -> bilinear back to the input size -> + conv_f(conv1 output) -> conv4 (1x1, f->n)
    -> sigmoid -> multiply the input. No ReLU is applied anywhere (RLFN defines one and never calls it).
    """

    def __init__(self, channels: int, esa_channels: int) -> None:
        super().__init__()
        f = esa_channels
        self.conv1 = nn.Conv2d(channels, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1_ = self.conv1(x)
        c1 = self.conv2(c1_)
        v_max = F.max_pool2d(c1, kernel_size=7, stride=3)
        c3 = self.conv3(v_max)
        c3 = F.interpolate(c3, size=x.shape[-2:], mode="bilinear", align_corners=False)
        mask = torch.sigmoid(self.conv4(c3 + self.conv_f(c1_)))
        return x * mask


class RFDNESA(nn.Module):
    """ESA as RFDN (Liu et al. 2020) uses it; EFDN's ``att`` computes exactly the same thing.

    Differences from :class:`RLFNESA`, each explicit here:

    - the reduced width is fixed to ``f = channels // 4`` (12 for RFDN's 50 and EFDN's 48 channels);
    - after the 7/3 max-pool come three 3x3 convs instead of one: ``conv_max`` + ReLU,
      ``conv3`` + ReLU, then ``conv3_`` (no ReLU) -- the ReLUs are really applied here;
    - the ReLU is an ``nn.ReLU`` module, so the official hook counter counts its output elements.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        f = channels // 4
        self.conv1 = nn.Conv2d(channels, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv_max = nn.Conv2d(f, f, 3, padding=1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv3_ = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, channels, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1_ = self.conv1(x)
        c1 = self.conv2(c1_)
        v_max = F.max_pool2d(c1, kernel_size=7, stride=3)
        v_range = self.relu(self.conv_max(v_max))
        c3 = self.relu(self.conv3(v_range))
        c3 = self.conv3_(c3)
        c3 = F.interpolate(c3, size=x.shape[-2:], mode="bilinear", align_corners=False)
        mask = torch.sigmoid(self.conv4(c3 + self.conv_f(c1_)))
        return x * mask
