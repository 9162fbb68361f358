"""Segmentation models behind one contract: ``(in_channels, classes, ...) -> nn.Module`` whose
forward maps (B, in_channels, H, W) to logits (B, classes, H, W) for any H, W, no activation.

Hydra builds them from ``_target_`` (``deepgeo_runner.ml.models.FCN8s`` or ``.smp_model``) with
``in_channels`` and ``classes`` filled in at run time; :data:`MODELS` and :func:`build_model`
give the same models by short name for code and tests.

Two families bend the contract, each saying how: multi-temporal networks
(:data:`TEMPORAL_MODELS`, signature ``(in_channels, classes, dates, ...)`` with ``in_channels``
the bands of one date) take (B, T, C, H, W) or date-major (B, T·C, H, W) and carry
``temporal = True``; :class:`UNetValid` returns a centred window smaller than its input, and
:func:`align_target` crops the labels to it through the model's ``output_crop``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

from deepgeo_runner.ml.models._shape import align_target
from deepgeo_runner.ml.models.fcn import FCN8s, FCN16s, FCN32s, VGGEncoder
from deepgeo_runner.ml.models.pixel_forest import PixelForest
from deepgeo_runner.ml.models.pretrained import adapt_first_conv
from deepgeo_runner.ml.models.smp_models import smp_model
from deepgeo_runner.ml.models.temporal import (
    TEMPORAL_MODELS,
    EarlyFusionUNet,
    LateFusionUNet,
    TemporalAttentionUNet,
)
from deepgeo_runner.ml.models.unet import UNetValid

# Short name -> builder(in_channels, classes, **kwargs). The smp entries default to a resnet18
# encoder without pretrained weights; "unet" matches conf/model/unet.yaml.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "fcn8s": FCN8s,
    "fcn16s": FCN16s,
    "fcn32s": FCN32s,
    "unet": partial(smp_model, arch="Unet", encoder="resnet18", encoder_depth=4,
                    decoder_channels=(64, 32, 16, 8)),
    "unetplusplus": partial(smp_model, arch="UnetPlusPlus", encoder="resnet18"),
    "linknet": partial(smp_model, arch="Linknet", encoder="resnet18"),
    "fpn": partial(smp_model, arch="FPN", encoder="resnet18"),
    "deeplabv3plus": partial(smp_model, arch="DeepLabV3Plus", encoder="resnet18"),
    "unet_valid": UNetValid,
}


def build_model(name: str, in_channels: int, classes: int, **kwargs: Any) -> nn.Module:
    """Build a model from :data:`MODELS` by name; kwargs override the table's defaults."""
    key = name.lower()
    table = {**MODELS, **TEMPORAL_MODELS}
    if key not in table:
        raise ValueError(f"Unknown model {name!r}; available: {', '.join(table)} "
                         f"(or any nn.Module taking in_channels and classes via model._target_).")
    return table[key](in_channels=in_channels, classes=classes, **kwargs)


__all__ = ["FCN8s", "FCN16s", "FCN32s", "MODELS", "TEMPORAL_MODELS", "EarlyFusionUNet",
           "LateFusionUNet", "TemporalAttentionUNet", "UNetValid", "VGGEncoder",
           "PixelForest", "adapt_first_conv", "align_target", "build_model", "smp_model"]
