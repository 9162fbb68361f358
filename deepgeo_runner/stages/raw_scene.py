"""A new scene classified from its raw bands, window row by window row, with no prepared stack on disk.

Two kinds of model read raw bands: an exported graph (``model.onnx``/``model.pt2``), which prepares its input
itself, and a torch checkpoint, whose network takes prepared features. For the checkpoint the scene's
preparation (reflectance scale and offset, the spectral indices, the training statistics: what
:func:`deepgeo_runner.stages.prepare.prepare_scene` writes into ``prepared.tif``) runs on the rows as they are
read, on the network's device (:meth:`deepgeo_runner.export.graph.RawBandsModel.pixel_features`), and the windows
are cut from those features as from a prepared stack, so that the class map is the prepared path's, pixel for
pixel, without writing (and reading back) a float32 stack of the scene's size.

Both share what happens around the model: a mosaic or a time stack first becomes one raster (the raw bands,
never prepared), the band count is checked, the drift check warns, and
:func:`deepgeo_runner.ml.predict.predict_scene` walks the scene with :class:`~deepgeo_runner.ml.predict.RawInput`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch

from deepgeo_runner.core.errors import ConfigError, InputDataError
from deepgeo_runner.core.step_clock import NO_CLOCK, StepClock
from deepgeo_runner.export.graph import RawBandsModel
from deepgeo_runner.geo.indices import check_indices, feature_index_names
from deepgeo_runner.geo.nodata import Nodata, one_nodata
from deepgeo_runner.geo.normalize import NormStats, apply_stats
from deepgeo_runner.geo.scene import SceneOptions, all_tiles, build_time_stack, date_groups
from deepgeo_runner.ml.model_card import ModelCard
from deepgeo_runner.ml.predict import ClassLegend, RawInput, predict_settings
from deepgeo_runner.stages.drift import drift_warnings, input_profile
from deepgeo_runner.stages.prepare import PrepareOptions, feature_maker, feature_stack_names, per_band_values
from deepgeo_runner.stages.scene_priors import PriorShift, predict_for_scene_priors

log = logging.getLogger(__name__)

Prepare = Callable[[np.ndarray, np.ndarray], tuple[Any, np.ndarray]]
# extra preparation options passed on when the checkpoint records them (PrepareOptions fields)
_PREPARE_EXTRAS = ("expressions", "index_constants", "scale", "offset", "keep_bands", "dates")


@dataclass(frozen=True)
class RawScene:
    """The raster a model read its raw bands from (stands where a prepared scene stands)."""

    path: Path


@dataclass(frozen=True)
class RawRun:
    """How a scene's raw bands reach the model: on which device, prepared by ``prepare`` (a checkpoint's
    network: raw bands → features on that device) or by the model itself (``prepare=None``: an exported graph);
    ``clock`` times the steps (a benchmark's)."""

    device: str = "cpu"
    prepare: Prepare | None = None
    clock: StepClock = NO_CLOCK


def streams_raw_bands(card: ModelCard) -> bool:
    """Whether a checkpoint's card says how to prepare raw bands: its bands and normalization statistics
    (a ``data=torchgeo`` run records neither)."""
    return bool(card.band_names) and card.normalization is not None and bool(card.features)


def prepare_options(meta: dict[str, Any], nodata: Any = None,
                    progress: bool = True) -> tuple[PrepareOptions, NormStats]:
    """The preparation a checkpoint's metadata (flat, :meth:`ModelCard.inference_meta`) records: its bands,
    indices, scaling, kept bands, dates and nodata rule (``nodata`` overriding the file's), and its statistics
    (reused, never refitted)."""
    stats = NormStats.from_dict(meta["stats"])
    extras = {k: meta[k] for k in _PREPARE_EXTRAS if meta.get(k) is not None}
    rule = meta.get("nodata_rule")
    options = PrepareOptions(list(meta["band_names"]), list(meta["indices"]), stats.method,
                             Nodata(nodata, rule) if rule is not None else Nodata(nodata),
                             progress=progress, **extras)
    return options, stats


def pixel_preparation(card: ModelCard, device: str | torch.device, on_device: bool | None = None) -> Prepare:
    """``(raw (dates·bands, h, w), valid (h, w)) → (features (F, h, w) with nodata 0, valid)``: the checkpoint's
    preparation of each pixel read, on ``device``. On the CPU it is :func:`~deepgeo_runner.stages.prepare.
    prepare_scene`'s own numpy code and statistics (the prepared path's features by construction); on an
    accelerator, :meth:`~deepgeo_runner.export.graph.RawBandsModel.pixel_features` on the device (the same
    float32 arithmetic), its features left there for the windows and the network. ``valid`` comes from the
    reader (the run's ``data.nodata`` or the file's, by the card's rule, as preparation decides); the
    preparation removes the pixels whose indices are undefined. ``on_device=True`` takes the torch path on the
    CPU too (the tests check that it gives the same map).

    Raises:
        InputDataError: when the card's bands and indices do not make the features the network was trained on.
    """
    options, stats = prepare_options(card.inference_meta())
    features, index_names = feature_maker(list(card.band_names), card.n_dates, options)
    names = feature_stack_names(tuple(features.kept_names) + tuple(index_names), card.dates)
    if list(names) != list(card.features):
        raise InputDataError(f"the bands {list(card.band_names)} with indices {index_names} make the features "
                             f"{list(names)}, but the checkpoint was trained on {list(card.features)}: give a "
                             "scene with the same bands.")
    device = torch.device(device)
    if not (device.type != "cpu" if on_device is None else on_device):
        def on_the_cpu(raw: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            stack, valid = features.compute(raw, valid)
            out = apply_stats(stack, stats)
            out[:, ~valid] = 0.0  # what the prepared path's reader gives the network for nodata
            return out, valid

        return on_the_cpu
    graph = RawBandsModel(torch.nn.Identity(), card, nodata=[None]).eval().to(device)

    def on_the_device(raw: np.ndarray, valid: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        x = torch.from_numpy(raw.astype(np.float32, copy=False))[None].to(device, non_blocking=True)
        with torch.no_grad():
            out, ok = graph.pixel_features(x)
        ok = ok[0] & torch.from_numpy(valid).to(device)[None]
        return torch.where(ok, out[0], torch.zeros_like(out[0])), ok[0].cpu().numpy()

    return on_the_device


def scene_raster(image: Any, card: ModelCard, work_dir: str | Path, nodata: Any,
                 progress: bool) -> tuple[Path, int]:
    """The one raster whose raw bands the model reads, and the number of dates given: ``image`` itself, or its
    mosaic / time stack built into ``work_dir/scene.tif`` (raw bands, not prepared)."""
    groups = date_groups(image)
    if len(groups) > 1 and len(groups) != card.n_dates:
        raise ConfigError(f"predict.image stacks {len(groups)} dates {list(groups)} but the model was trained on "
                          f"{card.n_dates} date(s) {list(card.dates)}: give as many dates, in the same order.")
    tiles = all_tiles(groups)
    if len(tiles) == 1:
        return Path(tiles[0]), len(groups)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    options = SceneOptions(nodata=one_nodata(nodata, "a mosaic or a time stack (predict.image)"))
    return build_time_stack(groups, work_dir / "scene.tif", options, progress=progress), len(groups)


def classify_raw_bands(net: torch.nn.Module, card: ModelCard, image: Any, work_dir: str | Path,
                       out_path: str | Path, how: RawRun, *, window: int, overlap: float, batch_size: int,
                       nodata: Any = None, progress: bool = True, prior_shift: PriorShift | None = None,
                       **predict_options: Any) -> tuple[RawScene, Path]:
    """Classify ``image`` (a raster, tiles to mosaic, or dates to stack) from its raw bands into ``out_path``
    with ``net``, the card's classes and nodata rule; ``how`` says who prepares the bands and where;
    ``prior_shift``: the map decided with the scene's class priors. Returns the raster read and the class
    map's path."""
    scene, n_groups = scene_raster(image, card, work_dir, nodata, progress)
    check_band_count(scene, card)
    warn_on_drift(card, scene, nodata, card.n_dates if n_groups > 1 else 1)
    per_chip = how.prepare is not None and bool((card.normalization or {}).get("per_chip"))
    windows, outputs = predict_settings(window, overlap, batch_size, standardize=per_chip, **predict_options)
    legend = ClassLegend(card.class_ids, card.class_names, card.class_colors)
    raw = RawInput(nodata, card.nodata_rule or "gdal", card.n_dates, index_validity(card), how.prepare)
    prediction = predict_for_scene_priors(net, scene, out_path, windows, legend, how.device, progress, prior_shift,
                                          outputs=outputs, raw_input=raw, clock=how.clock)
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


def warn_on_drift(card: ModelCard, image: Path, nodata: Any, dates: int = 1) -> list[str]:
    """Warn, band by band, where the new scene differs much from the training scene (see
    :mod:`deepgeo_runner.stages.drift`); a card without a training profile is not compared."""
    trained = card.input_profile
    if not trained:
        return []
    profile = input_profile(image, nodata, card.nodata_rule or "gdal", trained.get("band_names"), dates)
    warnings = drift_warnings(trained, profile, image)
    for warning in warnings:
        log.warning("predict.image differs from the training scene: %s", warning)
    return warnings


def check_band_count(scene: Path, card: ModelCard) -> None:
    """The raster holds the card's bands × dates, in file order (the model reads them by position)."""
    with rasterio.open(scene) as src:
        count = src.count
    expected = len(card.band_names) * card.n_dates
    if count != expected:
        raise InputDataError(f"'{scene}' has {count} bands; the model takes {expected} "
                             f"({list(card.band_names)} × {card.n_dates} date(s)) in file order.")
