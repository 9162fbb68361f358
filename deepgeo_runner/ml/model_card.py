"""The model card: everything a trained network needs besides its weights, as one typed, versioned value.

A checkpoint's ``deepgeo`` entry, an exported ``model.onnx``'s metadata and a ``model.pt2``'s extra
file all hold :meth:`ModelCard.to_dict`; every reader turns what it finds back into a card with
:meth:`ModelCard.from_dict`, which also reads the flat metadata dict of checkpoints written before
the card existed (no ``schema_version``). A card is data: plain JSON values, never code. Its
``model`` description names one of deepgeo's models and is rebuilt only through
:mod:`deepgeo_runner.ml.models.registry`.

Readers written for the flat dict (preparation of a new scene, the drift check, the class table)
take :meth:`ModelCard.inference_meta`, the same keys as before, until they read the card's fields.

Standard library only: the command line reads cards before torch is imported.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from deepgeo_runner.core.errors import InputDataError

CARD_VERSION = 1

# keys of the flat metadata written before the card (and still held by SegmentationModule.inference_meta)
_FLAT_KEYS = frozenset({
    "features", "band_names", "indices", "stats", "chip_size", "dates", "labelling", "input_profile",
    "nodata_rule", "nodata", "expressions", "index_constants", "keep_bands", "scale", "offset", "class_names",
    "class_ids", "class_colors", "model", "model_inputs", "datamodule", "in_channels", "ignore_index", "sensor",
    "scene", "code_version", "metrics", "assessment", "config", "class_pixels", "distinct_class_pixels",
})


@dataclass(frozen=True)
class ClassEntry:
    """One model output: the id written into maps, its name and its colour (``#rrggbb``)."""

    id: int
    name: str
    color: str | None = None


@dataclass(frozen=True)
class ModelCard:
    """What a network was trained on and how to feed it (see the module docstring).

    Inputs, in the order the network sees them: the raster's bands (``band_names``, their roles in
    file order, per date for a multi-date stack of ``dates``), turned into reflectance by ``scale``
    and ``offset``, of which ``keep_bands`` are kept, followed by the ``indices`` computed from them
    (our table, ``expressions``, the spyndex catalogue with ``index_constants``): the ``features``.
    Each feature is normalized by ``normalization`` (a :class:`~deepgeo_runner.geo.normalize.NormStats`
    dict: ``(clip(x) - shift) / scale``, or per window when ``per_chip``). A pixel is nodata by
    ``nodata_rule`` (and ``nodata``, when the run set one); nodata features reach the network as 0.
    """

    classes: tuple[ClassEntry, ...] = ()
    model: dict[str, Any] = field(default_factory=dict)  # the model description (registry name + plain args)
    model_inputs: dict[str, int] = field(default_factory=dict)  # in_channels (and dates)
    band_names: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    keep_bands: tuple[str, ...] | None = None
    scale: float | list[float] | None = None  # data.scale: reflectance = DN * scale + offset
    offset: float | list[float] | None = None
    indices: tuple[str, ...] = ()
    expressions: dict[str, str] | None = None
    index_constants: dict[str, float] | None = None
    normalization: dict[str, Any] | None = None  # NormStats.to_dict()
    nodata: float | list[float | None] | None = None
    nodata_rule: str | None = None
    chip_size: int | None = None  # the window the model was trained on
    labelling: dict[str, Any] | None = None  # how the training labels were read
    input_profile: dict[str, Any] | None = None  # the training scene's profile (drift check)
    sensor: str | None = None
    scene: dict[str, Any] | None = None  # the training scene's crs, bounds, resolution, size, dtype
    metrics: dict[str, Any] | None = None  # the run's test metrics (metrics.json), when known
    assessment: dict[str, Any] | None = None  # the map assessment's summary, when the run made one
    class_pixels: list[float] | None = None  # labelled training pixels per output, as the chips showed them
    distinct_class_pixels: list[float] | None = None  # the same, each pixel once (the data check's)
    config: dict[str, Any] | None = None  # the run's resolved config, when exported from a run directory
    code_version: dict[str, Any] | None = None  # package version, git commit
    datamodule: str | None = None  # data=torchgeo: the datamodule (no bands or statistics recorded)
    in_channels: int | None = None
    ignore_index: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept as they are
    schema_version: int = CARD_VERSION

    # ---- derived views ---------------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def class_ids(self) -> list[int]:
        return [c.id for c in self.classes]

    @property
    def class_colors(self) -> list[str | None]:
        return [c.color for c in self.classes]

    @property
    def model_target(self) -> str | None:
        target = self.model.get("_target_") if isinstance(self.model, Mapping) else None
        return str(target) if target else None

    @property
    def model_name(self) -> str:
        """The model's short name, e.g. ``smp_model(Unet, resnet18)`` or ``FCN8s``."""
        target = (self.model_target or "unknown").rsplit(".", 1)[-1]
        args = [str(self.model[k]) for k in ("arch", "encoder") if isinstance(self.model.get(k), str)]
        return f"{target}({', '.join(args)})" if args else target

    @property
    def n_dates(self) -> int:
        return max(len(self.dates), 1)

    @property
    def temporal(self) -> bool:
        """A network that takes (B, T, C, H, W): its description records ``dates``."""
        return "dates" in self.model_inputs

    # ---- (de)serialisation -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values, grouped; :meth:`from_dict` reads it back (and older versions' flat dicts)."""
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "classes": [{"id": c.id, "name": c.name, "color": c.color} for c in self.classes],
            "model": {"description": _plain(self.model), "inputs": _plain(self.model_inputs)},
            "inputs": {
                "bands": list(self.band_names), "dates": list(self.dates),
                "keep_bands": None if self.keep_bands is None else list(self.keep_bands),
                "scale": _plain(self.scale), "offset": _plain(self.offset),
                "indices": list(self.indices), "expressions": _plain(self.expressions),
                "index_constants": _plain(self.index_constants),
                "features": list(self.features), "normalization": _plain(self.normalization),
                "nodata": _plain(self.nodata), "nodata_rule": self.nodata_rule,
                "chip_size": self.chip_size,
            },
            "training": {
                "labelling": _plain(self.labelling), "input_profile": _plain(self.input_profile),
                "sensor": self.sensor, "scene": _plain(self.scene), "metrics": _plain(self.metrics),
                "assessment": _plain(self.assessment), "config": _plain(self.config),
                "code_version": _plain(self.code_version), "class_pixels": _plain(self.class_pixels),
                "distinct_class_pixels": _plain(self.distinct_class_pixels),
            },
        }
        if self.datamodule is not None or self.in_channels is not None or self.ignore_index is not None:
            out["datamodule"] = {"target": self.datamodule, "in_channels": self.in_channels,
                                 "ignore_index": self.ignore_index}
        if self.extra:
            out["extra"] = _plain(self.extra)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "model card") -> ModelCard:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputDataError(f"{source}: the model card is not JSON ({exc}).") from exc
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, source: str = "checkpoint") -> ModelCard:
        """A card from :meth:`to_dict`'s output, or from the flat metadata of older checkpoints.

        Raises:
            InputDataError: naming ``source``, when ``data`` is not a mapping, comes from a newer
                card version, or holds a value of the wrong kind.
        """
        if not isinstance(data, Mapping):
            raise InputDataError(f"{source}: its model card is a {type(data).__name__}, not a mapping of plain "
                                 "values; give a file written by deepgeo.")
        if "schema_version" not in data:
            return cls._from_flat(data, source)
        version = data["schema_version"]
        if not isinstance(version, int) or isinstance(version, bool):
            raise InputDataError(f"{source}: model card schema_version={version!r} is not an integer.")
        if version > CARD_VERSION:
            raise InputDataError(
                f"{source} holds a model card of version {version}; this deepgeo-runner reads versions up to "
                f"{CARD_VERSION}: update deepgeo-runner to read it.")
        try:
            inputs = _mapping(data.get("inputs"), "inputs", source)
            training = _mapping(data.get("training"), "training", source)
            model = _mapping(data.get("model"), "model", source)
            dm = _mapping(data.get("datamodule"), "datamodule", source)
            return cls(
                classes=_classes(data.get("classes") or [], source),
                model=dict(_mapping(model.get("description"), "model.description", source)),
                model_inputs=dict(_mapping(model.get("inputs"), "model.inputs", source)),
                band_names=_strings(inputs.get("bands"), "inputs.bands", source),
                features=_strings(inputs.get("features"), "inputs.features", source),
                dates=_strings(inputs.get("dates"), "inputs.dates", source),
                keep_bands=None if inputs.get("keep_bands") is None
                else _strings(inputs["keep_bands"], "inputs.keep_bands", source),
                scale=inputs.get("scale"), offset=inputs.get("offset"),
                indices=_strings(inputs.get("indices"), "inputs.indices", source),
                expressions=inputs.get("expressions"), index_constants=inputs.get("index_constants"),
                normalization=inputs.get("normalization"), nodata=inputs.get("nodata"),
                nodata_rule=inputs.get("nodata_rule"), chip_size=_int_or_none(inputs.get("chip_size"), source),
                labelling=training.get("labelling"), input_profile=training.get("input_profile"),
                sensor=training.get("sensor"), scene=training.get("scene"), metrics=training.get("metrics"),
                assessment=training.get("assessment"), config=training.get("config"),
                code_version=training.get("code_version"),
                class_pixels=_counts(training.get("class_pixels"), "training.class_pixels"),
                distinct_class_pixels=_counts(training.get("distinct_class_pixels"),
                                              "training.distinct_class_pixels"),
                datamodule=dm.get("target"), in_channels=_int_or_none(dm.get("in_channels"), source),
                ignore_index=_int_or_none(dm.get("ignore_index"), source),
                extra=dict(_mapping(data.get("extra"), "extra", source)),
                schema_version=version,
            )
        except (TypeError, ValueError) as exc:
            raise InputDataError(f"{source}: malformed model card ({exc}).") from exc

    @classmethod
    def _from_flat(cls, meta: Mapping[str, Any], source: str) -> ModelCard:
        """The flat ``deepgeo`` dict of checkpoints written before the card (and of ``inference_meta``)."""
        try:
            names, ids = list(meta.get("class_names") or []), list(meta.get("class_ids") or [])
            colors = list(meta.get("class_colors") or [])
            if not ids:
                ids = list(range(len(names)))
            classes = tuple(ClassEntry(int(i), str(n), str(colors[k]) if k < len(colors) and colors[k] else None)
                            for k, (i, n) in enumerate(zip(ids, names, strict=False)))
            keep = meta.get("keep_bands")
            return cls(
                classes=classes,
                model=dict(meta["model"]) if isinstance(meta.get("model"), Mapping) else {},
                model_inputs=dict(meta.get("model_inputs") or {}),
                band_names=tuple(str(b) for b in meta.get("band_names") or ()),
                features=tuple(str(f) for f in meta.get("features") or ()),
                dates=tuple(str(d) for d in meta.get("dates") or ()),
                keep_bands=None if keep is None else tuple(str(b) for b in keep),
                scale=meta.get("scale"), offset=meta.get("offset"),
                indices=tuple(str(i) for i in meta.get("indices") or ()),
                expressions=meta.get("expressions"), index_constants=meta.get("index_constants"),
                normalization=meta.get("stats"), nodata=meta.get("nodata"), nodata_rule=meta.get("nodata_rule"),
                chip_size=_int_or_none(meta.get("chip_size"), source),
                labelling=meta.get("labelling"), input_profile=meta.get("input_profile"),
                sensor=meta.get("sensor"), scene=meta.get("scene"), metrics=meta.get("metrics"),
                assessment=meta.get("assessment"), config=meta.get("config"), code_version=meta.get("code_version"),
                class_pixels=_counts(meta.get("class_pixels"), "class_pixels"),
                distinct_class_pixels=_counts(meta.get("distinct_class_pixels"), "distinct_class_pixels"),
                datamodule=meta.get("datamodule"), in_channels=_int_or_none(meta.get("in_channels"), source),
                ignore_index=_int_or_none(meta.get("ignore_index"), source),
                extra={k: v for k, v in meta.items()  # a model that is no mapping is kept as is, and refused later
                       if k not in _FLAT_KEYS or (k == "model" and not isinstance(v, Mapping))},
            )
        except (TypeError, ValueError) as exc:
            raise InputDataError(f"{source}: malformed checkpoint metadata ({exc}).") from exc

    def inference_meta(self) -> dict[str, Any]:
        """The flat metadata dict of older checkpoints (the keys that were set), for readers not yet
        reading the card's fields. ``ModelCard.from_dict(card.inference_meta())`` equals ``card``."""
        meta: dict[str, Any] = dict(self.extra)
        if self.classes:
            meta.update(class_names=self.class_names, class_ids=self.class_ids, class_colors=self.class_colors)
        if self.model:
            meta["model"] = dict(self.model)
        optional = {
            "model_inputs": dict(self.model_inputs) if self.model_inputs else None,
            "features": list(self.features) if self.features or self.normalization is not None else None,
            "band_names": list(self.band_names) if self.band_names else None,
            "indices": list(self.indices) if self.features or self.indices else None,
            "stats": self.normalization, "chip_size": self.chip_size,
            "dates": list(self.dates) if self.features or self.dates else None,
            "labelling": self.labelling, "input_profile": self.input_profile, "nodata_rule": self.nodata_rule,
            "nodata": self.nodata, "expressions": self.expressions, "index_constants": self.index_constants,
            "keep_bands": None if self.keep_bands is None else list(self.keep_bands),
            "scale": self.scale, "offset": self.offset, "sensor": self.sensor, "scene": self.scene,
            "metrics": self.metrics, "assessment": self.assessment, "config": self.config,
            "code_version": self.code_version, "class_pixels": self.class_pixels,
            "distinct_class_pixels": self.distinct_class_pixels,
            "datamodule": self.datamodule, "in_channels": self.in_channels,
            "ignore_index": self.ignore_index,
        }
        meta.update({k: v for k, v in optional.items() if v is not None})
        return meta

    def with_run(self, **values: Any) -> ModelCard:
        """A copy with run-level facts added (``metrics``, ``assessment``, ``config``, ...)."""
        known = {f.name for f in fields(self)}
        unknown = [k for k in values if k not in known]
        if unknown:
            raise TypeError(f"ModelCard has no fields {unknown}")
        return ModelCard(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **values})


def card_of(meta: Mapping[str, Any] | None, source: str = "checkpoint") -> ModelCard:
    """The card of a checkpoint's ``deepgeo`` entry, whichever version wrote it."""
    return ModelCard.from_dict(meta if meta is not None else {}, source)


def checkpoint_meta(meta: Any, source: str = "checkpoint") -> Any:
    """A checkpoint's ``deepgeo`` entry as the flat metadata dict, read through the card (a missing
    entry stays None, so that the callers' messages about it still apply)."""
    if meta is None:
        return None
    return ModelCard.from_dict(meta, source).inference_meta()


def _counts(value: Any, key: str) -> list[float] | None:
    """A list of non-negative finite numbers (pixel counts), or None; anything else is refused, naming ``key``."""
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in value):
        raise ValueError(f"{key} must be a list of pixel counts, got {value!r:.80}")
    return [float(v) for v in value]


def _plain(value: Any) -> Any:
    """JSON-safe copy: tuples to lists, non-finite floats to None (JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else value
    return value


def _mapping(value: Any, key: str, source: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputDataError(f"{source}: model card key '{key}' is a {type(value).__name__}, not a mapping.")
    return value


def _strings(value: Any, key: str, source: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise InputDataError(f"{source}: model card key '{key}' is not a list of names.")
    return tuple(str(v) for v in value)


def _int_or_none(value: Any, source: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputDataError(f"{source}: model card value {value!r} should be an integer.")
    return int(value)


def _classes(value: Any, source: str) -> tuple[ClassEntry, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise InputDataError(f"{source}: model card key 'classes' is not a list.")
    out = []
    for entry in value:
        if not isinstance(entry, Mapping) or "id" not in entry or "name" not in entry:
            raise InputDataError(f"{source}: model card class {entry!r} needs an 'id' and a 'name'.")
        out.append(ClassEntry(int(entry["id"]), str(entry["name"]), None if entry.get("color") is None
                              else str(entry["color"])))
    return tuple(out)
