"""Accuracy and area from a stratified random sample (Stehman 2014; Olofsson et al. 2014).

Every quantity is a ratio of two population totals, R = Y / X, estimated by the stratified
ratio estimator R̂ = Ŷ / X̂ with Ŷ = Σ_h N_h ȳ_h (N_h pixels in stratum h, ȳ_h the mean over its
n_h sample units), and its variance (Stehman 2014, eq. 26)

    V̂(R̂) = 1/X̂² · Σ_h N_h² (s²_yh + R̂² s²_xh − 2 R̂ s_xyh) / n_h.

The per-unit values carry the unit's area a_u, so that pixels of unequal area (a map in a
geographic CRS) weigh what they cover:

- error matrix p̂_ij: y = a·[map=i, ref=j], x = a;  area of class k: A · R̂ with y = a·[ref=k], x = a;
- overall accuracy: y = a·[map=ref], x = a;
- user's accuracy of k: y = a·[map=k, ref=k], x = a·[map=k];  producer's: x = a·[ref=k].

With the map classes as strata and equal pixel areas these are exactly Olofsson et al.'s
eqs. 2, 4–7, 9 and 10 (their section 5 example comes out to the hectare). Like them, the
variance leaves out Stehman's finite population correction (1 − n_h/N_h): it is below 0.04 % for
pixel populations and would only shrink the intervals, so leaving it out errs on the safe side —
except in a stratum sampled completely (a class of a handful of pixels, all drawn), which adds no
variance at all (its correction is 0) rather than leaving every interval undefined.
With other strata these are Stehman's estimators for strata that differ from the map classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Z95 = 1.96  # normal quantile of a two-sided 95 % interval, as the good-practice papers use


@dataclass(frozen=True)
class Estimate:
    """A ratio estimate with its standard error; None where the sample cannot define it."""

    value: float | None
    se: float | None

    def ci95(self, scale: float = 1.0) -> list[float] | None:
        """[low, high] = estimate ± 1.96 SE (times ``scale``), unclipped as the papers publish it."""
        if self.value is None or self.se is None:
            return None
        return [scale * (self.value - Z95 * self.se), scale * (self.value + Z95 * self.se)]


@dataclass(frozen=True)
class StratifiedSample:
    """Labelled sample units and the strata they were drawn from.

    Attributes:
        stratum: stratum index (0..H−1) of each unit.
        map_class, ref_class: class index (0..K−1) of each unit in the map and the reference.
        unit_area: area of each unit (any unit; only ratios of it are used).
        stratum_pixels: N_h, pixels in each stratum (the population).
    """

    stratum: np.ndarray
    map_class: np.ndarray
    ref_class: np.ndarray
    unit_area: np.ndarray
    stratum_pixels: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.stratum)
        if not all(len(a) == n for a in (self.map_class, self.ref_class, self.unit_area)):
            raise ValueError("stratum, map_class, ref_class and unit_area need one value per unit")
        counts = np.bincount(self.stratum, minlength=len(self.stratum_pixels))
        if len(counts) > len(self.stratum_pixels):
            raise ValueError("a unit names a stratum beyond stratum_pixels")
        empty = np.flatnonzero((counts == 0) & (np.asarray(self.stratum_pixels) > 0))
        if empty.size:
            raise ValueError(f"strata {empty.tolist()} hold pixels but no sample unit: their area is unmeasured")

    @property
    def stratum_sizes(self) -> np.ndarray:
        """n_h, the sample units of each stratum."""
        return np.bincount(self.stratum, minlength=len(self.stratum_pixels))


def ratio_estimate(sample: StratifiedSample, y: np.ndarray, x: np.ndarray) -> Estimate:
    """R̂ = Ŷ / X̂ and its standard error (module docstring) for per-unit values ``y`` and ``x``."""
    big_n = np.asarray(sample.stratum_pixels, dtype=np.float64)
    n_h = sample.stratum_sizes.astype(np.float64)
    h = sample.stratum
    present = n_h > 0
    mean_y = np.divide(np.bincount(h, y, len(big_n)), n_h, out=np.zeros_like(big_n), where=present)
    mean_x = np.divide(np.bincount(h, x, len(big_n)), n_h, out=np.zeros_like(big_n), where=present)
    total_x = float(np.sum(big_n * mean_x))
    if total_x <= 0:
        return Estimate(None, None)
    ratio = float(np.sum(big_n * mean_y)) / total_x
    enumerated = n_h >= big_n  # every pixel of the stratum is in the sample: no sampling error there
    if np.any(present & (n_h < 2) & ~enumerated):
        return Estimate(ratio, None)  # one unit of a larger stratum: its variance is unknown
    dy, dx = y - mean_y[h], x - mean_x[h]
    spread = np.bincount(h, (dy - ratio * dx) ** 2, len(big_n))  # (n_h − 1)(s²_y + R² s²_x − 2R s_xy)
    dof = np.maximum(n_h - 1.0, 1.0)
    terms = np.divide(big_n**2 * spread / dof, n_h, out=np.zeros_like(big_n), where=present & ~enumerated)
    return Estimate(ratio, float(np.sqrt(terms.sum())) / total_x)


@dataclass(frozen=True)
class Assessment:
    """What the analysis of a labelled sample gives, for ``n_classes`` classes (0..K−1)."""

    error_matrix: np.ndarray  # p̂_ij, rows map class, columns reference class (area proportions)
    counts: np.ndarray  # sample counts n_ij, rows map class, columns reference class
    overall: Estimate
    users: list[Estimate]
    producers: list[Estimate]
    area_share: list[Estimate]  # p̂_.k: the class's estimated share of the mapped area


def assess_sample(sample: StratifiedSample, n_classes: int) -> Assessment:
    """The error matrix in area proportions, overall/user's/producer's accuracies and each class's
    area share, all with standard errors (Stehman 2014's estimators)."""
    a = np.asarray(sample.unit_area, dtype=np.float64)
    m, r = np.asarray(sample.map_class), np.asarray(sample.ref_class)
    matrix = np.zeros((n_classes, n_classes))
    for i in range(n_classes):
        for j in range(n_classes):
            hit = (m == i) & (r == j)
            if hit.any():
                matrix[i, j] = ratio_estimate(sample, a * hit, a).value
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (m, r), 1)
    correct = a * (m == r)
    return Assessment(
        error_matrix=matrix,
        counts=counts,
        overall=ratio_estimate(sample, correct, a),
        users=[ratio_estimate(sample, correct * (m == k), a * (m == k)) for k in range(n_classes)],
        producers=[ratio_estimate(sample, correct * (r == k), a * (r == k)) for k in range(n_classes)],
        area_share=[ratio_estimate(sample, a * (r == k), a) for k in range(n_classes)],
    )
