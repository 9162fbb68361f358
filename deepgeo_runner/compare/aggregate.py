"""Runs that differ only by their fold or seed, summarized: each metric's mean and 95 % interval.

A cross-validation study (``data.fold=0..K-1``) or repeated seeds give one score per run; the
spread across runs is the honest uncertainty of a setting. The interval is Student's t on the
runs' values (n - 1 degrees of freedom), the usual choice for a handful of folds or seeds,
clipped to the metric's range (a score lies in [0, 1], a loss is never negative): with three
folds t is 4.3, and an unclipped interval of an accuracy near 1 would promise 1.03.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from scipy import stats

from deepgeo_runner.compare.runs import RunRecord

VARYING_KEYS = ("data.fold", "seed")  # what a repetition changes: the group is the rest of the overrides
CONFIDENCE = 0.95


def override_key(override: str) -> str:
    """The config key of a Hydra override: ``+seed=3`` → ``seed``, ``~data.fold`` → ``data.fold``."""
    return override.split("=", 1)[0].lstrip("+~")


def group_key(overrides: Iterable[str], dropped: Sequence[str] = VARYING_KEYS) -> tuple[str, ...]:
    """The overrides that define a setting: all but the fold and the seed, in a stable order."""
    return tuple(sorted(o for o in overrides if override_key(o) not in dropped))


@dataclass
class Interval:
    """Mean and 95 % t-interval of one metric over ``n`` runs."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def metric_range(name: str) -> tuple[float, float]:
    """The values ``name`` can take: scores (accuracy, kappa, F1, IoU, AUC, AP) lie in [0, 1] (kappa's
    negative values mean worse than chance, kept), losses, entropies and areas (ha) in [0, inf)."""
    base = name.split("[", 1)[0]
    if "loss" in base or "entropy" in base or base.endswith("area_ha"):  # areas in hectares: never negative
        return 0.0, math.inf
    if base == "kappa":
        return -1.0, 1.0
    return 0.0, 1.0


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE,
               bounds: tuple[float, float] = (-math.inf, math.inf)) -> Interval:
    """Mean ± t(1 - α/2, n - 1) · s / √n, clipped to ``bounds``; needs at least two values."""
    n = len(values)
    if n < 2:
        raise ValueError(f"a t-interval needs at least two values, got {n}")
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(mean, max(bounds[0], mean - half), min(bounds[1], mean + half), n)


@dataclass
class Group:
    """Runs of one setting (equal overrides once fold and seed are dropped) and their intervals."""

    overrides: tuple[str, ...]
    runs: list[RunRecord]
    intervals: dict[str, Interval] = field(default_factory=dict)  # metric → interval; ≥ 2 runs with the metric

    def counted(self) -> str:
        """How many runs the intervals aggregate: "3", or "2-3" when a run lacks some metric."""
        counts = sorted({iv.n for iv in self.intervals.values()})
        if not counts:
            return "0"
        return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def aggregate(runs: Sequence[RunRecord], dropped: Sequence[str] = VARYING_KEYS) -> list[Group]:
    """Groups of two or more runs, each with the interval of every metric that ≥ 2 of its runs have.

    The best validation score counts as the metric ``best_score``; runs without a metric (failed
    ones) are left out of its interval, never counted as zeros.
    """
    by_key: dict[tuple[str, ...], list[RunRecord]] = {}
    for run in runs:
        by_key.setdefault(group_key(run.overrides, dropped), []).append(run)
    groups = []
    for key, members in by_key.items():
        if len(members) < 2:
            continue
        group = Group(key, members)
        names = list(dict.fromkeys(["best_score", *(k for r in members for k in r.metrics)]))
        for name in names:
            values = [v for r in members if (v := _value(r, name)) is not None]
            if len(values) >= 2:
                kind = (members[0].monitor or "") if name == "best_score" else name  # best val_loss: a loss
                group.intervals[name] = t_interval(values, bounds=metric_range(kind))
        groups.append(group)
    return groups


def _value(run: RunRecord, name: str) -> float | None:
    return run.best_score if name == "best_score" else run.metrics.get(name)
