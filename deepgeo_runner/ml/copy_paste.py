"""Copy-paste of labelled pixels between the chips of a batch (issue 20: the halo of sparse labels).

Sparse polygons are drawn inside classes, so no training chip shows a labelled pixel of one class
beside one of another: the loss never penalizes painting a clearing's class over the forest
around it, and a network with a wide context learns "near a clearing" instead of the pixel's own
spectra. Pasting the labelled pixels of one chip, with their labels, onto another chip puts
labelled pixels of different classes side by side at image borders, in every arrangement, so that
context no longer predicts the class and the border is where the image changes.

A cut-out pasted as it is makes a perfectly sharp border, which no sensor records: a real border
pixel mixes both sides (the point-spread function, and borders that cross a pixel). A network
trained on sharp borders only calls the first mixed pixel outside a clearing a clearing (a
one-pixel rim). ``edge_sigma`` > 0 pastes with a soft edge: the paste's weight (alpha) is the
cut-out blurred by a Gaussian of that many pixels, the image is blended by it, and every pixel
takes the label of the side that dominates it (the donor's where alpha >= 0.5, its own elsewhere),
as a map's reference labels a mixed pixel by its majority.

Torch only, on the batch's device; nothing here knows of Hydra or Lightning.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from deepgeo_runner.ml.teacher import polygon_pixels

IGNORE = 255


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x`` (B, 1, H, W) blurred by a normalized Gaussian of ``sigma`` pixels (edges replicated)."""
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return F.conv2d(x, k.view(1, 1, -1, 1))


def copy_paste(image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator, p: float,
               ignore_index: int = IGNORE, edge_sigma: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste, with probability ``p`` per sample, the labelled pixels of another sample of the batch.

    Args:
        image: (B, C, H, W) inputs.
        mask: (B, H, W) integer targets, ``ignore_index`` where unlabelled.
        generator: CPU generator of the draws (seeded per epoch by the caller).
        p: share of samples that receive a paste.
        edge_sigma: softness of the pasted border in pixels (0: sharp cut-out).

    Returns:
        New (image, mask). With a sharp edge: where a donor pixel is labelled by a polygon (teacher labels,
        :mod:`deepgeo_runner.ml.teacher`, stay where they are), the donor's value and
        label replace the sample's; elsewhere the sample is unchanged. With a soft edge the image is
        ``alpha * donor + (1 - alpha) * sample``, alpha the blurred cut-out, and the label is the
        donor's (``ignore_index`` where the donor is unlabelled) where alpha >= 0.5, else the sample's.
    """
    n = image.shape[0]
    if p <= 0 or n < 2:
        return image, mask
    shift = int(torch.randint(1, n, (1,), generator=generator))  # donor i+shift: never the sample itself
    donor = (torch.arange(n) + shift) % n
    chosen = torch.rand(n, generator=generator) < p
    donor, chosen = donor.to(image.device), chosen.to(image.device)
    paste = polygon_pixels(mask[donor], ignore_index) & chosen[:, None, None]  # never the teacher's labels
    if edge_sigma <= 0:
        image = torch.where(paste[:, None], image[donor], image)
        mask = torch.where(paste, mask[donor], mask)
        return image, mask
    alpha = gaussian_blur(paste[:, None].to(image.dtype), edge_sigma)
    image = image + alpha * (image[donor] - image)
    mask = torch.where(alpha[:, 0] >= 0.5, mask[donor], mask)
    return image, mask


__all__ = ["copy_paste", "gaussian_blur"]
