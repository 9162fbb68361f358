import numpy as np
import pytest

from deepgeo_runner.core.errors import ConfigError, StageError
from deepgeo_runner.geo.chips import (
    check_no_leakage,
    coverage,
    grid_windows,
    random_windows,
    split_blocks,
)


def test_split_blocks_follow_fractions_and_seed():
    split = split_blocks((200, 300), 20, [0.6, 0.2, 0.2], seed=3)
    assert split.shape == (200, 300)
    blocks = split[::20, ::20]
    assert np.bincount(blocks.ravel(), minlength=3).tolist() == [90, 30, 30]
    assert (split == split_blocks((200, 300), 20, [0.6, 0.2, 0.2], seed=3)).all()
    assert (split != split_blocks((200, 300), 20, [0.6, 0.2, 0.2], seed=4)).any()
    # every block is uniform
    assert all(len(np.unique(split[r:r + 20, c:c + 20])) == 1 for r in range(0, 200, 20) for c in range(0, 300, 20))


def test_split_blocks_bad_fractions():
    with pytest.raises(ConfigError, match="split_fractions"):
        split_blocks((10, 10), 5, [0.5, 0.5], seed=0)


@pytest.mark.parametrize("seed", range(25))
def test_no_test_pixel_in_a_training_chip(seed):
    """Randomized property: for many seeds and layouts, splits never share a pixel."""
    rng = np.random.default_rng(seed)
    h, w = rng.integers(60, 200, size=2)
    chip = int(rng.integers(8, 24))
    block = int(chip * rng.integers(1, 4))
    split = split_blocks((int(h), int(w)), block, [0.6, 0.2, 0.2], seed)
    labelled = rng.random((h, w)) > 0.3
    windows = {
        "train": random_windows(split == 0, labelled, chip, 200, 0.1, seed),
        "val": grid_windows(split == 1, labelled, chip, max(1, chip // 2), 0.1),
        "test": grid_windows(split == 2, labelled, chip, max(1, chip // 2), 0.1),
    }
    for name, split_id in (("train", 0), ("val", 1), ("test", 2)):
        covered = coverage(windows[name], split.shape)
        assert (split[covered] == split_id).all(), name
    train = coverage(windows["train"], split.shape)
    assert not (train & coverage(windows["test"], split.shape)).any()
    check_no_leakage(windows, split.shape)


def test_leakage_check_fails_on_overlap():
    from deepgeo_runner.geo.chips import Window

    with pytest.raises(StageError, match="leakage"):
        check_no_leakage({"train": [Window(0, 0, 8)], "test": [Window(4, 4, 8)]}, (16, 16))


def test_windows_respect_labelled_fraction_and_count():
    split = np.ones((64, 64), dtype=bool)
    labelled = np.zeros((64, 64), dtype=bool)
    labelled[:32, :32] = True
    found = random_windows(split, labelled, 16, 50, 0.5, seed=0)
    assert len(found) == 50
    for w in found:
        assert labelled[w.slices].mean() >= 0.5
    assert random_windows(split, np.zeros_like(labelled), 16, 5, 0.1, seed=0) == []
    grid = grid_windows(split, labelled, 16, 16, 0.5)
    assert sorted((w.row, w.col) for w in grid) == [(0, 0), (0, 16), (16, 0), (16, 16)]


def test_training_chips_keep_the_buffer_from_val_and_test():
    from scipy import ndimage

    from deepgeo_runner.geo.chips import usable_area

    split = split_blocks((256, 256), 64, [0.6, 0.2, 0.2], seed=1)
    buffer = 16
    area = usable_area(split, 0, buffer)
    windows = random_windows(area, np.ones_like(area), 16, 100, 0.1, seed=0)
    assert windows
    train = coverage(windows, split.shape)
    distance = ndimage.distance_transform_cdt(split == 0, metric="chessboard")
    assert distance[train].min() > buffer  # every training pixel is > buffer px from val/test
    assert (usable_area(split, 2, buffer) == (split == 2)).all()


def test_point_windows_are_centred_and_kept_inside_their_split():
    from deepgeo_runner.geo.chips import point_windows

    split = np.zeros((64, 64), dtype=np.int8)
    split[:, 32:] = 2
    labelled = np.ones((64, 64), dtype=bool)
    rows, cols = np.array([16, 16, 40, 2]), np.array([16, 30, 48, 2])
    train = point_windows(rows, cols, split == 0, labelled, 8, 0.1)
    test = point_windows(rows, cols, split == 2, labelled, 8, 0.1)
    assert [(w.row, w.col) for w in train] == [(12, 12)]   # (16,30) straddles, (2,2) leaves the scene
    assert [(w.row, w.col) for w in test] == [(36, 44)]
