"""The ground area of a map's pixels, in hectares, in projected and geographic CRSs.

In a projected CRS every pixel covers |det(transform)| square CRS units (times the unit's size
in metres, squared). In a geographic CRS a pixel is a cell of the graticule whose area shrinks
towards the poles: it is computed on the CRS's ellipsoid, exactly, from the authalic (equal-area)
latitude: the area between the meridians λ1, λ2 and the parallels φ1, φ2 is
(λ2 − λ1) · b²/2 · [q(φ2) − q(φ1)], with q(φ) = sin φ / (1 − e² sin² φ) + atanh(e sin φ) / e.
(Areas in the map's own projection are only as good as that projection: a UTM map is not equal
area, but its scale error stays under 0.1 % within its zone, below a sample's uncertainty.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine
from pyproj import CRS

M2_PER_HA = 10_000.0


@dataclass(frozen=True)
class PixelArea:
    """Hectares of each row's pixels (one value per row; all equal in a projected CRS)."""

    row_ha: np.ndarray
    crs_kind: str  # 'projected' or 'geographic'
    crs_name: str

    @property
    def constant(self) -> bool:
        return bool(np.all(self.row_ha == self.row_ha[0]))

    def describe(self) -> dict:
        """For ``assessment.json``: the CRS, and the pixel area (its range where it varies)."""
        out: dict = {"crs": self.crs_name, "crs_kind": self.crs_kind}
        if self.constant:
            out["pixel_area_ha"] = float(self.row_ha[0])
        else:
            out["pixel_area_ha_range"] = [float(self.row_ha.min()), float(self.row_ha.max())]
        return out


def _authalic_q(lat_rad: np.ndarray, e: float) -> np.ndarray:
    s = np.sin(lat_rad)
    if e == 0.0:
        return 2.0 * s  # a sphere
    return s / (1.0 - (e * s) ** 2) + np.arctanh(e * s) / e


def graticule_cell_area_m2(lat1: np.ndarray, lat2: np.ndarray, dlon: float, crs: CRS) -> np.ndarray:
    """Area (m²) on the CRS's ellipsoid between two parallels (degrees) over ``dlon`` degrees."""
    ellipsoid = crs.ellipsoid
    a = ellipsoid.semi_major_metre
    b = ellipsoid.semi_minor_metre
    e = float(np.sqrt(max(0.0, 1.0 - (b / a) ** 2)))
    q1, q2 = _authalic_q(np.radians(lat1), e), _authalic_q(np.radians(lat2), e)
    return np.abs(np.radians(dlon) * b * b / 2.0 * (q2 - q1))


def pixel_area(crs_input: object, transform: Affine, height: int) -> PixelArea:
    """Hectares of the pixels of each of ``height`` rows of a grid.

    Args:
        crs_input: the grid's CRS (a rasterio CRS, WKT, 'EPSG:…').
        transform: the grid's affine transform (north-up for a geographic CRS).
        height: the number of rows.
    """
    crs_text = crs_input.to_wkt() if hasattr(crs_input, "to_wkt") else crs_input
    crs = CRS.from_user_input(crs_text)
    name = crs.to_string()
    if crs.is_geographic:
        if transform.b != 0 or transform.d != 0:
            raise ValueError(f"pixel areas of a rotated grid in the geographic CRS {name} are not supported: "
                             "warp the map to a north-up grid (gdalwarp) first")
        to_deg = np.degrees(crs.axis_info[0].unit_conversion_factor)  # unit → radians → degrees
        rows = np.arange(height, dtype=np.float64)
        lat_top = (transform.f + rows * transform.e) * to_deg
        lat_bottom = lat_top + transform.e * to_deg
        area = graticule_cell_area_m2(lat_top, lat_bottom, abs(transform.a) * to_deg, crs)
        return PixelArea(area / M2_PER_HA, "geographic", name)
    if not crs.is_projected:
        raise ValueError(f"CRS {name} is neither projected nor geographic: pixel areas are unknown")
    metres = crs.axis_info[0].unit_conversion_factor
    area = abs(transform.a * transform.e - transform.b * transform.d) * metres**2
    return PixelArea(np.full(height, area / M2_PER_HA), "projected", name)
