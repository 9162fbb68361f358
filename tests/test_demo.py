"""The built-in demo scene: a georeferenced Landsat-8-like image and PRODES-like polygons.

It must be a faithful stand-in for real data (grid, CRS, nodata footprint, messy polygons),
reproducible to the byte, safe to generate from several processes at once, and learnable
from several bands and some context but not from one band and one threshold.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.features
from scipy import ndimage

from deepgeo_runner.geo.demo import (
    BAND_NAMES,
    CLASSES,
    DemoScene,
    demo_truth,
    make_demo_scene,
)

SIZE = 256
RED, NIR, SWIR1 = 2, 3, 4


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> DemoScene:
    return make_demo_scene(tmp_path_factory.mktemp("demo"), size=SIZE, seed=0)


@pytest.fixture(scope="module")
def pixels(scene) -> dict:
    """The image, its valid mask and the polygons burnt onto its grid (0 = unlabelled)."""
    with rasterio.open(scene.image) as src:
        image = src.read()
        transform = src.transform
        valid = (image != src.nodata).all(axis=0)
    polygons = gpd.read_file(scene.labels)
    labels = np.zeros(valid.shape, dtype=np.uint8)
    for value, name in enumerate(CLASSES, start=1):
        burnt = rasterio.features.rasterize(
            polygons.geometry[polygons["class"] == name], out_shape=valid.shape, transform=transform
        )
        labels[burnt > 0] = value
    labels[~valid] = 0
    return {"image": image, "valid": valid, "labels": labels, "polygons": polygons}


def _ndvi(image: np.ndarray) -> np.ndarray:
    return (image[NIR] - image[RED]) / (image[NIR] + image[RED])


def test_files_and_raster_contract(scene):
    assert scene.image.name == "demo_oli.tif" and scene.labels.name == "demo_prodes.gpkg"
    assert scene.image.is_file() and scene.labels.is_file()
    assert scene.band_names == BAND_NAMES == ("blue", "green", "red", "nir", "swir1", "swir2")
    assert scene.classes == CLASSES == ("forest", "deforestation", "water")
    with rasterio.open(scene.image) as src:
        assert src.crs.to_epsg() == 32722
        assert (src.width, src.height, src.count) == (SIZE, SIZE, 6)
        assert src.descriptions == BAND_NAMES
        assert set(src.dtypes) == {"float32"}
        assert src.nodata == -9999.0
        assert src.res == (30.0, 30.0) and src.transform.e < 0  # north-up
        assert src.transform.c == pytest.approx(600_000) and src.transform.f == pytest.approx(9_600_000)
        assert src.profile["tiled"] and src.compression.name.lower() == "deflate"


def test_nodata_footprint_and_sensible_reflectance(pixels):
    image, valid = pixels["image"], pixels["valid"]
    # the tilted footprint leaves nodata wedges in all four corners, on every band at once
    for r, c in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        assert (image[:, r, c] == -9999.0).all()
    assert ((image == -9999.0).any(axis=0) == ~valid).all()
    assert 0.03 < 1 - valid.mean() < 0.12
    values = image[:, valid]
    assert np.isfinite(values).all()
    assert values.min() > 0.0 and values.max() < 0.8
    medians = np.median(values, axis=1)
    assert (medians > 0.005).all() and (medians < 0.4).all()
    assert medians[NIR] == medians.max()  # a forested scene: NIR is the brightest band


def test_same_size_and_seed_give_the_same_scene(tmp_path):
    a = make_demo_scene(tmp_path / "a", size=128, seed=0)
    b = make_demo_scene(tmp_path / "b", size=128, seed=0)
    c = make_demo_scene(tmp_path / "c", size=128, seed=1)
    with rasterio.open(a.image) as ra, rasterio.open(b.image) as rb, rasterio.open(c.image) as rc:
        assert ra.transform == rb.transform and ra.crs == rb.crs
        first, second, other = ra.read(), rb.read(), rc.read()
    assert first.tobytes() == second.tobytes()
    assert not np.array_equal(first, other)
    ga, gb = gpd.read_file(a.labels), gpd.read_file(b.labels)
    assert list(ga["class"]) == list(gb["class"])
    assert list(ga.geometry.to_wkb()) == list(gb.geometry.to_wkb())


def test_existing_files_are_reused_not_rewritten(tmp_path):
    first = make_demo_scene(tmp_path, size=128)
    stamps = {p: p.stat().st_mtime_ns for p in (first.image, first.labels)}
    again = make_demo_scene(tmp_path, size=128)
    assert again == first
    assert {p: p.stat().st_mtime_ns for p in (again.image, again.labels)} == stamps
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo_oli.tif", "demo_prodes.gpkg", "demo_reference.tif"]


def test_too_small_a_scene_is_refused(tmp_path):
    with pytest.raises(ValueError, match="size"):
        make_demo_scene(tmp_path, size=32)


def _generate_into(path: str) -> bytes:
    scene = make_demo_scene(path, size=128, seed=0)
    with rasterio.open(scene.image) as src:
        return src.read().tobytes()


def test_processes_generating_at_once_leave_one_good_scene(tmp_path):
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        results = list(pool.map(_generate_into, [str(tmp_path)] * 2))
    assert results[0] == results[1] == _generate_into(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo_oli.tif", "demo_prodes.gpkg", "demo_reference.tif"]


def test_vector_ground_truth_contract(pixels):
    polygons, labels, valid = pixels["polygons"], pixels["labels"], pixels["valid"]
    assert polygons.crs.to_epsg() == 32722
    assert set(polygons["class"]) == set(CLASSES)
    assert set(polygons.geom_type) <= {"Polygon", "MultiPolygon"}
    assert polygons.is_valid.all() and not polygons.is_empty.any()
    shares = {name: (labels == v).sum() / labels.size for v, name in enumerate(CLASSES, start=1)}
    assert all(share >= 0.03 for share in shares.values()), shares
    assert 0.18 < sum(shares.values()) < 0.45, shares
    # most of the scene is left unlabelled (regrowth, roads, clouds, the rest of the forest)
    assert (labels[valid] == 0).mean() > 0.5


def test_every_class_is_spread_over_the_scene(pixels):
    labels, block = pixels["labels"], 128
    for value, name in enumerate(CLASSES, start=1):
        present = [
            (labels[i:i + block, j:j + block] == value).mean() > 0.005
            for i in range(0, SIZE, block) for j in range(0, SIZE, block)
        ]
        assert sum(present) >= 3, (name, present)


def test_polygons_agree_with_the_land_cover_they_were_drawn_from(pixels):
    truth, labels, valid = demo_truth(SIZE, 0), pixels["labels"], pixels["valid"]
    for value, name in enumerate(CLASSES, start=1):
        inside = (labels == value) & valid
        # truth codes 0, 1, 2 are forest, deforestation, water
        assert (truth[inside] == value - 1).mean() > 0.98, name


def test_polygons_cover_the_spectra_of_their_class(pixels):
    image, labels = pixels["image"], pixels["labels"]
    ndvi = _ndvi(np.where(pixels["valid"], image, 1.0))
    mean = {name: image[:, labels == v].mean(axis=1) for v, name in enumerate(CLASSES, start=1)}
    mean_ndvi = {name: ndvi[labels == v].mean() for v, name in enumerate(CLASSES, start=1)}
    assert mean_ndvi["forest"] > mean_ndvi["deforestation"] > 0.2
    assert mean_ndvi["water"] < 0.0
    assert mean["water"][NIR] < 0.1 < mean["deforestation"][NIR] < mean["forest"][NIR]
    assert mean["deforestation"][RED] > mean["forest"][RED]
    assert mean["deforestation"][SWIR1] > mean["forest"][SWIR1] > mean["water"][SWIR1]


def _best_threshold_accuracy(values: np.ndarray, positive: np.ndarray) -> float:
    """Accuracy of the best rule 'value > t' or 'value <= t' over all thresholds t."""
    order = np.argsort(values, kind="stable")
    pos = positive[order]
    below_neg = np.concatenate([[0], np.cumsum(~pos)])  # negatives at or below each cut
    above_pos = pos.sum() - np.concatenate([[0], np.cumsum(pos)])  # positives above it
    accuracy = (below_neg + above_pos) / len(values)
    return float(np.maximum(accuracy, 1 - accuracy).max())


def test_one_band_threshold_is_not_enough_but_bands_and_context_are(pixels):
    image, labels, valid = pixels["image"], pixels["labels"], pixels["valid"]
    pair = (labels == 1) | (labels == 2)  # forest vs deforestation
    red_accuracy = _best_threshold_accuracy(image[RED][pair], labels[pair] == 2)
    assert red_accuracy < 0.97

    # 3x3 mean of every band (nodata set to 0 first, away from the footprint edge),
    # standardised, then the nearest class centroid
    filled = np.where(valid, image, 0.0).astype(np.float64)
    smooth = np.stack([ndimage.uniform_filter(band, 3) for band in filled])
    use = pair & ndimage.binary_erosion(valid)
    x = smooth[:, use].T
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    y = labels[use]
    centroids = np.stack([x[y == 1].mean(axis=0), x[y == 2].mean(axis=0)])
    predicted = 1 + np.argmin(((x[:, None, :] - centroids[None]) ** 2).sum(axis=-1), axis=1)
    assert (predicted == y).mean() >= 0.9
    assert (predicted == y).mean() > red_accuracy


def test_the_reference_layer_is_the_truth_as_class_ids_and_agrees_with_the_labels(scene, pixels):
    """``demo_reference.tif``: every pixel of the scene labelled (what an analyst would say), on the
    image's grid, and the labelled polygons agree with it where they lie."""
    from deepgeo_runner.geo.demo import REFERENCE_NODATA, demo_truth, reference_ids

    with rasterio.open(scene.reference) as ref, rasterio.open(scene.image) as img:
        assert (ref.crs, ref.transform, ref.shape) == (img.crs, img.transform, img.shape)
        assert ref.nodata == REFERENCE_NODATA and ref.tags()["CLASSES"] == "forest,deforestation,water"
        ids = ref.read(1)
    assert set(np.unique(ids)) == {1, 2, 3}  # wall to wall: no pixel without a reference class
    assert np.array_equal(ids, reference_ids(demo_truth(SIZE, 0)))
    labels = pixels["labels"]
    labelled = labels > 0
    agree = (labels[labelled] == ids[labelled]).mean()
    assert agree > 0.95, agree  # polygons are drawn from the same truth (edges differ by rasterization)
