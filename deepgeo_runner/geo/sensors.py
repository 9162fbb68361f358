"""Sensor presets: the role of each band of common products, so users need not list them.

A preset maps a band count to names, because one sensor ships in several layouts (e.g.
Landsat 8 Collection 2 Level-2 surface reflectance has the 7 OLI reflective bands, Level-1
has 11). Names outside the index roles (``coastal``, ``pan``, ``cirrus``, ``thermal``...) are
carried along as ordinary features. Any other sensor: list ``data.band_names`` yourself.
"""

from __future__ import annotations

from deepgeo_runner.core.errors import ConfigError

_OLI7 = ["coastal", "blue", "green", "red", "nir", "swir1", "swir2"]
_TM7 = ["blue", "green", "red", "nir", "swir1", "thermal", "swir2"]
_S2_13 = ["coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir2",
          "watervapor", "cirrus", "swir1", "swir2"]

SENSORS: dict[str, dict[int, list[str]]] = {
    # Landsat 8/9 OLI(-2)/TIRS: C2 L2 SR_B1..B7; L1 B1..B11 (B8 pan, B9 cirrus, B10/B11 TIRS)
    "landsat8": {7: _OLI7, 6: _OLI7[1:], 8: _OLI7 + ["thermal"],
                 11: _OLI7 + ["pan", "cirrus", "thermal1", "thermal2"]},
    "landsat9": {7: _OLI7, 6: _OLI7[1:], 8: _OLI7 + ["thermal"],
                 11: _OLI7 + ["pan", "cirrus", "thermal1", "thermal2"]},
    # Landsat 4/5 TM, 7 ETM+: B1..B7 with B6 thermal between SWIR1 and SWIR2
    "landsat5": {7: _TM7, 6: [b for b in _TM7 if b != "thermal"]},
    "landsat7": {7: _TM7, 6: [b for b in _TM7 if b != "thermal"], 8: _TM7 + ["pan"]},
    # Sentinel-2 MSI: L1C 13 bands; L2A 12 (no B10 cirrus); the 10 bands at 10/20 m
    "sentinel2": {13: _S2_13, 12: [b for b in _S2_13 if b != "cirrus"],
                  10: [b for b in _S2_13 if b not in ("coastal", "watervapor", "cirrus")],
                  4: ["blue", "green", "red", "nir"]},
}


def sensor_band_names(sensor: str, n_bands: int | None = None) -> list[str]:
    """Band roles of ``sensor`` for a file of ``n_bands`` bands (None: the fullest layout)."""
    key = sensor.lower().replace("-", "").replace("_", "")
    if key not in SENSORS:
        raise ConfigError(f"data.sensor='{sensor}' is unknown. Available: {sorted(SENSORS)}; "
                          "for another sensor list data.band_names in file order instead.")
    layouts = SENSORS[key]
    if n_bands is None:
        return max(layouts.values(), key=len)
    if n_bands not in layouts:
        raise ConfigError(
            f"data.sensor='{sensor}' knows layouts of {sorted(layouts)} bands, but the image has "
            f"{n_bands}: list data.band_names in file order instead."
        )
    return list(layouts[n_bands])
