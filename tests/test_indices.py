import numpy as np
import pytest

from deepgeo_runner.core.errors import ConfigError
from deepgeo_runner.geo.expressions import parse_expression
from deepgeo_runner.geo.indices import INDICES, check_indices, compute_index, resolve_index
from deepgeo_runner.geo.sensors import sensor_band_names

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


# --- user expressions, the spyndex catalogue, sensor presets -------------------------------


def test_user_expression_matches_numpy_and_zero_or_nodata_give_nodata():
    bands = _bands(3)
    bands["nir"][0, 0] = bands["green"][0, 0] = 0.0  # 0 / 0
    bands["thermal"] = np.full((5, 6), 300.0, dtype=np.float32)  # a band outside the known roles
    valid = np.ones((5, 6), dtype=bool)
    valid[2, 3] = False
    expr = {"gndvi": "(nir - green) / (nir + green)", "tn": "-thermal / 100 + nir ** 2 * 2"}
    gndvi = compute_index(resolve_index("gndvi", expr), bands, valid, NODATA)
    with np.errstate(invalid="ignore"):
        want = (bands["nir"] - bands["green"]).astype(np.float64) / (bands["nir"] + bands["green"])
    ok = valid.copy()
    ok[0, 0] = False
    np.testing.assert_allclose(gndvi[ok], want[ok], rtol=1e-5)
    assert gndvi[0, 0] == NODATA and gndvi[2, 3] == NODATA and np.isfinite(gndvi).all()
    tn = compute_index(resolve_index("tn", expr), bands, valid, NODATA)
    np.testing.assert_allclose(tn[ok], (-3.0 + bands["nir"].astype(np.float64) ** 2 * 2)[ok], rtol=1e-5)
    assert resolve_index("tn", expr).roles == ("thermal", "nir")


@pytest.mark.parametrize("text", ["__import__('os').system('x')", "nir.real", "nir[0]", "nir if red else 1",
                                  "nir > red", "(lambda: 1)()", "'a' + nir", "nir % 2", "nir // 2", "nir +"])
def test_unsafe_or_invalid_expressions_are_refused(text):
    with pytest.raises(ConfigError, match="preprocessing.expressions"):
        parse_expression(text)


def test_expression_constant_division_by_zero_is_nodata_not_an_exception():
    bands = _bands()
    out = compute_index(resolve_index("x", {"x": "nir / 0 + 1 / 0"}), bands, np.ones((5, 6), bool), NODATA)
    assert (out == NODATA).all()


def test_spyndex_catalogue_indices_map_roles_and_constants():
    pytest.importorskip("spyndex")
    b = {k: v.astype(np.float64) for k, v in _bands(5).items()}
    valid = np.ones((5, 6), dtype=bool)
    gndvi = compute_index(resolve_index("GNDVI"), _bands(5), valid, NODATA)
    np.testing.assert_allclose(gndvi, (b["nir"] - b["green"]) / (b["nir"] + b["green"]), rtol=1e-5)
    nirv = compute_index(resolve_index("nirv"), _bands(5), valid, NODATA)  # case-insensitive
    np.testing.assert_allclose(nirv, (b["nir"] - b["red"]) / (b["nir"] + b["red"]) * b["nir"], rtol=1e-5)
    # the catalogue's SAVI with our L through index_constants = our savi (L = 0.5)
    assert resolve_index("SAVI").source == "builtin"  # ours win on name clashes
    msavi = resolve_index("MSAVI")
    assert set(msavi.roles) == {"nir", "red"} and msavi.source == "spyndex"
    with pytest.raises(ConfigError, match="needs the band role"):
        check_indices(["GNDVI"], ["red", "nir"])


def test_spyndex_constant_without_default_must_be_given():
    spyndex = pytest.importorskip("spyndex")
    name = next(n for n, i in spyndex.indices.items()
                if any(spyndex.constants.get(s) is not None and spyndex.constants[s].default is None
                       for s in i.bands))
    with pytest.raises(ConfigError, match="index_constants"):
        resolve_index(name)


def test_sensor_presets_name_the_bands():
    assert sensor_band_names("landsat8", 7) == ["coastal", "blue", "green", "red", "nir", "swir1", "swir2"]
    assert sensor_band_names("Landsat-9", 11)[7:] == ["pan", "cirrus", "thermal1", "thermal2"]
    assert sensor_band_names("sentinel2", 12)[7:9] == ["nir", "nir2"]
    assert sensor_band_names("landsat5", 7)[5] == "thermal"
    with pytest.raises(ConfigError, match="knows layouts"):
        sensor_band_names("landsat8", 5)
    with pytest.raises(ConfigError, match="unknown"):
        sensor_band_names("spot6")
