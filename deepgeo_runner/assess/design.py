"""The sampling design: how many pixels to label, in which strata, and which ones.

Stratified random sampling (Olofsson et al. 2014, section 4.1): the total size follows from a
target standard error of overall accuracy and the user's accuracies one expects (their eq. 13),
and is allocated proportionally to the strata, equally, or — their recommended compromise — with
a minimum per rare stratum and the rest proportionally, so that rare classes such as
deforestation get enough units for a useful user's accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from deepgeo_runner.assess.choices import Allocation

__all__ = ["Allocation", "allocate", "sample_size", "select_ordinals"]


def sample_size(weights: Sequence[float], users_accuracy: Sequence[float], target_se: float) -> int:
    """Total size n = (Σ W_h S_h / S(Ô))², S_h = √(U_h (1 − U_h)) (Olofsson et al. 2014, eq. 13).

    Args:
        weights: the strata's shares of the mapped area (W_h, summing to 1).
        users_accuracy: the user's accuracy conjectured in each stratum (U_h).
        target_se: the standard error of overall accuracy aimed at (S(Ô), e.g. 0.01).
    """
    w = np.asarray(weights, dtype=np.float64)
    u = np.asarray(users_accuracy, dtype=np.float64)
    if w.shape != u.shape:
        raise ValueError(f"{len(u)} user's accuracies for {len(w)} strata")
    if not 0 < target_se < 1:
        raise ValueError(f"target standard error {target_se} is not in (0, 1)")
    spread = float(np.sum(w * np.sqrt(u * (1.0 - u))))
    return max(1, math.ceil((spread / target_se) ** 2 - 1e-9))


def _largest_remainder(total: int, shares: np.ndarray) -> np.ndarray:
    """Integers summing to ``total`` in proportion to ``shares`` (Hamilton's rounding)."""
    if total <= 0 or shares.sum() <= 0:
        return np.zeros(len(shares), dtype=np.int64)
    exact = total * shares / shares.sum()
    sizes = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - sizes), kind="stable")
    sizes[order[: total - int(sizes.sum())]] += 1
    return sizes


def _capped(total: int, shares: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Proportional sizes that never exceed a stratum's pixels; what a full stratum cannot take
    goes to the others, still in proportion."""
    sizes = np.zeros(len(shares), dtype=np.int64)
    open_ = caps > 0
    while total > 0 and open_.any():
        share = _largest_remainder(total, np.where(open_, shares, 0.0))
        room = caps - sizes
        take = np.minimum(share, room)
        sizes += take
        total -= int(take.sum())
        open_ &= sizes < caps
        if not (share > room).any():
            break
    return sizes


def allocate(total: int, pixels: Sequence[int], method: Allocation | str = Allocation.min_per_stratum,
             min_per_stratum: int = 50) -> np.ndarray:
    """Sample size of each stratum: ``total`` shared by ``method``, never more than its pixels.

    ``min_per_stratum``: every stratum gets at least this many units (or all its pixels), and the
    rest of ``total`` is shared proportionally among the strata whose proportional share is
    larger (Olofsson et al. 2014, section 5.1.1). When the minima alone exceed ``total`` they win:
    the total grows rather than a rare class going unmeasured.
    """
    caps = np.asarray(pixels, dtype=np.int64)
    shares = caps.astype(np.float64)
    method = Allocation(method)
    if method is Allocation.proportional:
        return _capped(total, shares, caps)
    if method is Allocation.equal:
        return _capped(total, (caps > 0).astype(np.float64), caps)
    floor = np.minimum(caps, min_per_stratum)
    rare = np.zeros(len(caps), dtype=bool)
    while True:  # strata whose proportional share falls below the minimum take the minimum
        rest = total - int(floor[rare].sum())
        sizes = _capped(max(rest, 0), np.where(rare, 0.0, shares), np.where(rare, 0, caps))
        below = ~rare & (caps > 0) & (sizes < floor)
        if not below.any():
            break
        rare |= below
    sizes[rare] = floor[rare]
    return sizes


def select_ordinals(pixels: Sequence[int], sizes: Sequence[int], seed: int) -> list[np.ndarray]:
    """For each stratum, which of its pixels (their ordinals in row-major order) are sampled.

    Simple random sampling without replacement inside each stratum, from one seeded generator
    in stratum order: the same seed, map and sizes give the same sample.
    """
    rng = np.random.default_rng(seed)
    chosen = []
    for n_pixels, size in zip(pixels, sizes, strict=True):
        picks = rng.choice(int(n_pixels), size=int(size), replace=False) if size else np.empty(0, np.int64)
        chosen.append(np.sort(picks.astype(np.int64)))
    return chosen
