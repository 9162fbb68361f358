"""``mlm.json``: a STAC Item (STAC 1.1, bands in core ``bands``) with the Machine Learning Model extension
(MLM v1.5.2) describing the exported artifacts.

What it says, from the model card (never placeholders):

- ``mlm:input``: one input ``raw_bands``, the raster's bands in file order (date-major for several dates),
  shape (-1, bands, tile, tile), float32, dim order batch/bands/height/width. ``value_scaling`` is null:
  the artifacts take the raw values and apply ``data.scale``/``offset``, the indices and the training
  statistics inside the graph. The statistics and indices are listed in ``mlm:hyperparameters``
  (``deepgeo.preparation``) for the record, not for a runner to apply again;
- ``mlm:output``: ``probabilities``, shape (-1, classes, tile, tile), with ``classification:classes``
  (``value`` = output channel; the description names the class id deepgeo writes into its maps);
- one asset per exported file, role ``mlm:model``: ``model.onnx`` (artifact type ``onnx``) and
  ``model.pt2`` (``torch.export.save``);
- the geometry and bbox are the training scene's outline in longitude/latitude.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from deepgeo_runner.ml.model_card import ModelCard

MLM_SCHEMA = "https://stac-extensions.github.io/mlm/v1.5.2/schema.json"
ARTIFACT_TYPES = {"onnx": ("onnx", "application/octet-stream; application=onnx", "ONNX"),
                  "pt2": ("torch.export.save", "application/octet-stream; application=pytorch", "PyTorch")}


def input_band_names(card: ModelCard) -> list[str]:
    """The graph's input channels by name: the bands, per date as ``<date>_<band>`` for several dates."""
    if len(card.dates) > 1:
        return [f"{d}_{b}" for d in card.dates for b in card.band_names]
    return list(card.band_names)


def mlm_item(card: ModelCard, tile: int, artifacts: dict[str, Path], total_parameters: int | None = None,
             item_id: str | None = None) -> dict[str, Any]:
    """The STAC Item (a dict) for ``artifacts`` (format → exported file, written beside ``mlm.json``)."""
    import torch

    bands = input_band_names(card)
    geometry, bbox = _footprint(card)
    properties: dict[str, Any] = {
        "description": f"deepgeo-runner {card.model_name} semantic segmentation of {', '.join(card.class_names)} "
                       f"from {len(bands)} raw bands; tile {tile}x{tile} px.",
        "datetime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "bands": [{"name": b} for b in bands],
        "mlm:name": f"deepgeo-{card.model_name}".replace(" ", ""),
        "mlm:architecture": card.model_target or card.model_name,
        "mlm:tasks": ["semantic-segmentation"],
        "mlm:framework": "PyTorch",
        "mlm:framework_version": torch.__version__.split("+")[0],
        "mlm:pretrained": False,
        "mlm:accelerator": None,
        "mlm:accelerator_constrained": False,
        "mlm:batch_size_suggestion": 8,
        **_mlm_input_output(bands, len(card.classes), tile, _mlm_classes(card)),
        "mlm:hyperparameters": {"deepgeo.preparation": _mlm_preparation(card), "deepgeo.model": card.model},
    }
    if total_parameters is not None:
        properties["mlm:total_parameters"] = int(total_parameters)
    if card.sensor:
        properties["deepgeo:sensor"] = card.sensor
    if card.metrics:
        properties["deepgeo:test_metrics"] = {k: v for k, v in card.metrics.items()
                                              if k in ("accuracy", "f1_macro", "iou_macro", "split")}
    return {
        "type": "Feature", "stac_version": "1.1.0", "stac_extensions": [MLM_SCHEMA],
        "id": item_id or re.sub(r"[^0-9A-Za-z_.-]+", "-", f"deepgeo-{card.model_name}").strip("-"),
        "geometry": geometry, **({"bbox": bbox} if bbox else {}),
        "properties": properties, "links": [], "assets": _mlm_assets(card, artifacts),
    }


def _footprint(card: ModelCard) -> tuple[dict[str, Any] | None, list[float] | None]:
    """The training scene's footprint in longitude/latitude (GeoJSON polygon and bbox), when the card has it."""
    lonlat = (card.scene or {}).get("lonlat_bounds")
    if not lonlat:
        return None, None
    w, s, e, n = lonlat
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}, [w, s, e, n]


def _mlm_classes(card: ModelCard) -> list[dict[str, Any]]:
    """``classification:classes``: each output channel with its name, the id deepgeo's map writes, its colour."""
    classes = []
    for channel, c in enumerate(card.classes):
        entry: dict[str, Any] = {"value": channel, "name": c.name,
                                 "description": f"output channel {channel}: '{c.name}', written as {c.id} in "
                                                "deepgeo's prediction.tif"}
        if c.color and len(c.color.lstrip("#")) == 6:
            entry["color_hint"] = c.color.lstrip("#").upper()
        classes.append(entry)
    return classes


def _mlm_preparation(card: ModelCard) -> dict[str, Any]:
    """What the graph does to the raw bands (scaling, indices, normalization, nodata), for a reader of the Item."""
    stats = card.normalization or {}
    return {
        "in_graph": True, "band_scale": card.scale, "band_offset": card.offset,
        "keep_bands": list(card.keep_bands) if card.keep_bands is not None else None,
        "indices": list(card.indices), "expressions": card.expressions, "index_constants": card.index_constants,
        "features": list(card.features),
        "normalization": {key: stats.get(key)
                          for key in ("method", "shift", "scale", "clip_min", "clip_max", "per_chip")},
        "nodata": card.nodata, "nodata_rule": card.nodata_rule, "chip_size": card.chip_size,
    }


def _mlm_input_output(bands: list[str], k: int, tile: int, classes: list[dict[str, Any]]) -> dict[str, Any]:
    """``mlm:input`` (raw bands in tiles of ``tile``) and ``mlm:output`` (``k`` class probabilities)."""
    return {
        "mlm:input": [{
            "name": "raw_bands", "bands": bands,
            "description": "The raw bands as stored in the raster; scaling, indices, normalization and nodata "
                           "handling happen inside the model.",
            "input": {"shape": [-1, len(bands), tile, tile], "dim_order": ["batch", "bands", "height", "width"],
                      "data_type": "float32"},
            "value_scaling": None, "resize_type": None, "pre_processing_function": None,
        }],
        "mlm:output": [{
            "name": "probabilities", "tasks": ["semantic-segmentation"],
            "description": "Class probabilities (softmax over the classes); the map is their argmax.",
            "result": {"shape": [-1, k, tile, tile], "dim_order": ["batch", "class", "height", "width"],
                       "data_type": "float32"},
            "classification:classes": classes, "post_processing_function": None,
        }],
    }


def _mlm_assets(card: ModelCard, artifacts: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """One asset per exported file, named ``model-<format>``, its path relative to ``mlm.json``."""
    assets = {}
    for fmt, path in artifacts.items():
        kind, media, framework = ARTIFACT_TYPES[fmt]
        assets[f"model-{fmt}"] = {"href": f"./{Path(path).name}", "type": media, "title": f"{card.model_name} ({fmt})",
                                  "roles": ["mlm:model"], "mlm:artifact_type": kind, "mlm:framework": framework}
    return assets
