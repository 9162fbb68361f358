"""Export a trained checkpoint (or a finished run) to ``model.onnx``, ``model.pt2`` and ``mlm.json``.

Every file is produced in memory first; only when all the asked formats succeeded are they written, each
under a temporary name renamed into place, so a model that cannot be exported (or a full disk) leaves
nothing half-written. The network is rebuilt from the checkpoint's card through the registry of known
models (:func:`deepgeo_runner.stages.apply.build_net`): nothing a file names is instantiated.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepgeo_runner.core.atomic import output_errors, temp_path
from deepgeo_runner.core.checkpoint_path import checkpoint_file
from deepgeo_runner.core.errors import ConfigError, InputDataError
from deepgeo_runner.export.formats import FILE_NAMES, FORMATS, parse_formats
from deepgeo_runner.export.graph import ExportError, RawBandsModel, prepared_net
from deepgeo_runner.export.mlm import mlm_item
from deepgeo_runner.export.onnx_file import onnx_model_proto
from deepgeo_runner.export.pt2_file import pt2_bytes
from deepgeo_runner.ml.checkpoint import load_checkpoint
from deepgeo_runner.ml.model_card import ModelCard
from deepgeo_runner.ml.models.registry import build_from_description

log = logging.getLogger(__name__)

@dataclass
class Exported:
    """What an export wrote: format → path, and the card the files carry."""

    files: dict[str, Path] = field(default_factory=dict)
    card: ModelCard | None = None
    tile: int = 0


def resolve_source(source: str | Path) -> tuple[Path, Path | None]:
    """The checkpoint file and the run directory (None when the checkpoint stands alone)."""
    path = Path(source)
    checkpoint = checkpoint_file(path, key="deepgeo-export")
    if path.is_dir():
        return checkpoint, path
    parent = checkpoint.parent
    run = parent.parent if parent.name == "checkpoints" else parent
    return checkpoint, run if (run / ".hydra").is_dir() or (run / "metrics.json").is_file() else None


def run_facts(run_dir: Path | None) -> dict[str, Any]:
    """The run's test metrics, assessment summary and resolved config, as the card records them."""
    if run_dir is None:
        return {}
    facts: dict[str, Any] = {}
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        data = json.loads(metrics.read_text())
        facts["metrics"] = {k: v for k, v in data.items() if k in ("accuracy", "f1_macro", "iou_macro",
                                                                     "cross_entropy", "per_class", "split", "ci95")}
    for assessment in sorted(run_dir.glob("**/assessment.json"))[:1]:
        data = json.loads(assessment.read_text())
        facts["assessment"] = {k: v for k, v in data.items() if not isinstance(v, list)}
    config = run_dir / ".hydra" / "config.yaml"
    if config.is_file():
        import yaml

        facts["config"] = yaml.safe_load(config.read_text())  # plain data; never composed or instantiated
    return facts


def rebuild_net(card: ModelCard, weights: dict, trusted_target: str | None, source: str):
    """The card's network with ``weights``, built through the registry of known constructors (as
    :func:`deepgeo_runner.stages.apply.build_net` does): nothing the file names is instantiated."""
    inputs = card.model_inputs or {"in_channels": len(card.features)}
    try:
        net = build_from_description(card.model, inputs, len(card.classes), source, trusted_target,
                                     drop=("encoder_weights", "torchgeo_weights"))  # the checkpoint's weights rule
    except (InputDataError, ConfigError):
        raise
    except Exception as exc:
        raise ConfigError(f"cannot rebuild the model '{card.model_target}' of {source}: {type(exc).__name__}: "
                          f"{exc}") from exc
    net.load_state_dict(weights)
    return net


def check_single_input(net: Any, card: ModelCard) -> None:
    """Refuse a network whose forward takes more than one input tensor (the exports take one)."""
    params = [p for p in inspect.signature(net.forward).parameters.values()
              if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(params) > 1:
        names = ", ".join(p.name for p in params)
        raise ExportError(f"model {card.model_name} takes {len(params)} inputs ({names}); the exported graph takes "
                          "one tensor of raw bands: a multi-input network is not exported.")


def export_model(source: str | Path, out_dir: str | Path | None = None, formats: str | Sequence[str] = FORMATS,
                 tile: int | None = None, trusted_target: str | None = None) -> Exported:
    """Export ``source`` (a ``.ckpt`` or a finished run directory) into ``out_dir`` (default: ``export/``
    in the run directory, or beside the checkpoint).

    Raises:
        ExportError: naming the model and the operator when a format cannot hold it; nothing is written.
        InputDataError: the checkpoint is unreadable, or its card lacks what the export needs.
    """
    wanted = parse_formats(formats)
    checkpoint, run_dir = resolve_source(source)
    out = Path(out_dir) if out_dir is not None else (run_dir or checkpoint.parent) / "export"
    state = load_checkpoint(checkpoint, key="checkpoint")  # weights_only: nothing in the file runs
    card = ModelCard.from_dict(state.get("deepgeo") or {}, f"checkpoint '{checkpoint}'").with_run(**run_facts(run_dir))
    if not card.classes or not card.model:
        raise InputDataError(f"checkpoint '{checkpoint}' has no model card with classes and a model: give a "
                             "checkpoint written by deepgeo.")
    tile = int(tile or card.chip_size or 0)
    if tile <= 0:
        raise ConfigError(f"checkpoint '{checkpoint}' records no chip size: give the tile, e.g. --tile 256.")
    weights = {k[len("net."):]: v for k, v in (state.get("state_dict") or {}).items() if k.startswith("net.")}
    net = prepared_net(rebuild_net(card, weights, trusted_target, f"checkpoint '{checkpoint}'"))
    check_single_input(net, card)
    model = RawBandsModel(net, card).eval()
    payloads: dict[str, bytes] = {}
    if "onnx" in wanted:
        payloads["onnx"] = onnx_model_proto(model, card, tile).SerializeToString()
    if "pt2" in wanted:
        payloads["pt2"] = pt2_bytes(model, card, tile)
    if "mlm" in wanted:
        described = {f: out / FILE_NAMES[f] for f in ("onnx", "pt2")
                     if f in payloads or (out / FILE_NAMES[f]).is_file()}
        if not described:
            raise ExportError("mlm.json describes the exported model files: add onnx or pt2 to the formats "
                              "(e.g. --formats onnx,mlm), or export them into the same folder first.")
        n_params = sum(p.numel() for p in net.parameters())
        item = mlm_item(card, tile, described, n_params)
        payloads["mlm"] = json.dumps(item, indent=2, allow_nan=False).encode()
    write_all(out, {FILE_NAMES[fmt]: payloads[fmt] for fmt in wanted})
    log.info("exported %s (tile %d) to %s: %s", card.model_name, tile, out, ", ".join(FILE_NAMES[f] for f in wanted))
    return Exported({fmt: out / FILE_NAMES[fmt] for fmt in wanted}, card, tile)


def write_all(out: Path, files: dict[str, bytes]) -> None:
    """Write every file under a temporary name first, then rename them all into place: a failure while
    writing (a full disk) leaves the files under the real names as they were."""
    temps: dict[Path, Path] = {}
    try:
        with output_errors(out, "the exported model"):
            out.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                tmp = temp_path(out / name)
                temps[out / name] = tmp
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            for final, tmp in temps.items():
                os.replace(tmp, final)
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
