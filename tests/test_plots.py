"""Report figures: each writes a real PNG atomically, and awkward inputs do not warn or fail."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from deepgeo_runner.core.classes import class_palette
from deepgeo_runner.report.plots import (
    plot_class_map,
    plot_composite,
    plot_confusion_matrix,
    plot_roc_curves,
    plot_training_curves,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMES = ["forest", "clearing", "water"]


def assert_png(path: Path, out: Path, min_hw: tuple[int, int] = (100, 100)) -> np.ndarray:
    """A valid PNG at ``path``, and nothing else (no temp file) left in the folder."""
    assert isinstance(out, Path) and out == path
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] >= min_hw[0] and image.shape[1] >= min_hw[1]
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    return image


def test_composite_with_nodata(tmp_path: Path):
    rng = np.random.default_rng(0)
    bands = rng.uniform(0.0, 0.3, size=(3, 40, 60)).astype(np.float32)
    bands[:, :5, :5] = np.nan
    valid = np.ones((40, 60), dtype=bool)
    valid[-5:, -5:] = False
    path = tmp_path / "composite.png"
    image = assert_png(path, plot_composite(bands, path, valid=valid))
    assert image.shape[1] > image.shape[0]  # wide raster, wide figure


def test_composite_without_valid_pixels_still_writes(tmp_path: Path):
    path = tmp_path / "empty.png"
    assert_png(path, plot_composite(np.full((3, 8, 8), np.nan), path))


def test_composite_rejects_wrong_band_count(tmp_path: Path):
    with pytest.raises(ValueError, match="R, G, B"):
        plot_composite(np.zeros((4, 8, 8)), tmp_path / "x.png")


def test_class_map_with_ignore_and_background(tmp_path: Path):
    classes = np.ones((50, 50), dtype=np.uint8)
    classes[:, 20:] = 2
    classes[30:, :] = 3
    classes[:4, :4] = 255  # ignore
    classes[-3:, -3:] = 0  # background
    path = tmp_path / "plots" / "reference.png"  # parent folder is created
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = plot_class_map(classes, path, NAMES, class_palette(3), "Reference labels")
    assert_png(path, out)


def test_class_map_needs_a_colour_per_class(tmp_path: Path):
    with pytest.raises(ValueError, match="colours"):
        plot_class_map(np.ones((4, 4), int), tmp_path / "x.png", NAMES, ["#000000"], "t")


def test_confusion_matrix_with_an_all_zero_row_does_not_warn(tmp_path: Path):
    cm = np.array([[50, 3, 0], [4, 40, 1], [0, 0, 0]])
    path = tmp_path / "confusion.png"
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        out = plot_confusion_matrix(cm, path, NAMES)
        plot_confusion_matrix(cm, tmp_path / "raw.png", NAMES, normalize=False)
    (tmp_path / "raw.png").unlink()
    assert_png(path, out)


def test_confusion_matrix_shape_mismatch(tmp_path: Path):
    with pytest.raises(ValueError, match="does not match"):
        plot_confusion_matrix(np.zeros((2, 2)), tmp_path / "x.png", NAMES)


def test_roc_curves_in_class_colours_with_an_undefined_class(tmp_path: Path):
    colours = dict(zip(NAMES, ["#1f77b4", "#d62728", "#2ca02c"], strict=True))
    curves = {
        "forest": ([0.0, 0.1, 0.3, 1.0], [0.0, 0.7, 0.95, 1.0], 0.91),
        "clearing": ([0.0, 1.0], [0.0, 1.0], 0.5),
        "water": ([0.0, 1.0], [0.0, 1.0], None),  # absent from the test split
    }
    path = tmp_path / "roc.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = assert_png(path, plot_roc_curves(curves, path, colours))
    rgb = (image[..., :3] * 255).round().astype(int).reshape(-1, 3)
    pixels = {name: int((np.abs(rgb - np.array([int(c[i:i + 2], 16) for i in (1, 3, 5)])).max(axis=1) <= 2).sum())
              for name, c in colours.items()}
    assert pixels["water"] > 0  # listed in the legend, no curve
    assert min(pixels["forest"], pixels["clearing"]) > 10 * pixels["water"], pixels  # curves in class colours


def test_training_curves(tmp_path: Path):
    history = {
        "train_loss": [(e, 1.0 / (e + 1)) for e in range(10)],
        "val_loss": [(e, 1.2 / (e + 1) + 0.05) for e in range(10)],
        "val_f1_macro": [(e, 0.5 + 0.04 * e) for e in range(10)],
        "val_iou": [],
    }
    path = tmp_path / "curves.png"
    image = assert_png(path, plot_training_curves(history, path))
    assert image.shape[1] > image.shape[0]  # two panels side by side


def test_training_curves_without_history(tmp_path: Path):
    path = tmp_path / "curves.png"
    assert_png(path, plot_training_curves({"train_loss": [], "val_f1": []}, path), (50, 100))


def test_existing_file_is_replaced(tmp_path: Path):
    path = tmp_path / "curves.png"
    path.write_bytes(b"stale")
    assert_png(path, plot_training_curves({"train_loss": [(0, 1.0), (1, 0.5)]}, path))


@pytest.mark.parametrize("n", [0, 1, 10, 20, 40, 50])
def test_the_class_palette_is_distinct_hex(n: int):
    colors = class_palette(n)
    assert len(colors) == n and len(set(colors)) == n
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colors)
    assert not {"#000000", "#d9d9d9", "#888888"} & set(colors)  # never background, nodata or unlabelled grey
    assert class_palette(n) == colors  # deterministic


def test_chip_map_and_class_distribution(tmp_path):
    from deepgeo_runner.report.plots import plot_chip_map, plot_class_distribution

    rgb = np.random.default_rng(0).random((3, 50, 40)).astype(np.float32)  # the scene read at 1/2
    chips = [{"row": r, "col": c, "size": 16, "split": s}
             for (r, c), s in zip([(0, 0), (0, 40), (60, 0), (80, 60)], ["train", "train", "val", "test"], strict=True)]
    out = plot_chip_map(rgb, (100, 80), chips, tmp_path / "chips.png")
    dist = plot_class_distribution({"train": [500, 20, 0], "test": [100, 5, 7]}, ["forest", "cleared", "water"],
                                   tmp_path / "dist.png")
    for path in (out, dist):
        img = mpimg.imread(path)
        assert img.ndim == 3 and img.shape[0] > 100 and img.std() > 0.01  # drawn, not blank
    # one test chip over the whole of a blank scene: the frame's middle is the test colour, faded
    whole = plot_chip_map(None, (100, 80), [{"row": 0, "col": 0, "size": 100, "split": "test"}], tmp_path / "t.png")
    img = mpimg.imread(whole)
    r, g, b = img[img.shape[0] // 2, img.shape[1] // 3, :3]
    assert r > g + 0.1 and r > b + 0.1, (r, g, b)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic: no temporary left behind


def test_feature_histograms_draw_each_class_in_its_colour(tmp_path):
    from deepgeo_runner.report.plots import plot_feature_histograms

    rng = np.random.default_rng(3)
    labels = np.repeat([[1] * 30 + [2] * 30], 40, axis=0)
    labels[:5] = 255  # unlabelled rows are not drawn
    ndvi = np.where(labels == 1, 0.8, 0.2) + 0.05 * rng.standard_normal(labels.shape)
    red = rng.standard_normal(labels.shape)
    red[0, 0] = np.nan
    out = plot_feature_histograms({"ndvi": ndvi, "red": red}, labels, [1, 2], ["forest", "cleared"],
                                  ["#00aa00", "#dd0000"], tmp_path / "h.png")
    img = mpimg.imread(out)[..., :3]
    greenish = ((img[..., 1] > 0.5) & (img[..., 0] < 0.3) & (img[..., 2] < 0.3)).sum()
    reddish = ((img[..., 0] > 0.7) & (img[..., 1] < 0.3) & (img[..., 2] < 0.3)).sum()
    assert greenish > 50 and reddish > 50  # both classes' outlines are drawn
