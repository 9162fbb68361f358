"""A new scene unlike the training scene is flagged band by band before it is classified."""

from __future__ import annotations

import numpy as np

from deepgeo_runner.stages.drift import drift_warnings, input_profile
from tests.helpers import write_image


def _scene(path, scale: float, dtype: str):
    rng = np.random.default_rng(0)
    data = (rng.uniform(20, 120, (3, 32, 32)) * scale).astype(dtype)
    return write_image(path, data, nodata=0)


def test_same_product_passes_and_a_rescaled_product_is_flagged(tmp_path):
    names = ["red", "nir", "swir1"]
    trained = input_profile(_scene(tmp_path / "a.tif", 1, "uint8"), band_names=names)
    assert trained["bands"] == 3 and trained["dtype"] == "uint8" and len(trained["percentiles"]) == 3
    same = input_profile(_scene(tmp_path / "b.tif", 1.05, "uint8"), band_names=names)
    assert drift_warnings(trained, same, "b.tif") == []
    other = input_profile(_scene(tmp_path / "c.tif", 100, "uint16"), band_names=names)
    warnings = drift_warnings(trained, other, "c.tif")
    assert any("uint16" in w and "uint8" in w for w in warnings)
    assert sum("band '" in w for w in warnings) == 3 and "band 'nir'" in " ".join(warnings)
    fewer = dict(other, bands=2)
    assert "has 2 bands" in drift_warnings(trained, fewer, "d.tif")[0]
    assert drift_warnings(None, other, "c.tif") == []  # older checkpoints carry no profile
