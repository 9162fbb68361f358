"""The data check and the class-aware split: every class reaches training, and the user is told."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio

from deepgeo_runner.core.errors import StageError
from deepgeo_runner.geo.chips import (
    block_class_counts,
    choose_class_split,
    class_balanced_windows,
    random_windows,
)
from deepgeo_runner.geo.dealing import assign_blocks_by_class
from deepgeo_runner.geo.raster_io import Grid
from deepgeo_runner.geo.rasterize import LabelSource
from deepgeo_runner.stages.data_check import split_class_pixels
from tests.helpers import CRS, pixel_box, shared_file, write_image


def _sparse_labels(shape=(288, 320), seed=0) -> np.ndarray:
    """The pattern of the shared Landsat-5 scene: a few dozen small patches of 4 classes, one of
    them (water) clustered in one part of the scene, covering about 5 % of it."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint8)
    centres = {1: (rng.integers(0, shape[0], 9), rng.integers(0, shape[1], 9)),
               2: (rng.integers(0, shape[0], 10), rng.integers(0, shape[1], 10)),
               3: (rng.integers(shape[0] * 2 // 3, shape[0], 9), rng.integers(0, shape[1] // 3, 9)),  # a corner
               4: (rng.integers(0, shape[0], 8), rng.integers(0, shape[1], 8))}
    for cls, (rows, cols) in centres.items():
        for r, c in zip(rows, cols, strict=True):
            labels[max(r - 5, 0):r + 5, max(c - 5, 0):c + 5] = cls
    return labels


def test_class_blocks_give_every_class_training_val_and_test_pixels_on_sparse_labels():
    labels = _sparse_labels()
    for seed in range(5):
        split_map = choose_class_split(labels, [1, 2, 3, 4], 64, [0.6, 0.2, 0.2], seed, buffer=8, chip_size=32)
        counts = split_class_pixels(labels, [1, 2, 3, 4], split_map, buffer=8, chip_size=32)
        assert (counts["train"] > 0).all(), (seed, counts)
        assert (counts["test"] > 0).all() and (counts["val"] > 0).all(), (seed, counts)


def test_iterative_stratification_puts_a_one_block_class_in_train():
    counts = np.array([[100, 0], [100, 0], [100, 0], [100, 5], [100, 0]])
    for seed in range(10):
        assignment = assign_blocks_by_class(counts, [0.6, 0.2, 0.2], seed)
        assert assignment[3] == 0  # the only block of class 1 trains
        assert set(assignment.tolist()) == {0, 1, 2}


def test_block_counts_match_a_direct_count():
    labels = _sparse_labels((100, 130))
    counts = block_class_counts(labels, [1, 3], 32)
    assert counts.shape == (4 * 5, 2)
    assert counts[:, 0].sum() == (labels == 1).sum() and counts[:, 1].sum() == (labels == 3).sum()
    assert counts[6, 1] == (labels[32:64, 32:64] == 3).sum()


def test_balanced_windows_give_a_rare_class_its_share():
    targets = np.full((200, 200), 0, dtype=np.uint8)  # class 0 everywhere
    targets[150:160, 20:30] = 1  # 100 px of a rare class: 0.25 % of the area
    area = np.ones_like(targets, dtype=bool)
    labelled = np.ones_like(area)
    uniform = random_windows(area, labelled, 16, 100, 0.05, seed=0)
    balanced = class_balanced_windows(area, labelled, targets, 2, 16, 100, 0.05, seed=0)
    rare = [w for w in balanced if (targets[w.slices] == 1).any()]
    assert len(balanced) == 100 and len(rare) >= 50
    assert sum((targets[w.slices] == 1).any() for w in uniform) < 15


def _scene(tmp_path: Path, polygons: gpd.GeoDataFrame, data: np.ndarray, nodata=0) -> tuple[Path, Path]:
    image = write_image(tmp_path / "image.tif", data, nodata=nodata)
    labels = tmp_path / "labels.gpkg"
    polygons.to_file(labels, driver="GPKG")
    return image, labels


def _stretched_scene(tmp_path: Path, size: int = 96) -> tuple[Path, Path]:
    """A contrast-stretched uint8 red/nir/swir scene (nodata 0 declared) with wall-to-wall
    polygons: forest, water (nir = swir = 0, red > 0) and bare soil, in vertical bands with a
    nodata corner, as a stretched Landsat product looks."""
    rng = np.random.default_rng(1)
    data = np.zeros((3, size, size), dtype=np.uint8)
    thirds = np.arange(size) * 3 // size  # 0 forest, 1 water, 2 bare, by column
    rows = (np.arange(size)[:, None] // 24) % 3
    kind = (thirds[None, :] + rows) % 3
    base = np.array([[40, 150, 60], [30, 0, 0], [140, 90, 160]], dtype=np.float64)  # red, nir, swir
    for b in range(3):
        band = base[kind, b] + rng.normal(0, 6, (size, size))
        data[b] = np.clip(band, 1, 255).astype(np.uint8)
    data[1:, kind == 1] = 0  # water: exactly 0 in nir and swir, as a stretch writes it
    data[:, :6, :6] = 0  # the real nodata: every band 0
    names = ["forest", "water", "bare"]
    geoms, classes = [], []
    for r in range(0, size, 24):
        for c in range(0, size, 32):
            geoms.append(pixel_box(r, c, r + 24, c + 32))
            classes.append(names[int(kind[r, c])])
    polygons = gpd.GeoDataFrame({"class": classes}, geometry=geoms, crs=CRS)
    return _scene(tmp_path, polygons, data)


def _scene_overrides(image: Path, labels: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["data=scene", f"data.image={image}", f"data.labels={labels}", "data.classes=[forest,water,bare]",
            "data.band_names=[red,nir,swir1]", "preprocessing.indices=[]", "data.chip_size=16",
            "data.train_chips=96", "data.batch_size=16", "model=fcn8s", "model.width=8", "trainer=cpu",
            "trainer.max_epochs=4", "trainer.enable_progress_bar=false", "seed=0",
            f"paths.cache_dir={tmp_path / 'cache'}", f"paths.output_dir={tmp_path / 'out'}", *extra]


def test_stretched_water_with_zero_nir_and_swir_stays_valid_and_is_learned(tmp_path, compose):
    from deepgeo_runner.pipeline.runner import run

    image, labels = _stretched_scene(tmp_path)
    cfg = compose(*_scene_overrides(image, labels, tmp_path, "stages=[check,prepare,rasterize,chips,fit,test]"))
    art = run(cfg, tmp_path / "run")
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["nodata"]["rule"] == "gdal" and report["nodata"]["fraction"] == pytest.approx(36 / 96**2)
    assert report["splits"]["train"]["class_pixels"]["water"] > 500
    water = art.metrics["per_class"]["water"]
    assert water["support"] > 0 and water["f1"] > 0.8, art.metrics["per_class"]
    with rasterio.open(art.labels) as src:  # labels keep the water: only the all-zero corner is nodata
        ids = src.read(1)
    assert (ids == 255).sum() == 36

    strict = compose(*_scene_overrides(image, labels, tmp_path, "stages=[check]", "data.nodata_rule=any_band",
                                       "data.allow_missing_classes=true"))
    run(strict, tmp_path / "strict")
    report = json.loads((tmp_path / "strict" / "data_report.json").read_text())
    assert report["splits"]["train"]["class_pixels"]["water"] == 0  # the old rule threw the water away
    assert report["nodata"]["fraction"] > 0.3


def test_a_class_no_training_chip_can_reach_stops_the_run_before_fit(tmp_path, compose):
    from deepgeo_runner.pipeline.runner import run

    image, labels = _stretched_scene(tmp_path)
    layer = gpd.read_file(labels)
    layer.loc[len(layer)] = {"class": "cloud", "geometry": pixel_box(200, 200, 210, 210)}  # outside the image
    layer.to_file(labels, driver="GPKG")
    overrides = _scene_overrides(image, labels, tmp_path, "data.classes=[forest,water,bare,cloud]")
    with pytest.raises(StageError, match=r"classes \['cloud'\] have no labelled pixel .*'cloud': train 0, "
                                         r"val 0, test 0.*allow_missing_classes"):
        run(compose(*overrides), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not (tmp_path / "cache" / "prepare").exists()  # stopped before any heavy stage
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())  # written for the user to read
    assert report["splits"]["train"]["class_pixels"]["cloud"] == 0 and "cloud" in report["error"]


def test_check_stage_reports_labels_in_another_crs(tmp_path, compose):
    from deepgeo_runner.pipeline.runner import run

    image, labels = _stretched_scene(tmp_path)
    geographic = tmp_path / "labels_4326.gpkg"
    gpd.read_file(labels).to_crs("EPSG:4326").to_file(geographic, driver="GPKG")
    art = run(compose(*_scene_overrides(image, geographic, tmp_path, "stages=[check]")), tmp_path / "run")
    assert art.prepared is None and art.chips is None  # only the check ran
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    labels_entry = next(r for r in report["inputs"] if r["role"] == "labels")
    assert labels_entry["crs"] == "EPSG:4326" and labels_entry["reprojected_to"] == "EPSG:32722"
    assert any("EPSG:4326" in w and "reprojected" in w for w in report["warnings"])
    assert {"train", "val", "test", "buffer"} <= set(report["splits"])


def test_label_raster_values_outside_the_class_table_are_reported(tmp_path, compose):
    from deepgeo_runner.pipeline.runner import run

    image, _ = _stretched_scene(tmp_path)
    ids = np.ones((96, 96), dtype=np.int16)
    ids[:, 32:64], ids[:, 64:] = 2, 3
    ids[40:50, 40:50] = -1  # an undeclared fill value
    labels = write_image(tmp_path / "labels.tif", ids[None], nodata=None)
    run(compose(*_scene_overrides(image, labels, tmp_path, "stages=[check]")), tmp_path / "run")
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert any("-1: 100 px" in w and "neither a class value" in w for w in report["warnings"])


def test_uint8_values_under_indices_get_a_reflectance_warning(tmp_path, compose):
    from deepgeo_runner.pipeline.runner import run

    image, labels = _stretched_scene(tmp_path)
    run(compose(*_scene_overrides(image, labels, tmp_path, "stages=[check]", "preprocessing.indices=[ndvi]")),
        tmp_path / "run")
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert any("assume surface reflectance" in w for w in report["warnings"])


def test_the_shared_landsat5_scene_trains_every_class_with_the_defaults(tmp_path, compose):
    from deepgeo_runner.pipeline.runner import run

    image = shared_file("amazon_landsat5", "LT05_224063_19880814_7band.tif")
    polygons = shared_file("amazon_landsat5", "training_polygons.gpkg")
    labels = LabelSource(polygons, Grid.of(image), "class", ["forest", "cleared", "water", "fallen_dry"]).burn()
    for seed in range(4):  # the split itself, over seeds: every class reaches training chips and test
        split_map = choose_class_split(labels, [1, 2, 3, 4], 64, [0.6, 0.2, 0.2], seed, buffer=8, chip_size=32)
        counts = split_class_pixels(labels, [1, 2, 3, 4], split_map, buffer=8, chip_size=32)
        assert (counts["train"] > 50).all() and (counts["test"] > 0).all(), (seed, counts)
    cfg = compose("experiments=amazon_landsat5", "stages=[check]", f"paths.cache_dir={tmp_path / 'cache'}",
                         f"paths.output_dir={tmp_path / 'out'}")
    run(cfg, tmp_path / "run")
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    train = report["splits"]["train"]["class_pixels"]
    assert set(train) == {"forest", "cleared", "water", "fallen_dry"} and min(train.values()) > 50
    labelled = report["labelled"]["share"]
    assert labelled["train"] > 0.4 and labelled["buffer"] < 0.2  # the scene is used, not eaten by buffers


def test_a_thin_class_on_a_large_scene_is_counted_exactly():
    """A one-pixel river on a column the coarse grid does not sample still reaches training."""
    labels = np.ones((2100, 2100), dtype=np.uint8)
    labels[:, 301] = 2
    counts = split_class_pixels(labels, [1, 2], np.zeros_like(labels, dtype=np.int8), buffer=16, chip_size=64)
    assert counts["train"][1] == 2100 and counts["buffer"][1] == 0


def test_an_all_nodata_image_is_named_as_such_not_as_classes_to_label(tmp_path, compose):
    """The report said each class 'has no labelled pixel ... label more of them'."""
    from deepgeo_runner.pipeline.runner import run

    image, labels = _stretched_scene(tmp_path)
    write_image(image, np.zeros((3, 96, 96), dtype=np.uint8), nodata=0)
    with pytest.raises(StageError, match=r"image '.*image\.tif' is 100 % nodata \(gdal rule; nodata 0(\.0)? "
                                         r"declared by the file\).*data\.nodata") as caught:
        run(compose(*_scene_overrides(image, labels, tmp_path, "stages=[check]")), tmp_path / "run")
    assert "label more" not in str(caught.value)


def test_an_image_smaller_than_a_chip_says_so(tmp_path, compose):
    from deepgeo_runner.pipeline.runner import run

    image, labels = _stretched_scene(tmp_path)
    write_image(image, np.full((3, 1, 1), 50, dtype=np.uint8), nodata=0)
    with pytest.raises(StageError, match=r"image '.*image\.tif' is 1x1 px, smaller than data\.chip_size=16"):
        run(compose(*_scene_overrides(image, labels, tmp_path, "stages=[check]")), tmp_path / "run")


def test_a_split_whose_blocks_hold_no_label_says_so_not_lower_the_chip_size(tmp_path, compose):
    """Labels in one corner: every labelled block trains, val/test get none; the chips stage said
    'Lower data.chip_size', which cannot help."""
    from deepgeo_runner.pipeline.runner import run

    image, labels = _stretched_scene(tmp_path)
    corner = gpd.GeoDataFrame({"class": ["forest", "water", "bare"]}, crs=CRS, geometry=[
        pixel_box(2, 2, 12, 30), pixel_box(12, 2, 22, 30), pixel_box(22, 2, 30, 30)])
    corner.to_file(labels, driver="GPKG")
    overrides = _scene_overrides(image, labels, tmp_path, "stages=[check,prepare,rasterize,chips]",
                                 "data.block_size=32")
    with pytest.raises(StageError, match=r"no (val|test) block holds any labelled pixel.*data\.split_fractions.*"
                                         r"data\.block_size.*data\.folds") as caught:
        run(compose(*overrides), tmp_path / "run")
    assert "Lower data.chip_size" not in str(caught.value)
