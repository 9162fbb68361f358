"""The pixel baseline (model=pixel_forest): it learns, its checkpoint loads with weights_only and
predicts the same map again, and its booster text is parsed, never run."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from tests.helpers.pixel_forest import pixel_forest_overrides


def test_training_pixels_are_capped_balanced_seeded_and_skip_ignored():
    from deepgeo_runner.ml.models.pixel_forest import training_pixels

    rng = np.random.default_rng(0)
    images = rng.standard_normal((6, 3, 4, 4)).astype(np.float32)
    masks = np.full((6, 4, 4), 255, dtype=np.uint8)
    masks[:, :2] = 0  # 48 pixels of class 0
    masks[0, 3, :] = 1  # 4 pixels of class 1
    x, y = training_pixels(images, masks, max_pixels=20, seed=1)
    assert len(y) == 20 and 255 not in y
    assert (y == 1).sum() == 4  # the rare class kept whole, the rest from the common one
    again = training_pixels(images, masks, max_pixels=20, seed=1)
    np.testing.assert_array_equal(x, again[0])
    # each feature row is the pixel's own bands
    n, r, c = np.argwhere(masks[:, :, :] == 1)[0]
    assert any(np.allclose(row, images[n, :, r, c]) for row in x[y == 1])
    all_x, all_y = training_pixels(images, masks, max_pixels=10_000, seed=0)
    assert len(all_y) == 52


def test_a_crafted_booster_text_is_parsed_never_run(tmp_path):
    from deepgeo_runner.ml.models.pixel_forest import PixelForest

    marker = tmp_path / "ran"
    net = PixelForest(3, 2)
    payload = f"tree\nversion=v4\n__import__('os').system('touch {marker}')\nnum_class=2\n"
    from lightgbm.basic import LightGBMError

    with pytest.raises(LightGBMError):  # LightGBM's parser refuses it: text, not code
        net.set_extra_state(payload)
    with pytest.raises(ValueError, match="model text"):
        net.set_extra_state({"__reduce__": "os.system"})
    assert not marker.exists() and not net.fitted


def test_the_pixel_baseline_learns_and_its_checkpoint_predicts_the_same_map(tiny_scene, tmp_path, compose, one_thread):
    import torch

    from deepgeo_runner.ml.checkpoint import load_checkpoint
    from deepgeo_runner.pipeline.runner import run
    from deepgeo_runner.stages.apply import build_net, read_checkpoint

    art = run(compose(*pixel_forest_overrides(tiny_scene, tmp_path)), tmp_path / "run")
    assert art.metrics["accuracy"] > 0.9  # two classes: chance is 0.5
    best = tmp_path / "run" / "checkpoints" / "best.ckpt"
    state = load_checkpoint(best)  # weights_only=True
    text = state["state_dict"]["net._extra_state"]
    assert isinstance(text, str) and text.startswith("tree")
    weights, meta = read_checkpoint(best)
    net = build_net(meta, weights)
    assert net.fitted
    with rasterio.open(art.prepared.path) as src:
        stack = torch.from_numpy(src.read().astype(np.float32)[None])
    classes = net(stack).argmax(1)[0].numpy()
    with rasterio.open(tmp_path / "run" / "prediction.tif") as src:
        mapped = src.read(1)
        valid = mapped != src.nodata
    np.testing.assert_array_equal(classes[valid] + 1, mapped[valid])  # class ids 1..N
    # the same checkpoint applied to the scene as a new one gives the same map
    again = run(compose(*pixel_forest_overrides(tiny_scene, tmp_path, "stages=[predict]",
                                          f"predict.checkpoint={best}", f"predict.image={tiny_scene['image']}")),
                tmp_path / "apply")
    with rasterio.open(again.prediction) as src:
        np.testing.assert_array_equal(src.read(1), mapped)
