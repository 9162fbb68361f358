"""Spatial k-fold cross-validation: labelled units (split blocks or the user's split polygons)
dealt once into K class-stratified groups, then fold i tests on group i.

The groups depend only on the seed, never on the fold, so the K test areas are disjoint and
together cover every labelled unit: each labelled pixel is scored exactly once over the
study. Within a fold, validation units are dealt class by class from the other groups
(:func:`~deepgeo_runner.geo.dealing.assign_blocks_by_class` with no test share), and the rest
train; the training chips then keep the usual buffer from val/test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from deepgeo_runner.core.errors import ConfigError
from deepgeo_runner.geo.dealing import assign_blocks_by_class, class_lut, deal_by_class

FOLD_VERSION = 1  # part of cache keys: bump when the groups or a fold's dealing change


def deal_groups(counts: np.ndarray, groups: int, seed: int) -> np.ndarray:
    """Deal units into ``groups`` groups so that every group gets about 1/K of each class's pixels.

    Iterative stratification as for the train/val/test split: classes rarest first (fewest
    units), each still unassigned unit of the class, in seeded order, to the group lacking most
    of it (ties: the group with fewest units, then the lowest index). Units without a labelled
    pixel get -1 (no group: they test nothing, so every fold may train on them).
    """
    def pick(k: int, got: np.ndarray, members: np.ndarray, total: float) -> int:
        need = 1.0 / groups - got[:, k] / total
        return min(range(groups), key=lambda g: (-need[g], members[g], g))

    return deal_by_class(counts, groups, seed, pick)


def group_balance(counts: np.ndarray, assignment: np.ndarray, groups: int) -> tuple[int, float]:
    """(group × class pairs holding pixels of the class, minus the largest deviation of a group's
    share of a class from 1/K): higher is better."""
    totals = counts.sum(axis=0).astype(np.float64)
    present = totals > 0
    per = np.stack([counts[assignment == g].sum(axis=0) for g in range(groups)]).astype(np.float64)
    shares = per[:, present] / totals[present]
    worst = float(np.abs(shares - 1.0 / groups).max()) if shares.size else 0.0
    return int((per[:, present] > 0).sum()), -round(worst, 4)


def choose_groups(counts: np.ndarray, groups: int, seed: int, candidates: int = 8,
                  reach: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """The best of ``candidates`` seeded :func:`deal_groups`: depends on ``seed`` only, so every
    fold of a study sees the same groups.

    ``reach``: group assignment → (K groups, classes) labelled pixels that test chips can reach
    in each group; candidates are then judged first by the (group, class) pairs reached and the
    smallest reached share of a class in a group, as the test stage will see them (a class's
    pixels in edge blocks narrower than a chip count for nothing), then by :func:`group_balance`.
    """
    if groups < 2:
        raise ValueError(f"k-fold needs at least 2 groups, got {groups}")
    totals = counts.sum(axis=0).astype(np.float64)
    present = totals > 0
    best, best_score = None, None
    for c in range(candidates):
        assignment = deal_groups(counts, groups, seed + 104729 * c)
        score = group_balance(counts, assignment, groups)
        if reach is not None:
            reached = reach(assignment)[:, present]
            share = reached / totals[present]
            score = (int((reached > 0).sum()), round(float(share.min()), 3), *score)
        if best_score is None or score > best_score:
            best, best_score = assignment, score
    return best


def fold_split(counts: np.ndarray, groups: np.ndarray, fold: int, fractions: Sequence[float],
               seed: int) -> np.ndarray:
    """Split of each unit for fold ``fold``: test (2) = group ``fold``; val (1) dealt class by class
    from the other units with the val share of ``fractions`` relative to train + val; train (0) the
    rest (units of no group included). ``fractions``' test share is not used: it is 1/K here."""
    test = groups == fold
    rest = np.where(test[:, None], 0, counts)
    assignment = assign_blocks_by_class(rest, [float(fractions[0]), float(fractions[1]), 0.0], seed)
    assignment[test] = 2
    return assignment


def require_groups(groups: np.ndarray, folds: int, units: str, smaller: str) -> None:
    """Fail, naming the keys, when fewer labelled units than folds leave a fold without a test area."""
    empty = [g for g in range(folds) if not (groups == g).any()]
    if empty:
        raise ConfigError(
            f"data.folds={folds}: only {int((groups >= 0).sum())} {units} hold labelled pixels, so folds {empty} "
            f"would have no test area: lower data.folds, or use smaller units ({smaller})."
        )


def unit_class_counts(units: np.ndarray, labels: np.ndarray, class_ids: Sequence[int], n_units: int) -> np.ndarray:
    """(n_units, K) labelled pixels of each class in each unit of ``units`` (1..n_units; 0 is no unit)."""
    lut = class_lut(class_ids)
    width = len(class_ids) + 1
    flat = units.ravel().astype(np.int64) * width + lut[labels.ravel()]
    return np.bincount(flat, minlength=(n_units + 1) * width).reshape(n_units + 1, width)[1:, :-1]


def polygon_fold_map(units: np.ndarray, labels: np.ndarray, class_ids: Sequence[int], n_units: int, folds: int,
                     fold: int, fractions: Sequence[float], seed: int, no_split: int) -> np.ndarray:
    """The per-pixel split map of fold ``fold`` when the units are the user's split polygons
    (``units``: polygon number 1..n per pixel, 0 outside every polygon → ``no_split``)."""
    counts = unit_class_counts(units, labels, class_ids, n_units)
    groups = choose_groups(counts, folds, seed)
    require_groups(groups, folds, "split polygons", "more, smaller polygons in data.split_vector")
    split = fold_split(counts, groups, fold, fractions, seed)
    lookup = np.concatenate([[no_split], split]).astype(np.int8)
    return lookup[units]
