"""``predict.checkpoint=model.onnx`` (or ``model.pt2``): an exported model applied to a whole scene.

The exported graph prepares its input itself (:mod:`deepgeo_runner.export.graph`), so the scene is not
prepared: its raw bands are read window by window through the same window plan, blending, nodata rule
and outputs as a checkpoint's prediction (:func:`deepgeo_runner.ml.predict.predict_scene` with
:class:`~deepgeo_runner.ml.predict.RawInput`), after the same drift check. A mosaic or a time stack
first becomes one raster, as for a checkpoint. ``.onnx`` runs with onnxruntime on the CPU; ``.pt2`` with
torch on the CPU, after :func:`deepgeo_runner.export.pt2_file.check_pt2`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch

from deepgeo_runner.core.errors import ConfigError, InputDataError
from deepgeo_runner.export.onnx_file import OnnxNet
from deepgeo_runner.export.pt2_file import Pt2Net
from deepgeo_runner.geo.indices import check_indices, feature_index_names
from deepgeo_runner.geo.nodata import one_nodata
from deepgeo_runner.geo.scene import SceneOptions, all_tiles, build_time_stack, date_groups
from deepgeo_runner.ml.model_card import ModelCard
from deepgeo_runner.ml.predict import ClassLegend, RawInput, predict_scene, predict_settings
from deepgeo_runner.stages.drift import drift_warnings, input_profile
from deepgeo_runner.stages.prepare import per_band_values

log = logging.getLogger(__name__)

EXPORTED_SUFFIXES = (".onnx", ".pt2")


def is_exported(path: str | Path | None) -> bool:
    """Whether ``path`` names an exported model (by its suffix) rather than a ``.ckpt``."""
    return path is not None and Path(path).suffix.lower() in EXPORTED_SUFFIXES


@dataclass(frozen=True)
class RawScene:
    """The raster an exported model reads (stands where a prepared scene stands for a checkpoint)."""

    path: Path


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
    fixed tile). Returns the scene read and the prediction's path, like ``classify_like_checkpoint``."""
    card = ModelCard.from_dict(meta, "exported model")
    tile = getattr(net, "tile", None) or card.chip_size
    if tile and int(window) != int(tile):
        raise ConfigError(f"predict.window={window}: the exported model takes tiles of {tile} px only (its graph is "
                          f"fixed): set predict.window={tile}, or export again with --tile {window}.")
    groups = date_groups(image)
    if len(groups) > 1 and len(groups) != card.n_dates:
        raise ConfigError(f"predict.image stacks {len(groups)} dates but the model was trained on {card.n_dates}: "
                          "give as many dates, in the same order.")
    tiles = all_tiles(groups)
    prepared_dir = Path(prepared_dir)
    if len(tiles) == 1:
        scene = Path(tiles[0])
    else:
        prepared_dir.mkdir(parents=True, exist_ok=True)
        options = SceneOptions(nodata=one_nodata(nodata, "a mosaic or a time stack (predict.image)"))
        scene = build_time_stack(groups, prepared_dir / "scene.tif", options, progress=progress)
    _check_band_count(scene, card)
    _warn_on_drift(card, scene, nodata, card.n_dates if len(groups) > 1 else 1)
    windows, outputs = predict_settings(window, overlap, batch_size, **predict_options)
    legend = ClassLegend(card.class_ids, card.class_names, card.class_colors)
    raw = RawInput(nodata, card.nodata_rule or "gdal", card.n_dates, index_validity(card))
    prediction = predict_scene(net, scene, out_path, windows, legend, "cpu", progress, outputs=outputs, raw_input=raw)
    return RawScene(scene), prediction


def index_validity(card: ModelCard):
    """``data (dates·bands, h, w) → valid (h, w)``: False where an index of the card is undefined (a zero
    denominator, a value beyond float32), as preparation marks such pixels nodata; None without indices.
    The same numpy evaluation as :func:`deepgeo_runner.stages.prepare.prepare_scene`."""
    names = feature_index_names(card.indices, card.expressions)
    if not names:
        return None
    specs = check_indices(names, card.band_names, card.expressions, card.index_constants)
    n = len(card.band_names)
    scale = per_band_values(card.scale, n, "data.scale", 1.0)
    offset = per_band_values(card.offset, n, "data.offset", 0.0)

    def valid(data: np.ndarray) -> np.ndarray:
        ok = np.ones(data.shape[1:], dtype=bool)
        for d in range(card.n_dates):
            bands = data[d * n:(d + 1) * n].astype(np.float32)
            if (scale != 1).any() or (offset != 0).any():
                bands = bands * scale[:, None, None] + offset[:, None, None]
            roles = dict(zip(card.band_names, bands, strict=True))
            for spec in specs:
                with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                    values = np.broadcast_to(spec.compute(roles), ok.shape)
                    ok &= np.isfinite(values) & np.isfinite(values.astype(np.float32))
        return ok

    return valid


def _warn_on_drift(card: ModelCard, image: Path, nodata: Any, dates: int) -> None:
    """The drift check of a checkpoint's prediction (:mod:`deepgeo_runner.stages.drift`), from the card."""
    trained = card.input_profile
    if not trained:
        return
    profile = input_profile(image, nodata, card.nodata_rule or "gdal", trained.get("band_names"), dates)
    for warning in drift_warnings(trained, profile, image):
        log.warning("predict.image differs from the training scene: %s", warning)


def _check_band_count(scene: Path, card: ModelCard) -> None:
    with rasterio.open(scene) as src:
        count = src.count
    expected = len(card.band_names) * card.n_dates
    if count != expected:
        raise InputDataError(f"'{scene}' has {count} bands; the exported model takes {expected} "
                             f"({list(card.band_names)} × {card.n_dates} date(s)) in file order.")
