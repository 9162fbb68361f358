"""Several dates from separate files: one date-major stack on one grid, indices per date,
through the runner (cache, provenance, checkpoint metadata) and back out by applying a
checkpoint to another time stack."""

import json
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch

from deepgeo_runner.core.errors import ConfigError, InputDataError
from deepgeo_runner.geo.scene import SceneOptions, build_time_stack, date_groups
from deepgeo_runner.ml.model_card import checkpoint_meta
from deepgeo_runner.stages.prepare import PREPARED_NODATA, PrepareOptions, prepare_scene
from tests.helpers import ORIGIN, pixel_box, write_tile

BANDS = ["green", "red", "nir"]


@pytest.fixture
def two_dates(tmp_path):
    """Date 1: one 30x40 tile at the origin. Date 2: two tiles (a mosaic) shifted 10 px right."""
    rng = np.random.default_rng(7)
    d1 = rng.integers(100, 5000, (3, 30, 40)).astype(np.uint16)
    d2 = rng.integers(100, 5000, (3, 30, 40)).astype(np.uint16)
    first = write_tile(tmp_path / "d1.tif", d1, 0, 0)
    top = write_tile(tmp_path / "d2_top.tif", d2[:, :15], 10, 0)
    bottom = write_tile(tmp_path / "d2_bottom.tif", d2[:, 15:], 10, 15)
    return d1, d2, {"2019-07-01": [first], "2020-07-01": [top, bottom]}


def test_time_stack_is_date_major_on_the_union_grid(tmp_path, two_dates):
    d1, d2, groups = two_dates
    out = build_time_stack(groups, tmp_path / "stack.tif", SceneOptions())
    with rasterio.open(out) as src:
        stack = src.read()
        assert src.count == 6 and src.shape == (30, 50) and src.transform.c == ORIGIN[0]
        assert src.descriptions[0] == "2019-07-01_band1" and src.descriptions[3] == "2020-07-01_band1"
    np.testing.assert_array_equal(stack[:3, :, :40], d1)
    np.testing.assert_array_equal(stack[3:, :, 10:], d2)
    assert (stack[:3, :, 40:] == 0).all() and (stack[3:, :, :10] == 0).all()  # each date's gap is nodata


def test_dates_with_other_band_counts_are_refused(tmp_path, two_dates):
    _, _, groups = two_dates
    four = write_tile(tmp_path / "four.tif", np.ones((4, 30, 40), dtype=np.uint16), 0, 0)
    with pytest.raises(InputDataError, match="different band counts"):
        build_time_stack({"a": groups["2019-07-01"], "b": [four]}, tmp_path / "x.tif", SceneOptions())


def test_date_groups_reads_every_form_of_the_image_option(tmp_path):
    assert date_groups("a.tif") == {"": [Path("a.tif")]}
    assert [p.name for p in date_groups(["a.tif", "b.tif"])[""]] == ["a.tif", "b.tif"]
    groups = date_groups({"t1": "a.tif", "t0": ["b.tif", "c.tif"]})
    assert list(groups) == ["t1", "t0"] and [p.name for p in groups["t0"]] == ["b.tif", "c.tif"]


def test_indices_are_computed_per_date_and_stay_date_major(tmp_path, two_dates):
    _, _, groups = two_dates
    stack = build_time_stack(groups, tmp_path / "stack.tif", SceneOptions())
    prepared = prepare_scene(stack, tmp_path / "p", PrepareOptions(BANDS, ["ndvi"], "none", dates=["2019-07-01",
                             "2020-07-01"]))
    assert prepared.feature_names == (
        "2019-07-01_green", "2019-07-01_red", "2019-07-01_nir", "2019-07-01_ndvi",
        "2020-07-01_green", "2020-07-01_red", "2020-07-01_nir", "2020-07-01_ndvi",
    )
    assert prepared.dates == ("2019-07-01", "2020-07-01")
    with rasterio.open(stack) as src:
        raw = src.read().astype(np.float64)
    with rasterio.open(prepared.path) as src:
        out = src.read()
    both = (raw != 0).all(axis=0)  # a pixel is valid where every date has data
    for d in range(2):
        red, nir = raw[3 * d + 1], raw[3 * d + 2]
        np.testing.assert_allclose(out[4 * d + 3][both], (nir[both] - red[both]) / (nir[both] + red[both]), rtol=1e-5)
        np.testing.assert_array_equal(out[4 * d][both], raw[3 * d][both])
    assert (out[:, ~both] == PREPARED_NODATA).all()
    with pytest.raises(ConfigError, match="per date"):
        prepare_scene(stack, tmp_path / "q", PrepareOptions(BANDS + ["swir1"], [], "none", dates=["a", "b"]))
    with pytest.raises(InputDataError, match="do not split into 4 dates"):
        prepare_scene(stack, tmp_path / "q", PrepareOptions(BANDS, [], "none", dates=["a", "b", "c", "d"]))


def _dirs(tmp_path: Path) -> list[str]:
    return [f"paths.cache_dir={tmp_path / 'cache'}", f"paths.output_dir={tmp_path / 'runs'}"]


def _image_override(groups) -> str:
    items = ", ".join(f"{d}: [{', '.join(str(p) for p in tiles)}]" for d, tiles in groups.items())
    return f"data.image={{{items}}}"


def test_runner_stacks_dates_prepares_per_date_and_records_the_sources(tmp_path, two_dates, compose):
    from deepgeo_runner.config.validate import validate_config
    from deepgeo_runner.pipeline.runner import run

    _, _, groups = two_dates
    labels = tmp_path / "gt.gpkg"
    gpd.GeoDataFrame({"class": ["a", "b"]}, geometry=[pixel_box(0, 0, 30, 25), pixel_box(0, 25, 30, 50)],
                     crs="EPSG:32722").to_file(labels)
    base = ["data=scene", _image_override(groups), f"data.labels={labels}", "data.classes=[a,b]",
            f"data.band_names={BANDS}", "preprocessing.indices=[ndvi]", "data.chip_size=8",
            "stages=[prepare,rasterize]"]
    art = run(compose(*base, *_dirs(tmp_path)), tmp_path / "run")
    assert art.prepared.n_features == 8 and art.prepared.dates == ("2019-07-01", "2020-07-01")
    with rasterio.open(art.image) as src, rasterio.open(art.labels) as lab:
        assert src.count == 6 and lab.shape == src.shape == (30, 50)
    provenance = json.loads((tmp_path / "run" / "provenance.json").read_text())
    sources = provenance["inputs"]["image_sources"]
    assert [s["date"] for s in sources] == ["2019-07-01", "2020-07-01", "2020-07-01"]
    assert all(len(s["sha256"]) == 64 for s in sources)
    again = run(compose(*base, *_dirs(tmp_path)), tmp_path / "run2")
    assert again.reused == {"scene": True, "prepare": True, "rasterize": True}
    with pytest.raises(ConfigError, match="data.dates"):
        validate_config(compose(*base, "data.dates=[2020-07-01,2019-07-01]", *_dirs(tmp_path)))
    with pytest.raises(ConfigError, match=r"data.image.2020-07-01='.*nope.tif': no such file"):
        validate_config(compose("data=scene", f"data.labels={labels}", "data.classes=[a,b]",
                                       f"data.image={{2019-07-01: {groups['2019-07-01'][0]}, "
                                       f"2020-07-01: {tmp_path / 'nope.tif'}}}", *_dirs(tmp_path)))


def test_a_test_scene_of_its_own_dates_is_stacked_and_prepared_like_the_training_stack(tmp_path, two_dates, compose):
    from deepgeo_runner.config.validate import validate_config
    from deepgeo_runner.pipeline.runner import run

    d1, d2, groups = two_dates
    labels = tmp_path / "gt.gpkg"
    gpd.GeoDataFrame({"class": ["a", "b"]}, geometry=[pixel_box(0, 0, 30, 25), pixel_box(0, 25, 30, 50)],
                     crs="EPSG:32722").to_file(labels)
    later = {"2021-07-01": [write_tile(tmp_path / "t1.tif", d2, 0, 0)],
             "2022-07-01": [write_tile(tmp_path / "t2.tif", d1, 0, 0)]}
    base = ["data=scene", _image_override(groups), f"data.labels={labels}", "data.classes=[a,b]",
            f"data.band_names={BANDS}", "preprocessing.indices=[ndvi]", "data.chip_size=8", "data.block_size=16",
            "data.split_buffer=0", "data.train_chips=10", "stages=[prepare,rasterize,chips]",
            _image_override(later).replace("data.image=", "data.split_scenes.test.image="),
            f"data.split_scenes.test.labels={labels}"]
    art = run(compose(*base, *_dirs(tmp_path)), tmp_path / "run")
    with rasterio.open(art.split_scenes["test"].prepared) as src:
        assert src.count == 8 and src.descriptions[4] == "2020-07-01_green"  # named by the training dates
    records = json.loads((art.chips.path / "chips.json").read_text())["chips"]
    assert {r["scene"] for r in records if r["split"] == "test"} == {"data.split_scenes.test"}
    provenance = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert provenance["inputs"]["split_scenes.test.image.2022-07-01"]["path"] == str(later["2022-07-01"][0])
    single = base[:-2] + [f"data.split_scenes.test.image={later['2021-07-01'][0]}",
                          f"data.split_scenes.test.labels={labels}"]
    with pytest.raises(ConfigError, match="training scene's dates"):
        validate_config(compose(*single, *_dirs(tmp_path)))


@pytest.mark.slow
def test_temporal_run_then_its_checkpoint_on_another_pair_of_dates(tmp_path):
    """Train early fusion on two dates given as separate files; apply the checkpoint to a
    later pair of dates with one command: same grid out, dates and model inputs in the checkpoint."""
    from deepgeo_runner.geo.demo import make_demo_scene

    demo = make_demo_scene(tmp_path / "demo", size=128, seed=0)
    with rasterio.open(demo.image) as src:
        profile, data = src.profile, src.read()
    later = tmp_path / "later.tif"
    with rasterio.open(later, "w", **profile) as dst:
        dst.write(data)  # the same place, 'a year later'
    image = f"data.image={{2019-08-01: {demo.image}, 2020-08-01: {later}}}"
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    common = [f"hydra.run.dir={run_dir}", f"paths.cache_dir={cache}", "trainer=cpu",
              "trainer.enable_progress_bar=false"]
    train = [sys.executable, "-m", "deepgeo_runner.cli", "data=scene", image, f"data.labels={demo.labels}",
             "data.classes=[forest,deforestation,water]", f"data.band_names={list(demo.band_names)}",
             "preprocessing.indices=[ndvi]", "data.chip_size=32", "data.block_size=64", "data.split_buffer=0",
             "data.train_chips=16", "model=early_fusion", "model.width=4", "model.depth=2",
             "trainer.max_epochs=1", "stages=[prepare,rasterize,chips,fit]", *common]
    proc = subprocess.run(train, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    meta = checkpoint_meta(torch.load(ckpt, map_location="cpu", weights_only=True)["deepgeo"])
    assert meta["dates"] == ["2019-08-01", "2020-08-01"]
    assert meta["model_inputs"] == {"in_channels": len(demo.band_names) + 1, "dates": 2}
    assert meta["labelling"]["class_column"] == "class" and meta["labelling"]["others"] == "background"

    apply_dir = tmp_path / "apply"
    new_pair = f"predict.image={{2021-08-01: {demo.image}, 2022-08-01: {later}}}"
    proc = subprocess.run([sys.executable, "-m", "deepgeo_runner.cli", "stages=[predict]",
                           f"predict.checkpoint={ckpt}", new_pair, f"hydra.run.dir={apply_dir}",
                           f"paths.cache_dir={cache}", "trainer=cpu"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with rasterio.open(apply_dir / "prediction.tif") as pred, rasterio.open(demo.image) as src:
        assert pred.crs == src.crs and pred.transform == src.transform and pred.shape == src.shape
        classes = pred.read(1)
    assert set(np.unique(classes)) <= {0, 1, 2, 3, 255}

    three = f"predict.image={{a: {demo.image}, b: {later}, c: {later}}}"
    proc = subprocess.run([sys.executable, "-m", "deepgeo_runner.cli", "stages=[predict]",
                           f"predict.checkpoint={ckpt}", three, f"hydra.run.dir={tmp_path / 'bad'}",
                           f"paths.cache_dir={cache}", "trainer=cpu"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "3 dates" in proc.stderr + proc.stdout


@pytest.mark.parametrize("n_dates", [1, 2])
def test_the_report_draws_feature_histograms_of_a_stack_of_any_number_of_dates(tmp_path, two_dates, n_dates, compose):
    from deepgeo_runner.pipeline.runner import run

    _, _, groups = two_dates
    groups = dict(list(groups.items())[:n_dates])
    labels = tmp_path / "gt.gpkg"
    gpd.GeoDataFrame({"class": ["a", "b"]}, geometry=[pixel_box(0, 0, 30, 25), pixel_box(0, 25, 30, 50)],
                     crs="EPSG:32722").to_file(labels)
    cfg = compose("data=scene", _image_override(groups), f"data.labels={labels}", "data.classes=[a,b]",
                         f"data.band_names={BANDS}", "preprocessing.indices=[ndvi]", "data.chip_size=8",
                         "data.block_size=8", "data.split_buffer=0", "data.train_chips=10",
                         "stages=[prepare,rasterize,chips,report]", *_dirs(tmp_path))
    run(cfg, tmp_path / "run")
    plots = {p.name for p in (tmp_path / "run" / "plots").glob("*.png")}
    assert {"feature_histograms.png", "chips.png", "class_distribution.png"} <= plots
