"""Dihedral (D4) augmentation: the 8 rotations/reflections of a square chip.

Applied to whole batches on the device, with one transform drawn per sample and applied
identically to the image and its label, so augmentation costs no data-loader time.
"""

from __future__ import annotations

import torch

from deepgeo_runner.ml.choices import D4Op

D4_SIZE = 8
# Names of the D4 elements as indexed by :func:`dihedral` (rotations are counter-clockwise).
D4_OPS: dict[str, int] = {op.value: i for i, op in enumerate(D4Op)}
# The paper's expansion: each op adds a full transformed copy (1 + 6 = ×7).
EXPAND_DEFAULT = ("rot90", "rot180", "rot270", "flip_h", "flip_v", "transpose")


def dihedral(x: torch.Tensor, op: int) -> torch.Tensor:
    """Transform ``x`` (..., H, W) by D4 element ``op``: rotation by 90°·(op % 4), after a
    transpose when op ≥ 4. The 8 ops are exactly the symmetries of the square."""
    if not 0 <= op < D4_SIZE:
        raise ValueError(f"D4 op must be in 0..7, got {op}")
    if op >= 4:
        x = x.transpose(-1, -2)
    return torch.rot90(x, op % 4, dims=(-2, -1))


def random_dihedral(
    image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply one random D4 op per sample to (B, ..., H, W) images and (B, H, W) masks."""
    if image.shape[-1] != image.shape[-2]:
        raise ValueError(f"D4 augmentation needs square chips, got {tuple(image.shape[-2:])}")
    ops = torch.randint(0, D4_SIZE, (image.shape[0],), generator=generator)
    image_out, mask_out = image.clone(), mask.clone()
    for op in ops.unique().tolist():
        idx = (ops == op).nonzero(as_tuple=True)[0].to(image.device)
        image_out[idx] = dihedral(image[idx], op)
        mask_out[idx] = dihedral(mask[idx], op)
    return image_out, mask_out


def op_index(name: str) -> int:
    """The D4 element called ``name`` (see :data:`D4_OPS`)."""
    if name not in D4_OPS:
        raise ValueError(f"unknown D4 op '{name}'; choose from {list(D4_OPS)}")
    return D4_OPS[name]


def photometric(
    image: torch.Tensor, generator: torch.Generator, brightness: float = 0.0, noise_std: float = 0.0
) -> torch.Tensor:
    """Per-sample brightness offset and per-pixel Gaussian noise on normalized inputs.

    Mimics haze and sensor noise; labels are untouched. Zero strengths return the input.
    """
    if brightness <= 0 and noise_std <= 0:
        return image
    shape = (image.shape[0],) + (1,) * (image.ndim - 1)
    out = image
    if brightness > 0:
        offset = (torch.rand(shape, generator=generator) * 2 - 1) * brightness
        out = out + offset.to(image.device, image.dtype)
    if noise_std > 0:
        noise = torch.randn(image.shape, generator=generator) * noise_std
        out = out + noise.to(image.device, image.dtype)
    return out
