"""Teacher labels between sparse polygons (issue 20): pixel-exact masks on hand-made chips."""

from __future__ import annotations

import numpy as np
import torch

from deepgeo_runner.ml.copy_paste import copy_paste
from deepgeo_runner.ml.teacher import IGNORE, TEACHER_OFFSET, decode, polygon_pixels, teacher_masks

T = TEACHER_OFFSET


def _threshold_teacher(pixels: np.ndarray) -> np.ndarray:
    """Class 1 where feature 0 > 0.5, else class 0; sure (0.9) unless feature 1 says unsure (0.6)."""
    cls = (pixels[:, 0] > 0.5).astype(int)
    sure = np.where(pixels[:, 1] > 0.5, 0.6, 0.9)
    proba = np.empty((len(pixels), 2), dtype=np.float32)
    proba[np.arange(len(pixels)), cls] = sure
    proba[np.arange(len(pixels)), 1 - cls] = 1 - sure
    return proba


def _chip() -> tuple[np.ndarray, np.ndarray]:
    image = np.full((1, 2, 4, 4), 0.1, dtype=np.float32)
    image[0, 0, :, 2:] = 0.9  # right half: class 1 to the teacher
    image[0, 1, 3, 0] = 0.9  # one unsure pixel
    image[0, :, 0, 3] = 0.0  # one nodata pixel (the store zeroes nodata)
    mask = np.full((1, 4, 4), IGNORE, dtype=np.uint8)
    mask[0, 0, 0] = 1  # a polygon label the teacher disagrees with: kept
    return image, mask


def test_teacher_labels_only_unlabelled_sure_valid_pixels():
    image, mask = _chip()
    taught, counts = teacher_masks(image, mask, _threshold_teacher, confidence=0.8)
    expected = np.array([[1, T + 0, T + 1, IGNORE],
                         [T + 0, T + 0, T + 1, T + 1],
                         [T + 0, T + 0, T + 1, T + 1],
                         [IGNORE, T + 0, T + 1, T + 1]], dtype=np.uint8)
    np.testing.assert_array_equal(taught[0], expected)
    assert counts == {"teacher_pixels_per_class": [6, 7], "unsure_pixels": 1}
    np.testing.assert_array_equal(mask[0, 0, 0], 1)  # the input is not changed in place


def test_teacher_keeps_off_the_protocol_ring():
    image, mask = _chip()
    taught, _ = teacher_masks(image, mask, _threshold_teacher, confidence=0.8, keep_off_px=1)
    assert taught[0, 0, 1] == IGNORE and taught[0, 1, 0] == IGNORE and taught[0, 1, 1] == IGNORE
    assert taught[0, 2, 2] == T + 1 and taught[0, 0, 2] == T + 1


def test_teacher_reaches_only_so_far_from_the_polygons():
    image, mask = _chip()
    taught, _ = teacher_masks(image, mask, _threshold_teacher, confidence=0.8, reach_px=2)
    labelled = taught != IGNORE
    assert labelled[0, :3, :3].all() and not labelled[0, 3, :].any() and not labelled[0, :, 3].any()


def test_decode_and_polygon_pixels():
    mask = torch.tensor([[0, 1, T + 0, T + 2, IGNORE]])
    assert decode(mask).tolist() == [[0, 1, 0, 2, IGNORE]]
    assert polygon_pixels(mask).tolist() == [[True, True, False, False, False]]


def test_copy_paste_moves_polygon_labels_not_teacher_labels():
    image = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
    mask = torch.tensor([[[0, T + 1], [T + 1, T + 1]],
                         [[T + 0, 1], [IGNORE, T + 0]]], dtype=torch.long)
    out_image, out_mask = copy_paste(image, mask, torch.Generator().manual_seed(0), p=1.0)
    # chip 0 receives chip 1's polygon pixel (0, 1) only; chip 1 receives chip 0's (0, 0) only
    assert out_mask[0].tolist() == [[0, 1], [T + 1, T + 1]]
    assert out_mask[1].tolist() == [[0, 1], [IGNORE, T + 0]]
    assert out_image[0, 0].tolist() == [[0.0, 1.0], [0.0, 0.0]]
    assert out_image[1, 0].tolist() == [[0.0, 1.0], [1.0, 1.0]]


def _tiny_overrides(tiny_scene: dict, tmp_path, *extra: str) -> list[str]:
    return [
        "data=scene", f"data.image={tiny_scene['image']}", f"data.labels={tiny_scene['labels']}",
        "data.classes=[forest,clearing]", "data.band_names=[blue,green,red,nir]", "preprocessing.indices=[]",
        "data.chip_size=8", "data.block_size=16", "data.split_buffer=0", "data.train_chips=20",
        "trainer.enable_progress_bar=false", f"paths.cache_dir={tmp_path / 'cache'}",
        f"paths.output_dir={tmp_path / 'out'}", *extra,
    ]


def test_the_teacher_labels_the_gap_between_the_tiny_scenes_polygons(tiny_scene, tmp_path, compose, one_thread):
    """The tiny scene: forest (left half) and clearing (right half) polygons leave a gap of unlabelled
    columns 20-27 and rows outside 8-40; the teacher labels them by their spectra, the polygons stay."""
    import json
    from types import SimpleNamespace

    from deepgeo_runner.pipeline.learning import teacher_train_masks
    from deepgeo_runner.pipeline.runner import run

    opts = compose(*_tiny_overrides(tiny_scene, tmp_path, "stages=[prepare,rasterize,chips]"))
    art = run(opts, tmp_path / "run")
    store = art.chips.path
    masks = np.load(store / "train_mask.npy")
    images = np.load(store / "train_image.npy")
    taught = teacher_train_masks(opts, art, SimpleNamespace(names=["forest", "clearing"]), 0.8)
    polygon = masks != IGNORE
    np.testing.assert_array_equal(taught[polygon], masks[polygon])
    by_teacher = (taught >= TEACHER_OFFSET) & (taught != IGNORE)
    assert by_teacher.sum() > 0.2 * (~polygon).sum()
    # each chip's column in the scene: the teacher's class must be the half it lies in
    chips = sorted((c for c in json.loads((store / "chips.json").read_text())["chips"] if c["split"] == "train"),
                   key=lambda c: c["index"])
    cols = np.array([c["col"] for c in chips])[:, None, None] + np.arange(8)[None, None, :]
    truth = np.broadcast_to((cols >= 24).astype(np.uint8), taught.shape)
    assert (taught[by_teacher] - TEACHER_OFFSET == truth[by_teacher]).mean() > 0.95
    assert not by_teacher[images.sum(axis=1) == 0].any()  # nodata stays ignored


def test_a_network_trains_on_the_teachers_labels_and_tests_on_the_polygons(tiny_scene, tmp_path, compose, one_thread,
                                                                          caplog):
    import logging

    from deepgeo_runner.pipeline.runner import run

    caplog.set_level(logging.INFO, logger="deepgeo_runner")
    opts = compose(*_tiny_overrides(tiny_scene, tmp_path, "model=fcn8s", "model.width=4", "trainer.max_epochs=10",
                                    "augmentation.teacher=true", "stages=[prepare,rasterize,chips,fit,test]"))
    art = run(opts, tmp_path / "run")
    taught = [r.getMessage() for r in caplog.records if r.getMessage().startswith("augmentation.teacher: a pixel")]
    assert len(taught) == 1 and "forest" in taught[0] and "clearing" in taught[0]
    assert art.metrics["accuracy"] > 0.9  # two classes: chance is 0.5; scored on the polygons only


def _module(teacher_weight: float):
    from functools import partial

    from deepgeo_runner.lit.module import SegmentationModule

    net = torch.nn.Conv2d(2, 3, 1)
    return SegmentationModule(net, partial(torch.optim.SGD, lr=0.1), None, ["a", "b", "c"],
                              teacher_weight=teacher_weight)


def test_a_teacher_label_weighs_teacher_weight_of_a_polygon_label_in_the_loss():
    """Cross-entropy with teacher codes in the target equals the per-pixel weighted mean computed by hand:
    weight 1 for a polygon label, ``teacher_weight`` for a teacher label, 0 for an ignored pixel."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, 5, generator=generator)
    target = torch.randint(0, 3, (2, 5, 5), generator=generator)
    kind = torch.randint(0, 3, (2, 5, 5), generator=generator)  # 0 polygon, 1 teacher, 2 ignored
    coded = torch.where(kind == 1, target + T, target).masked_fill(kind == 2, IGNORE)
    per_pixel = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    for weight in (1.0, 0.25):
        weights = torch.where(kind == 0, 1.0, torch.where(kind == 1, weight, 0.0))
        expected = (per_pixel * weights).sum() / weights.sum()
        torch.testing.assert_close(_module(weight)._loss(logits, coded), expected)
    # without teacher codes the loss is the plain one, whatever the weight
    plain = target.masked_fill(kind == 2, IGNORE)
    torch.testing.assert_close(_module(0.25)._loss(logits, plain),
                               torch.nn.functional.cross_entropy(logits, plain, ignore_index=IGNORE))
    only_taught = (target + T).masked_fill(kind != 1, IGNORE)  # a batch of teacher labels alone
    torch.testing.assert_close(_module(0.25)._loss(logits, only_taught),
                               torch.nn.functional.cross_entropy(logits, decode(only_taught), ignore_index=IGNORE))
