"""Spectral indices from bands named by their role (blue, green, red, nir, swir1, swir2).

Inputs are reflectance. A zero denominator or a nodata input gives nodata in the index,
never NaN or inf, so the normalization statistics and the network never see them.

Three sources of indices, looked up in this order:

1. our own table :data:`INDICES` (lower-case names: ndvi, evi, evi2, savi, ndwi, mndwi, nbr,
   ndmi, ndbi);
2. user expressions over band names (``preprocessing.expressions``), parsed safely by
   :mod:`deepgeo_runner.geo.expressions`;
3. the Awesome Spectral Indices catalogue (package ``spyndex``, about 280 indices, e.g.
   GNDVI, NIRv, MSAVI; names as the catalogue spells them, matched case-insensitively). Its
   band symbols map to our roles by :data:`SPYNDEX_ROLES`; its constants (L, g, C1, ...) take
   the catalogue's defaults unless ``preprocessing.index_constants`` overrides them. Its
   formulas are evaluated with the same safe parser, never with ``eval``. Without ``spyndex``
   installed only 1 and 2 exist.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from deepgeo_runner.core.errors import ConfigError
from deepgeo_runner.geo.expressions import Expression, parse_expression

Bands = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class SpectralIndex:
    """A normalized ratio of band roles: (numerator, denominator) as functions of the bands."""

    roles: tuple[str, ...]
    numerator: Callable[[Bands], np.ndarray]
    denominator: Callable[[Bands], np.ndarray]
    description: str


def _normalized_difference(a: str, b: str, description: str) -> SpectralIndex:
    return SpectralIndex(
        (a, b), lambda x: x[a] - x[b], lambda x: x[a] + x[b], description
    )


INDICES: dict[str, SpectralIndex] = {
    "ndvi": _normalized_difference("nir", "red", "Normalized Difference Vegetation Index"),
    "ndwi": _normalized_difference("green", "nir", "Normalized Difference Water Index (McFeeters)"),
    "mndwi": _normalized_difference("green", "swir1", "Modified NDWI (Xu)"),
    "nbr": _normalized_difference("nir", "swir2", "Normalized Burn Ratio"),
    "ndmi": _normalized_difference("nir", "swir1", "Normalized Difference Moisture Index"),
    "ndbi": _normalized_difference("swir1", "nir", "Normalized Difference Built-up Index"),
    "evi2": SpectralIndex(
        ("nir", "red"),
        lambda x: 2.5 * (x["nir"] - x["red"]),
        lambda x: x["nir"] + 2.4 * x["red"] + 1.0,
        "Two-band Enhanced Vegetation Index (Jiang et al. 2008)",
    ),
    "evi": SpectralIndex(
        ("nir", "red", "blue"),
        lambda x: 2.5 * (x["nir"] - x["red"]),
        lambda x: x["nir"] + 6.0 * x["red"] - 7.5 * x["blue"] + 1.0,
        "Enhanced Vegetation Index (Huete et al. 2002)",
    ),
    "savi": SpectralIndex(
        ("nir", "red"),
        lambda x: 1.5 * (x["nir"] - x["red"]),
        lambda x: x["nir"] + x["red"] + 0.5,
        "Soil-Adjusted Vegetation Index (L = 0.5)",
    ),
}


# Awesome Spectral Indices band symbols → our band roles.
SPYNDEX_ROLES: dict[str, str] = {
    "A": "coastal", "B": "blue", "G1": "green1", "G": "green", "Y": "yellow", "R": "red",
    "RE1": "rededge1", "RE2": "rededge2", "RE3": "rededge3", "N": "nir", "N2": "nir2",
    "WV": "watervapor", "S1": "swir1", "S2": "swir2", "T": "thermal", "T1": "thermal1",
    "T2": "thermal2",
}


@dataclass(frozen=True)
class IndexSpec:
    """A resolved index: the band names it reads and how to compute it (may yield NaN/inf)."""

    name: str
    roles: tuple[str, ...]
    compute: Callable[[Bands], np.ndarray]
    source: str  # 'builtin', 'expression' or 'spyndex'


@functools.lru_cache(maxsize=1)
def _spyndex_catalogue() -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """name.lower() → (catalogue name, formula, symbols); empty when spyndex is absent."""
    try:
        import spyndex
    except Exception:  # not installed, or broken: our own table still works
        return {}
    return {name.lower(): (name, idx.formula, tuple(idx.bands)) for name, idx in spyndex.indices.items()}


@functools.lru_cache(maxsize=1)
def _spyndex_constants() -> dict[str, float | None]:
    try:
        import spyndex
    except Exception:
        return {}
    return {name: c.default for name, c in spyndex.constants.items()}


def available_indices() -> list[str]:
    """Names accepted by ``preprocessing.indices`` (ours, then the catalogue's)."""
    catalogue = [v[0] for v in _spyndex_catalogue().values() if v[0].lower() not in INDICES]
    return sorted(INDICES) + sorted(catalogue)


def _builtin_spec(name: str) -> IndexSpec:
    index = INDICES[name.lower()]

    def compute(bands: Bands) -> np.ndarray:
        num = index.numerator(bands).astype(np.float64)
        den = index.denominator(bands).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den != 0, num / np.where(den != 0, den, 1.0), np.nan)

    return IndexSpec(name, index.roles, compute, "builtin")


def _expression_spec(name: str, expr: Expression, constants: Mapping[str, float]) -> IndexSpec:
    roles = tuple(n for n in expr.names if n not in constants)
    return IndexSpec(name, roles, lambda b: expr.evaluate({**constants, **b}), "expression")


def spyndex_bindings(name: str, constants: Mapping[str, float]) -> tuple[Expression, dict[str, float], dict[str, str]]:
    """The catalogue's formula of index ``name`` parsed, the values of its constants (the user's
    ``constants`` first, then the catalogue's defaults) and its band symbols → band roles: what
    preparation (numpy) and the exported graph (torch) both evaluate.

    Raises:
        ConfigError: for a constant that neither ``constants`` nor the catalogue gives a value.
    """
    cat_name, formula, _ = _spyndex_catalogue()[name.lower()]
    expr = parse_expression(formula, f"spyndex index '{cat_name}'")
    values: dict[str, float] = {}
    rename: dict[str, str] = {}
    for symbol in expr.names:
        if symbol in SPYNDEX_ROLES:
            rename[symbol] = SPYNDEX_ROLES[symbol]
        elif symbol in constants:
            values[symbol] = float(constants[symbol])
        elif _spyndex_constants().get(symbol) is not None:
            values[symbol] = float(_spyndex_constants()[symbol])
        else:
            raise ConfigError(
                f"preprocessing.indices: '{cat_name}' ({formula}) needs the constant '{symbol}', which "
                f"has no default: set preprocessing.index_constants.{symbol}=VALUE."
            )
    return expr, values, rename


def resolve_index(
    name: str,
    expressions: Mapping[str, str] | None = None,
    constants: Mapping[str, float] | None = None,
) -> IndexSpec:
    """Find ``name`` among our indices, the user's expressions, then the spyndex catalogue."""
    expressions = dict(expressions or {})
    constants = dict(constants or {})
    if name in expressions:
        where = f"preprocessing.expressions.{name}"
        return _expression_spec(name, parse_expression(expressions[name], where), constants)
    if name.lower() in INDICES:  # 'NDVI' and 'ndvi' both mean ours
        return _builtin_spec(name.lower())
    entry = _spyndex_catalogue().get(name.lower())
    if entry is None:
        hint = "" if _spyndex_catalogue() else " (install 'spyndex' for the catalogue)"
        raise ConfigError(
            f"preprocessing.indices: unknown index '{name}'. Available: {sorted(INDICES)}, the "
            f"Awesome Spectral Indices names{hint}, or define it in preprocessing.expressions, "
            "e.g. {gndvi: '(nir - green) / (nir + green)'}."
        )
    expr, values, rename = spyndex_bindings(name, constants)
    roles = tuple(rename.values())

    def compute(bands: Bands) -> np.ndarray:
        return expr.evaluate({**values, **{sym: bands[role] for sym, role in rename.items()}})

    return IndexSpec(name, roles, compute, "spyndex")


def check_indices(
    names: Sequence[str],
    band_names: Sequence[str],
    expressions: Mapping[str, str] | None = None,
    constants: Mapping[str, float] | None = None,
) -> list[IndexSpec]:
    """Fail early, naming the index and the missing band role, before any pixel is read."""
    specs = []
    for name in names:
        spec = resolve_index(name, expressions, constants)
        missing = [r for r in spec.roles if r not in band_names]
        if missing:
            raise ConfigError(
                f"preprocessing.indices: '{name}' needs the band role(s) {missing}, but "
                f"data.band_names is {list(band_names)}. Name the bands in file order, e.g. "
                "data.band_names=[blue,green,red,nir,swir1,swir2] (or set data.sensor), or drop the index."
            )
        specs.append(spec)
    return specs


def feature_index_names(indices: Sequence[str], expressions: Mapping[str, str] | None) -> list[str]:
    """Indices in configured order, then the expressions not already listed among them."""
    names = list(indices)
    names += [n for n in (expressions or {}) if n not in names]
    return names


def finish_index(values: np.ndarray, valid: np.ndarray, nodata: float) -> np.ndarray:
    """float32 index with nodata wherever an input is invalid or the value is not finite."""
    out = np.full(values.shape, nodata, dtype=np.float32)
    ok = valid & np.isfinite(values)
    out[ok] = values[ok].astype(np.float32)
    out[ok & ~np.isfinite(out)] = nodata  # beyond float32's range
    return out


def compute_index(
    name: str | IndexSpec, bands: Bands, valid: np.ndarray, nodata: float
) -> np.ndarray:
    """One index as float32; nodata where an input is invalid or the denominator is zero."""
    spec = name if isinstance(name, IndexSpec) else resolve_index(name)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        values = spec.compute(bands)
    return finish_index(np.broadcast_to(values, valid.shape), valid, nodata)
