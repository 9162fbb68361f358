"""segmentation-models-pytorch architectures behind the package's model contract.

smp models need H, W divisible by their output stride and download pretrained weights on
construction; :func:`smp_model` pads/crops so any chip size works and turns offline download
failures into a message that says what to change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from deepgeo_runner.ml.models._shape import check_input, crop_padding, pad_to_multiple
from deepgeo_runner.ml.models.pretrained import IMAGENET_BANDS, adapt_first_conv

# Roots of the modules whose exceptions mean "could not fetch the weights".
_NETWORK_MODULES = {"huggingface_hub", "requests", "urllib3", "httpx", "httpcore", "urllib",
                    "socket", "ssl"}


class PaddedSegmentationModel(nn.Module):
    """Pads the input to a multiple of the model's output stride and crops the logits back."""

    def __init__(self, model: nn.Module, in_channels: int, multiple: int,
                 pad_mode: str = "reflect") -> None:
        super().__init__()
        self.model, self.in_channels, self.multiple, self.pad_mode = (
            model, in_channels, multiple, pad_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, classes, H, W) for input (B, in_channels, H, W); no activation."""
        check_input(x, self.in_channels, f"smp {type(self.model).__name__}")
        x, pads = pad_to_multiple(x, self.multiple, self.pad_mode)
        return crop_padding(self.model(x), pads)


def available_architectures() -> list[str]:
    """smp architecture names as their classes spell them (matching is case-insensitive)."""
    import segmentation_models_pytorch as smp

    return [cls.__name__ for cls in smp.MODEL_ARCHITECTURES_MAPPING.values()]


def _plain(value: Any) -> Any:
    """Hydra passes ListConfig/DictConfig; smp stores init args, so hand it plain containers."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_plain(v) for v in value]
    return value


def _is_download_error(exc: BaseException) -> bool:
    """True when the exception (or one it was raised from) comes from fetching a file."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (OSError, TimeoutError, ConnectionError)):
            return True
        if type(current).__module__.split(".")[0] in _NETWORK_MODULES:
            return True
        current = current.__cause__ or current.__context__
    return False


def _cache_dirs() -> str:
    """Where smp (Hugging Face hub) and timm/torchvision (torch hub) look for cached weights."""
    dirs = []
    try:
        from huggingface_hub import constants

        dirs.append(f"Hugging Face hub cache {constants.HF_HUB_CACHE}")
    except Exception:  # pragma: no cover - huggingface_hub is an smp dependency
        pass
    dirs.append(f"torch hub cache {torch.hub.get_dir()}")
    return " or ".join(dirs)


def smp_model(in_channels: int, classes: int, arch: str = "Unet", encoder: str = "resnet18",
              encoder_weights: str | None = None, pad_mode: str = "reflect",
              band_names: Sequence[str] | None = None,
              pretrained_bands: Sequence[str] = IMAGENET_BANDS, **kwargs: Any) -> nn.Module:
    """Build an smp architecture (Unet, FPN, DeepLabV3Plus, ...) that accepts any H, W.

    Args:
        in_channels: bands in the input stack.
        classes: number of output logits per pixel (no activation is applied).
        arch: smp architecture name, case-insensitive.
        encoder: smp encoder name (``resnet18``, ``efficientnet-b0``, ``tu-<timm name>``, ...).
        encoder_weights: pretrained weights (e.g. ``imagenet``) or None to train from scratch;
            fetching them needs internet or a cached copy.
        pad_mode: padding used to reach the output stride: reflect, replicate or zeros.
        band_names: with ``encoder_weights``, the role of the first input bands (the rest, e.g.
            appended spectral indices, count as unnamed): the pretrained first convolution is
            adapted by name (:func:`~deepgeo_runner.ml.models.pretrained.adapt_first_conv`).
            None leaves it to smp, which repeats the RGB kernels over the bands in turn.
        pretrained_bands: the bands the pretrained weights were trained on, in order.
        **kwargs: passed to the architecture (encoder_depth, decoder_channels, ...).
    """
    import segmentation_models_pytorch as smp

    if arch.lower() not in smp.MODEL_ARCHITECTURES_MAPPING:
        raise ValueError(f"Unknown smp architecture {arch!r}; available: "
                         f"{', '.join(available_architectures())}.")
    if pad_mode not in ("reflect", "replicate", "zeros", "constant"):
        raise ValueError(f"pad_mode must be reflect, replicate or zeros, got {pad_mode!r}.")
    kwargs = {k: _plain(v) for k, v in kwargs.items()}
    by_name = encoder_weights is not None and bool(band_names)
    names: list[str | None] = []
    if by_name:
        names = [str(n) for n in _plain(band_names)]
        if len(names) > in_channels:
            raise ValueError(f"band_names has {len(names)} names for {in_channels} input bands: "
                             f"{names}.")
        names += [None] * (in_channels - len(names))  # appended indices: no pretrained kernel
    try:
        model = smp.create_model(arch, encoder_name=encoder, encoder_weights=encoder_weights,
                                 in_channels=len(pretrained_bands) if by_name else in_channels,
                                 classes=classes, **kwargs)
    except KeyError as exc:  # smp reports a wrong encoder or weights name as KeyError
        raise ValueError(f"smp {arch} with encoder {encoder!r}, weights {encoder_weights!r}: "
                         f"{exc.args[0] if exc.args else exc}") from exc
    except Exception as exc:
        if encoder_weights is None or not _is_download_error(exc):
            raise
        raise RuntimeError(
            f"Could not get the pretrained weights {encoder_weights!r} for encoder {encoder!r}: "
            f"the download failed ({type(exc).__name__}: {exc}). Pretrained weights need internet access or "
            f"the file already in the local cache ({_cache_dirs()}). Set "
            f"model.encoder_weights=null to train from scratch."
        ) from exc
    if by_name:
        adapt_first_conv(model, names, list(_plain(pretrained_bands)))
    if getattr(model, "requires_divisible_input_shape", True):
        multiple = int(getattr(getattr(model, "encoder", None), "output_stride", 0) or
                       2 ** int(kwargs.get("encoder_depth", 5)))
    else:
        multiple = 1
    mode = "constant" if pad_mode == "zeros" else pad_mode
    return PaddedSegmentationModel(model, in_channels, multiple, mode)
