"""Which pixels of a raster hold data: GDAL's rule, a user's override, or the strict rule.

numpy only at import (the config check reads :data:`NODATA_RULES` before heavy imports);
the functions taking ``src`` use a rasterio dataset's own mask API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from deepgeo_runner.core.errors import InputDataError


class NodataRule(StrEnum):
    """``data.nodata_rule``: see :data:`NODATA_RULES`."""

    gdal = "gdal"
    any_band = "any_band"


NODATA_RULES: tuple[str, ...] = tuple(r.value for r in NodataRule)
"""How a pixel's nodata is decided: ``gdal`` (the default) follows GDAL's dataset mask: a mask
band (internal, sidecar ``.msk``) or an alpha band when the file has one, else nodata only where
EVERY band equals its nodata value; ``any_band`` marks a pixel nodata when any one band does
(the strict rule, for products that fill single bands with nodata)."""

NodataValue = float | Sequence[float | None] | None


@dataclass(frozen=True)
class Nodata:
    """What marks a pixel without data, as ``data.nodata`` and ``data.nodata_rule`` say: one value or
    one per band overriding the file's (None: the file's own mask or nodata), judged by ``rule``
    (:data:`NODATA_RULES`). One object, because the value alone means nothing without its rule."""

    value: NodataValue = None
    rule: str = "gdal"

    def valid(self, src: Any, data: np.ndarray, window: Any = None, dates: int = 1) -> np.ndarray:
        """The valid pixels of ``data`` read from ``src`` over ``window`` (:func:`read_valid`)."""
        return read_valid(src, data, window, self.value, self.rule, dates=dates)


def per_band_nodata(nodata: NodataValue, count: int, what: str = "data.nodata") -> list[float | None]:
    """One nodata value (or None) per band, from one number or a per-band list."""
    if nodata is None or isinstance(nodata, int | float):
        return [None if nodata is None else float(nodata)] * count
    values = [None if v is None else float(v) for v in nodata]
    if len(values) != count:
        raise InputDataError(f"{what} lists {len(values)} nodata values but the image has {count} bands: "
                             "give one value, or one per band (null for a band without nodata).")
    return values


def valid_mask(stack: np.ndarray, nodata: NodataValue, rule: str = "gdal", dates: int = 1) -> np.ndarray:
    """Pixels holding data: finite in every band and, by ``rule``, not nodata.

    ``gdal``: nodata only where every band equals its nodata value (a stretched water pixel
    with SWIR = NIR = 0 but red > 0 is valid data, as GDAL's mask says); ``any_band``: nodata
    where any band does. A band without a nodata value never matches. With ``dates`` > 1 the
    bands are that many date-major groups and the rule holds per date: a pixel is valid only
    where every date holds data (a date that misses a place is nodata there, not zeros).
    """
    if rule not in NODATA_RULES:
        raise ValueError(f"nodata rule '{rule}': expected one of {list(NODATA_RULES)}")
    valid = np.all(np.isfinite(stack), axis=0) if stack.dtype.kind == "f" else np.ones(stack.shape[1:], bool)
    values = per_band_nodata(nodata, stack.shape[0])
    dates = dates if dates > 1 and stack.shape[0] % dates == 0 else 1
    per_date = stack.shape[0] // dates
    for d in range(dates):
        bands = range(d * per_date, (d + 1) * per_date)
        matches = [stack[b] == values[b] for b in bands if values[b] is not None and not np.isnan(values[b])]
        if not matches:
            continue
        if rule == "any_band":
            valid &= ~np.any(matches, axis=0)
        elif len(matches) == per_date:  # a band without nodata always holds data
            valid &= ~np.all(matches, axis=0)
    return valid


def mask_source(src: Any, nodata: NodataValue = None, rule: str = "gdal") -> str:
    """Where the validity of ``src``'s pixels comes from, in words for the data report."""
    if nodata is not None:
        return f"data.nodata={nodata} (overrides the file's {src.nodata})"
    if mask_band_kind(src):
        extra = " and any band equal to its nodata" if rule == "any_band" else ""
        return f"the file's {mask_band_kind(src)}{extra}"
    if any(v is not None for v in src.nodatavals):
        return f"nodata {src.nodata} declared by the file"
    return "none declared: only non-finite values are nodata"


def mask_band_kind(src: Any) -> str | None:
    """'mask band' or 'alpha band' when GDAL's dataset mask comes from one, else None."""
    from rasterio.enums import MaskFlags

    flags = src.mask_flag_enums
    if any(MaskFlags.alpha in f for f in flags):
        return "alpha band"
    if any(MaskFlags.per_dataset in f and MaskFlags.nodata not in f for f in flags):
        return "mask band"
    return None


def read_valid(
    src: Any, data: np.ndarray, window: Any = None,
    nodata: NodataValue = None, rule: str = "gdal", bands: Sequence[int] | None = None, dates: int = 1,
) -> np.ndarray:
    """Valid pixels of ``data`` (the bands read from ``src`` over ``window``), as GDAL sees them.

    ``nodata`` overrides the file's nodata values (and its mask); without it, the file's mask
    or alpha band decides when it has one (under ``any_band`` combined with the per-band test),
    else its declared nodata. ``bands`` (1-based) are the bands ``data`` holds when not all of
    them; ``dates``: a date-major stack, judged date by date (see :func:`valid_mask`).
    """
    finite = np.all(np.isfinite(data), axis=0) if data.dtype.kind == "f" else True
    masked = nodata is None and mask_band_kind(src)
    if masked and rule == "gdal":
        return (src.dataset_mask(window=window) > 0) & finite
    values = per_band_nodata(nodata, src.count) if nodata is not None else list(src.nodatavals)
    if bands is not None:
        values = [values[b - 1] for b in bands]
    valid = valid_mask(data, values, rule, dates if bands is None else 1)
    if masked:  # any_band: the file's mask still removes what it masks
        valid &= src.dataset_mask(window=window) > 0
    return valid


def one_nodata(nodata: NodataValue, what: str = "a mosaic, crop (data.bbox/aoi) or reprojection") -> float | None:
    """One nodata value for ``what`` (GDAL's warper takes one per source): a per-band list only
    when all its values agree (NaN agrees with NaN)."""
    if nodata is None or isinstance(nodata, int | float):
        return nodata
    values = list(nodata)
    if len({"nan" if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in values}) == 1:
        return values[0]
    raise InputDataError(f"data.nodata={values}: a per-band nodata list works on one image used as it is; "
                         f"{what} needs one value for every band.")
