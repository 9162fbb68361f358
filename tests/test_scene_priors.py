"""predict.prior_shift: the map decided with the scene's class shares (stages/scene_priors.py, ml/predict.py)."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import torch

from deepgeo_runner.ml.predict import ClassLegend, OutputFormats, WindowSettings, predict_scene, sample_posteriors
from deepgeo_runner.stages.scene_priors import PriorShift, predict_for_scene_priors, priors_path
from tests.helpers import write_image

LEGEND = ClassLegend([1, 2, 3], ["forest", "deforestation", "water"], ["#1b7837", "#d6604d", "#2166ac"])
MEANS = torch.tensor([0.0, 1.5, 3.0])
TRAIN_PRIOR = np.array([0.45, 0.40, 0.15])  # the polygons' shares
SCENE_PRIOR = np.array([0.75, 0.19, 0.06])  # the land cover's


class FirstBandMinus(torch.nn.Module):
    """Logits (x, 0): class 1 where the first band is positive; a per-pixel model, so windows do not matter."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :1], torch.zeros_like(x[:, :1])], dim=1)


class BayesUnderTrainingPriors(torch.nn.Module):
    """The exact log posterior of three unit-variance classes along band 1 under the TRAINING shares: what a
    calibrated network trained on the polygons outputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_prior = torch.log(torch.tensor(TRAIN_PRIOR, dtype=x.dtype)).view(1, -1, 1, 1)
        return -0.5 * (x[:, :1] - MEANS.view(1, -1, 1, 1).to(x.dtype)) ** 2 + log_prior


def test_offsets_move_the_argmax_where_the_logits_say(tmp_path):
    x = np.tile(np.linspace(-1, 1, 40, dtype=np.float32), (30, 1))[None]
    image = write_image(tmp_path / "ramp.tif", x)
    legend = ClassLegend([1, 2], ["a", "b"], ["#ff0000", "#00ff00"])
    plain = predict_scene(FirstBandMinus(), image, tmp_path / "plain.tif", WindowSettings(16, 0.0, 4), legend,
                          progress=False)
    moved = predict_scene(FirstBandMinus(), image, tmp_path / "moved.tif", WindowSettings(16, 0.0, 4), legend,
                          progress=False, logit_offsets=[0.0, 0.5], outputs=OutputFormats(probabilities="float16"))
    with rasterio.open(plain) as a, rasterio.open(moved) as b, rasterio.open(tmp_path / "moved_proba.tif") as p:
        np.testing.assert_array_equal(a.read(1), np.where(x[0] > 0, 1, 2))
        np.testing.assert_array_equal(b.read(1), np.where(x[0] > 0.5, 1, 2))
        expected = 1 / (1 + np.exp(-(x[0] - 0.5)))  # the softmax of the shifted logits
        np.testing.assert_allclose(p.read(1), expected, atol=2e-3)
    with pytest.raises(ValueError, match="3 logit offsets for 2 classes"):
        predict_scene(FirstBandMinus(), image, tmp_path / "bad.tif", WindowSettings(16, 0.0, 4), legend,
                      progress=False, logit_offsets=[0.0, 0.5, 1.0])


def test_the_sample_holds_valid_pixels_only(tmp_path):
    data = np.random.default_rng(0).normal(size=(1, 40, 48)).astype(np.float32)
    data[:, :10, :20] = -9999.0
    image = write_image(tmp_path / "scene.tif", data)
    posteriors = sample_posteriors(BayesUnderTrainingPriors(), image, WindowSettings(16, 0.0, 4), 3, progress=False)
    assert posteriors.shape == (40 * 48 - 10 * 20, 3)  # 3 window rows: all sampled, nodata left out
    np.testing.assert_allclose(posteriors.sum(axis=1), 1.0, atol=1e-5)


def _scene_drawn_from(prior: np.ndarray, tmp_path, side: int = 96):
    rng = np.random.default_rng(1)
    truth = rng.choice(3, size=(side, side), p=prior)
    band = rng.normal(MEANS.numpy()[truth], 1.0).astype(np.float32)
    return write_image(tmp_path / "scene.tif", band[None]), truth + 1


def test_the_map_is_decided_with_the_scenes_shares(tmp_path):
    image, truth = _scene_drawn_from(SCENE_PRIOR, tmp_path)
    windows = WindowSettings(32, 0.0, 8)
    plain = predict_for_scene_priors(BayesUnderTrainingPriors(), image, tmp_path / "plain.tif", windows, LEGEND,
                                     "cpu", False, None)
    shifted = predict_for_scene_priors(BayesUnderTrainingPriors(), image, tmp_path / "prediction.tif", windows,
                                       LEGEND, "cpu", False, PriorShift(tuple(TRAIN_PRIOR * 9_000)))
    record = json.loads(priors_path(shifted).read_text())
    assert record["converged"] and all(record["adjusted"].values())
    np.testing.assert_allclose(list(record["scene_share"].values()), SCENE_PRIOR, atol=0.03)
    with rasterio.open(plain) as a, rasterio.open(shifted) as b:
        before, after = (a.read(1) == truth).mean(), (b.read(1) == truth).mean()
        deforestation_area = (b.read(1) == 2).mean() / (truth == 2).mean() - 1
        deforestation_area_before = (a.read(1) == 2).mean() / (truth == 2).mean() - 1
    assert after > before + 0.03
    # the Bayes rule maximizes accuracy, not area: with classes this mixed the rare one ends under-mapped,
    # but by less than the training shares over-mapped it
    assert abs(deforestation_area) < abs(deforestation_area_before)
    assert not priors_path(plain).exists()


def test_a_map_without_the_shift_leaves_no_earlier_estimate_behind(tmp_path):
    image, _ = _scene_drawn_from(SCENE_PRIOR, tmp_path, side=32)
    out = tmp_path / "prediction.tif"
    priors_path(out).write_text("{}")
    predict_for_scene_priors(BayesUnderTrainingPriors(), image, out, WindowSettings(32, 0.0, 8), LEGEND, "cpu",
                             False, None)
    assert out.exists() and not priors_path(out).exists()


def _opts(mode, teacher=False):
    return SimpleNamespace(predict=SimpleNamespace(prior_shift=mode), augmentation=SimpleNamespace(teacher=teacher))


@pytest.mark.parametrize("mode,sparse,teacher,on", [
    ("auto", True, False, True),
    ("auto", False, False, False),  # wall-to-wall labels: the map as before
    ("auto", True, "auto", False),  # teacher labels already carry a guess of the scene's shares
    ("auto", True, True, False),
    (True, False, False, True),
    (False, True, False, False),
])
def test_when_the_run_corrects_its_map(mode, sparse, teacher, on):
    from deepgeo_runner.pipeline.predicting import prior_shift_request

    art = SimpleNamespace(labels_sparse=sparse, train_class_pixels={"water": 30, "forest": 500, "deforestation": 400},
                          chips=None, label_coverage={"forest": 0.1, "deforestation": 0.05, "water": 0.01})
    classes = SimpleNamespace(names=["background", "forest", "deforestation", "water"])
    request = prior_shift_request(_opts(mode, teacher), art, classes)
    assert (request is not None) == on
    if on:
        assert request.train_pixels == (0.0, 500.0, 400.0, 30.0)  # by output, background never labelled
        assert request.distinct_pixels == request.train_pixels  # no chip store: the data check's counts
        assert request.floor == (0.0, 0.1, 0.05, 0.01) and request.held_out is None


def test_without_the_data_checks_counts_it_says_so(caplog):
    from deepgeo_runner.pipeline.predicting import prior_shift_request

    caplog.set_level(logging.WARNING)
    art = SimpleNamespace(labels_sparse=True, train_class_pixels=None, chips=None, label_coverage=None)
    assert prior_shift_request(_opts(True), art, SimpleNamespace(names=["a", "b"])) is None
    assert "no training pixel counts" in caplog.text


CARD_META = {"class_names": ["forest", "water"], "class_ids": [1, 2], "class_colors": ["#1b7837", "#2166ac"]}


@pytest.mark.parametrize("mode,on", [("auto", False), (True, True), (False, False)])
def test_a_new_scene_is_corrected_only_when_asked(mode, on):
    """A new scene may look unlike the training one (EM's assumption) and has no validation pixels to check it."""
    from deepgeo_runner.pipeline.predicting import card_prior_shift

    meta = {**CARD_META, "class_pixels": [9_000.0, 3_000.0], "distinct_class_pixels": [900.0, 300.0]}
    request = card_prior_shift(_opts(mode), meta)
    assert (request is not None) == on
    if on:
        assert request.train_pixels == (9_000.0, 3_000.0) and request.distinct_pixels == (900.0, 300.0)
        assert request.held_out is None


def test_an_older_checkpoint_without_class_pixels_says_so(caplog):
    from deepgeo_runner.pipeline.predicting import card_prior_shift

    caplog.set_level(logging.WARNING)
    assert card_prior_shift(_opts(True), dict(CARD_META)) is None
    assert "records no training class pixels" in caplog.text


def test_the_card_keeps_the_class_pixels_and_refuses_odd_ones():
    from deepgeo_runner.core.errors import InputDataError
    from deepgeo_runner.ml.model_card import ModelCard

    card = ModelCard.from_dict({**CARD_META, "class_pixels": [5, 7], "distinct_class_pixels": [5, 6]})
    again = ModelCard.from_json(card.to_json())
    assert again.class_pixels == [5.0, 7.0] and again.distinct_class_pixels == [5.0, 6.0] and again == card
    for odd in ({"class_pixels": "import os"}, {"class_pixels": [1, -2]}, {"distinct_class_pixels": [True]}):
        with pytest.raises(InputDataError, match="class_pixels"):
            ModelCard.from_dict({**CARD_META, **odd})


class _Rows:
    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []

    def write(self, array: np.ndarray) -> None:
        self.rows.append(np.array(array))


@pytest.mark.parametrize("as_tensor", [False, True])
def test_offsets_apply_alike_to_logits_on_the_host_and_on_a_device(as_tensor):
    """On an accelerator the blended logits stay torch tensors until the argmax: the same offsets, the same map."""
    from deepgeo_runner.ml.predict import _finish_rows

    logits = np.stack([np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), np.zeros((3, 4), np.float32)])
    writers = {"classes": _Rows(), "proba": _Rows()}
    block = torch.from_numpy(logits) if as_tensor else logits
    _finish_rows(block, np.ones((3, 4), dtype=bool), np.array([1, 2], dtype=np.uint8), writers, "float16",
                 offsets=np.array([0.0, 0.5], dtype=np.float32))
    np.testing.assert_array_equal(writers["classes"].rows[0][0], np.where(logits[0] > 0.5, 1, 2))
    np.testing.assert_allclose(writers["proba"].rows[0][0], 1 / (1 + np.exp(-(logits[0] - 0.5))), atol=1e-6)


class Flattened(BayesUnderTrainingPriors):
    """The same network, under-confident (logits × 0.3): what a network stopped after an epoch gives."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.3 * super().forward(x)


def _validation_chips(folder, n: int = 40, side: int = 16):
    """A chip store's validation split drawn like the training polygons (the training shares)."""
    rng = np.random.default_rng(3)
    labels = rng.choice(3, size=(n, side, side), p=TRAIN_PRIOR)
    images = rng.normal(MEANS.numpy()[labels], 1.0).astype(np.float32)[:, None]
    folder.mkdir()
    np.save(folder / "val_image.npy", images)
    np.save(folder / "val_mask.npy", labels.astype(np.uint8))
    return folder


@pytest.mark.parametrize("net,kept", [(BayesUnderTrainingPriors(), True), (Flattened(), False)])
def test_the_validation_pixels_vouch_for_the_posteriors_first(tmp_path, net, kept):
    image, _ = _scene_drawn_from(SCENE_PRIOR, tmp_path)
    shift = PriorShift(tuple(TRAIN_PRIOR * 9_000), held_out=_validation_chips(tmp_path / "chips"))
    windows = WindowSettings(32, 0.0, 8)
    out = predict_for_scene_priors(net, image, tmp_path / "prediction.tif", windows, LEGEND, "cpu", False, shift)
    plain = predict_scene(net, image, tmp_path / "plain.tif", windows, LEGEND, progress=False)
    record = json.loads(priors_path(out).read_text())
    assert record["checked_on_held_out"] and (record["recovery_error"] <= 0.05) == kept
    with rasterio.open(out) as a, rasterio.open(plain) as b:
        assert (a.read(1) != b.read(1)).any() == kept  # rejected: the map as the network draws it
    assert ("rejected_scene_share" in record) != kept and any(record["adjusted"].values()) == kept


def test_shares_below_what_the_polygons_cover_are_not_believed(tmp_path, caplog):
    """EM in a corner (a class at ~0 % of the scene although its polygons cover 10 % of it): no correction."""
    caplog.set_level(logging.INFO)
    image, _ = _scene_drawn_from(SCENE_PRIOR, tmp_path)
    shift = PriorShift(tuple(TRAIN_PRIOR * 9_000), floor=(0.3, 0.3, 0.1))  # more than the scene holds
    out = predict_for_scene_priors(BayesUnderTrainingPriors(), image, tmp_path / "prediction.tif",
                                   WindowSettings(32, 0.0, 8), LEGEND, "cpu", False, shift)
    record = json.loads(priors_path(out).read_text())
    assert "rejected_scene_share" in record and not any(record["adjusted"].values())
    assert "less than the 0.3000 its training polygons alone cover" in caplog.text
    assert "fewer than two classes" not in caplog.text  # the warning said why, not a wrong reason


def test_the_report_says_with_which_shares_the_map_was_decided():
    from deepgeo_runner.ml.prior_shift import estimate_scene_priors, unadjusted
    from deepgeo_runner.pipeline.report import scene_priors_html

    names = ["forest", "deforestation", "water"]
    posteriors = np.tile([[0.7, 0.2, 0.1]], (100, 1))
    used = scene_priors_html(estimate_scene_priors(posteriors, [4_000, 4_000, 2_000]).to_dict(names))
    assert "decided with the scene's class shares" in used and "<td>deforestation</td>" in used
    rejected = scene_priors_html({**unadjusted([4_000, 4_000, 2_000]).to_dict(names),
                                  "rejected_scene_share": {"forest": 0.99, "deforestation": 0.0, "water": 0.01}})
    assert "not used" in rejected and "<td>0.990</td>" in rejected
    assert scene_priors_html(None) == ""
