"""Input checks and pad/crop shared by every model, so any chip size and band count mismatch
is handled the same way whatever the architecture."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_input(x: torch.Tensor, in_channels: int, model_name: str) -> None:
    """Fail early with a message naming the fix, instead of a cryptic conv shape error."""
    if x.ndim == 4 and x.shape[1] == in_channels:
        return
    got = tuple(x.shape)
    if x.ndim != 4:
        hint = ("add the batch dimension (x.unsqueeze(0))" if x.ndim == 3
                else "pass a batch of images shaped (batch, bands, height, width)")
    else:
        hint = (f"set data.band_names / preprocessing.indices so the stack has {in_channels} "
                f"bands, or build the model with in_channels={x.shape[1]}")
    raise ValueError(
        f"{model_name} expected input of shape (B, C, H, W) with C={in_channels} bands, "
        f"got shape {got}: {hint}."
    )


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect"
                    ) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad H and W up to a multiple of ``multiple`` (split evenly around the image).

    Returns the padded tensor and (top, bottom, left, right) for :func:`crop_padding`.
    Reflect padding needs the pad smaller than the side, so tiny inputs fall back to replicate.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (0, 0, 0, 0)
    top, left = ph // 2, pw // 2
    pads = (top, ph - top, left, pw - left)
    if mode == "reflect" and (max(pads[:2]) >= h or max(pads[2:]) >= w):
        mode = "replicate"
    kwargs = {"value": 0.0} if mode == "constant" else {}
    return F.pad(x, (left, pw - left, top, ph - top), mode=mode, **kwargs), pads


def crop_padding(y: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple` so outputs line up pixel for pixel with the input."""
    top, bottom, left, right = pads
    h, w = y.shape[-2:]
    return y[..., top:h - bottom, left:w - right]


def align_target(logits: torch.Tensor, target: torch.Tensor, net: object = None) -> torch.Tensor:
    """Targets cropped to the logits' window, for networks whose output is smaller than the input.

    Unchanged when the sizes already agree. Otherwise ``net.output_crop(h, w)`` (as on
    :class:`~deepgeo_runner.ml.models.unet.UNetValid`) says which (top, left, h, w) window of the
    input the logits cover.
    """
    if logits.shape[-2:] == target.shape[-2:]:
        return target
    crop = getattr(net, "output_crop", None)
    if crop is None:
        raise ValueError(
            f"{type(net).__name__} returned logits of size {tuple(logits.shape[-2:])} for targets of "
            f"size {tuple(target.shape[-2:])}: a network whose output is smaller than its input must "
            "define output_crop(height, width) -> (top, left, height, width)."
        )
    top, left, height, width = crop(*target.shape[-2:])
    cropped = target[..., top:top + height, left:left + width]
    if cropped.shape[-2:] != logits.shape[-2:]:
        raise ValueError(f"{type(net).__name__}.output_crop gives a {height}x{width} window but the "
                         f"logits are {tuple(logits.shape[-2:])}.")
    return cropped
