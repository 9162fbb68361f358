"""A minimum mapping unit for class maps: patches smaller than it take their surroundings' class.

PRODES maps no deforestation patch under 6.25 ha; a map compared with it (or used like it) is sieved
the same way, so that its areas count the same things. GDAL's sieve filter (through rasterio) merges
every 8-connected patch of fewer pixels than the unit into its largest neighbouring patch; nodata
pixels are never changed and never absorb a patch.
"""

from __future__ import annotations

import math

import numpy as np


def mmu_pixels(mmu_ha: float, pixel_ha: float) -> int:
    """The smallest patch, in pixels, that covers at least ``mmu_ha`` hectares (``pixel_ha`` each)."""
    if mmu_ha < 0 or pixel_ha <= 0:
        raise ValueError(f"a minimum mapping unit needs mmu_ha >= 0 and a positive pixel area, got {mmu_ha}, "
                         f"{pixel_ha}")
    return max(1, math.ceil(mmu_ha / pixel_ha - 1e-9))


def sieve_classes(classes: np.ndarray, min_pixels: int, nodata: int | None = 255,
                  connectivity: int = 8) -> np.ndarray:
    """``classes`` (2-D, uint8) with every patch under ``min_pixels`` merged into its largest neighbour."""
    from rasterio.features import sieve

    if min_pixels <= 1:
        return classes.copy()
    mask = None if nodata is None else classes != nodata
    if mask is not None and not mask.any():
        return classes.copy()
    sieved = sieve(np.ascontiguousarray(classes), size=int(min_pixels), connectivity=connectivity, mask=mask)
    if mask is not None:
        sieved = np.where(mask, sieved, classes)
    return sieved.astype(classes.dtype, copy=False)
