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

from deepgeo_runner.ml.models._download import is_download_error
from deepgeo_runner.ml.models._shape import check_input, crop_padding, pad_to_multiple
from deepgeo_runner.ml.models.pretrained import IMAGENET_BANDS, adapt_first_conv
from deepgeo_runner.ml.models.torchgeo_weights import band_roles, fetch_state_dict, load_encoder_state, resolve_weights


class _Pruned(nn.Module):
    """Stands in for a submodule the model's forward never calls (see :func:`prune_unused`)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        raise RuntimeError(f"'{self.name}' was removed as unused by this model's forward (e.g. an encoder "
                           "stage below encoder_depth); build the model anew to use it.")


class PaddedSegmentationModel(nn.Module):
    """Pads the input to a multiple of the model's output stride and crops the logits back.

    ``pruned`` names submodules of ``model`` removed because its forward never uses them; their
    weights in a checkpoint written before they were removed are skipped on loading.
    """

    def __init__(self, model: nn.Module, in_channels: int, multiple: int,
                 pad_mode: str = "reflect", pruned: Sequence[str] = ()) -> None:
        super().__init__()
        self.model, self.in_channels, self.multiple, self.pad_mode = (
            model, in_channels, multiple, pad_mode)
        self.pruned = list(pruned)
        self._register_load_state_dict_pre_hook(self._skip_pruned_weights)

    def _skip_pruned_weights(self, state_dict: dict, prefix: str, *args: Any) -> None:
        """Older checkpoints hold the weights of unused stages: drop them instead of failing."""
        heads = tuple(f"{prefix}model.{name}." for name in self.pruned)
        for key in [k for k in state_dict if heads and k.startswith(heads)]:
            del state_dict[key]

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


def _torchgeo_weights(name: str, encoder: str) -> Any:
    """torchgeo's weights called ``name``, checked to be for ``encoder``."""
    weights = resolve_weights(name)
    trained_for = weights.meta.get("model")
    if trained_for != encoder:
        raise ValueError(f"torchgeo weights {name} are for the {trained_for!r} encoder, not {encoder!r}: "
                         f"set model.encoder={trained_for}.")
    return weights


def _named_bands(band_names: Sequence[str], in_channels: int, pretrained_bands: Sequence[str]) -> list[str | None]:
    """One name per input band (unnamed appended indices as None), at least one of them pretrained."""
    names: list[str | None] = [str(n) for n in _plain(band_names)]
    if len(names) > in_channels:
        raise ValueError(f"band_names has {len(names)} names for {in_channels} input bands: {names}.")
    known = {b.lower() for b in pretrained_bands}
    if not any(n.lower() in known for n in names):
        raise ValueError(f"none of the bands {names} is one the pretrained weights were trained on "
                         f"({list(pretrained_bands)}): name the bands by role (data.band_names, e.g. "
                         "[blue,green,red,nir]) or set model.pretrained_bands.")
    return names + [None] * (in_channels - len(names))  # appended indices: no pretrained kernel


def smp_model(in_channels: int, classes: int, arch: str = "Unet", encoder: str = "resnet18",
              encoder_weights: str | None = None, torchgeo_weights: str | None = None,
              pad_mode: str = "reflect", band_names: Sequence[str] | None = None,
              pretrained_bands: Sequence[str] | None = None, **kwargs: Any) -> nn.Module:
    """Build an smp architecture (Unet, FPN, DeepLabV3Plus, ...) that accepts any H, W.

    Args:
        in_channels: bands in the input stack.
        classes: number of output logits per pixel (no activation is applied).
        arch: smp architecture name, case-insensitive.
        encoder: smp encoder name (``resnet18``, ``efficientnet-b0``, ``tu-<timm name>``, ...).
        encoder_weights: pretrained weights (e.g. ``imagenet``) or None to train from scratch;
            fetching them needs internet or a cached copy.
        torchgeo_weights: instead, torchgeo's multispectral weights for this encoder by name, e.g.
            ``ResNet18_Weights.SENTINEL2_ALL_MOCO`` (torch hub cache, downloaded the first time).
        pad_mode: padding used to reach the output stride: reflect, replicate or zeros.
        band_names: with pretrained weights, the role of the first input bands (the rest, e.g.
            appended spectral indices, count as unnamed): the pretrained first convolution is
            adapted by name (:func:`~deepgeo_runner.ml.models.pretrained.adapt_first_conv`).
            None leaves it to smp, which repeats the RGB kernels over the bands in turn
            (torchgeo weights then need exactly their own bands, in their order).
        pretrained_bands: the bands the pretrained weights were trained on, in order; None:
            red, green, blue for ``encoder_weights``, the torchgeo weights' own bands (as roles).
        **kwargs: passed to the architecture (encoder_depth, decoder_channels, ...).
    """
    import segmentation_models_pytorch as smp

    if arch.lower() not in smp.MODEL_ARCHITECTURES_MAPPING:
        raise ValueError(f"Unknown smp architecture {arch!r}; available: "
                         f"{', '.join(available_architectures())}.")
    if pad_mode not in ("reflect", "replicate", "zeros", "constant"):
        raise ValueError(f"pad_mode must be reflect, replicate or zeros, got {pad_mode!r}.")
    kwargs = {k: _plain(v) for k, v in kwargs.items()}
    if encoder_weights is not None and torchgeo_weights is not None:
        raise ValueError("give encoder_weights (smp's, e.g. imagenet) or torchgeo_weights, not both.")
    geo_weights = _torchgeo_weights(torchgeo_weights, encoder) if torchgeo_weights else None
    if pretrained_bands is None:
        pretrained_bands = (band_roles(geo_weights) or list(geo_weights.meta["bands"])) if geo_weights \
            else IMAGENET_BANDS
    pretrained_bands = [str(b) for b in _plain(pretrained_bands)]
    pretrained = encoder_weights is not None or geo_weights is not None
    by_name = pretrained and bool(band_names)
    names = _named_bands(band_names, in_channels, pretrained_bands) if by_name else []
    if geo_weights is not None and not by_name and in_channels != len(pretrained_bands):
        raise ValueError(f"torchgeo weights {torchgeo_weights} take {len(pretrained_bands)} bands "
                         f"{pretrained_bands}, the input has {in_channels}: give band_names (model.band_names, "
                         "by default data.band_names) so that the first convolution is adapted by band.")
    model = _create_model(arch, encoder, encoder_weights, len(pretrained_bands) if by_name else in_channels,
                          classes, kwargs)
    if geo_weights is not None:
        load_encoder_state(model.encoder, fetch_state_dict(geo_weights), torchgeo_weights)
    if by_name:
        adapt_first_conv(model, names, pretrained_bands)
    multiple = _size_multiple(model, kwargs)
    mode = "constant" if pad_mode == "zeros" else pad_mode
    pruned = prune_unused(model, in_channels, max(2 * multiple, 64))
    return PaddedSegmentationModel(model, in_channels, multiple, mode, pruned)


def _create_model(arch: str, encoder: str, encoder_weights: str | None, in_channels: int, classes: int,
                  kwargs: dict[str, Any]) -> nn.Module:
    """``smp.create_model``, with its errors said in our words: a wrong encoder or weights name (smp's
    KeyError), and a failed download of pretrained weights with where the cache is and how to do without."""
    import segmentation_models_pytorch as smp

    try:
        return smp.create_model(arch, encoder_name=encoder, encoder_weights=encoder_weights,
                                in_channels=in_channels, classes=classes, **kwargs)
    except KeyError as exc:  # smp reports a wrong encoder or weights name as KeyError
        raise ValueError(f"smp {arch} with encoder {encoder!r}, weights {encoder_weights!r}: "
                         f"{exc.args[0] if exc.args else exc}") from exc
    except Exception as exc:
        if encoder_weights is None or not is_download_error(exc):
            raise
        raise RuntimeError(
            f"Could not get the pretrained weights {encoder_weights!r} for encoder {encoder!r}: "
            f"the download failed ({type(exc).__name__}: {exc}). Pretrained weights need internet access or "
            f"the file already in the local cache ({_cache_dirs()}). Set "
            f"model.encoder_weights=null to train from scratch."
        ) from exc


def _size_multiple(model: nn.Module, kwargs: dict[str, Any]) -> int:
    """The multiple that input sides must be for ``model`` (its encoder's output stride), 1 when any size goes."""
    if not getattr(model, "requires_divisible_input_shape", True):
        return 1
    return int(getattr(getattr(model, "encoder", None), "output_stride", 0) or
               2 ** int(kwargs.get("encoder_depth", 5)))


def prune_unused(model: nn.Module, in_channels: int, size: int = 64) -> list[str]:
    """Remove the submodules holding parameters that ``model``'s forward never uses; return their names.

    smp encoders keep every stage whatever ``encoder_depth`` (a resnet18 U-Net of depth 4 holds
    layer4, 8.4 M parameters, and never calls it). DDP refuses such parameters, and they would
    fill every checkpoint. A probe forward and backward on a small random input (eval mode, so
    no batch statistics or random state change) finds them; a submodule is removed only when it
    was never called and none of its parameters got a gradient.
    """
    called: set[nn.Module] = set()
    hooks = [m.register_forward_pre_hook(lambda mod, _args: called.add(mod)) for m in model.modules()]
    was_training = model.training
    grads_before = [p.grad for p in model.parameters()]
    try:
        model.eval()
        with torch.random.fork_rng(devices=[]):
            out = model(torch.zeros(2, in_channels, size, size).normal_())
            out = out[0] if isinstance(out, tuple | list) else out
            out.float().sum().backward()
        unused = {id(p) for p in model.parameters() if p.requires_grad and p.grad is None}
    finally:
        for hook in hooks:
            hook.remove()
        for p, grad in zip(model.parameters(), grads_before, strict=True):
            p.grad = grad
        model.train(was_training)
    pruned: list[str] = []
    for name, module in list(model.named_modules()):
        params = list(module.parameters())
        if (not name or module in called or not params or any(id(p) not in unused for p in params)
                or any(name.startswith(p + ".") for p in pruned)):
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, _Pruned(name))
        pruned.append(name)
    return pruned
