import numpy as np
import pytest
import rasterio
import torch

from deepgeo_runner.geo.stitch import WindowPlan, blend_weights, read_padded, stride_for, window_origins
from deepgeo_runner.ml.predict import ClassLegend, OutputFormats, WindowSettings, predict_scene
from tests.helpers import write_image


@pytest.mark.parametrize("length,window,stride", [(100, 32, 16), (32, 32, 16), (20, 32, 16), (97, 30, 7)])
def test_windows_cover_the_scene_with_a_constant_stride(length, window, stride):
    origins = window_origins(length, window, stride)
    assert origins[0] == 0 and origins[-1] + window >= length
    assert all(b - a == stride for a, b in zip(origins, origins[1:], strict=False))
    assert origins[-1] < length


def test_blend_weights_are_smooth_and_positive():
    w = blend_weights(16)
    assert w.shape == (16, 16) and (w > 0).all()
    assert w[8, 8] > w[0, 8] and np.allclose(w, w.T)


def test_read_padded_fills_outside():
    a = np.arange(2 * 5 * 5, dtype=np.float32).reshape(2, 5, 5)
    out = read_padded(a, 3, 3, 4, -1)
    assert out.shape == (2, 4, 4)
    np.testing.assert_array_equal(out[:, :2, :2], a[:, 3:, 3:])
    assert (out[:, 2:, :] == -1).all()


def test_stride_for_overlap():
    assert stride_for(64, 0.5) == 32 and stride_for(64, 0.0) == 64
    with pytest.raises(ValueError):
        stride_for(64, 1.0)


@pytest.mark.parametrize("blend", ["hann", "center"])
@pytest.mark.parametrize("height,width", [(100, 77), (20, 20), (64, 64)])
def test_a_window_plan_finishes_every_row_once_and_weighs_every_pixel(blend, height, width):
    plan = WindowPlan(height, width, window=24, overlap=0.5, blend=blend)
    spans = [plan.finished(i) for i in range(len(plan.rows))]
    assert spans[0][0] == 0 and spans[-1][1] == height
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    total = np.zeros((height, width), np.float32)
    for i, r in enumerate(plan.rows):
        for j, c in enumerate(plan.cols):
            weight = plan.weight(i, j)
            assert weight.shape == (plan.block_height(i), plan.block_width(j)) == plan.weight_kind(i, j)[4:]
            total[r : r + weight.shape[0], c : c + weight.shape[1]] += weight
    assert (total > 0).all()
    if blend == "center":  # overlap-tile: every pixel from exactly one window
        np.testing.assert_array_equal(total, 1.0)
    with pytest.raises(ValueError, match="blend must be one of"):
        WindowPlan(height, width, 24, 0.5, "max")


class PointwiseNet(torch.nn.Module):
    """A translation-equivariant toy: logits are a per-pixel function of the bands."""

    def forward(self, x):
        return torch.stack([x[:, 0], x[:, 1], -x[:, 0] - x[:, 1]], dim=1)


def test_windowed_prediction_equals_whole_image_prediction(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((2, 45, 53)).astype(np.float32)
    data[:, :3, :3] = -9999.0
    image = write_image(tmp_path / "prepared.tif", data)
    out = predict_scene(PointwiseNet(), image, tmp_path / "pred.tif", WindowSettings(16, 0.5, 4),
                        ClassLegend([1, 2, 3], ["a", "b", "c"], ["#ff0000", "#00ff00", "#0000ff"]), progress=False)
    whole = PointwiseNet()(torch.from_numpy(data)[None])[0].argmax(0).numpy() + 1
    with rasterio.open(out) as src, rasterio.open(image) as ref:
        pred = src.read(1)
        assert src.crs == ref.crs and src.transform == ref.transform and src.shape == ref.shape
        assert src.nodata == 255
    assert (pred[:3, :3] == 255).all()
    valid = np.ones_like(pred, dtype=bool)
    valid[:3, :3] = False
    np.testing.assert_array_equal(pred[valid], whole[valid])  # incl. last row and column


@pytest.mark.parametrize("blend,overlap,tta", [("hann", 0.5, False), ("center", 0.5, False),
                                               ("center", 0.25, False), ("hann", 0.0, False),
                                               ("hann", 0.5, True)])
def test_every_mode_equals_whole_image_prediction_with_probabilities(tmp_path, blend, overlap, tta):
    rng = np.random.default_rng(1)
    data = rng.standard_normal((2, 45, 53)).astype(np.float32)
    data[:, 40:, 50:] = -9999.0
    image = write_image(tmp_path / "prepared.tif", data)
    out = predict_scene(PointwiseNet(), image, tmp_path / "pred.tif",
                        WindowSettings(16, overlap, 3, blend=blend, tta=tta),
                        ClassLegend([1, 2, 3], ["a", "b", "c"], ["#ff0000", "#00ff00", "#0000ff"]),
                        progress=False, outputs=OutputFormats(probabilities="float16", entropy=True))
    logits = PointwiseNet()(torch.from_numpy(data)[None])[0]
    whole = logits.argmax(0).numpy() + 1
    proba = torch.softmax(logits, 0).numpy()
    valid = np.ones(data.shape[1:], dtype=bool)
    valid[40:, 50:] = False
    with rasterio.open(out) as src:
        pred = src.read(1)
    np.testing.assert_array_equal(pred[valid], whole[valid])
    assert (pred[~valid] == 255).all()
    with rasterio.open(tmp_path / "pred_proba.tif") as src:
        p = src.read()
        assert src.count == 3 and src.shape == data.shape[1:]
    np.testing.assert_allclose(p[:, valid], proba[:, valid], atol=2e-3)  # half-float storage
    assert np.isnan(p[:, ~valid]).all()
    with rasterio.open(tmp_path / "pred_entropy.tif") as src:
        ent = src.read(1)
    expected = -(proba * np.log(np.clip(proba, 1e-12, None))).sum(0) / np.log(3)
    np.testing.assert_allclose(ent[valid], expected[valid], atol=1e-4)
    assert np.isnan(ent[~valid]).all()
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
