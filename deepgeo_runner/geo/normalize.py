"""Normalization statistics fitted on the training area only, and their application.

Fitting on the whole scene would let test pixels shape the inputs; fitting on the training
blocks keeps the held-out split honest. Statistics are plain JSON so that prediction on a
new scene reuses them exactly.

Every strategy reduces to ``normalized = (clip(x, clip_min, clip_max) - shift) / scale`` per
band, so applying statistics needs no knowledge of how they were fitted. Statistics are
fitted in a streaming way (:class:`StatsAccumulator`), window after window, so a scene larger
than memory is fitted with bounded memory:

- ``standard``: mean / std, exact (Chan's parallel merge of per-window moments);
- ``median_std``: median / std (the median from a bounded random subsample of the training
  pixels, exact while the training area holds fewer pixels than the subsample size);
- ``minmax``: min..max → ``norm_range`` (exact), per band or global;
- ``percentile``: clip at the ``norm_percentiles`` (e.g. 2–98 %) then scale to ``norm_range``,
  per band or global (percentiles from the subsample);
- ``constant``: divide by a constant (e.g. 10000 for reflectance stored as integers);
- ``per_chip``: the stack is written as it is and each chip (and prediction window) is
  standardized on its own valid pixels by :func:`standardize_chips`;
- ``none``: the values as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from deepgeo_runner.core.errors import ConfigError, InputDataError

METHODS = ("standard", "median_std", "minmax", "percentile", "constant", "per_chip", "none")
_NEEDS_SAMPLE = ("median_std", "percentile")


@dataclass(frozen=True)
class NormOptions:
    """How to normalize: the method and its parameters (the ``preprocessing`` keys)."""

    method: str = "standard"
    per_band: bool = True  # minmax/percentile: False pools every band into one range
    out_range: tuple[float, float] = (0.0, 1.0)  # minmax/percentile target range
    percentiles: tuple[float, float] = (2.0, 98.0)  # percentile: clip bounds
    constant: float = 10000.0  # constant: the divisor
    samples: int = 1_000_000  # median/percentile: pixels of the training area kept

    def check(self) -> None:
        """Fail with the key to fix before any pixel is read."""
        if self.method not in METHODS:
            raise ConfigError(
                f"preprocessing.normalization: unknown method '{self.method}'. Available: {list(METHODS)}."
            )
        lo, hi = self.out_range
        if not lo < hi:
            raise ConfigError(
                f"preprocessing.norm_range={list(self.out_range)}: needs min < max, e.g. [0, 1]."
            )
        p_lo, p_hi = self.percentiles
        if not 0 <= p_lo < p_hi <= 100:
            raise ConfigError(
                f"preprocessing.norm_percentiles={list(self.percentiles)}: needs 0 <= low < high <= 100, "
                "e.g. [2, 98]."
            )
        if self.constant == 0:
            raise ConfigError("preprocessing.norm_constant=0: the divisor must be non-zero, e.g. 10000.")
        if self.samples < 1000:
            raise ConfigError(f"preprocessing.norm_samples={self.samples}: use at least 1000 pixels.")


@dataclass(frozen=True)
class NormStats:
    """Per-band clip bounds, shift and scale: normalized = (clip(x) - shift) / scale."""

    method: str
    shift: list[float]
    scale: list[float]
    clip_min: list[float] | None = None
    clip_max: list[float] | None = None
    per_chip: bool = False  # chips/windows are standardized on their own pixels
    summary: dict = field(default_factory=dict)  # fitted mean/std/min/max/... for the record

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NormStats:
        return cls(d["method"], list(d["shift"]), list(d["scale"]), d.get("clip_min"),
                   d.get("clip_max"), bool(d.get("per_chip", False)), dict(d.get("summary", {})))


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A counter-based hash: the random key of a pixel depends on its position only."""
    x = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class StatsAccumulator:
    """Streaming per-band statistics over windows of the training area.

    Moments are merged exactly (count, mean, sum of squared deviations); min and max are
    exact; medians and percentiles come from a uniform subsample of at most ``samples``
    pixels chosen by a hash of each pixel's position, so the result does not depend on
    the window layout and is exact whenever the training area is smaller than the sample.
    """

    def __init__(self, n_bands: int, samples: int = 1_000_000, keep_sample: bool = False) -> None:
        self.n_bands = n_bands
        self.count = 0
        self.mean = np.zeros(n_bands)
        self.m2 = np.zeros(n_bands)
        self.min = np.full(n_bands, np.inf)
        self.max = np.full(n_bands, -np.inf)
        self.samples = samples
        self.keep_sample = keep_sample
        self._keys = np.empty(0, dtype=np.uint64)
        self._values = np.empty((0, n_bands), dtype=np.float64)

    def update(self, stack: np.ndarray, mask: np.ndarray, flat_index: np.ndarray | None = None) -> None:
        """Add the pixels of ``stack`` (C, h, w) where ``mask`` (h, w) is True.

        Args:
            flat_index: the (h, w) global pixel numbers (row * width + col), for the
                position-keyed subsample; default: positions inside this array.
        """
        values = stack[:, mask].astype(np.float64).T  # (n, C)
        n = values.shape[0]
        if n == 0:
            return
        w_mean = values.mean(axis=0)
        w_m2 = ((values - w_mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = w_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + w_m2 + delta**2 * (self.count * n / total)
        self.count = total
        self.min = np.minimum(self.min, values.min(axis=0))
        self.max = np.maximum(self.max, values.max(axis=0))
        if self.keep_sample:
            if flat_index is None:
                flat_index = np.arange(mask.size, dtype=np.uint64).reshape(mask.shape)
            keys = _splitmix64(flat_index[mask])
            self._keys = np.concatenate([self._keys, keys])
            self._values = np.concatenate([self._values, values])
            if self._keys.size > self.samples:
                keep = np.argpartition(self._keys, self.samples - 1)[: self.samples]
                self._keys, self._values = self._keys[keep], self._values[keep]

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / max(self.count, 1))

    def sample(self) -> np.ndarray:
        """The (n, C) subsample of training pixels (all of them when few)."""
        return self._values


def _safe(scale: np.ndarray) -> np.ndarray:
    """A zero spread (constant band) must not divide by zero: scale 1 leaves it centred."""
    return np.where(scale > 0, scale, 1.0)


def needs_fit(method: str) -> bool:
    """Whether the method reads the training area (else statistics are known up front)."""
    return method not in ("constant", "per_chip", "none")


def new_accumulator(n_bands: int, options: NormOptions) -> StatsAccumulator:
    """An accumulator keeping the subsample only when the method needs quantiles."""
    return StatsAccumulator(n_bands, options.samples, options.method in _NEEDS_SAMPLE)


def stats_from_accumulator(acc: StatsAccumulator | None, n_bands: int, options: NormOptions) -> NormStats:
    """Turn fitted moments/extremes/sample into the shift/scale/clip of ``options.method``."""
    options.check()
    method = options.method
    ones, zeros = [1.0] * n_bands, [0.0] * n_bands
    if method == "none":
        return NormStats(method, zeros, ones)
    if method == "per_chip":
        return NormStats(method, zeros, ones, per_chip=True)
    if method == "constant":
        return NormStats(method, zeros, [float(options.constant)] * n_bands)
    if acc is None or acc.count == 0:
        raise InputDataError(
            "no valid pixel in the training area to fit normalization statistics: the image "
            "is all nodata there. Check data.nodata, data.bbox/data.aoi and data.split_fractions."
        )
    summary = {"count": int(acc.count), "mean": acc.mean.tolist(), "std": acc.std.tolist(),
               "min": acc.min.tolist(), "max": acc.max.tolist()}
    if method == "standard":
        return NormStats(method, acc.mean.tolist(), _safe(acc.std).tolist(), summary=summary)
    sample = acc.sample()
    if method == "median_std":
        median = np.median(sample, axis=0)
        summary["median"] = median.tolist()
        return NormStats(method, median.tolist(), _safe(acc.std).tolist(), summary=summary)
    lo_out, hi_out = options.out_range
    if method == "minmax":
        lo, hi = acc.min, acc.max
        clip_lo = clip_hi = None
    else:  # percentile
        p = list(options.percentiles)
        if options.per_band:
            lo, hi = np.percentile(sample, p, axis=0)
        else:
            lo, hi = (np.full(n_bands, v) for v in np.percentile(sample, p))
        summary["percentiles"] = {str(p[0]): np.atleast_1d(lo).tolist(),
                                  str(p[1]): np.atleast_1d(hi).tolist()}
        clip_lo, clip_hi = lo.tolist(), hi.tolist()
    if not options.per_band:
        lo, hi = np.full(n_bands, lo.min()), np.full(n_bands, hi.max())
        if clip_lo is not None:
            clip_lo, clip_hi = lo.tolist(), hi.tolist()
    # (x - lo) / (hi - lo) * (b - a) + a  ==  (x - shift) / scale
    scale = _safe((hi - lo) / (hi_out - lo_out))
    shift = lo - lo_out * scale
    return NormStats(method, shift.tolist(), scale.tolist(), clip_lo, clip_hi, summary=summary)


def fit_stats(
    stack: np.ndarray, fit_mask: np.ndarray, method: str | NormOptions
) -> NormStats:
    """Fit per-band statistics on the pixels of ``fit_mask`` (training area, valid data)."""
    options = method if isinstance(method, NormOptions) else NormOptions(method)
    options.check()
    acc = None
    if needs_fit(options.method):
        acc = new_accumulator(stack.shape[0], options)
        acc.update(stack, fit_mask)
    return stats_from_accumulator(acc, stack.shape[0], options)


def apply_stats(stack: np.ndarray, stats: NormStats) -> np.ndarray:
    """Normalize a (C, H, W) stack as float32."""
    out = stack.astype(np.float32, copy=True)
    if stats.clip_min is not None and stats.clip_max is not None:
        lo = np.asarray(stats.clip_min, dtype=np.float32)[:, None, None]
        hi = np.asarray(stats.clip_max, dtype=np.float32)[:, None, None]
        np.clip(out, lo, hi, out=out)
    out -= np.asarray(stats.shift, dtype=np.float32)[:, None, None]
    out /= np.asarray(stats.scale, dtype=np.float32)[:, None, None]
    return out


def standardize_chips(
    chips: np.ndarray, nodata: float | None = None, valid: np.ndarray | None = None
) -> np.ndarray:
    """Per-chip standardization: each chip and band to mean 0 / std 1 over its valid pixels.

    Args:
        chips: (C, H, W) or (N, C, H, W).
        nodata: value marking invalid pixels (kept as they are in the output).
        valid: (H, W) or (N, H, W) mask of valid pixels; default: not ``nodata`` in any band.

    Call it where chips and prediction windows are produced when ``stats.per_chip`` is set;
    a chip with no valid pixel is returned unchanged.
    """
    single = chips.ndim == 3
    x = chips[None] if single else chips
    x = x.astype(np.float32, copy=True)
    if valid is None:
        valid = np.all(np.isfinite(x), axis=1)
        if nodata is not None:
            valid &= np.all(x != nodata, axis=1)
    elif single:
        valid = valid[None]
    w = valid[:, None].astype(np.float64)  # (N, 1, H, W)
    n = w.sum(axis=(2, 3), keepdims=True)
    safe_n = np.maximum(n, 1)
    xv = np.where(valid[:, None], x, 0).astype(np.float64)
    mean = xv.sum(axis=(2, 3), keepdims=True) / safe_n
    var = (((xv - mean) * w) ** 2).sum(axis=(2, 3), keepdims=True) / safe_n
    std = np.sqrt(var)
    std = np.where(std > 0, std, 1.0)
    out = np.where(valid[:, None] & (n > 0), (x - mean) / std, x).astype(np.float32)
    return out[0] if single else out


__all__: Sequence[str] = [
    "METHODS", "NormOptions", "NormStats", "StatsAccumulator", "apply_stats", "fit_stats",
    "needs_fit", "new_accumulator", "standardize_chips", "stats_from_accumulator",
]
