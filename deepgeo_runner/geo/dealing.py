"""Dealing labelled units (split blocks, split polygons) to bins class by class: the core that
the train/val/test split (:mod:`deepgeo_runner.geo.chips`) and the k-fold groups
(:mod:`deepgeo_runner.geo.folds`) share."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def class_lut(class_ids: Sequence[int]) -> np.ndarray:
    """uint8 label id → column of ``class_ids`` (``len(class_ids)`` for every other id): the
    index for per-class bincounts, whose last column is then dropped."""
    lut = np.full(256, len(class_ids), dtype=np.int64)
    lut[np.asarray(class_ids, dtype=np.int64)] = np.arange(len(class_ids))
    return lut


TIE_ORDER = (0, 2, 1)  # a block that every split needs alike goes to train, then test, then val


def deal_by_class(counts: np.ndarray, bins: int, seed: int,
                  pick: Callable[[int, np.ndarray, np.ndarray, float], int]) -> np.ndarray:
    """Iterative stratification of units (blocks, polygons) into ``bins``, the core of the split
    and of the k-fold groups: classes are taken rarest first (fewest units, then fewest pixels);
    each still unassigned unit holding the class, in seeded order, goes to ``pick(k, got, members,
    total_k)`` — class ``k``, the pixels each bin holds so far per class (bins × classes), the
    units per bin, the class's total pixels. Units without a labelled pixel get -1."""
    n_units, n_classes = counts.shape
    assignment = np.full(n_units, -1, dtype=np.int64)
    got = np.zeros((bins, n_classes), dtype=np.float64)
    members = np.zeros(bins, dtype=np.int64)
    totals = counts.sum(axis=0).astype(np.float64)
    spread = (counts > 0).sum(axis=0)
    rng = np.random.default_rng(seed)
    for k in sorted(np.flatnonzero(totals > 0), key=lambda k: (spread[k], totals[k], k)):
        units = np.flatnonzero((counts[:, k] > 0) & (assignment < 0))
        rng.shuffle(units)
        for u in units:
            b = pick(int(k), got, members, float(totals[k]))
            assignment[u] = b
            got[b] += counts[u]
            members[b] += 1
    return assignment


def assign_blocks_by_class(counts: np.ndarray, fractions: Sequence[float], seed: int) -> np.ndarray:
    """Deal labelled blocks to splits so that every class gets its share of pixels in each split.

    Iterative stratification over blocks (:func:`deal_by_class`): each of a class's blocks goes
    to the split lacking most of that class relative to its share, and the first one always to
    train, so every class present gets training pixels, then test and val pixels wherever it has
    enough blocks. Blocks holding no labelled pixel go to train: they cost val/test nothing and
    leave training chips room. Returns the split of each block (0 train, 1 val, 2 test).
    """
    shares = np.asarray(fractions, dtype=np.float64) / float(sum(fractions))

    def pick(k: int, got: np.ndarray, members: np.ndarray, total: float) -> int:
        if got[0, k] == 0 and shares[0] > 0:
            return 0
        need = shares - got[:, k] / total
        return max((s for s in TIE_ORDER if shares[s] > 0), key=lambda s: (need[s], -TIE_ORDER.index(s)))

    assignment = deal_by_class(counts, 3, seed, pick)
    assignment[assignment < 0] = 0
    return assignment.astype(np.int8)
