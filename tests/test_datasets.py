import numpy as np
import pytest
import torch

from deepgeo_runner.ml.datasets import ChipDataset, ShardedSampler


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("length", [10, 11, 64])
def test_eval_shards_are_disjoint_and_cover_the_data(world, length):
    shards = [list(ShardedSampler(length, r, world, shuffle=False)) for r in range(world)]
    flat = [i for s in shards for i in s]
    assert sorted(flat) == list(range(length))


@pytest.mark.parametrize("world", [1, 2, 4])
def test_train_shards_reshuffle_per_epoch_with_equal_lengths(world):
    samplers = [ShardedSampler(21, r, world, shuffle=True, seed=7) for r in range(world)]
    for epoch in (0, 1):
        for s in samplers:
            s.set_epoch(epoch)
        shards = [list(s) for s in samplers]
        assert len({len(s) for s in shards}) == 1
        assert set().union(*map(set, shards)) == set(range(21))
        if world == 2:
            # padding repeats at most world-1 indices, the rest are disjoint
            assert len(set(shards[0]) & set(shards[1])) <= 1
    samplers[0].set_epoch(0)
    first = list(samplers[0])
    samplers[0].set_epoch(1)
    assert list(samplers[0]) != first


def test_chip_dataset_returns_dict_samples(tmp_path):
    images = np.random.default_rng(0).random((3, 2, 8, 8)).astype(np.float32)
    masks = np.full((3, 8, 8), 255, dtype=np.uint8)
    masks[:, :4] = 1
    np.save(tmp_path / "train_image.npy", images)
    np.save(tmp_path / "train_mask.npy", masks)
    ds = ChipDataset(tmp_path, "train")
    sample = ds[2]
    assert len(ds) == 3 and sample["image"].shape == (2, 8, 8)
    assert sample["mask"].dtype.is_floating_point is False and int(sample["mask"][7, 7]) == 255
    np.testing.assert_array_equal(sample["image"].numpy(), images[2])


@pytest.mark.parametrize("indices", [[4, 2, 3], [5, 0, 3]], ids=["consecutive", "scattered"])
def test_read_batch_copies_the_chips_once_into_writable_tensors(tmp_path, indices):
    rng = np.random.default_rng(1)
    images = rng.random((6, 2, 8, 8)).astype(np.float32)
    masks = rng.integers(0, 3, (6, 8, 8)).astype(np.uint8)
    np.save(tmp_path / "train_image.npy", images)
    np.save(tmp_path / "train_mask.npy", masks)
    batch = ChipDataset(tmp_path, "train").read_batch(indices)
    order = sorted(indices)  # read in ascending order: one pass over the file
    np.testing.assert_array_equal(batch["image"].numpy(), images[order])
    np.testing.assert_array_equal(batch["mask"].numpy(), masks[order])
    assert batch["image"].dtype == torch.float32 and batch["mask"].dtype == torch.uint8
    batch["image"].add_(1.0)  # augmentation works in place on the batch, never on the store
    np.testing.assert_array_equal(np.load(tmp_path / "train_image.npy"), images)
