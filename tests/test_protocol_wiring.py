"""The field's protocol wired through a run on a tiny scene: data.boundary_ignore_px rings the chips'
labels (the loss and the protocol's scores; the plain scores keep every labelled pixel) and enters the
chips' cache key; predict.mmu_ha sieves prediction.tif in place (grid, nodata, colours kept) and
provenance records it; bad values fail with the key named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from scipy import ndimage

from deepgeo_runner.core.errors import ConfigError
from deepgeo_runner.geo.boundary import ignore_borders
from tests.helpers.pixel_forest import pixel_forest_overrides

X = 255


def test_bad_protocol_values_name_the_key(compose):
    from deepgeo_runner.config.validate import validate_config

    def check(*overrides):
        validate_config(compose("paths.output_dir=/tmp/nowhere", *overrides))

    with pytest.raises(ConfigError, match="data.boundary_ignore_px"):
        check("data.boundary_ignore_px=-1")
    with pytest.raises(ConfigError, match="quarter of data.chip_size"):
        check("data.boundary_ignore_px=20", "data.chip_size=64")
    with pytest.raises(ConfigError, match="predict.mmu_ha"):
        check("predict.mmu_ha=-2")
    with pytest.raises(ConfigError, match="'predict' is not among stages"):
        check("predict.mmu_ha=6.25", "stages=[prepare,rasterize,chips]")
    check("data.boundary_ignore_px=2", "predict.mmu_ha=6.25")
    cfg = compose("experiments=prodes_protocol")
    assert cfg.data.boundary_ignore_px == 2 and cfg.predict.mmu_ha == 6.25
    assert cfg.model._target_.endswith("FCN8s")


def test_sieve_map_rewrites_the_class_map_in_place_pixel_exact(tmp_path):
    from deepgeo_runner.stages.mmu import sieve_map

    classes = np.full((12, 12), 1, dtype=np.uint8)
    classes[2:4, 2:4] = 2  # 4 pixels = 0.36 ha: under the unit, becomes forest
    classes[6:12, 6:12] = 2  # 36 pixels = 3.24 ha: kept
    classes[0, 11] = X  # nodata: untouched
    path = tmp_path / "prediction.tif"
    grid = {"crs": "EPSG:32722", "transform": Affine(30, 0, 600000, 0, -30, 9600000)}
    with rasterio.open(path, "w", driver="GTiff", width=12, height=12, count=1, dtype="uint8", nodata=X,
                       photometric="palette", **grid) as dst:
        dst.write_colormap(1, {1: (0, 128, 0, 255), 2: (200, 0, 0, 255)})
        dst.write(classes, 1)
    record = sieve_map(path, 1.0, cog=True)  # 1 ha: 12 pixels of 0.09 ha
    expected = classes.copy()
    expected[2:4, 2:4] = 1
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(1), expected)
        assert src.nodata == X and src.crs.to_epsg() == 32722 and src.transform.a == 30
        assert src.colormap(1)[2][:3] == (200, 0, 0)
    assert record["min_pixels"] == 12 and record["pixels_changed"] == 4
    assert record["area_ha_before"][2] == pytest.approx(40 * 0.09)
    assert record["area_ha_after"][2] == pytest.approx(36 * 0.09)


def test_a_geographic_map_is_sieved_by_each_patch_s_area_in_hectares(tmp_path):
    from deepgeo_runner.stages.mmu import sieve_map

    classes = np.full((20, 20), 1, dtype=np.uint8)
    classes[2:5, 2:5] = 2  # 9 pixels
    classes[10:14, 10:14] = 2  # 16 pixels
    path = tmp_path / "prediction.tif"
    step = 0.01  # about 1.1 km: a pixel of about 123 ha at the equator
    with rasterio.open(path, "w", driver="GTiff", width=20, height=20, count=1, dtype="uint8", nodata=X,
                       crs="EPSG:4326", transform=Affine(step, 0, -50, 0, -step, 0.1)) as dst:
        dst.write(classes, 1)
    pixel_ha = 123.6  # about; the unit lies between the two patches' areas
    record = sieve_map(path, 12 * pixel_ha, cog=False)
    with rasterio.open(path) as src:
        out = src.read(1)
    assert (out[2:5, 2:5] == 1).all() and (out[10:14, 10:14] == 2).all()
    assert record["crs_kind"] == "geographic" and "pixel_area_ha_range" in record


def test_the_protocol_runs_end_to_end_on_a_tiny_scene(tiny_scene, tmp_path, compose, one_thread):
    from deepgeo_runner.pipeline.runner import run

    plain = run(compose(*pixel_forest_overrides(tiny_scene, tmp_path, "stages=[prepare,rasterize,chips]", trees=10)),
                tmp_path / "plain")
    art = run(compose(*pixel_forest_overrides(tiny_scene, tmp_path, "data.boundary_ignore_px=1", "predict.mmu_ha=0.5",
                                                trees=10)),
              tmp_path / "protocol")
    assert art.cache_keys["chips"] != plain.cache_keys["chips"]  # the ring changes the chips
    assert art.cache_keys["prepare"] == plain.cache_keys["prepare"]
    store = Path(art.chips.path)
    with rasterio.open(art.labels) as src:
        from deepgeo_runner.stages.chips import target_lut

        targets = target_lut(2, False)[src.read(1)]
    ringed = ignore_borders(targets, 1)
    chips = json.loads((store / "chips.json").read_text())["chips"]
    for split in ("train", "val", "test"):
        masks = np.load(store / f"{split}_mask.npy")
        for rec in (r for r in chips if r["split"] == split):
            window = (slice(rec["row"], rec["row"] + 8), slice(rec["col"], rec["col"] + 8))
            expected = ringed[window].copy()
            expected[targets[window] == X] = X
            np.testing.assert_array_equal(masks[rec["index"]], expected)  # the ring, pixel for pixel
            if split != "train":
                np.testing.assert_array_equal(np.load(store / f"{split}_plain_mask.npy")[rec["index"]],
                                              targets[window])
    assert not (store / "train_plain_mask.npy").exists()
    metrics = json.loads((tmp_path / "protocol" / "metrics.json").read_text())
    protocol = metrics["protocol"]
    plain_pixels = int((np.load(store / "test_plain_mask.npy") != X).sum())
    ring_pixels = int((np.load(store / "test_mask.npy") != X).sum())
    assert metrics["pixels"] == plain_pixels and protocol["pixels"] == ring_pixels < plain_pixels
    assert protocol["ring_pixels_ignored"] == plain_pixels - ring_pixels
    assert protocol["boundary_ignore_px"] == 1 and "f1_clearing" in protocol and "f1_forest" in protocol
    assert "Test split under the protocol" in (tmp_path / "protocol" / "report.html").read_text()
    # no patch of the map under the unit (0.5 ha: 6 pixels of 0.09 ha)
    with rasterio.open(tmp_path / "protocol" / "prediction.tif") as src:
        mapped = src.read(1)
        assert src.tags()["MMU_HA"] == "0.5" and src.colormap(1)
    for value in (1, 2):
        patches, n = ndimage.label(mapped == value, structure=np.ones((3, 3)))
        sizes = np.bincount(patches.ravel())[1:]
        assert n == 0 or sizes.min() >= 6
    record = json.loads((tmp_path / "protocol" / "provenance.json").read_text())["protocol"]
    assert record["boundary_ignore_px"] == 1 and record["mmu_ha"] == 0.5
    assert record["sieve"]["min_pixels"] == 6 and set(record["sieve"]["area_ha_after"]) <= {"forest", "clearing"}
