import torch

from deepgeo_runner.ml.augment import D4_SIZE, dihedral, random_dihedral


def test_d4_ops_are_exactly_the_eight_symmetries_of_the_square():
    x = torch.arange(16.0).reshape(4, 4)
    images = {tuple(dihedral(x, op).flatten().tolist()) for op in range(D4_SIZE)}
    assert len(images) == 8
    expected = set()
    for k in range(4):
        for flip in (False, True):
            y = torch.rot90(x, k, dims=(0, 1))
            expected.add(tuple((y.flip(1) if flip else y).flatten().tolist()))
    assert images == expected


def test_random_dihedral_keeps_image_and_mask_aligned():
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(32, 3, 8, 8)
    mask = (image[:, 0] > 0).long()  # the label is a function of the image pixel
    out_image, out_mask = random_dihedral(image, mask, gen)
    assert torch.equal(out_mask, (out_image[:, 0] > 0).long())
    assert not torch.equal(out_image, image)  # something was transformed
    # each sample is one of its own 8 transforms
    for i in range(32):
        assert any(torch.equal(out_image[i], dihedral(image[i], op)) for op in range(8))


def test_random_dihedral_is_seeded():
    image, mask = torch.randn(16, 2, 6, 6), torch.randint(0, 3, (16, 6, 6))
    a = random_dihedral(image, mask, torch.Generator().manual_seed(5))
    b = random_dihedral(image, mask, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_named_ops_match_their_meaning():
    from deepgeo_runner.ml.augment import D4_OPS

    sq = torch.arange(16.0).reshape(4, 4)
    assert torch.equal(dihedral(sq, D4_OPS["flip_h"]), sq.flip(-1))
    assert torch.equal(dihedral(sq, D4_OPS["flip_v"]), sq.flip(-2))
    assert torch.equal(dihedral(sq, D4_OPS["transpose"]), sq.T)
    assert torch.equal(dihedral(sq, D4_OPS["rot180"]), sq.flip(-1).flip(-2))
    assert torch.equal(dihedral(sq, D4_OPS["antitranspose"]), sq.flip(-1).flip(-2).T)


def test_d4_expand_multiplies_the_dataset_by_one_plus_ops():
    from deepgeo_runner.ml.augment import EXPAND_DEFAULT, op_index
    from deepgeo_runner.ml.datasets import ExpandedDataset

    class Chips(torch.utils.data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            image = torch.arange(16.0).reshape(1, 4, 4) + 100 * i
            return {"image": image, "mask": (image[0] % 3).long()}

    ops = [op_index(o) for o in EXPAND_DEFAULT]
    expanded = ExpandedDataset(Chips(), ops)
    assert len(expanded) == 5 * (1 + len(EXPAND_DEFAULT)) == 35
    copies = [expanded[2 * 7 + k]["image"] for k in range(7)]
    assert torch.equal(copies[0], Chips()[2]["image"])
    assert len({tuple(c.flatten().tolist()) for c in copies}) == 7  # all distinct transforms
    for k in range(7):
        s = expanded[3 * 7 + k]
        assert torch.equal(s["mask"], (s["image"][0] % 3).long())  # image and mask aligned


def test_photometric_changes_images_only_when_asked():
    from deepgeo_runner.ml.augment import photometric

    x = torch.zeros(4, 2, 8, 8)
    gen = torch.Generator().manual_seed(0)
    assert photometric(x, gen) is x
    y = photometric(x, gen, brightness=0.2, noise_std=0.0)
    offsets = y.flatten(1)
    assert (offsets.std(dim=1) == 0).all() and offsets.abs().max() <= 0.2  # one offset per sample
