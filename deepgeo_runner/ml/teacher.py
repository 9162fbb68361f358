"""Teacher labels: a pixel classifier's confident calls between sparse polygons (issue 20).

Sparse training polygons are drawn inside classes, a few pixels away from every border, so a
network never sees a labelled forest pixel beside a clearing or in the thin strip between a road
and a clearing; with its wide context it paints the clearing's class over those pixels (a rim,
a halo). A classifier that looks at one pixel at a time has no context to extrapolate from: its
confident calls on the unlabelled pixels of the training chips are labels of exactly the kind the
polygons lack (mixed pixels at borders, strips, roads). The network trains on the polygons plus
those calls; validation and test keep the polygons only.

A teacher label is stored as ``TEACHER_OFFSET + class`` in the uint8 training masks, so that the
batch still tells the polygons from the teacher's calls: copy-paste moves the polygons only
(:func:`polygon_pixels`), and :func:`decode` turns both into plain targets before the loss.

numpy and torch only; nothing here knows of Hydra or Lightning.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy import ndimage

IGNORE = 255
TEACHER_OFFSET = 128  # mask value of a teacher label: 128 + class (classes stay below 127)


def teacher_masks(images: np.ndarray, masks: np.ndarray, predict_proba: Callable[[np.ndarray], np.ndarray],
                  confidence: float, keep_off_px: int = 0, reach_px: int = 0,
                  chunk: int = 64) -> tuple[np.ndarray, dict]:
    """Training masks with the teacher's confident calls on the unlabelled pixels.

    Args:
        images: (N, C, s, s) training chips (memory-mapped is fine: read ``chunk`` chips at a time);
            a pixel whose every feature is 0 is nodata (the chip store zeroes nodata) and stays ignored.
        masks: (N, s, s) polygon targets, ``IGNORE`` where unlabelled.
        predict_proba: (P, C) pixel features → (P, K) class probabilities.
        confidence: the least probability of the teacher's class for a call to become a label.
        keep_off_px: no teacher label within this many pixels of a polygon label (the protocol's
            ignore ring, ``data.boundary_ignore_px``, stays ignored).
        reach_px: teacher labels only within this many pixels of a polygon label (0: everywhere):
            the borders the polygons lack lie next to them, and far from them the teacher's errors
            would outnumber what it adds.

    Returns:
        The uint8 masks (polygon labels as they were, teacher labels ``TEACHER_OFFSET + k``) and
        counts: pixels the teacher labelled per class, unlabelled pixels it left alone.
    """
    if not 0.0 < confidence <= 1.0:
        raise ValueError(f"teacher confidence must lie in (0, 1], got {confidence}")
    out = np.array(masks, dtype=np.uint8)
    labelled_by_teacher: np.ndarray | None = None
    left = 0
    for start in range(0, len(out), chunk):
        block = np.asarray(images[start:start + chunk], dtype=np.float32)
        target = out[start:start + chunk]
        free = (target == IGNORE) & np.any(block != 0.0, axis=1)
        if keep_off_px > 0:
            free &= ~_near(target != IGNORE, keep_off_px)
        if reach_px > 0:
            free &= _near(target != IGNORE, reach_px)
        if not free.any():
            continue
        pixels = np.moveaxis(block, 1, -1)[free]  # (P, C)
        proba = np.asarray(predict_proba(pixels), dtype=np.float32)
        best = proba.argmax(axis=1)
        sure = proba[np.arange(len(best)), best] >= confidence
        calls = np.full(len(best), IGNORE, dtype=np.uint8)
        calls[sure] = TEACHER_OFFSET + best[sure].astype(np.uint8)
        target[free] = calls
        counts = np.bincount(best[sure], minlength=proba.shape[1])
        labelled_by_teacher = counts if labelled_by_teacher is None else labelled_by_teacher + counts
        left += int((~sure).sum())
    per_class = [] if labelled_by_teacher is None else labelled_by_teacher.tolist()
    return out, {"teacher_pixels_per_class": per_class, "unsure_pixels": left}


def _near(labelled: np.ndarray, px: int) -> np.ndarray:
    """Pixels of (N, s, s) chips within ``px`` pixels (8-connected steps) of a labelled one, in its chip."""
    return ndimage.binary_dilation(labelled, structure=np.ones((1, 3, 3), bool), iterations=int(px))


def polygon_pixels(mask: torch.Tensor, ignore_index: int = IGNORE) -> torch.Tensor:
    """Where a training mask holds a polygon's label (not the teacher's, not ignored)."""
    return mask < TEACHER_OFFSET if ignore_index >= TEACHER_OFFSET else mask != ignore_index


def decode(mask: torch.Tensor, ignore_index: int = IGNORE) -> torch.Tensor:
    """Plain targets: a teacher label ``TEACHER_OFFSET + k`` becomes ``k``; the rest as it is."""
    teacher = (mask >= TEACHER_OFFSET) & (mask != ignore_index)
    return torch.where(teacher, mask - TEACHER_OFFSET, mask)


__all__ = ["TEACHER_OFFSET", "decode", "polygon_pixels", "teacher_masks"]
