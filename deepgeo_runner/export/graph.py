"""The exported graph: raw bands in, class probabilities out, everything the run did in between inside.

A QGIS user (Deepness) or an onnxruntime script has the raw raster, not our prepared stack. So the
exported module takes the raster's bands as they are in the file (``card.band_names`` in file order,
date-major for a multi-date stack: shape (B, dates × bands, tile, tile), float32) and does what
:func:`deepgeo_runner.stages.prepare.prepare_scene` and the window reader of
:func:`deepgeo_runner.ml.predict.predict_scene` do, in the same order:

1. which pixels hold data: non-finite values (NaN) always mark nodata; the card's nodata value(s)
   (the run's ``data.nodata``, else the training file's declared nodata) by the card's rule
   (``gdal``: every band of a date equals it; ``any_band``: one does). A file's mask band cannot
   travel in a graph: give such pixels as NaN;
2. reflectance = band × ``data.scale`` + ``data.offset``;
3. the kept bands, then the spectral indices computed from them (ours, the user's expressions and the
   spyndex catalogue, all evaluated as torch arithmetic); a zero denominator marks the pixel nodata;
4. the training statistics: ``(clip(x) - shift) / scale`` per feature, or per-window standardization
   over the valid pixels for ``per_chip``;
5. nodata pixels → 0 (the value the network saw for them in training and in prediction);
6. the network, then the softmax over classes.

Inference never needs this package: only the tensors of the graph.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from deepgeo_runner.core.errors import ConfigError
from deepgeo_runner.geo.expressions import parse_expression
from deepgeo_runner.geo.indices import INDICES, feature_index_names, resolve_index, spyndex_bindings
from deepgeo_runner.geo.normalize import NormStats
from deepgeo_runner.ml.model_card import ModelCard

TensorFn = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]


class ExportError(ConfigError):
    """A model that cannot be exported to a format: the message names the model and the reason."""


def refuse_outside_torch(model: torch.nn.Module, model_name: str, fmt: str) -> None:
    """Refuse a model whose prediction runs outside torch (``model=pixel_forest``: LightGBM trees), which
    no traced graph can hold: tracing would bake one input's answer in as a constant."""
    if any(getattr(m, "fits_without_gradients", False) for m in model.modules()):
        raise ExportError(f"model {model_name} cannot be exported to {fmt}: its trees run in LightGBM, outside "
                          "torch, so no graph holds them. Nothing was written; apply it with its checkpoint "
                          "(predict.checkpoint=RUN_DIR).")


def _torch_eval(node: ast.AST, values: Mapping[str, torch.Tensor | float]) -> torch.Tensor | float:
    """:func:`deepgeo_runner.geo.expressions._eval` with torch arithmetic (the parser already refused
    everything but numbers, names, + - * / ** and unary signs)."""
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.BinOp):
        a, b = _torch_eval(node.left, values), _torch_eval(node.right, values)
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            return a * b
        if isinstance(node.op, ast.Div):
            return a / b
        return a ** b
    if isinstance(node, ast.UnaryOp):
        value = _torch_eval(node.operand, values)
        return -value if isinstance(node.op, ast.USub) else value
    raise ExportError(f"expression node {type(node).__name__} has no graph form")


def index_function(name: str, expressions: Mapping[str, str] | None,
                   constants: Mapping[str, float] | None) -> TensorFn:
    """Index ``name`` as a function of band tensors (by role), resolved in the order of
    :func:`deepgeo_runner.geo.indices.resolve_index`; NaN/inf where the value is undefined."""
    expressions, constants = dict(expressions or {}), dict(constants or {})
    spec = resolve_index(name, expressions, constants)  # same lookup and errors as preparation
    if spec.source == "expression":
        expr = parse_expression(expressions[name], f"preprocessing.expressions.{name}")
        fixed = {k: float(v) for k, v in constants.items()}
        return lambda bands: _as_tensor(_torch_eval(expr.tree.body, {**fixed, **bands}), bands)
    if spec.source == "builtin":
        index = INDICES[name.lower()]

        def builtin(bands: Mapping[str, torch.Tensor]) -> torch.Tensor:
            num, den = index.numerator(bands), index.denominator(bands)
            return torch.where(den != 0, num / torch.where(den != 0, den, torch.ones_like(den)),
                               torch.full_like(den, math.nan))

        return builtin
    expr, fixed, rename = spyndex_bindings(name, constants)  # the same formula and constants as preparation
    return lambda bands: _as_tensor(
        _torch_eval(expr.tree.body, {**fixed, **{s: bands[r] for s, r in rename.items()}}), bands)


def _as_tensor(value: torch.Tensor | float, bands: Mapping[str, torch.Tensor]) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    return torch.full_like(next(iter(bands.values())), float(value))


def _per_band(value: float | Sequence[float] | None, n: int, default: float, key: str) -> list[float]:
    if value is None:
        return [default] * n
    if isinstance(value, int | float):
        return [float(value)] * n
    values = [float(v) for v in value]
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ExportError(f"{key} has {len(values)} values for {n} bands.")
    return values


def _nodata_values(nodata: float | Sequence[float | None] | None, n: int) -> list[float | None]:
    if nodata is None:
        return [None] * n
    if isinstance(nodata, int | float):
        return [float(nodata)] * n
    values = [None if v is None else float(v) for v in nodata]
    return values * n if len(values) == 1 else values


class RawBandsModel(nn.Module):
    """``(B, dates·bands, H, W)`` raw bands → ``(B, K, H, W)`` class probabilities (see the module
    docstring). ``log_probabilities=True`` returns log-softmax instead (for blending by logits)."""

    def __init__(self, net: nn.Module, card: ModelCard, nodata: float | Sequence[float | None] | None = None,
                 log_probabilities: bool = False) -> None:
        super().__init__()
        if not card.band_names or card.normalization is None:
            raise ExportError(f"model {card.model_name}: its card records no bands or normalization statistics "
                              "(a data=torchgeo run): it cannot take raw bands.")
        self.net = net
        self.log_probabilities = log_probabilities
        self.names = list(card.band_names)
        self.dates = card.n_dates
        n = len(self.names)
        keep = list(card.keep_bands) if card.keep_bands is not None else self.names
        self.keep = [self.names.index(b) for b in keep]
        self.index_names = _index_names(card)
        self.index_fns = [index_function(i, card.expressions, card.index_constants) for i in self.index_names]
        per_date = len(self.keep) + len(self.index_names)
        if per_date * self.dates != len(card.features):
            raise ExportError(f"model {card.model_name}: its card lists {len(card.features)} features, but "
                              f"{self.dates} date(s) of {keep} + indices {self.index_names} make "
                              f"{per_date * self.dates}.")
        self.register_buffer("scale", torch.tensor(_per_band(card.scale, n, 1.0, "data.scale")).view(1, n, 1, 1))
        self.register_buffer("offset", torch.tensor(_per_band(card.offset, n, 0.0, "data.offset")).view(1, n, 1, 1))
        if nodata is None:  # the run's data.nodata, else what the training file declared
            nodata = card.nodata if card.nodata is not None else (card.scene or {}).get("image_nodata")
        values = _nodata_values(nodata, n * self.dates)
        if len(values) not in (n, n * self.dates):
            raise ExportError(f"nodata lists {len(values)} values for {n} bands.")
        if len(values) == n:
            values = values * self.dates
        self.has_nodata = [v is not None and not math.isnan(v) for v in values]
        fill = [v if ok else 0.0 for v, ok in zip(values, self.has_nodata, strict=True)]
        self.register_buffer("nodata", torch.tensor(fill).view(1, -1, 1, 1))
        self.any_band = card.nodata_rule == "any_band"
        stats = NormStats.from_dict(card.normalization)
        self.per_chip = bool(stats.per_chip)
        f = len(card.features)
        self.register_buffer("shift", torch.tensor(stats.shift, dtype=torch.float32).view(1, f, 1, 1))
        self.register_buffer("divisor", torch.tensor(stats.scale, dtype=torch.float32).view(1, f, 1, 1))
        self.clip = stats.clip_min is not None and stats.clip_max is not None
        if self.clip:
            self.register_buffer("clip_min", torch.tensor(stats.clip_min, dtype=torch.float32).view(1, f, 1, 1))
            self.register_buffer("clip_max", torch.tensor(stats.clip_max, dtype=torch.float32).view(1, f, 1, 1))

    def features(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized features (B, F, H, W), nodata set to 0, and the valid mask (B, 1, H, W)."""
        x, valid = self.pixel_features(raw)
        if self.per_chip:  # over the whole input: the graph's input is one window
            w = valid.float()
            count = w.sum(dim=(2, 3), keepdim=True)
            safe_n = count.clamp_min(1.0)
            xv = x * w
            mean = xv.sum(dim=(2, 3), keepdim=True) / safe_n
            std = torch.sqrt((((xv - mean) * w) ** 2).sum(dim=(2, 3), keepdim=True) / safe_n)
            std = torch.where(std > 0, std, torch.ones_like(std))
            x = torch.where(valid, (x - mean) / std, torch.zeros_like(x))
        return x, valid

    def pixel_features(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What each pixel's features are from that pixel alone (steps 1-5 of the module docstring, the
        training statistics applied, but not ``per_chip``'s per-window standardization): (B, F, H, W),
        nodata set to 0, and the valid mask (B, 1, H, W). Whole-scene prediction computes this once per
        pixel on the rows it reads, then cuts the windows from it, as from a prepared stack."""
        n = len(self.names)
        raw = raw.float()
        finite = torch.isfinite(raw)
        valid = finite.all(dim=1, keepdim=True)
        per_date = []
        for d in range(self.dates):
            bands = raw[:, d * n:(d + 1) * n]
            flags = [bands[:, b:b + 1] == self.nodata[:, d * n + b:d * n + b + 1]
                     for b in range(n) if self.has_nodata[d * n + b]]
            if flags:
                matches = torch.cat(flags, dim=1)
                if self.any_band:
                    valid = valid & ~matches.any(dim=1, keepdim=True)
                elif len(flags) == n:
                    valid = valid & ~matches.all(dim=1, keepdim=True)
            safe = torch.where(finite[:, d * n:(d + 1) * n], bands, torch.zeros_like(bands))
            refl = safe * self.scale + self.offset
            roles = {name: refl[:, i:i + 1] for i, name in enumerate(self.names)}
            feats = [refl[:, i:i + 1] for i in self.keep]
            for fn in self.index_fns:
                value = fn(roles)
                ok = torch.isfinite(value) & (value.abs() <= 3.4e38)
                valid = valid & ok
                feats.append(torch.where(ok, value, torch.zeros_like(value)))
            per_date.extend(feats)
        x = torch.cat(per_date, dim=1)
        if not self.per_chip:
            if self.clip:
                x = torch.maximum(torch.minimum(x, self.clip_max), self.clip_min)
            x = (x - self.shift) / self.divisor
        return torch.where(valid, x, torch.zeros_like(x)), valid

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        x, _ = self.features(raw)
        logits = self.net(x).float()
        if self.log_probabilities:
            return torch.log_softmax(logits, dim=1)
        return torch.softmax(logits, dim=1)


def _index_names(card: ModelCard) -> list[str]:
    return feature_index_names(card.indices, card.expressions)


def prepared_net(net: nn.Module) -> nn.Module:
    """The network as whole-scene prediction runs it: eval mode, a valid-padding U-Net mirrored
    outward so that its output covers its input (as :mod:`deepgeo_runner.pipeline.predicting` does)."""
    if hasattr(net, "output_crop") and hasattr(net, "mirror_pad"):
        net.mirror_pad = True
    return net.eval()
