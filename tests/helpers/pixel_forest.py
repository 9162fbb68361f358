"""The overrides of a cheap whole cycle with the pixel baseline on the ``tiny_scene`` fixture."""

from __future__ import annotations

from pathlib import Path


def pixel_forest_overrides(tiny_scene: dict, tmp_path: Path, *extra: str, trees: int = 20) -> list[str]:
    """The tiny scene as data=scene, 8-px chips and ``trees`` LightGBM trees, caches and outputs in ``tmp_path``."""
    return [
        "data=scene", f"data.image={tiny_scene['image']}", f"data.labels={tiny_scene['labels']}",
        "data.classes=[forest,clearing]", "data.band_names=[blue,green,red,nir]", "preprocessing.indices=[]",
        "data.chip_size=8", "data.block_size=16", "data.split_buffer=0", "data.train_chips=20",
        "model=pixel_forest", f"model.n_estimators={trees}", "trainer.enable_progress_bar=false",
        f"paths.cache_dir={tmp_path / 'cache'}", f"paths.output_dir={tmp_path / 'out'}", *extra,
    ]
