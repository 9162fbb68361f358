"""User errors print one message naming the file or key and the fix, never a traceback
(``DEEPGEO_DEBUG=1`` shows it); they are caught before heavy work."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio

from deepgeo_runner.core.errors import InputDataError, NotWritableError
from deepgeo_runner.pipeline.preflight import RASTER_SUFFIXES, check_inputs, input_files, preflight
from tests.helpers import REPO, run_deepgeo


def _cfg(image, labels, cache_dir, split_scenes=None, **extra):
    """The parts of the run's typed options that the checks read."""
    from types import SimpleNamespace

    from deepgeo_runner.config.schema import (
        AssessConfig,
        DataConfig,
        PathsConfig,
        PredictConfig,
        SceneFiles,
        SplitScenesConfig,
    )

    scenes = SplitScenesConfig(**{k: SceneFiles(**v) for k, v in (split_scenes or {}).items()})
    data = DataConfig(name="scene", image=str(image) if not isinstance(image, list | dict) else image,
                      labels=str(labels), split_scenes=scenes, **extra)
    return SimpleNamespace(data=data, predict=PredictConfig(), assess=AssessConfig(), stages=["prepare"],
                           paths=PathsConfig(cache_dir=str(cache_dir), output_dir=str(cache_dir)))


def _truncate(src: Path, dst: Path, keep: float = 0.6) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def _tiled_image(path: Path) -> Path:
    """A 512² deflate-compressed, 256-px tiled GeoTIFF: four tiles per band."""
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", driver="GTiff", width=512, height=512, count=2, dtype="float32",
                       crs="EPSG:32722", transform=rasterio.Affine(30, 0, 6e5, 0, -30, 9.6e6), nodata=-9999.0,
                       tiled=True, blockxsize=256, blockysize=256, compress="deflate") as dst:
        dst.write(rng.random((2, 512, 512), dtype=np.float32))
    return path


def deepgeo(*overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_deepgeo(*overrides, cwd=REPO, env=env, timeout=300)


def test_a_text_file_named_tif_is_named_with_its_key(tiny_scene, tmp_path):
    fake = tmp_path / "scene.tif"
    fake.write_text("this is not a raster\n")
    with pytest.raises(InputDataError, match=r"cannot read data\.image '.*scene\.tif': .*not recognized.*gdalinfo"):
        check_inputs(_cfg(fake, tiny_scene["labels"], tmp_path))


def test_a_truncated_geotiff_is_caught_before_any_stage(tiny_scene, tmp_path):
    broken = _truncate(_tiled_image(tmp_path / "full.tif"), tmp_path / "cut.tif")
    with rasterio.open(broken) as src:  # the header still reads: GDAL fails only at the tiles
        assert src.shape == (512, 512)
    with pytest.raises(InputDataError, match=r"cannot read data\.image '.*cut\.tif'.*damaged or truncated"):
        check_inputs(_cfg(broken, tiny_scene["labels"], tmp_path))
    tiles = {"2020-01-01": [str(tiny_scene["image"])], "2021-01-01": [str(broken)]}  # a time stack
    with pytest.raises(InputDataError, match=r"cut\.tif"):
        check_inputs(_cfg(tiles, tiny_scene["labels"], tmp_path))


def test_a_broken_tile_inside_the_image_fails_at_read_naming_the_file(tmp_path):
    """First and last tiles read, one in the middle does not: prepare names the file, not GDAL's internals."""
    from deepgeo_runner.stages.prepare import PrepareOptions, prepare_scene

    image = _tiled_image(tmp_path / "scene.tif")
    with rasterio.open(image) as src:
        offset = int(src.get_tag_item("BLOCK_OFFSET_1_0", "TIFF", bidx=1))
    with open(image, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * 4096)  # garbage in the middle of a deflate stream
    check_inputs(_cfg(image, image, tmp_path))  # the cheap check cannot see it
    with pytest.raises(InputDataError, match=r"cannot read image '.*scene\.tif'.*gdalinfo -checksum"):
        prepare_scene(image, tmp_path / "out", PrepareOptions(["a", "b"], [], "standard", progress=False))
    assert not (tmp_path / "out" / "prepared.tif").exists()


def test_unreadable_vector_inputs_are_named(tiny_scene, tmp_path):
    bad = tmp_path / "bad_labels.gpkg"
    bad.write_text("not a geopackage")
    with pytest.raises(InputDataError, match=r"data\.labels '.*bad_labels\.gpkg' as a vector file.*ogrinfo"):
        check_inputs(_cfg(tiny_scene["image"], bad, tmp_path))
    truncated = _truncate(Path(tiny_scene["labels"]), tmp_path / "cut.gpkg", 0.3)
    with pytest.raises(InputDataError, match=r"data\.split_vector '.*cut\.gpkg'"):
        check_inputs(_cfg(tiny_scene["image"], tiny_scene["labels"], tmp_path, split_vector=str(truncated)))


def test_every_input_key_is_checked(tiny_scene, tmp_path):
    image, labels = str(tiny_scene["image"]), str(tiny_scene["labels"])
    cfg = _cfg(image, labels, tmp_path, aoi=labels, chip_strategy="points", chip_points=labels,
               split_vector=labels, split_scenes={"test": {"image": [image], "labels": image}})
    cfg.predict.image, cfg.predict.labels = {"2020": image}, labels
    keys = {(key, kind) for key, _, kind in input_files(cfg)}
    assert keys == {("data.image", "raster"), ("data.labels", "vector"), ("data.aoi", "vector"),
                    ("data.chip_points", "vector"), ("data.split_vector", "vector"),
                    ("data.split_scenes.test.image", "raster"), ("data.split_scenes.test.labels", "raster"),
                    ("predict.image", "raster"), ("predict.labels", "vector")}
    check_inputs(cfg)


def test_raster_suffixes_match_the_rasterizer():
    from deepgeo_runner.geo.rasterize import RASTER_SUFFIXES as RASTERIZE

    assert RASTER_SUFFIXES == RASTERIZE


def test_a_cache_folder_that_takes_no_files_is_refused_before_work(tiny_scene, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    with pytest.raises(NotWritableError, match=r"paths\.cache_dir: cannot write in '.*not_a_folder/cache'"):
        preflight(_cfg(tiny_scene["image"], tiny_scene["labels"], blocker / "cache"), tmp_path / "run")


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder no process may write in: chmod for a user, a read-only tmpfs for root."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("root here cannot make a read-only folder (no mount)")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


def test_the_command_names_a_read_only_run_or_cache_directory(read_only_dir, tmp_path):
    proc = deepgeo(f"hydra.run.dir={read_only_dir / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}")
    assert proc.returncode == 2
    assert f"hydra.run.dir: cannot write in '{read_only_dir / 'run'}'" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    proc = deepgeo(f"hydra.run.dir={tmp_path / 'run'}", f"paths.cache_dir={read_only_dir / 'cache'}")
    assert proc.returncode == 2
    assert f"paths.cache_dir: cannot write in '{read_only_dir / 'cache'}'" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_the_command_prints_one_message_and_the_debug_switch_the_traceback(tiny_scene, tmp_path):
    fake = tmp_path / "scene.tif"
    fake.write_text("this is not a raster\n")
    args = ["data=scene", f"data.image={fake}", f"data.labels={tiny_scene['labels']}", "data.classes=[forest]",
            "data.band_names=[blue,green,red,nir]", f"hydra.run.dir={tmp_path / 'run'}",
            f"paths.cache_dir={tmp_path / 'cache'}"]
    proc = deepgeo(*args)
    assert proc.returncode == 2
    assert f"cannot read data.image '{fake}'" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    debug = deepgeo(*args, env={"DEEPGEO_DEBUG": "1"})
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "InputDataError" in debug.stderr


def test_a_truncated_or_foreign_checkpoint_is_refused_before_any_stage(tiny_scene, tmp_path):
    import zipfile

    good = tmp_path / "best.ckpt"
    with zipfile.ZipFile(good, "w") as archive:  # torch.save's container format
        archive.writestr("archive/data.pkl", b"x" * 10_000)
    cfg = _cfg(tiny_scene["image"], tiny_scene["labels"], tmp_path)
    cfg.stages, cfg.predict.checkpoint = ["predict"], str(good)
    check_inputs(cfg)
    _truncate(good, tmp_path / "cut.ckpt", 0.5)
    cfg.predict.checkpoint = str(tmp_path / "cut.ckpt")
    with pytest.raises(InputDataError, match=r"predict\.checkpoint '.*cut\.ckpt' is not a complete checkpoint"):
        check_inputs(cfg)


def test_a_misspelt_key_on_the_command_line_gets_the_closest_key():
    """Hydra says only "Key 'chip_sise' is not in struct" (exit 1); the +key= form already had a hint."""
    proc = deepgeo("data.chip_sise=32")
    assert proc.returncode == 2, proc.stderr
    assert "data.chip_sise is not a key of data. Did you mean data.chip_size" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_override_keys_are_checked_down_the_schema_only():
    from deepgeo_runner.cli import config_dir
    from deepgeo_runner.config.command_line import check_overrides
    from deepgeo_runner.core.errors import ConfigError

    for args, hint in ((["-m", "seed=1,2", "data.split_scenes.tset.image=a.tif"], "data.split_scenes.test"),
                       (["dat.chip_size=32"], "Did you mean data?"), (["~train.monitr"], "train.monitor")):
        with pytest.raises(ConfigError, match=re.escape(hint)):
            check_overrides(args, config_dir())
    fine = ["-m", "experiments=amazon_landsat5", "debug=fast", "data.fold=range(3)", "hydra/launcher=basic",
            "model.encoder=resnet18", "logger.csv=null", "data.class_groups={forest:[1,2]}", "+data.anything=1",
            "hydra.sweeper.n_trials=3", "data.image=[a.tif,[b.tif,c.tif]]", "--cfg", "job", "data.image=/x/a b.tif"]
    check_overrides(fine, config_dir())
    check_overrides(["--config-dir", "/elsewhere", "their_group=x"], config_dir())  # groups we cannot see


@pytest.mark.parametrize("path", ["/tmp/çena.tif", "/tmp/scene(1).tif"])
def test_an_unquoted_path_hydra_cannot_read_gets_its_quoted_form(path):
    proc = deepgeo(f"data.image={path}")
    assert proc.returncode == 2, proc.stderr
    assert f"""'data.image="{path}"'""" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_raster_without_crs_is_named_before_any_stage(tiny_scene, tmp_path):
    """It used to end in geopandas' "ValueError: Must pass either crs or epsg" during rasterize."""
    no_crs = tmp_path / "no_crs.tif"
    with rasterio.open(tiny_scene["image"]) as src:
        profile, data = src.profile, src.read()
    profile.pop("crs")
    with rasterio.open(no_crs, "w", **profile) as dst:
        dst.write(data)
    with rasterio.open(no_crs) as src:
        assert src.crs is None
    fix = r"has no CRS .*gdal_edit\.py -a_srs EPSG:XXXX"
    with pytest.raises(InputDataError, match=r"data\.image '.*no_crs\.tif' " + fix):
        check_inputs(_cfg(no_crs, tiny_scene["labels"], tmp_path))
    with pytest.raises(InputDataError, match=r"data\.labels '.*no_crs\.tif' " + fix):
        check_inputs(_cfg(tiny_scene["image"], no_crs, tmp_path))
    cfg = _cfg(tiny_scene["image"], tiny_scene["labels"], tmp_path)
    cfg.predict.image = str(no_crs)  # a new scene is classified on its own grid
    check_inputs(cfg)
    proc = deepgeo("data=scene", f"data.image={no_crs}", f"data.labels={tiny_scene['labels']}",
                   "data.classes=[forest,clearing]", "data.band_names=[blue,green,red,nir]",
                   f"hydra.run.dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}")
    assert proc.returncode == 2
    assert f"data.image '{no_crs}' has no CRS" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


COUNT_PREFLIGHTS = """
import sys
from deepgeo_runner.pipeline import preflight as module

calls = []
checked = module.preflight

def counted(*args, **kwargs):
    calls.append(args[1])
    return checked(*args, **kwargs)

module.preflight = counted
from deepgeo_runner.cli import main
try:
    main()
finally:
    print("PREFLIGHTS", len(calls), file=sys.stderr)
"""


def test_preflight_runs_once_per_command_line_run(tiny_scene, tmp_path):
    """The command checks folders and inputs before torch loads; the runner does not check them again."""
    proc = run_deepgeo("data=scene", f"data.image={tiny_scene['image']}", f"data.labels={tiny_scene['labels']}",
                       "data.classes=[forest,clearing]", "data.band_names=[blue,green,red,nir]", "data.chip_size=8",
                       "stages=[check]", f"hydra.run.dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}",
                       code=COUNT_PREFLIGHTS, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "PREFLIGHTS 1" in proc.stderr
