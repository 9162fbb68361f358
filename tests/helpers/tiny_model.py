"""A tiny trained-looking checkpoint (random weights, real metadata) on the ``tiny_scene`` fixture.

Written the way SegmentationModule writes one: weights under ``net.``, the model card under ``deepgeo``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch

from deepgeo_runner.geo.footprint import image_nodata, raster_footprint
from deepgeo_runner.geo.raster_io import valid_mask
from deepgeo_runner.ml.checkpoint import plain_metadata
from deepgeo_runner.ml.model_card import ModelCard
from deepgeo_runner.ml.models.registry import build_from_description
from deepgeo_runner.stages.prepare import PrepareOptions, prepare_scene
from tests.helpers import write_image

CLASSES = {"class_names": ["forest", "clearing"], "class_ids": [1, 2], "class_colors": ["#1b7837", "#d6604d"]}
FCN = {"_target_": "deepgeo_runner.ml.models.FCN8s", "width": 4}


def tiny_meta(prepared: Any, band_names: list[str], indices: list[str], model: dict, **more: Any) -> dict:
    """The flat inference metadata learning.py assembles for a run on ``prepared``."""
    return {"features": list(prepared.feature_names), "band_names": list(band_names), "indices": list(indices),
            "stats": prepared.stats.to_dict(), **CLASSES, "chip_size": 16, "dates": [], "nodata_rule": "gdal",
            "model": dict(model), "model_inputs": {"in_channels": prepared.n_features}, **more}


def make_checkpoint(folder: Path, tiny_scene: dict, model: dict | None = None, indices: tuple[str, ...] = ("ndvi",),
                    normalization: str = "standard", flat: bool = False, seed: int = 0,
                    labels: Any = None, **more: Any) -> tuple[Path, dict]:
    """``folder/best.ckpt`` for ``model`` (a tiny FCN-8s by default) on ``tiny_scene`` prepared with
    ``indices`` and ``normalization``; ``flat``: the metadata dict of checkpoints older than the card;
    ``labels`` (H, W of 0/1): a few training steps on them, so that the map holds both classes; ``scale``/``offset``
    in ``more``: the training scene is prepared with them too (a scene of digital numbers)."""
    folder.mkdir(parents=True, exist_ok=True)
    reflectance = {k: more[k] for k in ("scale", "offset") if more.get(k) is not None}  # DN → reflectance
    prepared = prepare_scene(tiny_scene["image"], folder / "train_prep", PrepareOptions(tiny_scene["band_names"],
                             list(indices), normalization, progress=False, **reflectance))
    model = dict(model or FCN)
    scene = raster_footprint(tiny_scene["image"])
    scene["image_nodata"] = image_nodata(tiny_scene["image"])
    more.setdefault("scene", scene)
    meta = tiny_meta(prepared, tiny_scene["band_names"], list(indices), model, **more)
    torch.manual_seed(seed)
    net = build_from_description(model, meta["model_inputs"], 2, "test", model.get("_target_"))  # test nets
    if labels is not None:
        fit_briefly(net, prepared.path, labels)
    card = plain_metadata(meta if flat else ModelCard.from_dict(plain_metadata(meta)).to_dict())
    ckpt = folder / "best.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "deepgeo": card}, ckpt)
    return ckpt, {"net": net.eval(), "prepared": prepared, "meta": meta}


def textured_scene(folder: Path, size: int = 96, seed: int = 0) -> dict:
    """A ``size``² 4-band reflectance scene (blue, green, red, nir), nodata -9999 in an 8 px corner, with
    forest (high NIR) and clearing (high red) in irregular patches, so that a class map has edges."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    wave = np.sin(7 * xx + 3 * yy) + 0.6 * np.cos(11 * yy - 2 * xx)
    clearing = wave + 0.3 * rng.standard_normal((size, size)) > 0.3
    data = np.empty((4, size, size), dtype=np.float32)
    data[0] = 0.03 + 0.005 * rng.standard_normal((size, size))
    data[1] = 0.05 + 0.005 * rng.standard_normal((size, size))
    data[2] = np.where(clearing, 0.12, 0.03) + 0.01 * rng.standard_normal((size, size))
    data[3] = np.where(clearing, 0.20, 0.35) + 0.02 * rng.standard_normal((size, size))
    data[:, :8, :8] = -9999.0
    data[2:4, 50, 60] = 0.0  # red = nir = 0: NDVI undefined, the pixel is nodata in every map
    image = write_image(folder / "image.tif", data)
    return {"image": image, "data": data, "band_names": ["blue", "green", "red", "nir"],
            "labels": clearing.astype(np.int64)}


def fit_briefly(net: torch.nn.Module, prepared: Path, labels: Any, steps: int = 60, chip: int = 16) -> None:
    """A few Adam steps on random chips of the prepared stack (nodata as 0), seeded."""
    with rasterio.open(prepared) as src:
        x = src.read()
        x = np.where(valid_mask(x, src.nodata), x, 0.0).astype(np.float32)
    y = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(0)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    net.train()
    for _ in range(steps):
        corners = rng.integers(0, x.shape[1] - chip, (8, 2))
        xb = torch.from_numpy(np.stack([x[:, r:r + chip, c:c + chip] for r, c in corners]))
        yb = torch.from_numpy(np.stack([y[r:r + chip, c:c + chip] for r, c in corners]))
        loss = torch.nn.functional.cross_entropy(net(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()


class HistogramNet(torch.nn.Module):
    """A user's own network using ``torch.histc``, an operator without an ONNX mapping."""

    def __init__(self, in_channels: int, classes: int) -> None:
        super().__init__()
        self.head = torch.nn.Conv2d(in_channels, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x) + torch.histc(x, bins=4).sum() * 0.0


class TwoInputNet(torch.nn.Module):
    """A user's own network taking the image and a second tensor (e.g. acquisition days)."""

    def __init__(self, in_channels: int, classes: int) -> None:
        super().__init__()
        self.head = torch.nn.Conv2d(in_channels, classes, 1)

    def forward(self, x: torch.Tensor, days: torch.Tensor) -> torch.Tensor:
        return self.head(x) + days.mean() * 0.0
