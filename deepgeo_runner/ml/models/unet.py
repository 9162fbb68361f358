"""U-Net written here: the original valid-padding network (Ronneberger, Fischer & Brox 2015).

Unpadded 3×3 convolutions lose 2 px per convolution, so the output is a centred crop of the
input (572 → 388 px in the paper, depth 4) and the labels must be cropped the same way:
:meth:`UNetValid.output_crop` says where, and :func:`deepgeo_runner.ml.models.align_target`
does it. With ``mirror_pad=True`` the input is mirrored outward first (the paper's
overlap-tile strategy), so the output covers the whole input, e.g. for whole-scene prediction.

The same-padding U-Net of the ``unet`` option comes from segmentation-models-pytorch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepgeo_runner.ml.models._shape import check_input


def conv_block(in_channels: int, out_channels: int, padding: int = 1,
               batch_norm: bool = True) -> nn.Sequential:
    """Two 3×3 conv (+BN) + ReLU layers: the unit of every U-Net level."""
    layers: list[nn.Module] = []
    for channels in (in_channels, out_channels):
        layers.append(nn.Conv2d(channels, out_channels, 3, padding=padding, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The central ``height`` × ``width`` window of the last two dimensions."""
    top, left = (x.shape[-2] - height) // 2, (x.shape[-1] - width) // 2
    return x[..., top:top + height, left:left + width]


def valid_output_size(size: int, depth: int) -> int | None:
    """Output side of a valid-padding U-Net for an input side, or None if the side is not usable.

    Every max-pooling needs an even side and every convolution a positive one.
    """
    n = size
    for _ in range(depth):
        n -= 4
        if n <= 0 or n % 2:
            return None
        n //= 2
    n -= 4
    if n <= 0:
        return None
    for _ in range(depth):
        n = 2 * n - 4
        if n <= 0:
            return None
    return n


def _largest_valid_input(size: int, depth: int) -> int | None:
    for n in range(size, 0, -1):
        if valid_output_size(n, depth) is not None:
            return n
    return None


def _smallest_valid_input(depth: int, min_output: int = 1) -> int:
    n = 1
    while (out := valid_output_size(n, depth)) is None or out < min_output:
        n += 1
    return n


class UNetValid(nn.Module):
    """The original U-Net: unpadded convolutions, output smaller than the input.

    Args:
        in_channels: bands in the input stack.
        classes: number of output logits per pixel (no activation).
        depth: number of max-poolings (4 in the paper); deeper needs larger chips.
        width: channels of the first level, doubled at each level (64 in the paper).
        batch_norm: batch norm after each convolution (not in the paper; trains faster).
        mirror_pad: mirror the input outward so the output covers it all (overlap-tile);
            an attribute that can be switched after training, e.g. for prediction.

    An input side that is not usable (a pooling would see an odd side) is centre-cropped to
    the largest usable one; :meth:`output_crop` accounts for that.
    """

    def __init__(self, in_channels: int, classes: int, depth: int = 4, width: int = 64,
                 batch_norm: bool = True, mirror_pad: bool = False) -> None:
        super().__init__()
        if in_channels < 1 or classes < 1 or depth < 1 or width < 1:
            raise ValueError(f"in_channels, classes, depth and width must be >= 1, got "
                             f"{in_channels}, {classes}, {depth}, {width}.")
        self.in_channels, self.classes, self.depth = in_channels, classes, depth
        self.mirror_pad = mirror_pad
        chans = [width * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        prev = in_channels
        for c in chans[:-1]:
            self.down.append(conv_block(prev, c, padding=0, batch_norm=batch_norm))
            prev = c
        self.bottom = conv_block(chans[-2], chans[-1], padding=0, batch_norm=batch_norm)
        self.up = nn.ModuleList(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2)
                                for i in reversed(range(depth)))
        self.up_blocks = nn.ModuleList(conv_block(2 * chans[i], chans[i], padding=0,
                                                  batch_norm=batch_norm)
                                       for i in reversed(range(depth)))
        self.head = nn.Conv2d(chans[0], classes, 1)
        self.min_input = _smallest_valid_input(depth)

    def _used_input(self, size: int) -> int:
        used = _largest_valid_input(size, self.depth)
        if used is None:
            raise ValueError(
                f"UNetValid(depth={self.depth}) needs inputs of at least {self.min_input} px a "
                f"side (its output is then {valid_output_size(self.min_input, self.depth)} px), got "
                f"{size}: use a larger data.chip_size, a smaller model.depth, or "
                f"model.mirror_pad=true."
            )
        return used

    def output_crop(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Where the output of an input of ``height`` × ``width`` lies: (top, left, h, w).

        Crop labels as ``labels[..., top:top + h, left:left + w]`` to match the logits.
        """
        if self.mirror_pad:
            return 0, 0, height, width
        box = []
        for size in (height, width):
            used = self._used_input(size)
            out = valid_output_size(used, self.depth)
            box.append(((size - used) // 2 + (used - out) // 2, out))
        (top, out_h), (left, out_w) = box
        return top, left, out_h, out_w

    def _mirror(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Pad outward so that the output covers the input; return the output offset too."""
        pads, offsets = [], []
        for size in x.shape[-2:]:
            n = size
            while (out := valid_output_size(n, self.depth)) is None or out < size:
                n += 1
            margin = (n - out) // 2
            before = margin + (out - size) // 2
            pads.append((before, n - size - before))
            offsets.append((out - size) // 2)
        (top, bottom), (left, right) = pads
        # reflect needs each pad smaller than the side; a few rounds cover any pad size
        while top or bottom or left or right:
            h, w = x.shape[-2:]
            if min(h, w) == 1:  # nothing to mirror
                return F.pad(x, (left, right, top, bottom), mode="replicate"), tuple(offsets)
            step = [min(p, s - 1) for p, s in ((left, w), (right, w), (top, h), (bottom, h))]
            x = F.pad(x, tuple(step), mode="reflect")
            left, right, top, bottom = (left - step[0], right - step[1], top - step[2],
                                        bottom - step[3])
        return x, tuple(offsets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, classes, h, w): the input size with ``mirror_pad``, else
        :meth:`output_crop`'s smaller centred window."""
        check_input(x, self.in_channels, type(self).__name__)
        height, width = x.shape[-2:]
        if self.mirror_pad:
            x, (off_h, off_w) = self._mirror(x)
        else:
            x = center_crop(x, self._used_input(height), self._used_input(width))
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, block, skip in zip(self.up, self.up_blocks, reversed(skips), strict=True):
            x = up(x)
            x = block(torch.cat([center_crop(skip, *x.shape[-2:]), x], dim=1))
        logits = self.head(x)
        if self.mirror_pad:
            logits = logits[..., off_h:off_h + height, off_w:off_w + width]
        return logits
