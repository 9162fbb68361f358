"""Val/test chips from other scenes (data.split_scenes): store, statistics, cache keys, errors."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import transform_bounds
from shapely.geometry import box

from deepgeo_runner.core.errors import ConfigError, InputDataError
from deepgeo_runner.geo.chips import split_blocks
from deepgeo_runner.stages.chips import MAIN_SCENE, ChipPlan, SplitScene, build_chip_store, target_lut
from tests.helpers import compose_config, pixel_box, prepare_and_label, write_image

OTHER_CRS = "EPSG:32723"  # the next UTM zone: the other scene is on another grid and CRS
OTHER_ORIGIN = (200_000.0, 9_500_000.0)


def _other_scene(tmp_path: Path, bands: int = 4, size: int = 40, gain: float = 1.5) -> dict:
    """A second 4-band scene in another CRS, brighter than the training one (own stats would differ)."""
    rng = np.random.default_rng(7)
    data = np.empty((bands, size, size), dtype=np.float32)
    left = np.arange(size) < size // 2
    for b in range(bands):
        data[b] = gain * (0.05 + 0.01 * b) + 0.005 * rng.standard_normal((size, size))
    if bands >= 4:
        data[2] = gain * np.where(left, 0.03, 0.12)[None, :] + 0.005 * rng.standard_normal((size, size))
        data[3] = gain * np.where(left, 0.35, 0.20)[None, :] + 0.01 * rng.standard_normal((size, size))
    transform = Affine(30.0, 0, OTHER_ORIGIN[0], 0, -30.0, OTHER_ORIGIN[1])
    folder = tmp_path / "other"
    folder.mkdir(exist_ok=True)
    image = write_image(folder / f"other_{bands}.tif", data, crs=OTHER_CRS, transform=transform)

    def cells(r0: int, c0: int, r1: int, c1: int):
        x0, y0 = transform * (c0, r0)
        x1, y1 = transform * (c1, r1)
        return box(x0, y1, x1, y0)

    labels = folder / "other_labels.gpkg"
    gpd.GeoDataFrame({"class": ["forest", "clearing"]}, geometry=[cells(0, 0, 40, 20), cells(0, 20, 40, 40)],
                     crs=OTHER_CRS).to_file(labels, driver="GPKG")
    return {"image": image, "labels": labels, "data": data, "transform": transform}


def test_a_split_from_another_scene_fills_the_store_from_that_scene_only(tiny_scene, tmp_path):
    split = split_blocks((48, 48), 16, [0.7, 0.3, 0.0], seed=2)
    bands = tiny_scene["band_names"]
    main, main_labels = prepare_and_label(tiny_scene["image"], tiny_scene["labels"], tmp_path / "main", bands,
                                          train_mask=split == 0)
    other = _other_scene(tmp_path)
    other_prep, other_labels = prepare_and_label(other["image"], other["labels"], tmp_path / "other", bands,
                                                 stats=main.stats)
    out = tmp_path / "store"
    out.mkdir()
    store = build_chip_store(
        main.path, main_labels, out, split, ChipPlan(chip_size=8, train_chips=20, min_labelled_fraction=0.2),
        target_lut(2, False), 2, seed=0,
        split_scenes={"test": SplitScene(other_prep.path, other_labels, "data.split_scenes.test")},
    )
    assert store.counts["test"] == 25  # the 40 px scene's 5 x 5 grid, all labelled
    records = json.loads((out / "chips.json").read_text())["chips"]
    assert {r["scene"] for r in records if r["split"] == "test"} == {"data.split_scenes.test"}
    assert {r["scene"] for r in records if r["split"] != "test"} == {MAIN_SCENE}
    with rasterio.open(other_prep.path) as src:
        stack = src.read()
    chips = np.load(out / "test_image.npy")
    for rec in records:
        if rec["split"] == "test":
            window = stack[:, rec["row"]:rec["row"] + 8, rec["col"]:rec["col"] + 8]
            np.testing.assert_array_equal(chips[rec["index"]], window)
    footprints = gpd.read_file(out / "chips.gpkg")
    assert footprints.crs.to_epsg() == 32722 and "scene" in footprints.columns
    test_bounds = footprints[footprints["split"] == "test"].total_bounds
    expected = transform_bounds(OTHER_CRS, "EPSG:32722", OTHER_ORIGIN[0], OTHER_ORIGIN[1] - 1200,
                                OTHER_ORIGIN[0] + 1200, OTHER_ORIGIN[1])
    np.testing.assert_allclose(test_bounds, expected, atol=5.0)  # reprojected into the main layer's CRS


def _cfg(tiny_scene, tmp_path: Path, *extra: str):
    return compose_config("data=scene", f"data.image={tiny_scene['image']}", f"data.labels={tiny_scene['labels']}",
                          "data.classes=[forest,clearing]", "data.band_names=[blue,green,red,nir]",
                          "preprocessing.indices=[]", "data.chip_size=8", "data.block_size=16", "data.split_buffer=0",
                          "data.train_chips=20", "stages=[prepare,rasterize,chips]",
                          f"paths.cache_dir={tmp_path / 'cache'}", f"paths.output_dir={tmp_path / 'out'}", *extra)


def test_the_runner_prepares_the_test_scene_with_the_training_statistics(tiny_scene, tmp_path):
    from deepgeo_runner.geo.normalize import apply_stats
    from deepgeo_runner.pipeline.runner import run

    other = _other_scene(tmp_path)
    scene = [f"data.split_scenes.test.image={other['image']}", f"data.split_scenes.test.labels={other['labels']}"]
    art = run(_cfg(tiny_scene, tmp_path, *scene), tmp_path / "run")
    test_scene = art.split_scenes["test"]
    with rasterio.open(test_scene.prepared) as src:
        assert src.crs.to_string() == OTHER_CRS  # its own grid, not resampled onto the training one
        np.testing.assert_allclose(src.read(), apply_stats(other["data"], art.prepared.stats), rtol=1e-5, atol=1e-5)
    records = json.loads((art.chips.path / "chips.json").read_text())["chips"]
    assert {r["scene"] for r in records if r["split"] == "test"} == {"data.split_scenes.test"}
    assert {r["scene"] for r in records if r["split"] in ("train", "val")} == {MAIN_SCENE}
    assert art.chips.counts["val"] > 0 and art.chips.counts["train"] == 20
    provenance = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert provenance["inputs"]["split_scenes.test.labels"]["path"] == str(other["labels"])

    relabelled = tmp_path / "relabelled.gpkg"
    gpd.read_file(other["labels"]).iloc[:1].to_file(relabelled, driver="GPKG")
    again = run(_cfg(tiny_scene, tmp_path, scene[0], f"data.split_scenes.test.labels={relabelled}"), tmp_path / "r2")
    assert again.cache_keys["prepare"] == art.cache_keys["prepare"]  # the training scene is untouched
    assert again.cache_keys["prepare_test"] == art.cache_keys["prepare_test"]
    assert again.cache_keys["rasterize_test"] != art.cache_keys["rasterize_test"]
    assert again.cache_keys["chips"] != art.cache_keys["chips"]  # the store follows the other scene's files
    assert again.chips.counts["test"] < art.chips.counts["test"]


def test_split_scene_errors_name_the_key_and_fail_before_heavy_work(tiny_scene, tmp_path):
    from deepgeo_runner.config.validate import validate_config
    from deepgeo_runner.pipeline.runner import run

    other = _other_scene(tmp_path)
    with pytest.raises(ConfigError, match=r"data.split_scenes.test.labels is required"):
        validate_config(_cfg(tiny_scene, tmp_path, f"data.split_scenes.test.image={other['image']}"))
    with pytest.raises(ConfigError, match=r"data.split_scenes.val.image='.*missing.tif': no such file"):
        validate_config(_cfg(tiny_scene, tmp_path, f"data.split_scenes.val.image={tmp_path / 'missing.tif'}",
                             f"data.split_scenes.val.labels={other['labels']}"))
    three = _other_scene(tmp_path, bands=3)
    with pytest.raises(InputDataError, match=r"split_scenes.test.image=.*has 3 bands but the training scene has 4"):
        run(_cfg(tiny_scene, tmp_path, f"data.split_scenes.test.image={three['image']}",
                 f"data.split_scenes.test.labels={three['labels']}"), tmp_path / "run")
    splits = tmp_path / "splits.gpkg"
    gpd.GeoDataFrame({"split": ["train", "val", "test"]},
                     geometry=[pixel_box(0, 0, 48, 20), pixel_box(0, 24, 20, 48), pixel_box(24, 24, 48, 48)],
                     crs="EPSG:32722").to_file(splits, driver="GPKG")
    with pytest.raises(ConfigError, match=r"splits.gpkg' has \['test'\] polygons, but data.split_scenes.test"):
        run(_cfg(tiny_scene, tmp_path, f"data.split_vector={splits}", f"data.split_scenes.test.image={other['image']}",
                 f"data.split_scenes.test.labels={other['labels']}"), tmp_path / "run")
    assert not (tmp_path / "cache" / "prepare").exists()


def test_another_scene_on_the_ground_of_training_chips_is_reported(tiny_scene, tmp_path, caplog):
    """Same place (here: the very same image) as test scene: the store is built, but the user is told;
    a scene in another UTM zone, far away, gives no such warning."""
    import logging

    split = split_blocks((48, 48), 16, [0.7, 0.3, 0.0], seed=2)
    bands = tiny_scene["band_names"]
    main, labels = prepare_and_label(tiny_scene["image"], tiny_scene["labels"], tmp_path / "main", bands,
                                     train_mask=split == 0)
    other = _other_scene(tmp_path)
    far, far_labels = prepare_and_label(other["image"], other["labels"], tmp_path / "far", bands, stats=main.stats)
    plan = ChipPlan(chip_size=8, train_chips=20, min_labelled_fraction=0.2)

    def warns(prepared: Path, scene_labels: Path, name: str) -> bool:
        out = tmp_path / f"store_{name}"
        out.mkdir()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="deepgeo_runner.stages.chips"):
            build_chip_store(main.path, labels, out, split, plan, target_lut(2, False), 2, seed=0,
                             split_scenes={"test": SplitScene(prepared, scene_labels, "data.split_scenes.test")})
        return "lie on the ground of training chips" in caplog.text

    assert warns(main.path, labels, "same")
    assert not warns(far.path, far_labels, "far")
