"""A tiny trained-looking checkpoint (random weights, real metadata) on the ``tiny_scene`` fixture.

Written the way SegmentationModule writes one: weights under ``net.``, the model card under ``deepgeo``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from deepgeo_runner.ml.checkpoint import plain_metadata
from deepgeo_runner.ml.model_card import ModelCard

CLASSES = {"class_names": ["forest", "clearing"], "class_ids": [1, 2], "class_colors": ["#1b7837", "#d6604d"]}
FCN = {"_target_": "deepgeo_runner.ml.models.FCN8s", "width": 4}


def tiny_meta(prepared: Any, band_names: list[str], indices: list[str], model: dict, **more: Any) -> dict:
    """The flat inference metadata learning.py assembles for a run on ``prepared``."""
    return {"features": list(prepared.feature_names), "band_names": list(band_names), "indices": list(indices),
            "stats": prepared.stats.to_dict(), **CLASSES, "chip_size": 16, "dates": [], "nodata_rule": "gdal",
            "model": dict(model), "model_inputs": {"in_channels": prepared.n_features}, **more}


def make_checkpoint(folder: Path, tiny_scene: dict, model: dict | None = None, indices: tuple[str, ...] = ("ndvi",),
                    normalization: str = "standard", flat: bool = False, seed: int = 0,
                    **more: Any) -> tuple[Path, dict]:
    """``folder/best.ckpt`` for ``model`` (a tiny FCN-8s by default) on ``tiny_scene`` prepared with
    ``indices`` and ``normalization``; ``flat``: the metadata dict of checkpoints older than the card."""
    from deepgeo_runner.ml.models.registry import build_from_description
    from deepgeo_runner.pipeline.prepare import prepare_scene

    folder.mkdir(parents=True, exist_ok=True)
    prepared = prepare_scene(tiny_scene["image"], folder / "train_prep", tiny_scene["band_names"], list(indices),
                             normalization, None, progress=False)
    model = dict(model or FCN)
    meta = tiny_meta(prepared, tiny_scene["band_names"], list(indices), model, **more)
    torch.manual_seed(seed)
    net = build_from_description(model, meta["model_inputs"], 2, "test", None)
    with torch.no_grad():  # random but not tiny logits: classes differ across the scene
        for p in net.parameters():
            p.mul_(3.0)
    card = plain_metadata(meta if flat else ModelCard.from_dict(plain_metadata(meta)).to_dict())
    ckpt = folder / "best.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "deepgeo": card}, ckpt)
    return ckpt, {"net": net.eval(), "prepared": prepared, "meta": meta}
