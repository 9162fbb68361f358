import numpy as np
import pytest

from deepgeo_runner.errors import ConfigError
from deepgeo_runner.geo.indices import INDICES, check_indices, compute_index

NODATA = -9999.0


def _bands(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {r: rng.uniform(0.01, 0.5, (5, 6)).astype(np.float32)
            for r in ("blue", "green", "red", "nir", "swir1", "swir2")}


REFERENCE = {
    "ndvi": lambda b: (b["nir"] - b["red"]) / (b["nir"] + b["red"]),
    "ndwi": lambda b: (b["green"] - b["nir"]) / (b["green"] + b["nir"]),
    "mndwi": lambda b: (b["green"] - b["swir1"]) / (b["green"] + b["swir1"]),
    "nbr": lambda b: (b["nir"] - b["swir2"]) / (b["nir"] + b["swir2"]),
    "ndmi": lambda b: (b["nir"] - b["swir1"]) / (b["nir"] + b["swir1"]),
    "ndbi": lambda b: (b["swir1"] - b["nir"]) / (b["swir1"] + b["nir"]),
    "evi2": lambda b: 2.5 * (b["nir"] - b["red"]) / (b["nir"] + 2.4 * b["red"] + 1),
    "evi": lambda b: 2.5 * (b["nir"] - b["red"]) / (b["nir"] + 6 * b["red"] - 7.5 * b["blue"] + 1),
    "savi": lambda b: 1.5 * (b["nir"] - b["red"]) / (b["nir"] + b["red"] + 0.5),
}


@pytest.mark.parametrize("name", sorted(INDICES))
def test_index_matches_numpy_reference(name):
    bands = _bands()
    valid = np.ones((5, 6), dtype=bool)
    got = compute_index(name, bands, valid, NODATA)
    want = REFERENCE[name]({k: v.astype(np.float64) for k, v in bands.items()})
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got.dtype == np.float32


def test_zero_denominator_and_nodata_give_nodata_not_nan():
    bands = _bands()
    bands["nir"][0, 0] = 0.0
    bands["red"][0, 0] = 0.0  # 0 / 0
    valid = np.ones((5, 6), dtype=bool)
    valid[1, 1] = False
    out = compute_index("ndvi", bands, valid, NODATA)
    assert out[0, 0] == NODATA and out[1, 1] == NODATA
    assert np.isfinite(out).all()


def test_check_indices_names_missing_role_and_unknown_index():
    with pytest.raises(ConfigError, match="'evi2' needs the band role"):
        check_indices(["evi2"], ["blue", "green", "red"])
    with pytest.raises(ConfigError, match="unknown index 'nvdi'"):
        check_indices(["nvdi"], ["red", "nir"])
