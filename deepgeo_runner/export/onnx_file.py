"""``model.onnx``: the raw-bands graph (:mod:`deepgeo_runner.export.graph`) for onnxruntime and QGIS Deepness.

The graph takes a fixed square tile (the chip size the model was trained on, or ``tile``) and any batch
size: input ``raw_bands`` (batch, dates·bands, tile, tile) float32, output ``probabilities`` (batch,
classes, tile, tile), the softmax over classes. Metadata properties (ONNX ``metadata_props``, every value
JSON, as Deepness reads them):

- ``model_type`` "Segmentor", ``class_names`` {"0": name, ...} (output channel → class name),
  ``resolution`` (cm per pixel of the training scene, when its CRS is in metres), ``tile_size`` and
  ``tiles_size`` (Deepness's code reads the first, its documentation writes the second),
  ``tiles_overlap`` (percent), ``seg_thresh`` 0 and ``seg_small_segment`` 0 (the class of highest
  probability, no segment removed: our map's rule);
- ``standardization_mean`` 0 and ``standardization_std`` 1/255 per channel: Deepness divides every input
  by 255 and then standardizes, so these statistics give the graph the raw values back; the training
  statistics are applied inside the graph;
- ``model_card``: the whole :class:`~deepgeo_runner.ml.model_card.ModelCard` as JSON, and ``deepgeo_input``,
  a sentence saying what the input is.

Reading: onnxruntime runs only ONNX operators; the card is read with ``json`` (nothing a file names runs).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepgeo_runner.core.errors import InputDataError
from deepgeo_runner.export.graph import ExportError, RawBandsModel, refuse_outside_torch
from deepgeo_runner.ml.model_card import ModelCard

INPUT_NAME, OUTPUT_NAME = "raw_bands", "probabilities"
CARD_KEY = "model_card"
DEEPNESS_OVERLAP_PERCENT = 50
OPSET = 18


def input_sentence(card: ModelCard) -> str:
    """What the exported graph takes, in words (the same for .onnx and .pt2)."""
    dates = f" for each of the dates {list(card.dates)} (date-major)" if len(card.dates) > 1 else ""
    extra = ""
    if card.scale is not None or card.offset is not None:
        extra = f"; the graph applies data.scale={card.scale} and data.offset={card.offset}"
    return (f"float32 (batch, {len(card.band_names) * card.n_dates}, tile, tile): the raw raster bands "
            f"{list(card.band_names)} in file order{dates}, as stored in the file{extra}; indices "
            f"{list(card.indices)} and the training normalization are computed inside the graph. "
            f"Pixels that are NaN, or nodata ({card.nodata if card.nodata is not None else 'the file value'}) "
            f"by the '{card.nodata_rule or 'gdal'}' rule, are nodata.")


def deepness_metadata(card: ModelCard, tile: int, overlap_percent: int = DEEPNESS_OVERLAP_PERCENT) -> dict[str, Any]:
    """The Deepness keys (values before JSON encoding)."""
    channels = len(card.band_names) * card.n_dates
    meta: dict[str, Any] = {
        "model_type": "Segmentor",
        "class_names": {str(i): name for i, name in enumerate(card.class_names)},
        "tile_size": int(tile), "tiles_size": int(tile), "tiles_overlap": int(overlap_percent),
        "standardization_mean": [0.0] * channels, "standardization_std": [1.0 / 255.0] * channels,
        "seg_thresh": 0.0, "seg_small_segment": 0,
    }
    resolution = _resolution_cm(card)
    if resolution is not None:
        meta["resolution"] = resolution
    return meta


def _resolution_cm(card: ModelCard) -> float | None:
    scene = card.scene or {}
    res, crs = scene.get("resolution"), str(scene.get("crs") or "")
    if not res or not crs:
        return None
    try:
        from pyproj import CRS

        unit = CRS.from_user_input(crs).axis_info[0].unit_name
    except Exception:  # an unknown CRS: leave the resolution out rather than guess
        return None
    if unit not in ("metre", "meter"):
        return None
    return float(res[0]) * 100.0


def failed_operator(exc: BaseException) -> str | None:
    """The operator an exporter error names (``aten.xxx``, ``ns::op``), when it names one."""
    text = "\n".join(str(e) for e in _chain(exc))
    for pattern in (r"\b(aten[.:]{1,2}[A-Za-z_][\w.]*)", r"\b([a-z_]\w*::[A-Za-z_]\w*)", r"\b(torch\.ops\.[\w.]+)"):
        found = re.search(pattern, text)
        if found:
            return found.group(1).rstrip(".")
    return None


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def onnx_model_proto(model: RawBandsModel, card: ModelCard, tile: int, overlap_percent: int = DEEPNESS_OVERLAP_PERCENT):
    """The ``onnx.ModelProto`` of ``model`` with its metadata, checked by ``onnx.checker``.

    Raises:
        ExportError: naming the model and the operator the exporter could not translate.
    """
    import io
    import logging
    import warnings

    import onnx

    refuse_outside_torch(model, card.model_name, "ONNX")
    example = torch.zeros(2, len(card.band_names) * card.n_dates, tile, tile)
    buffer = io.BytesIO()
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "torch.export")]
    levels = [lg.level for lg in quiet]
    try:
        for lg in quiet:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model.eval(), (example,), None, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes={"raw": {0: torch.export.Dim("batch", min=1, max=4096)}}, dynamo=True,
                opset_version=OPSET, external_data=False, verbose=False, optimize=True)
        program.save(buffer)
    except ExportError:
        raise
    except Exception as exc:
        op = failed_operator(exc)
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        what = f"the operator {op} has no ONNX mapping" if op else f"{type(exc).__name__}: {first}"
        raise ExportError(f"model {card.model_name} cannot be exported to ONNX: {what}. Nothing was written; "
                          "export the other formats (--formats pt2,mlm) or choose another model.") from exc
    finally:
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)
    proto = onnx.load_from_string(buffer.getvalue())
    props = {k: json.dumps(v) for k, v in deepness_metadata(card, tile, overlap_percent).items()}
    props[CARD_KEY] = card.to_json()
    props["deepgeo_input"] = json.dumps(input_sentence(card))
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = f"deepgeo-runner {card.model_name}: {input_sentence(card)}"
    proto.producer_name = "deepgeo-runner"
    onnx.checker.check_model(proto)
    return proto


def read_onnx_card(path: str | Path, session: Any = None) -> ModelCard:
    """The model card of an exported ``model.onnx``, read as JSON from its metadata through onnxruntime
    (the ``onnx`` extra; nothing in the file runs)."""
    path = Path(path)
    if session is None:
        session = _session(path)
    props = dict(session.get_modelmeta().custom_metadata_map)
    if CARD_KEY not in props:
        raise InputDataError(f"'{path}' holds no deepgeo model card (metadata key '{CARD_KEY}'): give a model.onnx "
                             "written by deepgeo-export.")
    return ModelCard.from_json(props[CARD_KEY], f"'{path}'")


def _session(path: Path, threads: int | None = None):
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise InputDataError(f"predicting with '{path}' needs onnxruntime: pip install "
                             "'deepgeo-runner[onnx]'.") from exc
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # not an ONNX file, a truncated one
        raise InputDataError(f"cannot read '{path}' as an ONNX model ({type(exc).__name__}: {exc}).") from exc


class OnnxNet(torch.nn.Module):
    """An ONNX model behind the ``nn.Module`` call that whole-scene prediction makes: raw bands in,
    log-probabilities out (blending log-probabilities gives the same argmax and softmax as blending
    logits: they differ by one value per pixel and window). Runs on the CPU with onnxruntime."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        self.path = str(path)
        self.session = _session(Path(path), threads)
        self.card = read_onnx_card(path, self.session)
        shape = self.session.get_inputs()[0].shape
        self.tile = int(shape[-1]) if isinstance(shape[-1], int) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.session.run([OUTPUT_NAME], {INPUT_NAME: x.detach().cpu().numpy().astype(np.float32, copy=False)})[0]
        return torch.from_numpy(np.log(np.maximum(p, 1e-30)))

    def state_dict(self, *args: Any, **kwargs: Any) -> dict:  # parts_dir fingerprints the weights
        import hashlib

        with open(self.path, "rb") as f:
            digest = hashlib.blake2b(f.read(), digest_size=8).hexdigest()
        return {"onnx": torch.tensor([int(digest[:8], 16)], dtype=torch.int64)}
