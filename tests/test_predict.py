"""Whole-scene prediction: TTA inverses, outputs on the input grid, seams of a real network,
2 processes = 1 process, polygons of predicted classes, applying a checkpoint to a new scene."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.features
import torch
from affine import Affine

from deepgeo_runner.core.errors import ConfigError, InputDataError
from deepgeo_runner.geo.polygonize import polygonize_classes
from deepgeo_runner.geo.raster_io import Grid, RowAppender, open_raster_writer
from deepgeo_runner.ml.augment import dihedral
from deepgeo_runner.ml.predict import (
    ClassLegend,
    OutputFormats,
    WindowSettings,
    forward_windows,
    predict_scene,
    undo_dihedral,
)
from tests.helpers import CRS, REPO, write_image
from tests.helpers.models import CLASSES, make_checkpoint, small_cnn, smooth_image

# --- test-time augmentation -------------------------------------------------------------------

@pytest.mark.parametrize("op", range(8))
@pytest.mark.parametrize("shape", [(2, 3, 5, 5), (1, 2, 4, 6)])
def test_undo_dihedral_inverts_every_op(op, shape):
    x = torch.arange(int(np.prod(shape)), dtype=torch.float32).reshape(shape)
    y = dihedral(x, op)
    if op not in (0, 2, 5, 7) and shape[-1] != shape[-2]:
        assert y.shape[-2:] == x.shape[-2:][::-1]
    torch.testing.assert_close(undo_dihedral(y, op), x)


def test_tta_logits_are_equivariant_for_an_asymmetric_net():
    net = small_cnn(1)
    x = torch.randn(2, 2, 12, 12)
    plain = forward_windows(net, x)
    assert not torch.allclose(dihedral(plain, 1), forward_windows(net, dihedral(x, 1)), atol=1e-4)
    tta = forward_windows(net, x, tta=True)
    for op in range(8):
        torch.testing.assert_close(forward_windows(net, dihedral(x, op), tta=True), dihedral(tta, op),
                                   atol=1e-5, rtol=1e-5)


# --- georeferenced outputs --------------------------------------------------------------------

def test_outputs_keep_grid_crs_and_nodata_uint8_probabilities_and_cog(tmp_path):
    data = smooth_image((2, 70, 90))
    data[:, 60:, :10] = -9999.0
    transform = Affine(0.00025, 0, -54.0, 0, -0.00025, -3.0)
    image = write_image(tmp_path / "in.tif", data, crs="EPSG:4326", transform=transform)
    out = predict_scene(small_cnn(), image, tmp_path / "prediction.tif", WindowSettings(32, 0.5, 5),
                        ClassLegend.of(CLASSES), progress=False,
                        outputs=OutputFormats(probabilities="uint8", entropy=True, cog=True))
    invalid = np.zeros((70, 90), dtype=bool)
    invalid[60:, :10] = True
    for name in ("prediction.tif", "prediction_proba.tif", "prediction_entropy.tif"):
        with rasterio.open(tmp_path / name) as src, rasterio.open(image) as ref:
            assert (src.crs, src.transform, src.shape) == (ref.crs, ref.transform, ref.shape), name
            band = src.read(1, masked=True)
            assert (band.mask == invalid).all(), name
    with rasterio.open(out) as src:
        assert src.colormap(1)[1][:3] == (255, 0, 0)
        assert src.tags()["class_2"] == "b" and src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        classes = src.read(1)
    with rasterio.open(tmp_path / "prediction_proba.tif") as src:
        p = src.read()
        assert src.dtypes[0] == "uint8" and src.scales[0] == pytest.approx(1 / 254)
    total = p[:, ~invalid].astype(int).sum(axis=0)
    assert np.abs(total - 254).max() <= 2  # rounding of three bands
    chosen = np.take_along_axis(p, (classes.astype(np.int64) - 1).clip(0, 2)[None], axis=0)[0]
    assert (chosen[~invalid].astype(int) >= p[:, ~invalid].max(axis=0) - 1).all()  # argmax up to rounding
    assert not list(tmp_path.glob(".*"))


def test_rows_appended_in_any_heights_fill_the_raster_and_a_short_one_is_not_kept(tmp_path):
    grid = Grid(rasterio.crs.CRS.from_string(CRS), Affine(10, 0, 0, 0, -10, 0), 300, 600)
    data = np.arange(600 * 300, dtype=np.float32).reshape(1, 600, 300)
    with open_raster_writer(tmp_path / "rows.tif", grid, 1, "float32", None) as dst:
        rows = RowAppender(dst)
        for start, end in [(0, 7), (7, 300), (300, 301), (301, 600)]:
            rows.write(data[:, start:end])
        rows.finish()
    with rasterio.open(tmp_path / "rows.tif") as src:
        np.testing.assert_array_equal(src.read(), data)
    with pytest.raises(RuntimeError, match="short.tif: 599 of 600 rows"), \
            open_raster_writer(tmp_path / "short.tif", grid, 1, "float32", None) as dst:
        rows = RowAppender(dst, what="short.tif")
        rows.write(data[:, :599])
        rows.finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.tif"]


# --- seams of a real network ------------------------------------------------------------------

def _border_jump_ratio(tmp_path: Path, name: str, overlap: float, blend: str) -> float:
    """Mean |Δp| between adjacent columns across window borders / the same elsewhere."""
    data = smooth_image((2, 64, 128), seed=3)
    image = write_image(tmp_path / f"{name}_in.tif", data, nodata=None)
    predict_scene(small_cnn(2), image, tmp_path / f"{name}.tif", WindowSettings(32, overlap, 8, blend=blend),
                  ClassLegend.of(CLASSES), progress=False, outputs=OutputFormats(probabilities="float16"))
    with rasterio.open(tmp_path / f"{name}_proba.tif") as src:
        p = src.read()
    diff = np.abs(np.diff(p, axis=2)).mean(axis=(0, 1))  # diff[c-1] is the jump between c-1 and c
    stride = 32 if overlap == 0 else 16
    borders = np.array([c for c in range(stride, 128, stride)]) - 1
    inside = np.setdiff1d(np.arange(diff.size), np.concatenate([borders - 1, borders, borders + 1]))
    return float(diff[borders].mean() / diff[inside].mean())


def test_blended_prediction_of_a_real_net_has_no_seams(tmp_path):
    naive = _border_jump_ratio(tmp_path, "naive", 0.0, "hann")
    hann = _border_jump_ratio(tmp_path, "hann", 0.5, "hann")
    center = _border_jump_ratio(tmp_path, "center", 0.5, "center")
    assert naive > 2.0  # the measurement sees seams where they exist
    assert hann < 1.3 and hann < naive / 2
    assert center < naive


# --- several processes ------------------------------------------------------------------------

_WORKER = """
import os, sys, torch
from deepgeo_runner.ml.predict import ClassLegend, OutputFormats, RankShare, WindowSettings, predict_scene
{small_cnn}
torch.set_num_threads(1)
predict_scene(small_cnn(4), sys.argv[1], sys.argv[2], WindowSettings(24, 0.5, 3), ClassLegend.of({classes!r}),
              progress=False, outputs=OutputFormats(probabilities="float16", entropy=True),
              share=RankShare(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])))
"""


def test_two_processes_write_the_same_rasters_as_one(tmp_path):
    data = smooth_image((2, 100, 77), seed=5)
    data[:, 90:, 70:] = -9999.0
    image = write_image(tmp_path / "in.tif", data)
    script = tmp_path / "worker.py"
    script.write_text(_WORKER.format(small_cnn=inspect.getsource(small_cnn), classes=CLASSES))
    torch.set_num_threads(1)
    single = predict_scene(small_cnn(4), image, tmp_path / "one" / "prediction.tif", WindowSettings(24, 0.5, 3),
                           ClassLegend.of(CLASSES), progress=False,
                           outputs=OutputFormats(probabilities="float16", entropy=True))
    out = tmp_path / "two" / "prediction.tif"
    out.parent.mkdir()
    env = {**os.environ, "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, str(script), str(image), str(out)],
                              env={**env, "RANK": str(r)}, stderr=subprocess.PIPE, text=True)
             for r in (1, 0)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
    for name in ("prediction.tif", "prediction_proba.tif", "prediction_entropy.tif"):
        with rasterio.open(single.parent / name) as a, rasterio.open(out.parent / name) as b:
            assert a.profile["transform"] == b.profile["transform"]
            np.testing.assert_allclose(b.read(), a.read(), atol=1e-6, equal_nan=True)
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "prediction.tif", "prediction_entropy.tif", "prediction_proba.tif"]  # parts cleaned up


# --- polygons ---------------------------------------------------------------------------------

def _class_map(tmp_path: Path, crs: str, transform: Affine) -> tuple[Path, np.ndarray]:
    classes = np.ones((60, 50), dtype=np.uint8)
    classes[5:40, 5:20] = 2        # a big block crossing the strip borders
    classes[45:47, 30:32] = 2      # 4 px: below the min area
    classes[10:30, 30:45] = 3
    classes[50:, :] = 255          # nodata
    path = tmp_path / "prediction.tif"
    with rasterio.open(path, "w", driver="GTiff", width=50, height=60, count=1, dtype="uint8",
                       crs=crs, transform=transform, nodata=255) as dst:
        dst.write(classes[None])
        dst.update_tags(class_1="forest", class_2="deforestation", class_3="water")
    return path, classes


def test_polygons_overlay_their_classes_with_areas_and_min_area_filter(tmp_path):
    transform = Affine(30.0, 0, 600_000.0, 0, -30.0, 9_600_000.0)
    path, classes = _class_map(tmp_path, CRS, transform)
    gpkg, totals = polygonize_classes(path, tmp_path / "prediction_polygons.gpkg",
                                      ["deforestation", "water"], min_area_ha=0.5, strip_rows=7)
    frame = gpd.read_file(gpkg, layer="polygons")
    assert list(frame.columns) == ["class", "class_id", "area_ha", "geometry"]
    assert sorted(frame["class"]) == ["deforestation", "water"]  # one polygon each, the 4-px one dropped
    assert frame.crs == CRS
    big = frame[frame["class"] == "deforestation"].iloc[0]
    assert big["area_ha"] == pytest.approx(35 * 15 * 0.09)  # 30 m pixels: 0.09 ha
    burnt = rasterio.features.rasterize(
        [(g, cid) for g, cid in zip(frame.geometry, frame["class_id"], strict=True)],
        out_shape=classes.shape, transform=transform, fill=0)
    expected = np.where(np.isin(classes, [2, 3]), classes, 0)
    expected[45:47, 30:32] = 0
    np.testing.assert_array_equal(burnt, expected)
    summary = json.loads(totals.read_text())
    assert totals.name == "prediction_totals.json"
    assert summary["classes"]["water"] == {"class_id": 3, "polygons": 1, "area_ha": pytest.approx(300 * 0.09)}
    kept_all, _ = polygonize_classes(path, tmp_path / "all.gpkg", ["deforestation"], min_area_ha=0.0)
    assert len(gpd.read_file(kept_all)) == 2
    with pytest.raises(InputDataError, match="clouds"):
        polygonize_classes(path, tmp_path / "x.gpkg", ["clouds"])


def test_polygon_areas_in_a_geographic_crs_are_measured_equal_area(tmp_path):
    deg = 30.0 / 111_320.0  # about 30 m at the equator
    path, _ = _class_map(tmp_path, "EPSG:4326", Affine(deg, 0, -54.0, 0, -deg, 0.0))
    gpkg, _ = polygonize_classes(path, tmp_path / "p.gpkg", ["deforestation"], min_area_ha=0.5)
    frame = gpd.read_file(gpkg)
    assert frame.crs.to_epsg() == 4326
    assert frame["area_ha"].iloc[0] == pytest.approx(35 * 15 * 0.09, rel=0.01)


# --- applying a checkpoint to a new scene -----------------------------------------------------

def test_apply_checkpoint_to_a_new_scene(tmp_path, tiny_scene):
    from deepgeo_runner.stages.apply import apply_checkpoint

    ckpt, made = make_checkpoint(tmp_path, tiny_scene)
    applied = apply_checkpoint(ckpt, tiny_scene["image"], tmp_path / "run", overlap=0.5, batch_size=4,
                               progress=False, polygons=["clearing"], min_area_ha=0.0, entropy=True)
    reference = predict_scene(made["net"], made["prepared"].path, tmp_path / "ref.tif", WindowSettings(16, 0.5, 4),
                              ClassLegend([1, 2], ["forest", "clearing"], ["#1b7837", "#d6604d"]), progress=False)
    with rasterio.open(applied.prediction) as a, rasterio.open(reference) as b, \
            rasterio.open(tiny_scene["image"]) as src:
        assert (a.crs, a.transform, a.shape) == (src.crs, src.transform, src.shape)
        np.testing.assert_array_equal(a.read(), b.read())  # same stats, same weights, same classes
        assert (a.read(1)[:4, :4] == 255).all()  # the input's nodata corner
    assert applied.extra["entropy"].is_file() and applied.extra["polygons"].is_file()
    with pytest.raises(InputDataError, match="inference metadata"):
        bad = tmp_path / "bad.ckpt"
        torch.save({"state_dict": {}}, bad)
        apply_checkpoint(bad, tiny_scene["image"], tmp_path / "run2", progress=False)


def test_runner_applies_a_checkpoint_from_the_config_alone(tmp_path, tiny_scene, compose):
    from deepgeo_runner.config.options import run_options
    from deepgeo_runner.pipeline.predicting import apply_checkpoint_stage

    ckpt, _ = make_checkpoint(tmp_path, tiny_scene)
    cfg = compose("stages=[predict]", f"predict.checkpoint={ckpt}", f"predict.image={tiny_scene['image']}",
                         "predict.probabilities=uint8", "predict.polygons=[clearing]", "predict.min_area_ha=0",
                         f"paths.cache_dir={tmp_path / 'cache'}", f"paths.output_dir={REPO / 'outputs'}")
    art = apply_checkpoint_stage(run_options(cfg), tmp_path / "run")
    assert art.prediction == tmp_path / "run" / "prediction.tif"
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"prediction.tif", "prediction_proba.tif", "prediction_polygons.gpkg",
            "prediction_totals.json"} <= names
    assert "predict_input" not in names  # the raw bands streamed: no prepared stack (predict.stream=false writes one)
    with rasterio.open(art.prediction) as a:
        assert a.tags()["class_2"] == "clearing"


@pytest.mark.parametrize("override,match", [
    ("predict.image=/nonexistent/new.tif", "predict.image"),
    ("predict.min_area_ha=-1", "predict.min_area_ha"),
])
def test_predict_config_errors_name_the_key(tmp_path, override, match, compose):
    from deepgeo_runner.config.validate import validate_config

    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"x")
    cfg = compose("stages=[predict]", f"predict.checkpoint={ckpt}", override,
                         f"paths.output_dir={REPO / 'outputs'}")
    with pytest.raises(ConfigError, match=match):
        validate_config(cfg)


def test_missing_checkpoint_is_a_config_error(tmp_path, compose):
    from deepgeo_runner.config.validate import validate_config

    cfg = compose("stages=[predict]", f"predict.checkpoint={tmp_path / 'none.ckpt'}",
                         f"paths.output_dir={REPO / 'outputs'}")
    with pytest.raises(ConfigError, match="predict.checkpoint"):
        validate_config(cfg)


def test_a_checkpoint_is_a_file_or_a_finished_run_directory(tmp_path):
    from deepgeo_runner.core.checkpoint_path import checkpoint_file

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match="without checkpoints/best.ckpt or last.ckpt"):
        checkpoint_file(run)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert checkpoint_file(run) == run / "checkpoints" / "last.ckpt"  # interrupted: its last weights
    (run / "checkpoints" / "best.ckpt").write_bytes(b"x")
    assert checkpoint_file(run) == run / "checkpoints" / "best.ckpt"
    assert checkpoint_file(run / "checkpoints" / "last.ckpt") == run / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match="no such file or run directory"):
        checkpoint_file(tmp_path / "none.ckpt")
