"""Issue 20: sparse labels are detected from the labels, and copy-paste puts classes side by side."""

import numpy as np
import torch

from deepgeo_runner.geo.label_layout import IGNORE, label_layout
from deepgeo_runner.ml.copy_paste import copy_paste


def _wall_to_wall() -> np.ndarray:
    t = np.zeros((40, 40), dtype=np.uint8)
    t[:, 20:] = 1
    t[5:12, 5:12] = 2
    return t


def test_wall_to_wall_labels_are_not_sparse():
    layout = label_layout(_wall_to_wall())
    assert layout.labelled_share == 1.0 and layout.contact == 1.0 and not layout.sparse


def test_interior_polygons_are_sparse_whatever_their_share():
    t = np.full((40, 40), IGNORE, dtype=np.uint8)
    t[2:38, 2:18] = 0  # large polygons, 2 px apart: 80 % labelled, but no two classes touch
    t[2:38, 20:38] = 1
    layout = label_layout(t)
    assert layout.labelled_share > 0.7 and layout.contact == 0.0 and layout.sparse


def test_edges_against_nodata_count_for_nothing():
    t = _wall_to_wall()
    valid = np.ones(t.shape, dtype=bool)
    valid[:, :3] = False
    t[~valid] = IGNORE
    assert not label_layout(t, valid).sparse


def test_copy_paste_moves_labelled_pixels_with_their_labels():
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(8, 3, 16, 16)
    mask = torch.full((8, 16, 16), IGNORE, dtype=torch.long)
    mask[:, 4:9, 4:9] = torch.arange(8).view(8, 1, 1) % 3
    out_image, out_mask = copy_paste(image, mask, gen, p=1.0)
    assert torch.equal(out_mask == IGNORE, mask == IGNORE)  # every donor labels the same square here
    for i in range(8):
        donors = [j for j in range(8) if j != i and torch.equal(out_image[i, :, 4:9, 4:9], image[j, :, 4:9, 4:9])]
        assert donors and torch.equal(out_mask[i, 4:9, 4:9], mask[donors[0], 4:9, 4:9])
        assert torch.equal(out_image[i, :, :4], image[i, :, :4])  # unlabelled donor pixels paste nothing
    same_image, same_mask = copy_paste(image, mask, gen, p=0.0)
    assert same_image is image and same_mask is mask


def _label_raster(path, ids: np.ndarray) -> None:
    import rasterio
    from affine import Affine

    with rasterio.open(path, "w", driver="GTiff", width=ids.shape[1], height=ids.shape[0], count=1, dtype="uint8",
                       crs="EPSG:32722", transform=Affine(30, 0, 600000, 0, -30, 9600000), nodata=255) as dst:
        dst.write(ids, 1)


def test_copy_paste_auto_is_on_for_sparse_labels_only(tmp_path):
    from types import SimpleNamespace

    from deepgeo_runner.pipeline.stage_options import COPY_PASTE_SPARSE, augment_plan

    classes = SimpleNamespace(n_classes=3, background_is_class=False)
    aug = SimpleNamespace(name="d4", expand_ops=(), brightness=0.0, noise_std=0.0, copy_paste="auto")
    opts = SimpleNamespace(augmentation=aug)
    wall = _wall_to_wall() + 1  # label ids 1..3
    sparse = np.zeros_like(wall)  # 0: no label (background ignored)
    sparse[2:38, 2:18], sparse[2:38, 20:38] = 1, 2
    plans = {}
    for name, ids in (("wall", wall), ("sparse", sparse)):
        _label_raster(tmp_path / f"{name}.tif", ids)
        plans[name] = augment_plan(opts, tmp_path / f"{name}.tif", classes).copy_paste
    assert plans == {"wall": 0.0, "sparse": COPY_PASTE_SPARSE}
    aug.copy_paste = 0.25  # an explicit share is taken as it is
    assert augment_plan(opts, tmp_path / "wall.tif", classes).copy_paste == 0.25
