"""Splits drawn as polygons (data.split_vector): the split map, no leakage, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from scipy import ndimage
from shapely import affinity
from shapely.geometry import Polygon

from deepgeo_runner.core.errors import InputDataError, StageError
from deepgeo_runner.geo.chips import NO_SPLIT, Window, coverage
from deepgeo_runner.geo.raster_io import Grid
from deepgeo_runner.geo.split_vector import rasterize_splits, read_split_polygons, require_splits
from deepgeo_runner.stages.chips import ChipPlan, build_chip_store, target_lut
from tests.helpers import CRS, ORIGIN, PIXEL, compose_config, pixel_box, write_image


def _write_splits(path: Path, rows: list[tuple[str | None, Polygon]], crs: str | None = CRS,
                  to_crs: str | None = None, column: str = "split") -> Path:
    layer = gpd.GeoDataFrame({column: [r[0] for r in rows]}, geometry=[r[1] for r in rows], crs=crs)
    if to_crs is not None:
        layer = layer.to_crs(to_crs)
    layer.to_file(path, driver="GPKG")
    return path


def _grid(height: int, width: int) -> Grid:
    from affine import Affine
    from rasterio.crs import CRS as RioCRS

    return Grid(RioCRS.from_user_input(CRS), Affine(PIXEL, 0, ORIGIN[0], 0, -PIXEL, ORIGIN[1]), width, height)


def test_split_map_from_a_vector_in_another_crs(tmp_path):
    """Polygons drawn in lon/lat land on the right pixels of a UTM grid; outside them: no split."""
    path = _write_splits(tmp_path / "splits.gpkg", [
        ("train", pixel_box(0, 0, 48, 20)),
        ("val", pixel_box(0, 28, 20, 48)),
        ("test", pixel_box(24, 28, 48, 48)),
        ("val", pixel_box(-10, 20, 5, 24)),      # crosses the scene's top edge
        ("test", pixel_box(100, 100, 120, 120)),  # outside the scene
    ], to_crs="EPSG:4326")
    polygons = read_split_polygons(path, "split")
    assert polygons.crs.to_epsg() == 4326
    split_map = rasterize_splits(polygons, _grid(48, 48))
    expected = np.full((48, 48), NO_SPLIT, dtype=np.int8)
    expected[:, :20] = 0
    expected[:20, 28:] = 1
    expected[24:, 28:] = 2
    expected[:5, 20:24] = 1
    assert split_map.dtype == np.int8
    np.testing.assert_array_equal(split_map, expected)


def test_overlapping_polygons_never_give_a_doubtful_pixel_to_training(tmp_path):
    path = _write_splits(tmp_path / "splits.gpkg", [
        ("test", pixel_box(10, 10, 20, 20)),
        ("train", pixel_box(0, 0, 32, 32)),   # listed after test, still loses to it
        ("val", pixel_box(15, 15, 25, 25)),
    ])
    split_map = rasterize_splits(read_split_polygons(path, "split"), _grid(32, 32))
    assert (split_map[10:20, 10:20] == 2).all()
    assert (split_map[20:25, 15:25] == 1).all() and (split_map[15:20, 20:25] == 1).all()
    assert (split_map[:10] == 0).all() and (split_map[25:] == 0).all()


def test_a_self_intersecting_polygon_is_repaired_into_both_lobes(tmp_path):
    x0, y0 = ORIGIN[0], ORIGIN[1] - 32 * PIXEL
    x1, y1 = ORIGIN[0] + 32 * PIXEL, ORIGIN[1]
    bowtie = Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])  # ring crosses itself
    assert not bowtie.is_valid
    path = _write_splits(tmp_path / "splits.gpkg", [("test", bowtie), ("train", pixel_box(40, 0, 48, 48))])
    split_map = rasterize_splits(read_split_polygons(path, "split"), _grid(48, 48))
    assert split_map[16, 2] == 2 and split_map[16, 29] == 2  # the left and right lobes
    assert split_map[2, 16] == NO_SPLIT and split_map[29, 16] == NO_SPLIT
    assert (split_map[40:] == 0).all()


def test_bad_split_files_fail_with_the_file_and_what_was_expected(tmp_path):
    good = [("train", pixel_box(0, 0, 10, 10)), ("val", pixel_box(10, 0, 20, 10)), ("test", pixel_box(20, 0, 30, 10))]
    wrong_column = _write_splits(tmp_path / "column.gpkg", good, column="fold")
    with pytest.raises(InputDataError, match=r"column\.gpkg' has no column 'split'.*\['fold'\]"):
        read_split_polygons(wrong_column, "split")
    unknown = _write_splits(tmp_path / "unknown.gpkg", good + [("validation", pixel_box(0, 10, 5, 15)),
                                                               (None, pixel_box(0, 20, 5, 25))])
    with pytest.raises(InputDataError, match=r"unknown\.gpkg.*\['\(empty\)', 'validation'\].*'train', 'val', 'test'"):
        read_split_polygons(unknown, "split")
    no_crs = _write_splits(tmp_path / "nocrs.gpkg", good, crs=None)
    with pytest.raises(InputDataError, match=r"nocrs\.gpkg' has no CRS"):
        read_split_polygons(no_crs, "split")
    outside = _write_splits(tmp_path / "outside.gpkg", good[:2] + [("test", pixel_box(200, 200, 210, 210))])
    split_map = rasterize_splits(read_split_polygons(outside, "split"), _grid(48, 48))
    with pytest.raises(InputDataError, match=r"outside\.gpkg.*split \['test'\]"):
        require_splits(split_map, ("train", "val", "test"), f"data.split_vector '{outside}'")
    require_splits(split_map, ("train", "val"), "ok")  # test from elsewhere: fine


def _random_layout(rng: np.random.Generator, height: int, width: int) -> list[tuple[str, Polygon]]:
    """Three bands (one per split, in random order) holding tilted polygons, plus small
    polygons of random splits anywhere: enclaves and overlaps."""
    cuts = np.sort(rng.choice(np.arange(28, width - 28), size=2, replace=False))
    while cuts[1] - cuts[0] < 28:
        cuts = np.sort(rng.choice(np.arange(28, width - 28), size=2, replace=False))
    edges = [0, int(cuts[0]), int(cuts[1]), width]
    rows = []
    for split, (c0, c1) in zip(rng.permutation(["train", "val", "test"]), zip(edges, edges[1:], strict=False),
                               strict=True):
        band = pixel_box(0, c0, height, c1)
        rows.append((str(split), affinity.rotate(band, float(rng.uniform(-8, 8)))))
    for _ in range(int(rng.integers(0, 4))):
        r, c, side = int(rng.integers(0, height - 6)), int(rng.integers(0, width - 6)), int(rng.integers(3, 8))
        rows.append((str(rng.choice(["train", "val", "test"])), pixel_box(r, c, r + side, c + side)))
    return rows


@pytest.mark.parametrize("seed", range(8))
def test_no_test_pixel_in_a_training_chip_with_vector_splits(seed, tmp_path):
    """Randomized property over layouts, CRSs and buffers, through the real chips stage."""
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(64, 97)), int(rng.integers(96, 129))
    chip, buffer = int(rng.choice([8, 12])), int(rng.integers(0, 7))
    path = _write_splits(tmp_path / "splits.gpkg", _random_layout(rng, height, width),
                         to_crs=str(rng.choice(["EPSG:4326", "EPSG:3857", CRS])))
    grid = _grid(height, width)
    split_map = rasterize_splits(read_split_polygons(path, "split"), grid)
    require_splits(split_map, ("train", "val", "test"), str(path))
    stack = rng.normal(size=(3, height, width)).astype(np.float32)
    prepared = write_image(tmp_path / "prepared.tif", stack)
    labels = write_image(tmp_path / "labels.tif", rng.integers(0, 3, (1, height, width)).astype(np.uint8), nodata=255)
    out = tmp_path / "store"
    out.mkdir()
    plan = ChipPlan(chip_size=chip, train_chips=60, eval_stride=chip // 2, min_labelled_fraction=0.1, buffer=buffer)
    build_chip_store(prepared, labels, out, split_map, plan, target_lut(2, True), 3, seed=seed)
    records = json.loads((out / "chips.json").read_text())["chips"]
    windows = {s: [Window(r["row"], r["col"], r["size"]) for r in records if r["split"] == s]
               for s in ("train", "val", "test")}
    assert windows["train"] and windows["val"] and windows["test"]
    for split_id, name in enumerate(("train", "val", "test")):
        covered = coverage(windows[name], split_map.shape)
        assert (split_map[covered] == split_id).all(), name  # never a pixel of another or of no split
    train = coverage(windows["train"], split_map.shape)
    assert not (train & coverage(windows["test"], split_map.shape)).any()
    distance = ndimage.distance_transform_cdt(split_map <= 0, metric="chessboard")
    assert distance[train].min() > buffer  # every training pixel is > buffer px from val/test


def test_the_leakage_check_still_fails_the_chips_stage(tmp_path, monkeypatch):
    """If the sampler ever ignored the split map, the stage must stop rather than store leaky chips."""
    from deepgeo_runner.stages import chips

    path = _write_splits(tmp_path / "splits.gpkg", [
        ("train", pixel_box(0, 0, 32, 20)), ("val", pixel_box(0, 20, 16, 32)), ("test", pixel_box(16, 20, 32, 32)),
    ])
    split_map = rasterize_splits(read_split_polygons(path, "split"), _grid(32, 32))
    prepared = write_image(tmp_path / "prepared.tif", np.ones((2, 32, 32), dtype=np.float32))
    labels = write_image(tmp_path / "labels.tif", np.ones((1, 32, 32), dtype=np.uint8), nodata=255)
    out = tmp_path / "store"
    out.mkdir()
    monkeypatch.setattr(chips, "usable_area", lambda split_map, split_id, buffer: np.ones(split_map.shape, bool))
    with pytest.raises(StageError, match="leakage"):
        build_chip_store(prepared, labels, out, split_map, ChipPlan(chip_size=8, train_chips=30, buffer=0),
                         target_lut(1, True), 2, seed=0)


def _scene_cfg(tiny_scene, tmp_path: Path, split_vector: Path, *extra: str):
    return compose_config("data=scene", f"data.image={tiny_scene['image']}", f"data.labels={tiny_scene['labels']}",
                          "data.classes=[forest,clearing]", "data.band_names=[blue,green,red,nir]",
                          "preprocessing.indices=[]", "data.chip_size=8", "data.split_buffer=2",
                          "data.train_chips=20", f"data.split_vector={split_vector}",
                          "stages=[prepare,rasterize,chips]", f"paths.cache_dir={tmp_path / 'cache'}",
                          f"paths.output_dir={tmp_path / 'out'}", *extra)


def _halves(tmp_path: Path, test_rows: tuple[int, int] = (24, 48), name: str = "splits.gpkg") -> Path:
    return _write_splits(tmp_path / name, [
        ("train", pixel_box(0, 0, 48, 24)), ("val", pixel_box(0, 25, test_rows[0], 48)),
        ("test", pixel_box(test_rows[0], 25, test_rows[1], 48)),
    ], to_crs="EPSG:4326")


def test_the_runner_cuts_chips_inside_the_drawn_splits_and_keys_the_cache_on_the_file(tiny_scene, tmp_path):
    from deepgeo_runner.pipeline.runner import run

    splits = _halves(tmp_path)
    allow = "data.allow_missing_classes=true"  # the drawn train half holds no clearing: the check would stop
    art = run(_scene_cfg(tiny_scene, tmp_path, splits, allow), tmp_path / "run")
    records = json.loads((art.chips.path / "chips.json").read_text())["chips"]
    tests = [r for r in records if r["split"] == "test"]
    assert tests and all(r["row"] >= 24 and r["col"] >= 25 for r in tests)
    train = [r for r in records if r["split"] == "train"]
    assert train and all(r["col"] + r["size"] <= 25 - 2 for r in train)  # 2 px of buffer before val/test
    moved = run(_scene_cfg(tiny_scene, tmp_path, _halves(tmp_path, (20, 48), "moved.gpkg"), allow), tmp_path / "run2")
    assert moved.cache_keys["prepare"] != art.cache_keys["prepare"]  # statistics come from the training area
    assert moved.cache_keys["chips"] != art.cache_keys["chips"]
    reseeded = run(_scene_cfg(tiny_scene, tmp_path, splits, "seed=7", allow), tmp_path / "run3")
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["splits"]["train"]["class_pixels"]["clearing"] == 0
    assert any("'clearing': train 0" in w for w in report["warnings"])
    assert reseeded.cache_keys["prepare"] == art.cache_keys["prepare"]  # the drawn split ignores the seed
    assert reseeded.cache_keys["chips"] != art.cache_keys["chips"]  # the random training windows do not
    redrawn = json.loads((reseeded.chips.path / "chips.json").read_text())["chips"]
    assert [(r["row"], r["col"]) for r in redrawn if r["split"] == "train"] != [(r["row"], r["col"]) for r in train]


def test_a_bad_split_file_fails_before_any_stage_is_built(tiny_scene, tmp_path):
    from deepgeo_runner.config.validate import validate_config
    from deepgeo_runner.core.errors import ConfigError
    from deepgeo_runner.pipeline.runner import run

    with pytest.raises(ConfigError, match=r"data.split_vector='.*nowhere.gpkg': no such file"):
        validate_config(_scene_cfg(tiny_scene, tmp_path, tmp_path / "nowhere.gpkg"))
    cfg = _scene_cfg(tiny_scene, tmp_path, _halves(tmp_path), "data.split_column=fold")
    with pytest.raises(InputDataError, match=r"no column 'fold' \(data.split_column\)"):
        run(cfg, tmp_path / "run")
    outside = _write_splits(tmp_path / "outside.gpkg", [
        ("train", pixel_box(0, 0, 48, 24)), ("val", pixel_box(0, 28, 24, 48)), ("test", pixel_box(60, 60, 70, 70)),
    ])
    with pytest.raises(InputDataError, match=r"outside.gpkg.*split \['test'\]"):
        run(_scene_cfg(tiny_scene, tmp_path, outside), tmp_path / "run")
    assert not (tmp_path / "cache" / "prepare").exists()  # nothing heavy was computed
