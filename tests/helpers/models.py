"""Small networks, images and checkpoints that several test modules build (imports torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

CLASSES = dict(class_ids=[1, 2, 3], class_names=["a", "b", "c"],
               class_colors=["#ff0000", "#00ff00", "#0000ff"])


def small_cnn(seed: int = 0, bands: int = 2, classes: int = 3) -> torch.nn.Module:
    """A real (zero-padded, non-symmetric) conv net with a receptive field of 13 px."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(bands, 8, 5, padding=2), torch.nn.Tanh(),
        torch.nn.Conv2d(8, 8, 5, padding=2), torch.nn.Tanh(),
        torch.nn.Conv2d(8, classes, 5, padding=2),
    ).eval()


def smooth_image(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Band values that vary smoothly, so that a jump in the output can only come from seams."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bands = [np.sin(xx / rng.uniform(5, 9) + rng.uniform(0, 6)) + np.cos(yy / rng.uniform(5, 9))
             for _ in range(c)]
    return np.stack(bands).astype(np.float32)


def make_checkpoint(tmp_path: Path, tiny_scene: dict) -> tuple[Path, dict]:
    """An FCN-8s checkpoint as training writes it (weights, band names, statistics of the
    prepared ``tiny_scene``), and the network and prepared scene it came from."""
    from omegaconf import OmegaConf

    from deepgeo_runner.ml.models import FCN8s
    from deepgeo_runner.stages.prepare import PrepareOptions, prepare_scene

    prepared = prepare_scene(tiny_scene["image"], tmp_path / "train_prep", PrepareOptions(tiny_scene["band_names"],
                             ["ndvi"], "standard"))
    model_cfg = {"_target_": "deepgeo_runner.ml.models.FCN8s", "width": 4}
    torch.manual_seed(0)
    net = FCN8s(in_channels=prepared.n_features, classes=2, width=4)
    meta = {
        "features": list(prepared.feature_names), "band_names": tiny_scene["band_names"],
        "indices": ["ndvi"], "stats": prepared.stats.to_dict(), "class_names": ["forest", "clearing"],
        "class_ids": [1, 2], "class_colors": ["#1b7837", "#d6604d"], "chip_size": 16,
        "model": OmegaConf.to_container(OmegaConf.create(model_cfg)),
    }
    ckpt = tmp_path / "best.ckpt"  # what Lightning writes for SegmentationModule: weights under net.*
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "deepgeo": meta}, ckpt)
    return ckpt, {"net": net, "prepared": prepared}


class Evil:
    """A pickle whose unpickling creates a file: what a crafted checkpoint can do."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def crafted_checkpoint(path: Path, target: Path) -> Path:
    """A checkpoint whose metadata unpickles into a file created at ``target``."""
    torch.save({"state_dict": {"net.w": torch.zeros(1)}, "deepgeo": {"model": Evil(target)}}, path)
    return path
