"""``model.pt2``: ``torch.export`` of the raw-bands module (network + preparation + softmax), with the
model card as the extra file ``model_card.json``.

``torch.export.load`` is not inert on its own: weights or constants marked ``use_pickle``, custom or
opaque objects and the sample inputs (when they do not load with ``weights_only=True``) are unpickled
with full pickle. :func:`check_pt2` therefore reads the archive as a zip first and refuses such a file
before torch deserialises anything: only raw tensor payloads, sample inputs that load with
``weights_only=True``, and graph nodes calling ``aten``/``prims`` operators are accepted.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import torch

from deepgeo_runner.core.errors import InputDataError
from deepgeo_runner.export.graph import ExportError, RawBandsModel, refuse_outside_torch
from deepgeo_runner.export.onnx_file import failed_operator
from deepgeo_runner.ml.model_card import ModelCard

CARD_FILE = "model_card.json"
_RAW_PAYLOADS = ("weight_", "tensor_")  # raw tensor bytes (custom_obj_/opaque_obj_ are pickles)
_SAFE_TARGETS = ("torch.ops.aten.", "torch.ops.prims.", "_operator.", "torch.sym_", "math.")


def exported_program(model: RawBandsModel, card: ModelCard, tile: int):
    """``torch.export.export`` of ``model`` for (batch, channels, tile, tile), batch dynamic.

    Raises:
        ExportError: naming the model and the operator torch.export could not trace.
    """
    refuse_outside_torch(model, card.model_name, "torch.export (.pt2)")
    example = torch.zeros(2, len(card.band_names) * card.n_dates, tile, tile)
    try:
        with torch.no_grad():
            return torch.export.export(model.eval(), (example,),
                                       dynamic_shapes={"raw": {0: torch.export.Dim("batch", min=1, max=4096)}})
    except Exception as exc:
        op = failed_operator(exc)
        what = f"at the operator {op}" if op else f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        raise ExportError(f"model {card.model_name} cannot be exported with torch.export: {what}. Nothing was "
                          "written.") from exc


def pt2_bytes(model: RawBandsModel, card: ModelCard, tile: int) -> bytes:
    """The ``.pt2`` archive of ``model`` with the card as its extra file."""
    program = exported_program(model, card, tile)
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={CARD_FILE: card.to_json()})
    return buffer.getvalue()


def check_pt2(path: str | Path) -> None:
    """Refuse a ``.pt2`` whose loading would unpickle anything beyond plain tensors, or whose graph calls
    anything but ``aten``/``prims`` operators (see the module docstring). Nothing in the file runs.

    Raises:
        InputDataError: naming the file and what it holds.
    """
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputDataError(f"cannot read '{path}' as a .pt2 archive ({exc}).") from exc
    with archive:
        names = archive.namelist()

        def refuse(why: str) -> InputDataError:
            return InputDataError(f"'{path}' was refused: {why}; loading it would run pickled code. Nothing in it "
                                  "was run. Export the model again with deepgeo-export.")

        for name in names:
            if name.endswith(("data/weights/model.pt", "data/constants/model.pt")) or "/custom_obj_" in name \
                    or "/opaque_obj_" in name:
                raise refuse(f"it holds '{name}' (pickled objects or the legacy format)")
        for name in [n for n in names if n.endswith(("_weights_config.json", "_constants_config.json"))]:
            try:
                config = json.loads(archive.read(name)).get("config", {})
            except ValueError as exc:
                raise refuse(f"'{name}' is not JSON") from exc
            for key, meta in config.items():
                stored = str(meta.get("path_name", "")) if isinstance(meta, dict) else ""
                if not isinstance(meta, dict) or meta.get("use_pickle") or not stored.startswith(_RAW_PAYLOADS):
                    raise refuse(f"'{key}' in '{name}' is stored as a pickle")
        for name in [n for n in names if "/data/sample_inputs/" in n]:
            try:
                torch.load(io.BytesIO(archive.read(name)), weights_only=True)
            except Exception as exc:
                raise refuse(f"its sample inputs '{name}' hold objects other than tensors") from exc
        models = [n for n in names if "/models/" in n and n.endswith(".json")]
        if not models:
            raise InputDataError(f"'{path}' holds no exported program: give a model.pt2 written by deepgeo-export.")
        for name in models:
            targets = _targets(json.loads(archive.read(name)))
            unsafe = sorted(t for t in targets if not t.startswith(_SAFE_TARGETS))
            if unsafe:
                raise refuse(f"its graph calls {unsafe[:3]}, outside torch's aten/prims operators")


def _targets(node: Any) -> set[str]:
    out: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("target"), str):
                out.add(item["target"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return out


def read_pt2_card(path: str | Path) -> ModelCard:
    """The card of a ``model.pt2`` (read from the zip as JSON; nothing in the file runs)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith(f"/extra/{CARD_FILE}")), None)
            if name is None:
                raise InputDataError(f"'{path}' holds no deepgeo model card ({CARD_FILE}): give a model.pt2 written "
                                     "by deepgeo-export.")
            return ModelCard.from_json(archive.read(name), f"'{path}'")
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputDataError(f"cannot read '{path}' as a .pt2 archive ({exc}).") from exc


def load_pt2(path: str | Path) -> tuple[torch.nn.Module, ModelCard]:
    """The exported module (raw bands → probabilities) and its card, after :func:`check_pt2`."""
    check_pt2(path)
    card = read_pt2_card(path)
    program = torch.export.load(str(path))
    return program.module(), card


class Pt2Net(torch.nn.Module):
    """A ``model.pt2`` behind the call whole-scene prediction makes: log-probabilities out (see
    :class:`~deepgeo_runner.export.onnx_file.OnnxNet`)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        module, self.card = load_pt2(path)
        object.__setattr__(self, "_module", module)  # not a child: .eval()/.to() of a GraphModule are refused
        self._weights = module.state_dict()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self._module(x.cpu()).clamp_min(1e-30))

    def state_dict(self, *args: Any, **kwargs: Any) -> dict:  # parts_dir fingerprints the weights
        return dict(self._weights)
