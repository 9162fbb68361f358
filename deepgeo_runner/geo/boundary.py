"""An ignore ring around every label border: the field's protocol for training and scoring on polygons.

Deep-learning studies on PRODES ignore a ring of two pixels (at 30 m) along polygon borders in the
loss and in the metrics: a border drawn by an analyst on a 30 m grid is uncertain by about a pixel,
and a network that is scored on those pixels learns (and is credited for) where the analyst's pen
went rather than what the image shows. The ring is measured in Euclidean pixel distance from the
nearest pixel of another value (another class, background, or unlabelled), on both sides of a border
between classes; the scene's edge is no border.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def border_ring(labels: np.ndarray, width: float, ignore: int = 255) -> np.ndarray:
    """Where ``labels`` (a 2-D class raster) lies within ``width`` pixels of another value.

    Only labelled pixels (not ``ignore``) are ever part of the ring: a pixel of class v is in it
    when the nearest pixel whose value is not v is at most ``width`` pixels away (4-neighbours are
    1 apart, diagonal neighbours √2). ``width`` 0 gives an empty ring.
    """
    if labels.ndim != 2:
        raise ValueError(f"border_ring takes one 2-D label raster, got shape {labels.shape}")
    if width < 0:
        raise ValueError(f"the ring's width must be >= 0 pixels, got {width}")
    ring = np.zeros(labels.shape, dtype=bool)
    if width == 0:
        return ring
    for value in np.unique(labels):
        if value == ignore:
            continue
        inside = labels == value
        # distance from each pixel of this class to the nearest pixel that is not; pad with the class
        # itself so that the scene's edge is not taken for a border
        padded = np.pad(inside, 1, mode="edge")
        distance = ndimage.distance_transform_edt(padded)[1:-1, 1:-1]
        ring |= inside & (distance <= width)
    return ring


def ignore_borders(labels: np.ndarray, width: float, ignore: int = 255) -> np.ndarray:
    """``labels`` with a ring of ``width`` pixels along every border set to ``ignore`` (a copy)."""
    out = labels.copy()
    out[border_ring(labels, width, ignore)] = ignore
    return out
