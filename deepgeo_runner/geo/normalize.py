"""Normalization statistics fitted on the training area only, and their application.

Fitting on the whole scene would let test pixels shape the inputs; fitting on the training
blocks keeps the held-out split honest. Statistics are plain JSON so that prediction on a
new scene reuses them exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from deepgeo_runner.errors import ConfigError, InputDataError

METHODS = ("standard", "none")


@dataclass(frozen=True)
class NormStats:
    """Per-band shift and scale: normalized = (x - shift) / scale."""

    method: str
    shift: list[float]
    scale: list[float]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NormStats:
        return cls(d["method"], list(d["shift"]), list(d["scale"]))


def fit_stats(stack: np.ndarray, fit_mask: np.ndarray, method: str) -> NormStats:
    """Fit per-band statistics on the pixels of ``fit_mask`` (training area, valid data)."""
    if method not in METHODS:
        raise ConfigError(
            f"preprocessing.normalization: unknown method '{method}'. Available: {list(METHODS)}."
        )
    n_bands = stack.shape[0]
    if method == "none":
        return NormStats(method, [0.0] * n_bands, [1.0] * n_bands)
    if not fit_mask.any():
        raise InputDataError(
            "no valid pixel in the training area to fit normalization statistics: the image "
            "is all nodata there. Check data.nodata and data.split_fractions."
        )
    shift, scale = [], []
    for band in stack:
        values = band[fit_mask].astype(np.float64)
        std = float(values.std())
        shift.append(float(values.mean()))
        scale.append(std if std > 0 else 1.0)
    return NormStats(method, shift, scale)


def apply_stats(stack: np.ndarray, stats: NormStats) -> np.ndarray:
    """Normalize a (C, H, W) stack as float32."""
    shift = np.asarray(stats.shift, dtype=np.float32)[:, None, None]
    scale = np.asarray(stats.scale, dtype=np.float32)[:, None, None]
    return (stack.astype(np.float32) - shift) / scale
