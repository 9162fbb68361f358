"""The exported graph prepares raw bands exactly as ``prepare_scene`` + the prediction window reader do.

Torch only (no ONNX export): the preparation inside :class:`RawBandsModel` against the prepared stack, for
every kind of index, normalization, band scaling, kept band and nodata rule.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from deepgeo_runner.export.graph import ExportError, RawBandsModel
from deepgeo_runner.geo.nodata import Nodata
from deepgeo_runner.geo.normalize import NormOptions, standardize_chips
from deepgeo_runner.geo.raster_io import valid_mask
from deepgeo_runner.ml.model_card import ModelCard
from deepgeo_runner.stages.prepare import PrepareOptions, prepare_scene
from tests.helpers import write_image
from tests.helpers.tiny_model import CLASSES, FCN

CASES = {
    "ndvi+evi2, standard": dict(indices=["ndvi", "evi2"], method="standard"),
    "expression, percentile": dict(indices=[], method="percentile",
                                   expressions={"gnd": "(nir - green) / (nir + green)"}),
    "spyndex GNDVI, minmax": dict(indices=["GNDVI"], method="minmax"),
    "per_chip": dict(indices=["ndvi"], method="per_chip"),
    "scale/offset, constant": dict(indices=["savi"], method="constant", scale=2.0, offset=[-0.01, 0, 0, 0.02]),
    "kept bands, any_band": dict(indices=["ndvi"], method="median_std", keep_bands=["red", "nir"],
                                 nodata_rule="any_band"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_graph_prepares_raw_bands_like_prepare_scene(tmp_path, tiny_scene, case):
    options = dict(CASES[case])
    if "GNDVI" in options["indices"]:
        pytest.importorskip("spyndex")
    data = tiny_scene["data"].copy()
    data[3, 20, 20] = -9999.0  # one band nodata: valid under gdal, nodata under any_band
    data[2:4, 30, 30] = 0.0  # red = nir = 0: NDVI's denominator is zero there
    image = write_image(tmp_path / "image.tif", data)
    method = options.pop("method")
    indices = options.pop("indices")
    rule = options.pop("nodata_rule", "gdal")
    prepared = prepare_scene(image, tmp_path / "prep", PrepareOptions(tiny_scene["band_names"], indices,
                             NormOptions(method), nodata=Nodata(rule=rule), progress=False, **options))
    meta = {"features": list(prepared.feature_names), "band_names": tiny_scene["band_names"], "indices": indices,
            "stats": prepared.stats.to_dict(), **CLASSES, "chip_size": 16, "dates": [], "model": FCN,
            "model_inputs": {"in_channels": prepared.n_features}, "nodata_rule": rule,
            "scene": {"image_nodata": [-9999.0] * 4}, **options}
    card = ModelCard.from_dict(meta)
    graph = RawBandsModel(torch.nn.Identity(), card)
    with rasterio.open(prepared.path) as src:
        stack = src.read()
        valid = valid_mask(stack, src.nodata)
    expected = np.where(valid, stack, 0.0).astype(np.float32)
    if prepared.stats.per_chip:
        expected = np.where(valid, standardize_chips(expected, valid=valid), 0.0)
    with torch.no_grad():  # the raw bands as Deepness hands them over: nodata values, not NaN
        features, graph_valid = graph.features(torch.from_numpy(data[None]))
    np.testing.assert_array_equal(graph_valid[0, 0].numpy(), valid)
    np.testing.assert_allclose(features[0].numpy(), expected, atol=1e-4, rtol=1e-5)


def test_a_card_without_bands_or_statistics_cannot_take_raw_bands():
    card = ModelCard.from_dict({"datamodule": "torchgeo.datamodules.EuroSATDataModule", "in_channels": 13,
                                "band_names": [], **CLASSES, "model": FCN, "model_inputs": {"in_channels": 13}})
    with pytest.raises(ExportError, match="no bands or normalization statistics"):
        RawBandsModel(torch.nn.Identity(), card)


def test_the_graph_prepares_a_two_date_stack_date_by_date(tmp_path, tiny_scene):
    """Two dates of the four bands, date-major: indices per date; a pixel missing in one date is nodata."""
    first = tiny_scene["data"]
    second = first * 1.1
    second[:, 40:44, 40:44] = -9999.0  # the second date misses a place
    data = np.concatenate([first, second]).astype(np.float32)
    image = write_image(tmp_path / "stack.tif", data)
    dates = ["2019-08-01", "2020-08-01"]
    prepared = prepare_scene(image, tmp_path / "prep", PrepareOptions(tiny_scene["band_names"], ["ndvi"], "standard",
                             dates=dates, progress=False))
    card = ModelCard.from_dict({
        "features": list(prepared.feature_names), "band_names": tiny_scene["band_names"], "indices": ["ndvi"],
        "stats": prepared.stats.to_dict(), **CLASSES, "chip_size": 16, "dates": dates, "model": FCN,
        "model_inputs": {"in_channels": 5, "dates": 2}, "nodata_rule": "gdal",
        "scene": {"image_nodata": [-9999.0] * 8}})
    with rasterio.open(prepared.path) as src:
        stack = src.read()
        valid = valid_mask(stack, src.nodata)
    with torch.no_grad():
        features, graph_valid = RawBandsModel(torch.nn.Identity(), card).features(torch.from_numpy(data[None]))
    assert not valid[40:44, 40:44].any()
    np.testing.assert_array_equal(graph_valid[0, 0].numpy(), valid)
    np.testing.assert_allclose(features[0].numpy(), np.where(valid, stack, 0.0), atol=1e-4, rtol=1e-5)
