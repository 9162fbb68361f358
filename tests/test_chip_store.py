"""The chips stage and the DataModule on tiny data: store layout, strategies, loaders."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import torch

from deepgeo_runner.core.errors import StageError
from deepgeo_runner.geo.chips import split_blocks
from deepgeo_runner.lit.datamodule import AugmentPlan, ChipDataModule
from deepgeo_runner.stages.chips import ChipPlan, build_chip_store, target_lut
from deepgeo_runner.stages.labels import rasterize_labels
from deepgeo_runner.stages.prepare import PrepareOptions, prepare_scene
from tests.helpers import prepare_and_label


@pytest.fixture
def prepared(tiny_scene, tmp_path):
    split = split_blocks((48, 48), 16, [0.5, 0.25, 0.25], seed=2)
    scene = prepare_scene(tiny_scene["image"], tmp_path / "prep", PrepareOptions(tiny_scene["band_names"], ["ndvi"],
                          "standard"), split == 0)
    labels = rasterize_labels(tiny_scene["labels"], scene.path, tmp_path / "labels.tif",
                              ["forest", "clearing"], ["#00ff00", "#ff0000"])
    return scene, labels, split


def _build(prepared, tmp_path, **plan):
    scene, labels, split = prepared
    out = tmp_path / "store"
    out.mkdir(exist_ok=True)
    defaults = dict(chip_size=8, train_chips=40, min_labelled_fraction=0.2, buffer=0)
    defaults.update(plan)
    return build_chip_store(scene.path, labels, out, split, ChipPlan(**defaults),
                            target_lut(2, False), 2, seed=0)


def test_store_layout_index_and_footprints(prepared, tmp_path):
    store = _build(prepared, tmp_path)
    assert store.counts["train"] == 40 and store.counts["val"] > 0 and store.counts["test"] > 0
    images = np.load(store.path / "train_image.npy", mmap_mode="r")
    masks = np.load(store.path / "train_mask.npy", mmap_mode="r")
    assert images.shape == (40, 5, 8, 8) and images.dtype == np.float32
    assert set(np.unique(masks)) <= {0, 1, 255}
    footprints = gpd.read_file(store.path / "chips.gpkg")
    assert len(footprints) == sum(store.counts.values())
    assert {"split", "labelled_fraction", "nodata_fraction", "pixels_class_0"} <= set(footprints.columns)
    assert footprints.crs.to_epsg() == 32722
    assert np.allclose(footprints.geometry.area, (8 * 30.0) ** 2)


def test_oversampling_puts_the_class_in_the_requested_share(prepared, tmp_path):
    store = _build(prepared, tmp_path, focus_class=1, focus_fraction=0.75)
    masks = np.load(store.path / "train_mask.npy")
    with_class = np.mean([(m == 1).mean() >= 0.2 for m in masks])
    assert with_class >= 0.75


def test_zero_chips_says_which_split_and_why(prepared, tmp_path):
    with pytest.raises(StageError, match=r"no train chip could be cut.*min_valid_fraction"):
        _build(prepared, tmp_path, chip_size=16, min_labelled_fraction=0.99, buffer=16)


@pytest.mark.parametrize("resident", [False, True])
def test_datamodule_batches_match_the_store(prepared, tmp_path, resident):
    store = _build(prepared, tmp_path)
    dm = ChipDataModule(store.path, batch_size=7, augmentation=AugmentPlan("none"), resident=resident)
    dm.setup()
    batches = [dm.on_after_batch_transfer(b, 0) for b in dm.test_dataloader()]
    images = torch.cat([b["image"] for b in batches])
    masks = torch.cat([b["mask"] for b in batches])
    np.testing.assert_array_equal(images.numpy(), np.load(store.path / "test_image.npy"))
    np.testing.assert_array_equal(masks.numpy(), np.load(store.path / "test_mask.npy").astype(np.int64))
    train = list(dm.train_dataloader())
    assert sum(len(dm.on_after_batch_transfer(b, 0)["image"]) for b in train) == 35  # drop_last


def test_d4_expand_loader_yields_seven_times_the_chips(prepared, tmp_path):
    store = _build(prepared, tmp_path)
    dm = ChipDataModule(store.path, batch_size=10, augmentation=AugmentPlan("d4_expand"))
    dm.setup()
    assert len(dm.train_dataloader().dataset) == 40 * 7


def test_per_chip_standardization_reaches_the_store(tiny_scene, tmp_path):
    split = split_blocks((48, 48), 16, [0.5, 0.25, 0.25], seed=2)
    scene, labels = prepare_and_label(tiny_scene["image"], tiny_scene["labels"], tmp_path, tiny_scene["band_names"],
                                      "per_chip", train_mask=split == 0)
    out = tmp_path / "store"
    out.mkdir()
    build_chip_store(scene.path, labels, out, split, ChipPlan(chip_size=8, train_chips=10, buffer=0),
                     target_lut(2, False), 2, seed=0, per_chip=True)
    chips = np.load(out / "train_image.npy")
    np.testing.assert_allclose(chips.mean(axis=(2, 3)), 0, atol=1e-4)  # no nodata inside these chips


def test_split_class_counts_sum_the_stored_masks_of_each_split(prepared, tmp_path):
    from deepgeo_runner.stages.chips import split_class_counts

    store = _build(prepared, tmp_path)
    counts = split_class_counts(store.path, 2)
    assert set(counts) == {"train", "val", "test"}
    for split, got in counts.items():
        masks = np.load(store.path / f"{split}_mask.npy")
        np.testing.assert_array_equal(got, [(masks == 0).sum(), (masks == 1).sum()])
