"""What the tests share: tiny deterministic geo fixtures made by code (seeded, small, explicit CRS
and transform), the config composed as ``deepgeo`` composes it, and the ``deepgeo`` command in a
subprocess. Tests import from here, never from another test module."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from shapely.geometry import Polygon, box

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
CRS = "EPSG:32722"
ORIGIN = (600_000.0, 9_600_000.0)
PIXEL = 30.0
CONF = REPO / "conf"  # the package's Hydra configs, as config.location.config_dir() finds them in a checkout

# A whole cycle in seconds: the demo scene cut small, a narrow FCN, a few epochs.
TINY = [
    "data.demo_size=320", "data.chip_size=32", "data.block_size=64", "data.split_buffer=16",
    "data.train_chips=160",
    "data.batch_size=16", "trainer.max_epochs=6", "trainer.enable_progress_bar=false",
    "model=fcn8s", "model.width=8", "seed=3",
]


def write_image(path: Path, data: np.ndarray, nodata: float | None = -9999.0, crs: str = CRS,
                transform: Affine | None = None) -> Path:
    transform = transform or Affine(PIXEL, 0, ORIGIN[0], 0, -PIXEL, ORIGIN[1])
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype, crs=crs, transform=transform,
                       nodata=nodata) as dst:
        dst.write(data)
    return path


def write_tile(path: Path, data: np.ndarray, col: int, row: int, crs: str = CRS) -> Path:
    """A nodata-0 raster on the fixture lattice whose top-left pixel is (row, col) of the fixture grid."""
    t = Affine(PIXEL, 0, ORIGIN[0] + col * PIXEL, 0, -PIXEL, ORIGIN[1] - row * PIXEL)
    return write_image(path, data, nodata=0, transform=t, crs=crs)


def pixel_box(row0: int, col0: int, row1: int, col1: int) -> Polygon:
    """A polygon covering pixel rows [row0, row1) and cols [col0, col1) of the fixture grid."""
    x0, y0 = ORIGIN[0] + col0 * PIXEL, ORIGIN[1] - row0 * PIXEL
    x1, y1 = ORIGIN[0] + col1 * PIXEL, ORIGIN[1] - row1 * PIXEL
    return box(x0, y1, x1, y0)


def shared_file(*parts: str) -> Path:
    """A file of ../shared/data, or a clear skip when the folder is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (expected at ../shared/data)")
    return path


def scene_overrides(tiny_scene: dict) -> list[str]:
    """The overrides that make the ``tiny_scene`` fixture the run's data."""
    return [f"data.image={tiny_scene['image']}", f"data.labels={tiny_scene['labels']}",
            "data.classes=[forest,clearing]", "data.band_names=[blue,green,red,nir]"]


def options(group: str) -> list[str]:
    """The options of a config group: its YAML files in ``conf/GROUP/``."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_config(*overrides: str, hydra_config: bool = False):
    """The run config as ``deepgeo OVERRIDES`` composes it (schema registered, the package's conf/).

    Tests reach it through the ``compose`` fixture of ``conftest.py``; helpers that build a config
    for a test call it directly."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from deepgeo_runner.config.location import config_dir
    from deepgeo_runner.config.schema import register_configs

    GlobalHydra.instance().clear()
    register_configs()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=hydra_config)
    GlobalHydra.instance().clear()
    return cfg


def run_deepgeo(*args: str, module: str = "deepgeo_runner.cli", code: str | None = None, cwd: Path | None = None,
                env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m deepgeo_runner.cli ARGS`` (or another module, or ``python -c CODE ARGS``) in a
    subprocess that imports this checkout's package, its output captured."""
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    head = ["-c", code] if code is not None else ["-m", module]
    return subprocess.run([sys.executable, *head, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env=env)


def deepgeo_ok(*args: str, rc: int = 0, **kwargs) -> subprocess.CompletedProcess:
    """:func:`run_deepgeo`, asserting its exit status (0 unless ``rc`` says) and showing its output when wrong."""
    proc = run_deepgeo(*args, **kwargs)
    assert proc.returncode == rc, (f"deepgeo exited {proc.returncode}, expected {rc}:\n"
                                   f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def deepgeo_command(run_dir: Path, cache_dir: Path, *overrides: str, base: list[str] = TINY) -> list[str]:
    """The ``deepgeo`` command line of a run into ``run_dir`` with its cache in ``cache_dir``: the
    ``base`` overrides (the tiny cycle), then ``overrides``."""
    return [sys.executable, "-m", "deepgeo_runner.cli", *base, *overrides,
            f"hydra.run.dir={run_dir}", f"paths.cache_dir={cache_dir}"]


def deepgeo(run_dir: Path, cache_dir: Path, *overrides: str, base: list[str] = TINY, rc: int = 0,
            timeout: int = 600) -> subprocess.CompletedProcess:
    """Run :func:`deepgeo_command` and assert its exit status; a refused run (``rc`` not 0) says one
    message, never a traceback."""
    proc = deepgeo_ok(*deepgeo_command(run_dir, cache_dir, *overrides, base=base)[3:], rc=rc, timeout=timeout)
    if rc:
        out = proc.stdout + proc.stderr
        assert "Traceback" not in out, out[-5000:]
    return proc


def write_noise_store(root: Path, sizes: dict[str, int], bands: int, signal: float) -> Path:
    """A chip store as the chips stage writes it (``<split>_image.npy``, ``<split>_mask.npy``):
    random two-class masks, and band 0 carries the class as ``signal`` times the mask under unit noise,
    so a network that learns anything beats chance."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        masks = rng.integers(0, 2, (n, 16, 16)).astype(np.uint8)
        images = rng.normal(0, 1, (n, bands, 16, 16)).astype(np.float32)
        images[:, 0] += signal * masks
        np.save(root / f"{split}_image.npy", images)
        np.save(root / f"{split}_mask.npy", masks)
    return root


def prepare_and_label(image: Path, vector: Path, folder: Path, band_names: list[str], normalization: str = "standard",
                      train_mask: np.ndarray | None = None, stats=None) -> tuple:
    """``prepare_scene`` then ``rasterize_labels`` onto its grid, as the cycle does (forest, clearing):
    the prepared scene and its label raster, both under ``folder``."""
    from deepgeo_runner.stages.labels import rasterize_labels
    from deepgeo_runner.stages.prepare import PrepareOptions, prepare_scene

    prepared = prepare_scene(image, folder / "prep", PrepareOptions(band_names, [], normalization), train_mask,
                             stats=stats)
    labels = rasterize_labels(vector, prepared.path, folder / "labels.tif", ["forest", "clearing"],
                              ["#00ff00", "#ff0000"])
    return prepared, labels
