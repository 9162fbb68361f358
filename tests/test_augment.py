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
