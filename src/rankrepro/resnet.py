"""ResNet-18 layout for the locality experiments of chapter 3 (§3.2): random init, one output logit.

Stem, then four stages of two BasicBlocks (3×3 conv → BN → ReLU → 3×3 conv → BN, plus the identity or a 1×1
conv → BN shortcut, then ReLU) of widths ``widths``, the first block of stages 2–4 with stride 2; global average
pooling and a linear head to one logit. Stems:

- ``paper``: 7×7 conv stride 2 (padding 3) → BN → ReLU → 3×3 max-pool stride 2 (padding 1), as torchvision's
  ResNet-18 used by the paper (widths 64, 128, 256, 512);
- ``small``: 3×3 conv stride 1 (padding 1) → BN → ReLU, no downsampling, for the small CPU tier
  (e.g. widths 8, 16, 32, 64 on 16 × 96 canvases).

Initialisation as torchvision's: conv weights N(0, 2 / fan_out) (Kaiming, fan-out), BN weight 1 and bias 0, linear
weight and bias U(±1/√fan_in); every draw from the passed generator (torch's global one when None).

The theoretical receptive field of one output unit follows the recursion r ← r + (k − 1)·j, j ← j·s over the
(kernel k, stride s) layers of the longest path (the 1×1 shortcuts never widen it): 435 px for the paper stem,
109 px for the small one (widths do not matter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rankrepro.errors import ConfigError

STEMS = ("paper", "small")
PAPER_WIDTHS = (64, 128, 256, 512)
SMALL_WIDTHS = (8, 16, 32, 64)
BLOCKS_PER_STAGE = 2


@dataclass(frozen=True)
class ResNetConfig:
    """Widths of the four stages, the stem (``paper`` or ``small``) and the input channels (1 grey, 3 RGB)."""

    widths: tuple[int, ...] = PAPER_WIDTHS
    stem: str = "paper"
    in_channels: int = 3

    def __post_init__(self) -> None:
        if self.stem not in STEMS:
            raise ConfigError(f"unknown ResNet stem '{self.stem}' (expected one of {STEMS})")
        if len(self.widths) != 4 or any(int(w) != w or w < 1 for w in self.widths):
            raise ConfigError(f"ResNet-18 needs four positive stage widths, got {self.widths}")
        if self.in_channels not in (1, 3):
            raise ConfigError(f"ResNet input channels must be 1 or 3, got {self.in_channels}")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))


def conv_layout(config: ResNetConfig) -> list[tuple[int, int]]:
    """(kernel, stride) of the spatial layers on the longest input-to-output path, in order: stem conv (and
    max-pool), then two 3×3 convs per block, the first of stages 2–4 with stride 2."""
    stem = [(7, 2), (3, 2)] if config.stem == "paper" else [(3, 1)]
    blocks = [layer for stage in range(4) for block in range(BLOCKS_PER_STAGE)
              for layer in ((3, 2 if stage > 0 and block == 0 else 1), (3, 1))]
    return stem + blocks


def receptive_field(config: ResNetConfig) -> int:
    """Side in pixels of the theoretical receptive field of one output unit: r = 1 + Σ_l (k_l − 1)·Π_{m<l} s_m."""
    size, jump = 1, 1
    for kernel, stride in conv_layout(config):
        size += (kernel - 1) * jump
        jump *= stride
    return size


class BasicBlock(nn.Module):
    """relu(bn(conv3×3(relu(bn(conv3×3_s(x))))) + shortcut(x)); the shortcut is a 1×1 conv → BN when the stride or
    the width changes, else the identity."""

    def __init__(self, in_width: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_width, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.shortcut = nn.Identity()
        if stride != 1 or in_width != width:
            self.shortcut = nn.Sequential(nn.Conv2d(in_width, width, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(width))

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 layout (BasicBlock, [2, 2, 2, 2]) with one output logit: ``(B, C, H, W)`` → ``(B, 1)``."""

    def __init__(self, config: ResNetConfig = ResNetConfig(), *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        first = config.widths[0]
        if config.stem == "paper":
            self.stem = nn.Sequential(nn.Conv2d(config.in_channels, first, 7, stride=2, padding=3, bias=False),
                                      nn.BatchNorm2d(first), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1))
        else:
            self.stem = nn.Sequential(nn.Conv2d(config.in_channels, first, 3, stride=1, padding=1, bias=False),
                                      nn.BatchNorm2d(first), nn.ReLU())
        blocks, in_width = [], first
        for stage, width in enumerate(config.widths):
            for block in range(BLOCKS_PER_STAGE):
                blocks.append(BasicBlock(in_width, width, 2 if stage > 0 and block == 0 else 1))
                in_width = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(in_width, 1)
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """torchvision's initialisation (see the module docstring), drawn from ``generator``."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                bound = 1 / math.sqrt(module.in_features)
                nn.init.uniform_(module.weight, -bound, bound, generator=generator)
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)

    def features(self, x: Tensor) -> Tensor:
        """The last stage's feature map ``(B, widths[-1], H', W')`` before pooling."""
        return self.blocks(self.stem(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean(dim=(-2, -1)))
