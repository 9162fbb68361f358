"""Stage prepare in windows, reflectance scaling, user indices, and the analysis grid
(mosaic, crop to a box or an AOI, reprojection) with the labels staying aligned."""

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio

from deepgeo_runner.core.errors import ConfigError, InputDataError
from deepgeo_runner.geo.normalize import NormOptions
from deepgeo_runner.geo.raster_io import Grid
from deepgeo_runner.geo.rasterize import NODATA, read_labels
from deepgeo_runner.geo.scene import SceneOptions, build_scene, target_grid
from deepgeo_runner.stages.labels import rasterize_labels
from deepgeo_runner.stages.prepare import PREPARED_NODATA, PrepareOptions, load_prepared, prepare_scene
from tests.helpers import ORIGIN, PIXEL, pixel_box, write_image, write_tile

BANDS = ["blue", "green", "red", "nir"]


def _dn_scene(tmp_path, h=70, w=90, seed=0):
    """uint16 digital numbers (Landsat C2 L2 style), nodata 0 in a corner, one zero-sum pixel."""
    rng = np.random.default_rng(seed)
    refl = rng.uniform(0.02, 0.45, (4, h, w))
    dn = np.round((refl + 0.2) / 0.0000275).astype(np.uint16)
    dn[:, :5, :7] = 0
    return write_image(tmp_path / "dn.tif", dn, nodata=0), dn


def _reference(dn, train):
    """The whole preparation in plain numpy: scale, ndvi + expression, standardization."""
    valid = np.all(dn != 0, axis=0)
    r = dn.astype(np.float64) * 0.0000275 - 0.2
    ndvi = (r[3] - r[2]) / (r[3] + r[2])
    gndvi = (r[3] - r[1]) / (r[3] + r[1])
    stack = np.concatenate([r, ndvi[None], gndvi[None]])
    m = valid & train
    mean, std = stack[:, m].mean(axis=1), stack[:, m].std(axis=1)
    return (stack - mean[:, None, None]) / std[:, None, None], valid, mean


@pytest.mark.parametrize("window", [1024, 32])
def test_windowed_prepare_matches_numpy_reference(tmp_path, window):
    image, dn = _dn_scene(tmp_path)
    train = np.zeros(dn.shape[1:], dtype=bool)
    train[:, :50] = True
    want, valid, mean = _reference(dn, train)
    prepared = prepare_scene(image, tmp_path / f"out{window}", PrepareOptions(BANDS, ["ndvi"], "standard",
                             expressions={"gndvi": "(nir - green) / (nir + green)"}, scale=0.0000275, offset=-0.2,
                             window=window), train)
    assert prepared.feature_names == (*BANDS, "ndvi", "gndvi")
    with rasterio.open(prepared.path) as src:
        got = src.read()
        assert src.nodata == PREPARED_NODATA and src.profile["compress"] == "deflate"
        assert src.descriptions[-1] == "gndvi"
    np.testing.assert_allclose(got[:, valid], want[:, valid], atol=2e-4)
    assert (got[:, ~valid] == PREPARED_NODATA).all() and np.isfinite(got).all()
    np.testing.assert_allclose(prepared.stats.shift, mean, rtol=1e-5)
    meta = json.loads((tmp_path / f"out{window}" / "stats.json").read_text())
    assert meta["index_sources"] == {"ndvi": "builtin", "gndvi": "expression"}
    assert load_prepared(tmp_path / f"out{window}").stats == prepared.stats


def test_fit_area_as_a_window_function_and_stats_reuse(tmp_path):
    image, dn = _dn_scene(tmp_path)
    train = np.zeros(dn.shape[1:], dtype=bool)
    train[10:40] = True
    a = prepare_scene(image, tmp_path / "a", PrepareOptions(BANDS, [], "standard", window=32), train)
    b = prepare_scene(image, tmp_path / "b", PrepareOptions(BANDS, [], "standard", window=32),
                      lambda win: train[win.toslices()])
    np.testing.assert_allclose(a.stats.shift, b.stats.shift, rtol=1e-12)
    c = prepare_scene(image, tmp_path / "c", PrepareOptions(BANDS, [], "standard"), stats=a.stats)  # not refitted
    assert c.stats == a.stats
    with rasterio.open(a.path) as x, rasterio.open(c.path) as y:
        np.testing.assert_array_equal(x.read(), y.read())
    with pytest.raises(ConfigError, match="statistics are for 4 features"):
        prepare_scene(image, tmp_path / "d", PrepareOptions(BANDS, ["ndvi"], "standard"), stats=a.stats)


def test_percentile_keep_bands_and_per_chip(tmp_path):
    image, dn = _dn_scene(tmp_path)
    opts = NormOptions("percentile", percentiles=(2, 98), out_range=(0, 1))
    p = prepare_scene(image, tmp_path / "p", PrepareOptions(BANDS, ["ndvi"], opts, keep_bands=["red", "nir"]))
    assert p.feature_names == ("red", "nir", "ndvi")
    with rasterio.open(p.path) as src:
        x = src.read()
    ok = x[0] != PREPARED_NODATA
    assert x[:, ok].min() >= -1e-6 and x[:, ok].max() <= 1 + 1e-6
    assert 0.9 < ((x[:, ok] > 0) & (x[:, ok] < 1)).mean() < 0.97  # ~4 % clipped per band
    chip = prepare_scene(image, tmp_path / "c", PrepareOptions(BANDS, [], "per_chip"))
    assert chip.stats.per_chip
    with rasterio.open(chip.path) as src:
        assert src.read(1)[10, 10] == dn[0, 10, 10]  # written as is; chips standardize themselves


def test_prepare_errors_name_the_fix(tmp_path):
    image, _ = _dn_scene(tmp_path)
    with pytest.raises(ConfigError, match="data.band_names lists 3 bands"):
        prepare_scene(image, tmp_path / "x", PrepareOptions(BANDS[:3], [], "standard"))
    with pytest.raises(ConfigError, match="keep_bands"):
        prepare_scene(image, tmp_path / "x", PrepareOptions(BANDS, [], "standard", keep_bands=["swir1"]))
    with pytest.raises(ConfigError, match="data.scale has 2 values"):
        prepare_scene(image, tmp_path / "x", PrepareOptions(BANDS, [], "standard", scale=[1, 2]))
    with pytest.raises(InputDataError, match="not found"):
        prepare_scene(tmp_path / "nope.tif", tmp_path / "x", PrepareOptions(BANDS, [], "standard"))


# --- the analysis grid -----------------------------------------------------------------------

@pytest.fixture
def tiles(tmp_path):
    rng = np.random.default_rng(4)
    data = rng.integers(1, 5000, (3, 40, 60)).astype(np.uint16)
    left = write_tile(tmp_path / "left.tif", data[:, :, :35], 0, 0)
    right = write_tile(tmp_path / "right.tif", data[:, 10:, 30:], 30, 10)  # overlaps, lower
    return data, left, right


def test_mosaic_of_overlapping_tiles_and_gaps_as_nodata(tmp_path, tiles):
    data, left, right = tiles
    out = build_scene([left, right], tmp_path / "m.tif", SceneOptions())
    with rasterio.open(out) as src:
        m = src.read()
        assert src.shape == (40, 60) and src.transform.c == ORIGIN[0] and src.nodata == 0
    np.testing.assert_array_equal(m[:, :, :35], data[:, :, :35])
    np.testing.assert_array_equal(m[:, 10:, 35:], data[:, 10:, 35:])
    assert (m[:, :10, 35:] == 0).all()  # covered by no tile


def test_crop_to_bbox_keeps_the_pixel_lattice(tmp_path, tiles):
    data, left, right = tiles
    bbox = (ORIGIN[0] + 5.5 * PIXEL, ORIGIN[1] - 30 * PIXEL, ORIGIN[0] + 45 * PIXEL, ORIGIN[1] - 12.2 * PIXEL)
    out = build_scene([left, right], tmp_path / "c.tif", SceneOptions(bbox=bbox))
    with rasterio.open(out) as src:
        assert src.transform.c == ORIGIN[0] + 5 * PIXEL and src.transform.f == ORIGIN[1] - 12 * PIXEL
        np.testing.assert_array_equal(src.read(), data[:, 12:30, 5:45])
    with pytest.raises(InputDataError, match="does not overlap"):
        target_grid([left], SceneOptions(bbox=(0, 0, 1, 1)))


def test_crop_to_aoi_masks_outside_the_polygons(tmp_path, tiles):
    data, left, _ = tiles
    aoi = tmp_path / "aoi.geojson"
    gpd.GeoDataFrame(geometry=[pixel_box(5, 5, 25, 20)], crs="EPSG:32722").to_crs("EPSG:4326").to_file(aoi)
    out = build_scene([left], tmp_path / "a.tif", SceneOptions(aoi=aoi))
    with rasterio.open(out) as src:
        m = src.read()
        assert abs(src.height - 20) <= 1 and abs(src.width - 15) <= 1
    inside = (m != 0).all(axis=0)
    assert 0.85 < inside.mean() <= 1.0


def test_reprojected_scene_prepares_and_labels_stay_aligned(tmp_path, tiny_scene):
    """Raster reprojected to another UTM zone + labels in WGS84: ids land where the classes are."""
    labels_wgs84 = tmp_path / "labels_wgs84.gpkg"
    gpd.read_file(tiny_scene["labels"]).to_crs("EPSG:4326").to_file(labels_wgs84)
    scene = build_scene([tiny_scene["image"]], tmp_path / "s.tif",
                        SceneOptions(crs="EPSG:32723", resolution=(30, 30), resampling="nearest"))
    prepared = prepare_scene(scene, tmp_path / "p", PrepareOptions(tiny_scene["band_names"], ["ndvi"], "standard"))
    out = rasterize_labels(labels_wgs84, prepared.path, tmp_path / "labels.tif", ["forest", "clearing"],
                           ["#00ff00", "#ff0000"])
    with rasterio.open(out) as lab, rasterio.open(prepared.path) as img:
        assert lab.crs.to_epsg() == 32723 and lab.transform == img.transform
        ids, ndvi = lab.read(1), img.read(5)
        assert (ids == NODATA).sum() > 0  # the nodata corner / outside the rotated footprint
    forest, clearing = ndvi[ids == 1], ndvi[ids == 2]
    assert forest.size > 300 and clearing.size > 300
    assert forest.mean() > clearing.mean() + 1  # forest polygons fell on high-NDVI pixels


def test_windowed_rasterize_equals_whole_grid(tmp_path, tiny_scene):
    whole = read_labels(tiny_scene["labels"], Grid.of(tiny_scene["image"]), "class", ["forest", "clearing"])
    out = rasterize_labels(tiny_scene["labels"], tiny_scene["image"], tmp_path / "l.tif",
                           ["forest", "clearing"],
                           ["#00ff00", "#ff0000"], window=16)
    with rasterio.open(out) as src:
        got = src.read(1)
    whole[:4, :4] = NODATA  # the image's nodata corner
    np.testing.assert_array_equal(got, whole)


# --- through the runner: mosaic + crop in the cache, cache keys follow the settings ------------

def _run(tmp_path, overrides):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from deepgeo_runner.cli import config_dir
    from deepgeo_runner.config.schema import register_configs
    from deepgeo_runner.pipeline.runner import run

    GlobalHydra.instance().clear()
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides + [f"paths.cache_dir={tmp_path / 'cache'}",
                                                       f"paths.output_dir={tmp_path / 'runs'}",
                                                       "stages=[prepare,rasterize]"])
    return run(cfg, tmp_path / "run")


def test_runner_mosaics_crops_and_keys_the_cache_by_every_setting(tmp_path, tiles):
    data, left, right = tiles
    labels = tmp_path / "gt.gpkg"
    boxes = [pixel_box(0, 0, 20, 30), pixel_box(20, 30, 40, 60), pixel_box(20, 0, 40, 30)]
    gpd.GeoDataFrame({"class": ["a", "b", "c"]}, geometry=boxes, crs="EPSG:32722").to_file(labels)
    bbox = [ORIGIN[0] + 10 * PIXEL, ORIGIN[1] - 38 * PIXEL, ORIGIN[0] + 50 * PIXEL, ORIGIN[1] - 2 * PIXEL]
    base = ["data=scene", f"data.image=[{left},{right}]", f"data.labels={labels}", "data.classes=[a,b]",
            "data.band_names=[green,red,nir]", "preprocessing.indices=[ndvi]", f"data.bbox={bbox}",
            "data.chip_size=8", "data.class_groups={b: [c]}"]
    art = _run(tmp_path, base)
    assert art.image.name == "scene.tif" and not art.reused["scene"]
    with rasterio.open(art.image) as src:
        assert src.shape == (36, 40)
        np.testing.assert_array_equal(src.read()[:, 26:, 20:], data[:, 28:38, 30:50])  # from the right tile
    with rasterio.open(art.labels) as src:
        ids = src.read(1)
    assert src.shape == (36, 40) and (ids[:18, :20] == 1).all()
    assert (ids[18:, :] == 2).all()  # 'c' grouped into 'b'
    again = _run(tmp_path, base)
    assert again.reused == {"scene": True, "prepare": True, "rasterize": True}
    changed = _run(tmp_path, base + ["preprocessing.normalization=percentile", "data.all_touched=true"])
    assert changed.reused == {"scene": True, "prepare": False, "rasterize": False}
    assert changed.prepared.stats.method == "percentile"
    expr = _run(tmp_path, base + ["preprocessing.expressions={gndvi: '(nir - green) / (nir + green)'}"])
    assert not expr.reused["prepare"] and expr.prepared.feature_names[-1] == "gndvi"


def test_prepared_stack_as_a_cog_with_overviews(tmp_path):
    image, _ = _dn_scene(tmp_path, h=300, w=280)
    plain = prepare_scene(image, tmp_path / "plain", PrepareOptions(BANDS, ["ndvi"], "standard", progress=False))
    cog = prepare_scene(image, tmp_path / "cog", PrepareOptions(BANDS, ["ndvi"], "standard", cog=True, progress=False))
    with rasterio.open(plain.path) as a, rasterio.open(cog.path) as b:
        assert b.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and b.overviews(1)
        assert a.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") != "COG"
        assert b.descriptions == a.descriptions and b.nodata == a.nodata and b.transform == a.transform
        np.testing.assert_array_equal(a.read(), b.read())
