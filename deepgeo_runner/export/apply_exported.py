"""``predict.checkpoint=model.onnx`` (or ``model.pt2``): an exported model applied to a whole scene.

The exported graph prepares its input itself (:mod:`deepgeo_runner.export.graph`), so the scene is not
prepared: its raw bands are read window by window through the same window plan, blending, nodata rule
and outputs as a checkpoint's prediction (:func:`deepgeo_runner.ml.predict.predict_scene` with
:class:`~deepgeo_runner.ml.predict.RawInput`), after the same drift check. A mosaic or a time stack
first becomes one raster, as for a checkpoint (:mod:`deepgeo_runner.stages.raw_scene`, shared with a checkpoint
streaming a new scene). ``.onnx`` runs with onnxruntime on the CPU; ``.pt2`` with
torch on the CPU, after :func:`deepgeo_runner.export.pt2_file.check_pt2`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from deepgeo_runner.core.errors import ConfigError, InputDataError
from deepgeo_runner.export.onnx_file import OnnxNet
from deepgeo_runner.export.pt2_file import Pt2Net
from deepgeo_runner.ml.model_card import ModelCard
from deepgeo_runner.stages.raw_scene import RawRun, RawScene, classify_raw_bands

EXPORTED_SUFFIXES = (".onnx", ".pt2")


def is_exported(path: str | Path | None) -> bool:
    """Whether ``path`` names an exported model (by its suffix) rather than a ``.ckpt``."""
    return path is not None and Path(path).suffix.lower() in EXPORTED_SUFFIXES


def load_exported(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The exported model as an ``nn.Module`` (raw bands → log-probabilities) and its card's flat metadata."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"exported model not found: '{path}'.")
    if path.suffix.lower() == ".onnx":
        net: torch.nn.Module = OnnxNet(path)
        card = net.card
    else:
        net = Pt2Net(path)
        card = net.card
    net.takes_raw_bands = True  # type: ignore[attr-defined]  # read by classify_like_checkpoint
    return net, card.inference_meta()


def classify_exported(net: torch.nn.Module, meta: dict[str, Any], image: Any, prepared_dir: str | Path,
                      out_path: str | Path, *, window: int, overlap: float, batch_size: int, device: str,
                      nodata: Any = None, progress: bool = True, **predict_options: Any) -> tuple[RawScene, Path]:
    """Classify ``image`` with an exported model: its raw bands, in the card's window size (the graph's
    fixed tile), on the CPU. Returns the scene read and the prediction's path, like ``classify_like_checkpoint``."""
    card = ModelCard.from_dict(meta, "exported model")
    tile = getattr(net, "tile", None) or card.chip_size
    if tile and int(window) != int(tile):
        raise ConfigError(f"predict.window={window}: the exported model takes tiles of {tile} px only (its graph is "
                          f"fixed): set predict.window={tile}, or export again with --tile {window}.")
    return classify_raw_bands(net, card, image, prepared_dir, out_path, RawRun("cpu"), window=window,
                              overlap=overlap, batch_size=batch_size, nodata=nodata, progress=progress,
                              **predict_options)
