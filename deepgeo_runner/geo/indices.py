"""Spectral indices from bands named by their role (blue, green, red, nir, swir1, swir2).

Inputs are reflectance. A zero denominator or a nodata input gives nodata in the index,
never NaN or inf, so the normalization statistics and the network never see them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from deepgeo_runner.errors import ConfigError

Bands = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class SpectralIndex:
    """A normalized ratio of band roles: (numerator, denominator) as functions of the bands."""

    roles: tuple[str, ...]
    numerator: Callable[[Bands], np.ndarray]
    denominator: Callable[[Bands], np.ndarray]
    description: str


def _normalized_difference(a: str, b: str, description: str) -> SpectralIndex:
    return SpectralIndex(
        (a, b), lambda x: x[a] - x[b], lambda x: x[a] + x[b], description
    )


INDICES: dict[str, SpectralIndex] = {
    "ndvi": _normalized_difference("nir", "red", "Normalized Difference Vegetation Index"),
    "ndwi": _normalized_difference("green", "nir", "Normalized Difference Water Index (McFeeters)"),
    "mndwi": _normalized_difference("green", "swir1", "Modified NDWI (Xu)"),
    "nbr": _normalized_difference("nir", "swir2", "Normalized Burn Ratio"),
    "ndmi": _normalized_difference("nir", "swir1", "Normalized Difference Moisture Index"),
    "ndbi": _normalized_difference("swir1", "nir", "Normalized Difference Built-up Index"),
    "evi2": SpectralIndex(
        ("nir", "red"),
        lambda x: 2.5 * (x["nir"] - x["red"]),
        lambda x: x["nir"] + 2.4 * x["red"] + 1.0,
        "Two-band Enhanced Vegetation Index (Jiang et al. 2008)",
    ),
    "evi": SpectralIndex(
        ("nir", "red", "blue"),
        lambda x: 2.5 * (x["nir"] - x["red"]),
        lambda x: x["nir"] + 6.0 * x["red"] - 7.5 * x["blue"] + 1.0,
        "Enhanced Vegetation Index (Huete et al. 2002)",
    ),
    "savi": SpectralIndex(
        ("nir", "red"),
        lambda x: 1.5 * (x["nir"] - x["red"]),
        lambda x: x["nir"] + x["red"] + 0.5,
        "Soil-Adjusted Vegetation Index (L = 0.5)",
    ),
}


def check_indices(names: Sequence[str], band_names: Sequence[str]) -> None:
    """Fail early, naming the index and the missing band role, before any pixel is read."""
    for name in names:
        if name not in INDICES:
            raise ConfigError(
                f"preprocessing.indices: unknown index '{name}'. Available: {sorted(INDICES)}."
            )
        missing = [r for r in INDICES[name].roles if r not in band_names]
        if missing:
            raise ConfigError(
                f"preprocessing.indices: '{name}' needs the band role(s) {missing}, but "
                f"data.band_names is {list(band_names)}. Name the bands in file order, e.g. "
                "data.band_names=[blue,green,red,nir,swir1,swir2], or drop the index."
            )


def compute_index(
    name: str, bands: Bands, valid: np.ndarray, nodata: float
) -> np.ndarray:
    """One index as float32; nodata where an input is invalid or the denominator is zero."""
    index = INDICES[name]
    num = index.numerator(bands).astype(np.float64)
    den = index.denominator(bands).astype(np.float64)
    ok = valid & np.isfinite(num) & np.isfinite(den) & (den != 0)
    out = np.full(num.shape, nodata, dtype=np.float32)
    out[ok] = (num[ok] / den[ok]).astype(np.float32)
    return out
