"""Spatial k-fold cross-validation: fold assignments and their config checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from deepgeo_runner.config.schema import DataConfig
from deepgeo_runner.core.errors import ConfigError
from deepgeo_runner.geo.chips import NO_SPLIT, block_class_counts, choose_class_split, usable_area
from deepgeo_runner.geo.folds import choose_groups, fold_split, polygon_fold_map

BLOCK, CHIP, BUFFER, K = 32, 16, 4, 3
IDS = (1, 2, 3)


def patchy_labels(seed: int = 0, side: int = 256) -> np.ndarray:
    """Three classes in patches of random size, unlabelled (0) gaps and one empty corner block."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((side, side), dtype=np.uint8)
    for _ in range(60):
        r, c = rng.integers(0, side - 8, size=2)
        h, w = rng.integers(4, 40, size=2)
        labels[r:r + h, c:c + w] = rng.choice(IDS, p=[0.6, 0.3, 0.1])
    labels[:BLOCK, :BLOCK] = 0  # a block with no label: in no group, so never tested
    return labels


def fold_maps(labels: np.ndarray, seed: int = 5) -> list[np.ndarray]:
    return [choose_class_split(labels, IDS, BLOCK, [0.6, 0.2, 0.2], seed, BUFFER, CHIP, folds=K, fold=i)
            for i in range(K)]


def labelled_blocks(labels: np.ndarray) -> np.ndarray:
    return block_class_counts(labels, IDS, BLOCK).sum(axis=1) > 0


def per_block(split_map: np.ndarray) -> np.ndarray:
    """The split of each block (blocks row-major), checking that a block holds one split."""
    n = split_map.shape[0] // BLOCK
    blocks = split_map.reshape(n, BLOCK, n, BLOCK).transpose(0, 2, 1, 3).reshape(n * n, -1)
    assert (blocks == blocks[:, :1]).all()
    return blocks[:, 0]


def test_test_areas_are_disjoint_and_cover_every_labelled_block():
    labels = patchy_labels()
    tests = np.stack([per_block(m) == 2 for m in fold_maps(labels)])
    assert (tests.sum(axis=0) <= 1).all()  # no block is tested twice
    assert (tests.any(axis=0) == labelled_blocks(labels)).all()  # every labelled block once; empty ones never
    assert all(t.any() for t in tests)


def test_each_fold_has_train_val_test_with_the_buffer_of_the_normal_split():
    labels = patchy_labels()
    for split_map in fold_maps(labels):
        assert {0, 1, 2} <= set(np.unique(split_map).tolist())
        train = usable_area(split_map, 0, BUFFER)
        near_eval = ndimage.distance_transform_cdt(split_map == 0, metric="chessboard")  # px to val/test
        assert (near_eval[train] > BUFFER).all()
        assert not (train & (split_map > 0)).any()


def test_classes_are_spread_over_the_folds():
    labels = patchy_labels()
    counts = block_class_counts(labels, IDS, BLOCK)
    groups = choose_groups(counts, K, 5)
    shares = np.stack([counts[groups == g].sum(axis=0) for g in range(K)]) / counts.sum(axis=0)
    assert (shares > 0.15).all() and (shares < 0.55).all(), shares  # each group about a third of each class


def test_folds_are_deterministic_and_groups_do_not_depend_on_the_fold():
    labels = patchy_labels()
    first, again = fold_maps(labels), fold_maps(labels)
    assert all((a == b).all() for a, b in zip(first, again, strict=True))
    other = fold_maps(labels, seed=6)
    assert any((a != b).any() for a, b in zip(first, other, strict=True))


def test_val_share_follows_split_fractions_among_the_rest():
    counts = np.ones((200, 2), dtype=np.int64)
    groups = choose_groups(counts, 4, 0)
    split = fold_split(counts, groups, 1, [0.6, 0.2, 0.2], 0)
    assert (split[groups == 1] == 2).all()
    rest = split[groups != 1]
    assert abs((rest == 1).mean() - 0.25) < 0.05  # val / (train + val) = 0.2 / 0.8


def test_too_many_folds_for_the_blocks_say_which_key():
    labels = np.zeros((64, 64), dtype=np.uint8)
    labels[:20, :20] = 1
    labels[40:, 40:] = 2
    with pytest.raises(ConfigError, match="data.folds=3"):
        choose_class_split(labels, (1, 2), 32, [0.6, 0.2, 0.2], 0, 0, 16, folds=3, fold=0)


def test_polygon_folds_deal_whole_polygons():
    units = np.zeros((40, 40), dtype=np.int32)
    labels = np.zeros((40, 40), dtype=np.uint8)
    for i in range(8):  # eight 10×20 polygons, two classes, a strip outside every polygon
        r, c = divmod(i, 2)
        units[r * 10:(r + 1) * 10, c * 20:c * 20 + 18] = i + 1
        labels[r * 10:(r + 1) * 10, c * 20:c * 20 + 18] = 1 + i % 2
    maps = [polygon_fold_map(units, labels, (1, 2), 8, 4, f, [0.6, 0.2, 0.2], 0, NO_SPLIT) for f in range(4)]
    tested = np.stack([m == 2 for m in maps])
    assert (tested.sum(axis=0) == (units > 0)).all()  # every polygon pixel tested once
    for m in maps:
        assert (m[units == 0] == NO_SPLIT).all()
        for u in range(1, 9):
            assert len(np.unique(m[units == u])) == 1  # a polygon is never cut
        assert {1, 2} <= set(np.unique(labels[m == 2]).tolist())  # each test group holds both classes


@pytest.mark.parametrize("keys, match", [
    ({"folds": 1}, "data.folds=1"),
    ({"folds": 3, "fold": 3}, r"data.fold=3 .*0\.\.2"),
    ({"folds": 3, "fold": -1}, "data.fold=-1"),
    ({"fold": 2}, "data.fold=2 needs data.folds"),
])
def test_fold_keys_are_range_checked(keys, match):
    with pytest.raises(ConfigError, match=match):
        DataConfig(name="x", **keys)


def test_valid_fold_keys_pass():
    assert DataConfig(name="x", folds=5, fold=4).fold == 4
    assert DataConfig(name="x", folds=5).fold is None


def test_composed_config_checks_the_fold_keys_and_refuses_a_test_scene(tiny_scene, compose):
    from deepgeo_runner.config.validate import validate_config
    from tests.helpers import scene_overrides

    base = ["data=scene", *scene_overrides(tiny_scene), "paths.output_dir=/tmp/x"]
    validate_config(compose(*base, "data.folds=3", "data.fold=2"))
    with pytest.raises(ConfigError, match=r"data.fold=3 .*0\.\.2"):
        validate_config(compose(*base, "data.folds=3", "data.fold=3"))
    scene = [f"data.split_scenes.test.image={tiny_scene['image']}",
             f"data.split_scenes.test.labels={tiny_scene['labels']}"]
    with pytest.raises(ConfigError, match="data.split_scenes.test"):
        validate_config(compose(*base, *scene, "data.folds=3"))


def test_every_fold_tests_a_rare_class_that_edge_slivers_would_hide():
    """Class 3 lies in three interior blocks and in three edge blocks 8 px wide, where no 16 px
    chip fits; judged by pixels alone, a group can get only slivers (measured: one fold of three
    then tests no class-3 pixel); judged by what test chips reach, each fold gets an interior one."""
    from deepgeo_runner.stages.data_check import split_class_pixels

    rng = np.random.default_rng(0)
    labels = np.zeros((264, 264), dtype=np.uint8)
    labels[:256, :256] = rng.choice([1, 2], size=(8, 8)).repeat(32, 0).repeat(32, 1)
    for r in (1, 3, 5):
        labels[r * 32 + 8:r * 32 + 24, 72:80] = 3
    for r in (0, 2, 4):
        labels[r * 32 + 8:r * 32 + 24, 256:264] = 3
    for fold in range(K):
        split_map = choose_class_split(labels, IDS, BLOCK, [0.6, 0.2, 0.2], 5, BUFFER, CHIP, folds=K, fold=fold)
        reached = split_class_pixels(labels, IDS, split_map, BUFFER, CHIP)
        assert (reached["test"] > 0).all() and (reached["train"] > 0).all(), reached
