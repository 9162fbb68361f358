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


def test_copy_paste_and_teacher_auto_are_on_for_sparse_labels_only(tmp_path):
    from types import SimpleNamespace

    from deepgeo_runner.pipeline.stage_options import COPY_PASTE_SPARSE, augment_plan

    classes = SimpleNamespace(n_classes=3, background_is_class=False)
    aug = SimpleNamespace(name="d4", expand_ops=(), brightness=0.0, noise_std=0.0, copy_paste="auto",
                          copy_paste_edge=0.5, teacher="auto", teacher_confidence=0.9)
    opts = SimpleNamespace(augmentation=aug)
    wall = _wall_to_wall() + 1  # label ids 1..3
    sparse = np.zeros_like(wall)  # 0: no label (background ignored)
    sparse[2:38, 2:18], sparse[2:38, 20:38] = 1, 2
    plans = {}
    for name, ids in (("wall", wall), ("sparse", sparse)):
        _label_raster(tmp_path / f"{name}.tif", ids)
        plan = augment_plan(opts, tmp_path / f"{name}.tif", classes)
        plans[name] = (plan.copy_paste, plan.teacher)
    assert plans == {"wall": (0.0, 0.0), "sparse": (COPY_PASTE_SPARSE, 0.9)}
    # the pixel baseline is not taught by itself
    assert augment_plan(opts, tmp_path / "sparse.tif", classes, network=False).teacher == 0.0
    aug.teacher = False
    assert augment_plan(opts, tmp_path / "sparse.tif", classes).teacher == 0.0
    aug.copy_paste = 0.25  # an explicit share is taken as it is
    assert augment_plan(opts, tmp_path / "wall.tif", classes).copy_paste == 0.25
    assert augment_plan(opts, tmp_path / "wall.tif", classes).copy_paste_edge == 0.5


def test_soft_edge_paste_mixes_border_pixels_and_labels_them_by_majority():
    # two chips: chip 0 all class 0 (value 0), chip 1 labels its right half class 1 (value 1)
    image = torch.zeros(2, 1, 6, 8)
    image[1] = 1.0
    mask = torch.full((2, 6, 8), IGNORE, dtype=torch.long)
    mask[0] = 0
    mask[1, :, 4:] = 1
    out_image, out_mask = copy_paste(image, mask, torch.Generator().manual_seed(0), p=1.0, edge_sigma=0.5)
    row = out_image[0, 0, 3]
    # the weights of a Gaussian of sigma 0.5 one pixel off its centre: 0.1065; two pixels: 0.0003
    assert torch.allclose(row[:2], torch.zeros(2), atol=1e-6)
    assert torch.allclose(row[2:6], torch.tensor([0.0003, 0.1067, 0.8933, 0.9997]), atol=2e-4)
    assert torch.allclose(row[6:], torch.ones(2))
    assert out_image[0, 0].std(dim=0).max() < 1e-6  # a straight border: every row alike
    # labels by majority: the mixed pixel outside the cut-out keeps its own class, the one inside is the donor's
    assert out_mask[0, 3].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    # chip 1 receives chip 0 (every pixel labelled): alpha 1 everywhere, an exact copy
    assert torch.equal(out_mask[1], mask[0]) and torch.allclose(out_image[1], image[0], atol=1e-6)
    # sharp (edge_sigma 0) is the plain cut-out
    sharp_image, sharp_mask = copy_paste(image, mask, torch.Generator().manual_seed(0), p=1.0)
    assert sharp_image[0, 0, 3].tolist() == [0, 0, 0, 0, 1, 1, 1, 1] and torch.equal(sharp_mask, out_mask)


def test_soft_edge_never_labels_a_pixel_the_donor_left_unlabelled():
    # a donor whose labelled square has a one-pixel hole: with a soft edge of 1 px the hole is mostly donor
    image = torch.stack([torch.zeros(1, 7, 7), torch.ones(1, 7, 7)])
    mask = torch.full((2, 7, 7), IGNORE, dtype=torch.long)
    mask[0] = 0
    mask[1, 1:6, 1:6] = 2
    mask[1, 3, 3] = IGNORE
    out_image, out_mask = copy_paste(image, mask, torch.Generator().manual_seed(0), p=1.0, edge_sigma=1.0)
    assert 0.5 < out_image[0, 0, 3, 3] < 1
    assert out_mask[0, 3, 3] == IGNORE  # blended mostly from a pixel of unknown class: no label
    assert out_mask[0, 3, 2] == 2 and out_mask[0, 0, 0] == 0
    # with 0.5 px the hole is mostly the sample's own pixel, and keeps its own label
    out_image, out_mask = copy_paste(image, mask, torch.Generator().manual_seed(0), p=1.0, edge_sigma=0.5)
    assert out_image[0, 0, 3, 3] < 0.5 and out_mask[0, 3, 3] == 0


def test_a_sparse_label_raster_whose_nodata_marks_unlabelled_ground_is_sparse(tmp_path):
    """A label raster with nodata 0 (unlabelled) rasterizes its unlabelled ground to the label nodata (255),
    which alone reads as 'no image': counted on the image's valid pixels, the labels are sparse again."""
    from types import SimpleNamespace

    from deepgeo_runner.pipeline.stage_options import COPY_PASTE_SPARSE, augment_plan

    classes = SimpleNamespace(n_classes=2, background_is_class=False)
    aug = SimpleNamespace(name="d4", expand_ops=(), brightness=0.0, noise_std=0.0, copy_paste="auto",
                          copy_paste_edge=0.0, teacher="auto", teacher_confidence=0.8)
    opts = SimpleNamespace(augmentation=aug)
    ids = np.full((40, 40), 255, dtype=np.uint8)
    ids[2:38, 2:16], ids[2:38, 24:38] = 1, 2  # interiors, a gap of unlabelled ground between them
    _label_raster(tmp_path / "labels.tif", ids)
    blind = augment_plan(opts, tmp_path / "labels.tif", classes)
    assert blind.copy_paste == 0.0  # the defect: nodata taken for 'no image', the labels look wall to wall
    plan = augment_plan(opts, tmp_path / "labels.tif", classes, valid=np.ones(ids.shape, dtype=bool))
    assert (plan.copy_paste, plan.teacher) == (COPY_PASTE_SPARSE, 0.8)


def test_a_run_on_a_sparse_label_raster_with_nodata_zero_turns_the_recipe_on(tiny_scene, tmp_path, compose,
                                                                             one_thread, caplog):
    import logging

    import rasterio

    from deepgeo_runner.pipeline.runner import run

    with rasterio.open(tiny_scene["image"]) as src:
        profile = dict(src.profile, count=1, dtype="uint8", nodata=0)
    ids = np.zeros((48, 48), dtype=np.uint8)  # 0: nodata = unlabelled, as analysts' label rasters have it
    ids[8:40, 2:20], ids[8:40, 28:46] = 1, 2
    with rasterio.open(tmp_path / "sparse.tif", "w", **profile) as dst:
        dst.write(ids, 1)
    caplog.set_level(logging.INFO, logger="deepgeo_runner")
    opts = compose(
        "data=scene", f"data.image={tiny_scene['image']}", f"data.labels={tmp_path / 'sparse.tif'}",
        "data.classes=[forest,clearing]", "data.class_values=[1,2]", "data.band_names=[blue,green,red,nir]",
        "preprocessing.indices=[]", "data.chip_size=8", "data.block_size=16", "data.split_buffer=0",
        "data.train_chips=20", "model=fcn8s", "model.width=4", "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false", f"paths.cache_dir={tmp_path / 'cache'}",
        f"paths.output_dir={tmp_path / 'out'}", "stages=[prepare,rasterize,chips,fit,predict]")
    run(opts, tmp_path / "run")
    said = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("labels: ") and m.endswith("sparse labels") for m in said), said
    assert "augmentation.copy_paste=auto: 1.0" in said
    # predict.prior_shift=auto: the map decided with the scene's class shares, the estimate kept
    import json

    estimate = json.loads((tmp_path / "run" / "prediction_priors.json").read_text())
    assert set(estimate["train_share"]) == {"forest", "clearing"} and estimate["sampled_pixels"] > 0
    assert json.loads((tmp_path / "run" / "provenance.json").read_text())["scene_priors"] == estimate
