"""Fully convolutional networks (Long, Shelhamer & Darrell 2015), written here for any band count.

A VGG-style encoder (with batch norm, which the paper predates, so it trains from scratch on
small remote-sensing sets) feeds class scores taken at three depths; FCN-32s, -16s and -8s differ
only in how many of those scores they fuse, so all three share :class:`VGGEncoder`.
"""

from __future__ import annotations

import torch
from torch import nn

from deepgeo_runner.ml.models._shape import check_input, crop_padding, pad_to_multiple

# Convolutions per VGG block (VGG-16) and each block's channels as multiples of ``width``.
VGG16_BLOCKS: tuple[int, ...] = (2, 2, 3, 3, 3)
VGG16_MULTIPLIERS: tuple[int, ...] = (1, 2, 4, 8, 8)
PAD_MODES = {"reflect": "reflect", "replicate": "replicate", "zeros": "constant",
             "constant": "constant"}


def bilinear_kernel(channels: int, factor: int) -> torch.Tensor:
    """ConvTranspose2d weight that performs per-channel bilinear upsampling by ``factor``.

    The paper initializes its learnable upsampling this way so training starts from plain
    interpolation rather than noise.
    """
    size = 2 * factor - factor % 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    coords = torch.arange(size, dtype=torch.float32)
    profile = 1 - (coords - center).abs() / factor
    kernel = profile[:, None] * profile[None, :]
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = kernel
    return weight


def bilinear_upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    """Learnable ×``factor`` upsampling (exact: n → factor·n), initialized to bilinear."""
    size = 2 * factor - factor % 2
    layer = nn.ConvTranspose2d(channels, channels, kernel_size=size, stride=factor,
                               padding=(size - factor) // 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(bilinear_kernel(channels, factor))
    return layer


class VGGEncoder(nn.Module):
    """VGG-16-style encoder returning the pool3, pool4 and fc7 features FCN heads score.

    Five blocks of 3×3 conv+BN+ReLU (2, 2, 3, 3, 3 convs) each followed by 2×2 max-pooling,
    then fc6/fc7 as convolutions. Input H, W must be multiples of 32 (the FCN classes pad).
    """

    def __init__(self, in_channels: int, width: int = 64, fc_channels: int | None = None,
                 fc_kernel: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        if in_channels < 1 or width < 1:
            raise ValueError(f"in_channels and width must be >= 1, got {in_channels}, {width}.")
        if fc_kernel < 1 or fc_kernel % 2 == 0:
            raise ValueError(f"fc_kernel must be odd so fc6 keeps the size, got {fc_kernel}.")
        # The paper's fc layers are 4096 wide (64·width); 16·width keeps them in proportion to
        # the encoder at a quarter of the cost, which suits small remote-sensing training sets.
        fc_channels = fc_channels or 16 * width
        blocks, channels = [], in_channels
        for n_convs, mult in zip(VGG16_BLOCKS, VGG16_MULTIPLIERS, strict=True):
            layers: list[nn.Module] = []
            for _ in range(n_convs):
                layers += [nn.Conv2d(channels, mult * width, 3, padding=1, bias=False),
                           nn.BatchNorm2d(mult * width), nn.ReLU(inplace=True)]
                channels = mult * width
            layers.append(nn.MaxPool2d(2, 2))
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        # No batch norm on fc6/fc7: at 32×32 input they see 1×1 maps, where BN fails for batch 1.
        self.fc = nn.Sequential(
            nn.Conv2d(channels, fc_channels, fc_kernel, padding=fc_kernel // 2),
            nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Conv2d(fc_channels, fc_channels, 1),
            nn.ReLU(inplace=True), nn.Dropout(dropout),
        )
        self.out_channels: tuple[int, int, int] = (4 * width, 8 * width, fc_channels)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pool3 at 1/8, pool4 at 1/16, fc7 at 1/32 of the input size)."""
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats[2], feats[3], self.fc(feats[4])


class _FCN(nn.Module):
    """Shared shell: input check, pad to a multiple of 32, encoder, head, crop back."""

    stride = 32

    def __init__(self, in_channels: int, classes: int, width: int = 64,
                 fc_channels: int | None = None, fc_kernel: int = 3, dropout: float = 0.5,
                 pad_mode: str = "reflect") -> None:
        super().__init__()
        if classes < 1:
            raise ValueError(f"classes must be >= 1, got {classes}.")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {sorted(PAD_MODES)}, got {pad_mode!r}.")
        self.in_channels, self.classes, self.pad_mode = in_channels, classes, PAD_MODES[pad_mode]
        self.encoder = VGGEncoder(in_channels, width, fc_channels, fc_kernel, dropout)
        c3, c4, c7 = self.encoder.out_channels
        self.score_fr = nn.Conv2d(c7, classes, 1)
        self._build_head(c3, c4, classes)

    def _build_head(self, c3: int, c4: int, classes: int) -> None:
        raise NotImplementedError

    def _decode(self, pool3: torch.Tensor, pool4: torch.Tensor, fc7: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, classes, H, W) for input (B, in_channels, H, W); no activation."""
        check_input(x, self.in_channels, type(self).__name__)
        x, pads = pad_to_multiple(x, self.stride, self.pad_mode)
        return crop_padding(self._decode(*self.encoder(x)), pads)


class FCN32s(_FCN):
    """FCN-32s: fc7 scores upsampled ×32 in one step (coarsest of the three)."""

    def _build_head(self, c3: int, c4: int, classes: int) -> None:
        self.up32 = bilinear_upsampler(classes, 32)

    def _decode(self, pool3: torch.Tensor, pool4: torch.Tensor, fc7: torch.Tensor) -> torch.Tensor:
        return self.up32(self.score_fr(fc7))


class FCN16s(_FCN):
    """FCN-16s: fc7 scores ×2, plus pool4 scores, then ×16."""

    def _build_head(self, c3: int, c4: int, classes: int) -> None:
        self.score_pool4 = nn.Conv2d(c4, classes, 1)
        self.up2 = bilinear_upsampler(classes, 2)
        self.up16 = bilinear_upsampler(classes, 16)

    def _decode(self, pool3: torch.Tensor, pool4: torch.Tensor, fc7: torch.Tensor) -> torch.Tensor:
        return self.up16(self.up2(self.score_fr(fc7)) + self.score_pool4(pool4))


class FCN8s(_FCN):
    """FCN-8s: fc7 scores ×2 + pool4 scores, ×2 + pool3 scores, then ×8 to the input size.

    Args:
        in_channels: bands in the input stack.
        classes: number of output logits per pixel.
        width: channels of the first VGG block (64 is VGG-16; blocks use w, 2w, 4w, 8w, 8w).
        fc_channels: width of fc6/fc7 (default 16·width).
        fc_kernel: fc6 kernel size (the paper's 7 is heavy; 3 by default).
        dropout: dropout after fc6 and fc7, as in the paper.
        pad_mode: how inputs not a multiple of 32 are padded: reflect, replicate or zeros.
    """

    def _build_head(self, c3: int, c4: int, classes: int) -> None:
        self.score_pool4 = nn.Conv2d(c4, classes, 1)
        self.score_pool3 = nn.Conv2d(c3, classes, 1)
        self.up2_fr = bilinear_upsampler(classes, 2)
        self.up2_pool4 = bilinear_upsampler(classes, 2)
        self.up8 = bilinear_upsampler(classes, 8)

    def _decode(self, pool3: torch.Tensor, pool4: torch.Tensor, fc7: torch.Tensor) -> torch.Tensor:
        fused = self.up2_fr(self.score_fr(fc7)) + self.score_pool4(pool4)
        fused = self.up2_pool4(fused) + self.score_pool3(pool3)
        return self.up8(fused)
