"""prepare + rasterize on the real scenes of ../shared/data (skipped where the folder is absent)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from deepgeo_runner.geo.chips import split_blocks
from deepgeo_runner.geo.raster_io import Grid
from deepgeo_runner.geo.rasterize import NODATA, read_labels
from deepgeo_runner.stages.labels import rasterize_labels
from deepgeo_runner.stages.prepare import PREPARED_NODATA, PrepareOptions, prepare_scene
from tests.helpers import shared_file

AMAZON_BANDS = ["blue", "green", "red", "nir", "swir1", "thermal", "swir2"]
AMAZON_CLASSES = ["forest", "cleared", "water", "fallen_dry"]


def test_amazon_landsat5_prepare_keeps_the_grid_and_fits_stats_on_train_blocks(tmp_path):
    image = shared_file("amazon_landsat5", "LT05_224063_19880814_7band.tif")
    grid = Grid.of(image)
    split = split_blocks(grid.shape, 64, [0.6, 0.2, 0.2], seed=0)
    prepared = prepare_scene(image, tmp_path, PrepareOptions(AMAZON_BANDS, ["ndvi", "evi2"], "standard"), split == 0)
    assert prepared.feature_names == tuple(AMAZON_BANDS) + ("ndvi", "evi2")
    with rasterio.open(prepared.path) as src, rasterio.open(image) as raw:
        assert src.crs == raw.crs and src.transform == raw.transform and src.shape == raw.shape
        assert src.count == 9 and src.nodata == PREPARED_NODATA
        assert [src.descriptions[i] for i in (0, 7)] == ["blue", "ndvi"]
        stack = src.read()
        red, nir = raw.read(3).astype(float), raw.read(4).astype(float)
    assert np.isfinite(stack).all()
    train = stack[:, split == 0]
    np.testing.assert_allclose(train.mean(axis=1), 0, atol=1e-4)  # standardized on train blocks
    np.testing.assert_allclose(train.std(axis=1), 1, atol=1e-3)
    ndvi = (nir - red) / (nir + red)
    s = prepared.stats
    np.testing.assert_allclose(stack[7] * s.scale[7] + s.shift[7], ndvi, atol=1e-5)


def test_amazon_polygons_rasterize_onto_the_scene(tmp_path):
    image = shared_file("amazon_landsat5", "LT05_224063_19880814_7band.tif")
    polygons = shared_file("amazon_landsat5", "training_polygons.gpkg")
    out = rasterize_labels(polygons, image, tmp_path / "labels.tif", AMAZON_CLASSES,
                           ["#1b7837", "#d6604d", "#2166ac", "#fdb863"])
    with rasterio.open(out) as src:
        ids = src.read(1)
    counts = np.bincount(ids.ravel(), minlength=256)
    assert all(counts[i] > 50 for i in range(1, 5))
    labelled = counts[1:5].sum() / ids.size
    assert 0.02 < labelled < 0.15  # sparse, about 5 %
    with rasterio.open(image) as raw:
        nir = raw.read(4).astype(float)
    assert nir[ids == 3].mean() < nir[ids == 1].mean()  # water darker than forest in NIR


def test_slovenia_label_raster_and_polygons_agree(tmp_path):
    image = shared_file("slovenia_s2_timeseries", "s2_l1c_5dates_13bands.tif")
    label_tif = shared_file("slovenia_s2_timeseries", "lulc_label.tif")
    polygons = shared_file("slovenia_s2_timeseries", "LULC.gpkg")
    grid = Grid.of(image)
    classes = ["cultivated", "forest", "grassland", "shrubland", "artificial"]
    from_raster = read_labels(label_tif, grid, "LULC_ID", classes, class_values=[1, 2, 3, 4, 8])
    from_vector = read_labels(polygons, grid, "LULC_ID", classes, class_values=[1, 2, 3, 4, 8])
    counts = np.bincount(from_raster.ravel(), minlength=256)
    assert counts[2] == 7601 and counts[5] == 198  # as documented for lulc_label.tif
    both = (from_raster != NODATA) & (from_vector > 0)
    assert (from_raster[both] == from_vector[both]).mean() > 0.9


def test_slovenia_65_band_stack_prepares_without_indices(tmp_path):
    image = shared_file("slovenia_s2_timeseries", "s2_l1c_5dates_13bands.tif")
    with rasterio.open(image) as src:
        names = list(src.descriptions)
    prepared = prepare_scene(image, tmp_path, PrepareOptions(names, [], "standard"))
    with rasterio.open(prepared.path) as src:
        assert src.count == 65 and src.crs.to_epsg() == 32633
        assert src.descriptions[0] == "t0_B01"
    with pytest.raises(Exception, match="needs the band role"):
        prepare_scene(image, tmp_path / "x", PrepareOptions(names, ["ndvi"], "standard"))


def test_amazon_reprojected_with_sensor_preset_and_labels_in_another_crs(tmp_path):
    """The Landsat-5 scene warped to UTM 23S; its polygons (UTM 22S) still land on their classes."""
    from deepgeo_runner.geo.normalize import NormOptions
    from deepgeo_runner.geo.scene import SceneOptions, build_scene
    from deepgeo_runner.geo.sensors import sensor_band_names

    image = shared_file("amazon_landsat5", "LT05_224063_19880814_7band.tif")
    polygons = shared_file("amazon_landsat5", "training_polygons.gpkg")
    colors = ["#1b7837", "#d6604d", "#2166ac", "#fdb863"]
    native = rasterize_labels(polygons, image, tmp_path / "native.tif", AMAZON_CLASSES, colors)
    scene = build_scene([image], tmp_path / "scene.tif",
                        SceneOptions(crs="EPSG:32723", resolution=(30.0, 30.0), resampling="nearest"))
    bands = sensor_band_names("landsat5", 7)
    assert bands == AMAZON_BANDS
    prepared = prepare_scene(scene, tmp_path / "p", PrepareOptions(bands, ["ndvi", "mndwi"],
                             NormOptions("percentile"), expressions={"wet": "(green - swir2) / (green + swir2)"}))
    labels = rasterize_labels(polygons, prepared.path, tmp_path / "labels.tif", AMAZON_CLASSES, colors)
    with rasterio.open(labels) as lab, rasterio.open(native) as nat, rasterio.open(prepared.path) as p:
        assert lab.crs.to_epsg() == 32723 and lab.transform == p.transform
        ids, ref = lab.read(1), nat.read(1)
        ndvi = p.read(8)
        assert p.count == 10 and np.isfinite(p.read()).all()
    for class_id in range(1, 5):  # the same polygons cover about the same number of pixels
        assert abs((ids == class_id).sum() / (ref == class_id).sum() - 1) < 0.1
    assert ndvi[ids == 1].mean() > ndvi[ids == 3].mean()  # forest greener than water after warping
