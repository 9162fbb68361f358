"""Copy-paste of labelled pixels between the chips of a batch (issue 20: the halo of sparse labels).

Sparse polygons are drawn inside classes, so no training chip shows a labelled pixel of one class
beside one of another: the loss never penalizes painting a clearing's class over the forest
around it, and a network with a wide context learns "near a clearing" instead of the pixel's own
spectra. Pasting the labelled pixels of one chip, with their labels, onto another chip puts
labelled pixels of different classes side by side at sharp image borders, in every arrangement,
so that context no longer predicts the class and the border is where the image changes.

Torch only, on the batch's device; nothing here knows of Hydra or Lightning.
"""

from __future__ import annotations

import torch

IGNORE = 255


def copy_paste(image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator, p: float,
               ignore_index: int = IGNORE) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste, with probability ``p`` per sample, the labelled pixels of another sample of the batch.

    Args:
        image: (B, C, H, W) inputs.
        mask: (B, H, W) integer targets, ``ignore_index`` where unlabelled.
        generator: CPU generator of the draws (seeded per epoch by the caller).
        p: share of samples that receive a paste.

    Returns:
        New (image, mask): where a donor pixel is labelled, the donor's value and label replace the
        sample's; elsewhere the sample is unchanged.
    """
    n = image.shape[0]
    if p <= 0 or n < 2:
        return image, mask
    shift = int(torch.randint(1, n, (1,), generator=generator))  # donor i+shift: never the sample itself
    donor = (torch.arange(n) + shift) % n
    chosen = torch.rand(n, generator=generator) < p
    donor, chosen = donor.to(image.device), chosen.to(image.device)
    paste = (mask[donor] != ignore_index) & chosen[:, None, None]
    image = torch.where(paste[:, None], image[donor], image)
    mask = torch.where(paste, mask[donor], mask)
    return image, mask


__all__ = ["copy_paste"]
