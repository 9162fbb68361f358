"""Pretrained weights for inputs that are not RGB: the first convolution adapted by band name.

ImageNet encoders expect red, green and blue. smp, given ``in_channels`` ≠ 3 with weights,
repeats the RGB kernels cyclically over the new bands (band 4 gets red's kernel whatever band 4
is). Knowing the bands' names does better: each band that the pretrained layer knows (red,
green, blue; or a multispectral model's own band list) keeps its learned kernel, the others
(nir, swir, indices, ...) start from the mean kernel, and all are rescaled so the layer's output
keeps the magnitude it had on the pretrained input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

IMAGENET_BANDS: tuple[str, ...] = ("red", "green", "blue")


def adapted_kernel(weight: torch.Tensor, band_names: Sequence[str | None],
                   pretrained_bands: Sequence[str] = IMAGENET_BANDS) -> torch.Tensor:
    """First-layer weight (out, len(band_names), k, k) built from a pretrained (out, P, k, k).

    Args:
        weight: the pretrained kernel, one input channel per name of ``pretrained_bands``.
        band_names: the role of each input band (case-insensitive); None or an unknown name
            (a spectral index, an extra band) gets the mean of the pretrained kernels.
        pretrained_bands: the band each input channel of ``weight`` was trained on.
    """
    if weight.ndim != 4 or weight.shape[1] != len(pretrained_bands):
        raise ValueError(f"pretrained first-layer weight of shape {tuple(weight.shape)} does not "
                         f"have one input channel per pretrained band {list(pretrained_bands)}.")
    if not band_names:
        raise ValueError("band_names must name at least one input band.")
    index = {name.lower(): i for i, name in enumerate(pretrained_bands)}
    mean = weight.mean(dim=1)
    columns = [weight[:, index[name.lower()]] if name and name.lower() in index else mean
               for name in band_names]
    # Sum over inputs of the new layer ≈ that of the old one for inputs of similar statistics.
    return torch.stack(columns, dim=1) * (len(pretrained_bands) / len(band_names))


def adapt_first_conv(model: nn.Module, band_names: Sequence[str | None],
                     pretrained_bands: Sequence[str] = IMAGENET_BANDS) -> nn.Conv2d:
    """Replace, in place, the weights of ``model``'s first convolution for ``band_names``.

    The first ``nn.Conv2d`` taking ``len(pretrained_bands)`` channels is the one adapted (as smp
    does for its own patching). Returns that layer.
    """
    conv = next((m for m in model.modules()
                 if isinstance(m, nn.Conv2d) and m.in_channels == len(pretrained_bands)), None)
    if conv is None:
        raise ValueError(f"{type(model).__name__} has no convolution taking "
                         f"{len(pretrained_bands)} channels ({list(pretrained_bands)}) to adapt.")
    if conv.groups != 1:
        raise ValueError("cannot adapt a grouped first convolution to other bands.")
    with torch.no_grad():
        new = adapted_kernel(conv.weight.detach(), band_names, pretrained_bands)
    conv.weight = nn.Parameter(new)
    conv.in_channels = len(band_names)
    return conv
