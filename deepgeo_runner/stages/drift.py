"""Is a new scene like the one the model was trained on? A profile of the input, and a comparison.

A checkpoint applied to a scene of another sensor, product level or stretch still produces a
map, just a wrong one. The training scene's profile (band count, dtype, per-band percentiles
of its valid pixels) is stored in every checkpoint; applying the checkpoint profiles the new
scene the same way and warns, band by band, where the two differ by much.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepgeo_runner.geo.raster_io import NodataValue, read_sample

DRIFT_LIMIT = 0.5  # a median moved by more than half the training p2-p98 range is a warning


def input_profile(image: str | Path, nodata: NodataValue = None, rule: str = "gdal",
                  band_names: Sequence[str] | None = None, dates: int = 1) -> dict[str, Any]:
    """Band count, dtype and per-band 2/50/98th percentiles of the valid pixels (decimated read)."""
    return profile_of_sample(read_sample(image, nodata, rule, dates), band_names)


def profile_of_sample(sample: tuple[np.ndarray, np.ndarray, str],
                      band_names: Sequence[str] | None = None) -> dict[str, Any]:
    """The profile of a :func:`~deepgeo_runner.geo.raster_io.read_sample` (one read serves the
    data check's reflectance test and this profile)."""
    data, valid, dtype = sample
    count = data.shape[0]
    values = data[:, valid].astype(np.float64)
    names = list(band_names) if band_names and len(band_names) == count else [f"band{i + 1}" for i in range(count)]
    if values.shape[1] == 0:
        return {"bands": count, "dtype": dtype, "band_names": names, "percentiles": None}
    pct = np.percentile(values, [2, 50, 98], axis=1).T
    return {"bands": count, "dtype": dtype, "band_names": names, "percentiles": np.round(pct, 6).tolist()}


def drift_warnings(trained: dict[str, Any] | None, new: dict[str, Any], image: Any) -> list[str]:
    """Plain-language differences between the training scene's profile and a new scene's."""
    if not trained:
        return []
    out = []
    if trained["bands"] != new["bands"]:
        out.append(f"'{image}' has {new['bands']} bands; the model was trained on {trained['bands']} "
                   f"{trained['band_names']}.")
        return out
    if trained["dtype"] != new["dtype"]:
        out.append(f"'{image}' holds {new['dtype']} values; the training scene held {trained['dtype']}: another "
                   "product or stretch? The model sees the values after the training statistics are applied.")
    if trained.get("percentiles") is None or new.get("percentiles") is None:
        return out
    for name, old, now in zip(trained["band_names"], trained["percentiles"], new["percentiles"], strict=True):
        spread = max(old[2] - old[0], 1e-12)
        shift = abs(now[1] - old[1]) / spread
        if shift > DRIFT_LIMIT:
            out.append(f"band '{name}' of '{image}': median {now[1]:g} against {old[1]:g} in training "
                       f"(training 2-98 % range {old[0]:g}-{old[2]:g}; shifted by {shift:.1f} of it). "
                       "Check that it is the same sensor, product level and scaling (data.scale/offset).")
    return out
