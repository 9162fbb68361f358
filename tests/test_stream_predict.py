"""A checkpoint applied to a new scene streams its raw bands (issue 22): the same class map as the prepared path.

The streamed path prepares each pixel read on the network's device (``RawBandsModel.pixel_features``) and cuts the
windows from those features; the prepared path writes ``prepared.tif`` with numpy and predicts from it. Both must
give the same class map (and probabilities) pixel for pixel: same float32 features, same windows, same network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from deepgeo_runner.core.errors import InputDataError
from deepgeo_runner.stages.apply import apply_checkpoint
from tests.helpers import write_image, write_tile
from tests.helpers.tiny_model import make_checkpoint, textured_scene

SCALE, OFFSET = 0.0000275, -0.2  # Landsat Collection 2 Level-2 surface reflectance


def dn_scene(folder: Path, size: int = 70) -> dict:
    """The textured scene as uint16 digital numbers (nodata 0 in its corner), ``size`` not a multiple of the
    window, so that the far edges' boundless windows are exercised."""
    scene = textured_scene(folder / "reflectance", size=96)
    data = scene["data"][:, :size, :size]
    dn = np.where(data == -9999.0, 0, np.clip(np.rint((data - OFFSET) / SCALE), 1, 65535)).astype(np.uint16)
    dn[:, 20, 30] = 0  # a lone nodata pixel inside
    dn[3, 40, 41] = 0  # one band at its nodata value: valid under the gdal rule
    image = write_image(folder / "dn.tif", dn, nodata=0)
    return {"image": image, "data": dn, "band_names": scene["band_names"], "labels": scene["labels"][:size, :size]}


def _both_paths(tmp_path: Path, ckpt: Path, image, **options) -> tuple[np.ndarray, np.ndarray, object]:
    """The class maps (and uint8 probabilities) of the streamed and the prepared path."""
    kw = dict(overlap=0.5, batch_size=4, progress=False, probabilities="uint8", **options)
    streamed = apply_checkpoint(ckpt, image, tmp_path / "streamed", stream=True, **kw)
    prepared = apply_checkpoint(ckpt, image, tmp_path / "prepared", stream=False, **kw)
    maps = []
    for applied in (streamed, prepared):
        with rasterio.open(applied.prediction) as a, rasterio.open(applied.extra["probabilities"]) as p:
            maps.append((a.read(1), p.read()))
    (a, pa), (b, pb) = maps
    mismatched = int((a != b).sum())
    assert mismatched == 0, f"{mismatched} of {a.size} pixels differ between the streamed and the prepared map"
    np.testing.assert_array_equal(pa, pb)
    return a, b, streamed


@pytest.mark.parametrize("normalization", ["standard", "minmax", "percentile", "per_chip"])
def test_the_streamed_map_equals_the_prepared_map_on_a_scene_with_nodata(tmp_path, normalization):
    scene = textured_scene(tmp_path / "scene")
    ckpt, _ = make_checkpoint(tmp_path / "ckpt", scene, indices=("ndvi",), normalization=normalization,
                              labels=scene["labels"])
    streamed_map, _, applied = _both_paths(tmp_path, ckpt, scene["image"])
    if normalization != "per_chip":  # (its network learnt on unstandardized chips: one class everywhere)
        assert set(np.unique(streamed_map)) == {1, 2, 255}  # both classes, and nodata
    assert (streamed_map[:8, :8] == 255).all() and streamed_map[50, 60] == 255  # nodata, and NDVI undefined
    assert applied.prepared == scene["image"]  # the raw raster was read ...
    assert not (tmp_path / "streamed" / "prepared").exists()  # ... and no prepared stack written
    assert (tmp_path / "prepared" / "prepared" / "prepared.tif").is_file()


def test_digital_numbers_with_scale_offset_and_indices_stream_to_the_same_map(tmp_path):
    scene = dn_scene(tmp_path / "scene")
    ckpt, made = make_checkpoint(tmp_path / "ckpt", scene, indices=("ndvi", "evi2"), labels=scene["labels"],
                                 scale=SCALE, offset=OFFSET)
    assert made["meta"]["scale"] == SCALE
    streamed_map, _, _ = _both_paths(tmp_path, ckpt, scene["image"], window=32)
    assert set(np.unique(streamed_map)) == {1, 2, 255}
    assert streamed_map[20, 30] == 255 and streamed_map[40, 41] != 255  # gdal rule: all bands at nodata


def test_a_mosaic_streams_from_its_built_raster(tmp_path):
    scene = textured_scene(tmp_path / "scene", size=64)
    ckpt, _ = make_checkpoint(tmp_path / "ckpt", scene, indices=("ndvi",), labels=scene["labels"])
    data = np.where(scene["data"] == -9999.0, 0, scene["data"]).astype(np.float32)
    west = write_tile(tmp_path / "west.tif", data[:, :, :32], col=0, row=0)
    east = write_tile(tmp_path / "east.tif", data[:, :, 32:], col=32, row=0)
    streamed_map, _, applied = _both_paths(tmp_path, ckpt, [str(west), str(east)], nodata=0)
    assert streamed_map.shape == (64, 64) and set(np.unique(streamed_map)) >= {1, 2}
    assert applied.prepared == tmp_path / "streamed" / "prepared" / "scene.tif"  # the mosaic, raw bands
    assert not (tmp_path / "streamed" / "prepared" / "prepared.tif").exists()


def test_a_scene_with_other_bands_is_refused_before_it_streams(tmp_path):
    scene = textured_scene(tmp_path / "scene", size=64)
    ckpt, _ = make_checkpoint(tmp_path / "ckpt", scene, indices=("ndvi",))
    three = write_image(tmp_path / "three.tif", scene["data"][:3])
    with pytest.raises(InputDataError, match="has 3 bands; the model takes 4"):
        apply_checkpoint(ckpt, three, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "prediction.tif").exists()


@pytest.mark.parametrize("indices", [("ndvi", "evi2"), ("savi",)])
def test_the_torch_preparation_of_an_accelerator_gives_the_same_map(tmp_path, indices):
    """On a GPU the pixels are prepared by ``RawBandsModel.pixel_features`` (torch); run here on the CPU, its
    features, and so the map, equal prepare_scene's numpy ones."""
    import torch

    from deepgeo_runner.ml.model_card import ModelCard
    from deepgeo_runner.stages.apply import read_checkpoint
    from deepgeo_runner.stages.raw_scene import RawRun, classify_raw_bands, pixel_preparation

    scene = dn_scene(tmp_path / "scene")
    ckpt, made = make_checkpoint(tmp_path / "ckpt", scene, indices=indices, labels=scene["labels"],
                                 scale=SCALE, offset=OFFSET)
    card = ModelCard.from_dict(read_checkpoint(ckpt)[1])
    how = RawRun("cpu", pixel_preparation(card, "cpu", on_device=True))
    _, streamed = classify_raw_bands(made["net"], card, scene["image"], tmp_path / "work", tmp_path / "torch.tif",
                                     how, window=32, overlap=0.5, batch_size=4, progress=False)
    prepared = apply_checkpoint(ckpt, scene["image"], tmp_path / "prepared", window=32, overlap=0.5, batch_size=4,
                                progress=False, stream=False)
    with rasterio.open(streamed) as a, rasterio.open(prepared.prediction) as b:
        np.testing.assert_array_equal(a.read(), b.read())
    features, _ = how.prepare(scene["data"][:, :8, :8], np.ones((8, 8), bool))
    assert torch.is_tensor(features)  # they stay on the device, for the windows and the network


def test_an_error_in_the_network_leaves_no_output_and_stops_the_writer(tmp_path):
    import threading

    import torch

    from deepgeo_runner.ml.predict import ClassLegend, WindowSettings, predict_scene

    scene = textured_scene(tmp_path / "scene", size=64)

    class Failing(torch.nn.Module):
        calls = 0

        def forward(self, x):
            Failing.calls += 1
            if Failing.calls == 3:
                raise RuntimeError("out of memory, say")
            return torch.zeros(x.shape[0], 2, *x.shape[2:])

    before = threading.active_count()
    with pytest.raises(RuntimeError, match="out of memory, say"):
        predict_scene(Failing(), scene["image"], tmp_path / "map.tif", WindowSettings(16, 0.5, 2),
                      ClassLegend([1, 2], ["a", "b"], ["#000000", "#ffffff"]), progress=False)
    assert threading.active_count() == before  # the reader and the writer ended
    assert not list(tmp_path.glob("map*"))  # nothing half-written is left, under any name


def test_an_error_in_the_writer_reaches_the_caller(tmp_path, monkeypatch):
    import torch

    from deepgeo_runner.core.errors import DiskFullError
    from deepgeo_runner.geo import raster_io
    from deepgeo_runner.ml.predict import ClassLegend, WindowSettings, predict_scene

    scene = textured_scene(tmp_path / "scene", size=64)

    def full_disk(self, rows):
        raise OSError("No space left on device")

    monkeypatch.setattr(raster_io.RowAppender, "write", full_disk)
    with pytest.raises(DiskFullError, match="no space left"):  # raised in the writer thread, told here
        predict_scene(torch.nn.Conv2d(4, 2, 1), scene["image"], tmp_path / "map.tif", WindowSettings(16, 0.5, 2),
                      ClassLegend([1, 2], ["a", "b"], ["#000000", "#ffffff"]), progress=False)
    assert not list(tmp_path.glob("map*"))


def test_a_streamed_scene_unlike_the_training_scene_is_warned_about(tmp_path, caplog):
    from deepgeo_runner.stages.drift import input_profile

    scene = textured_scene(tmp_path / "scene", size=64)
    ckpt, _ = make_checkpoint(tmp_path / "ckpt", scene, indices=("ndvi",),
                              input_profile=input_profile(scene["image"], band_names=scene["band_names"]))
    brighter = np.where(scene["data"] == -9999.0, -9999.0, scene["data"] * 3).astype(np.float32)
    image = write_image(tmp_path / "brighter.tif", brighter)
    with caplog.at_level("WARNING"):
        apply_checkpoint(ckpt, image, tmp_path / "out", progress=False)
    assert "differs from the training scene" in caplog.text and "nir" in caplog.text
    assert not (tmp_path / "out" / "prepared").exists()  # streamed


@pytest.mark.parametrize("stream", [True, False])
def test_predict_stream_chooses_the_path_from_the_config(tmp_path, compose, stream):
    from deepgeo_runner.config.options import run_options
    from deepgeo_runner.pipeline.predicting import apply_checkpoint_stage
    from tests.helpers import REPO

    scene = textured_scene(tmp_path / "scene", size=64)
    ckpt, _ = make_checkpoint(tmp_path / "ckpt", scene, indices=("ndvi",), labels=scene["labels"])
    cfg = compose("stages=[predict]", f"predict.checkpoint={ckpt}", f"predict.image={scene['image']}",
                  f"predict.stream={str(stream).lower()}", f"paths.cache_dir={tmp_path / 'cache'}",
                  f"paths.output_dir={REPO / 'outputs'}")
    art = apply_checkpoint_stage(run_options(cfg), tmp_path / "run")
    assert art.prediction.is_file()
    assert (tmp_path / "run" / "predict_input" / "prepared.tif").is_file() is not stream
