"""The scene's class priors, estimated from the network's own posteriors (label-shift correction).

Why: a network's softmax is a posterior under the class shares of its *training* pixels. Analysts
draw training polygons class by class, not in proportion to the land cover (the demo's training chips
are 37 % deforestation, the scene 19 %), so every pixel the image leaves in doubt — the mixed pixels of a
clearing's edge above all — is decided with the wrong prior, and the rarer classes spread. Remote
sensing has corrected maximum-likelihood maps with scene priors since Strahler (1980); the scene's
priors themselves come from the classifier's posteriors by expectation-maximization (Saerens,
Latinne & Decaestecker, 2002, "Adjusting the outputs of a classifier to new a priori probabilities"):

    p_scene(c | x) ∝ p_train(c | x) · π_scene(c) / π_train(c)        (E step, every sampled pixel)
    π_scene(c) = mean over pixels of p_scene(c | x)                  (M step)

The correction is a constant per class on the logits, ``log π_scene(c) - log π_train(c)``: the map's
argmax moves only where the network was near a tie.

The estimate is only as good as the posteriors are calibrated: an under-trained network's soft posteriors
send EM to a corner (measured: a tiny test network's map fell from 0.855 to 0.820 accuracy). So before
the map is corrected, :func:`recovery_error` asks the network to find a mix it cannot know: its
posteriors on held-out labelled pixels (the validation polygons, drawn like the training ones),
resampled to the shares EM found for the scene, must give those shares back.

A class with few training pixels is left out (its offset stays 0): a network fitted to a few dozen
pixels of a class memorizes them rather than learning their share as a prior, and dividing by a tiny
share sends the estimate to a corner (measured on the Slovenia scene: 41 grassland pixels of 3,000).

Plain numpy: nothing here knows of torch, rasters, Hydra or Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_TRAIN_PIXELS = 200  # a class with fewer training pixels keeps its logits as they are
MAX_ITERATIONS = 200
TOLERANCE = 1e-6  # largest change of any prior between two iterations at convergence
MAX_RATIO = 10.0  # a class's prior moved further than 10× is more likely the network's bias than the scene's


@dataclass(frozen=True)
class ScenePriors:
    """The estimate, and what it rests on, for the run's record."""

    train: tuple[float, ...]  # training share of each output (of the adjusted classes' pixels)
    scene: tuple[float, ...]  # estimated scene share (same normalization; = train where not adjusted)
    adjusted: tuple[bool, ...]  # which outputs were adjusted (enough training pixels)
    log_offsets: tuple[float, ...]  # added to each output's logit before the argmax (0 where not adjusted)
    pixels: int  # sampled pixels the estimate rests on
    iterations: int
    converged: bool
    checked: bool = False  # whether held-out pixels were asked to find a known mix (recovery_error)
    recovery_error: float | None = None  # how far they landed from it
    rejected: tuple[float, ...] | None = None  # the scene shares that failed the check (not applied)

    def to_dict(self, names: Sequence[str] | None = None) -> dict:
        """A JSON-ready record, by class name when ``names`` is given."""
        names = list(names) if names is not None else [str(i) for i in range(len(self.train))]

        def by_name(values: Sequence) -> dict:
            return dict(zip(names, values, strict=True))

        def shares(values: Sequence[float]) -> dict:  # among the adjusted classes; the others have none
            if not any(self.adjusted):
                return by_name(values)
            return by_name([v if a else None for v, a in zip(values, self.adjusted, strict=True)])

        return {"method": "em", "train_share": shares(self.train), "scene_share": shares(self.scene),
                "adjusted": by_name(self.adjusted), "log_offsets": by_name(self.log_offsets),
                "sampled_pixels": self.pixels, "iterations": self.iterations, "converged": self.converged,
                "checked_on_held_out": self.checked, "recovery_error": self.recovery_error,
                **({"rejected_scene_share": by_name(self.rejected)} if self.rejected is not None else {})}

    @property
    def changes_anything(self) -> bool:
        return any(abs(v) > 0 for v in self.log_offsets)


def unadjusted(train_pixels: Sequence[float], pixels: int = 0) -> ScenePriors:
    """No correction: the training shares as they are, zero offsets."""
    counts = np.asarray(train_pixels, dtype=np.float64)
    shares = tuple(float(v) for v in counts / max(counts.sum(), 1.0))
    return ScenePriors(shares, shares, tuple(False for _ in shares), tuple(0.0 for _ in shares), pixels, 0, True)


def estimate_scene_priors(posteriors: np.ndarray, train_pixels: Sequence[float],
                          min_train_pixels: int = MIN_TRAIN_PIXELS,
                          distinct_pixels: Sequence[float] | None = None) -> ScenePriors:
    """EM estimate of the scene's class shares from posteriors ``(N, K)`` of pixels spread over the scene.

    Args:
        posteriors: the network's softmax at N sampled valid pixels (rows sum to 1).
        train_pixels: K labelled training pixel counts, in the outputs' order, as the network saw them
            (a pixel in two overlapping chips counts twice); a background output never labelled counts 0.
        min_train_pixels: outputs with fewer training pixels are not adjusted.
        distinct_pixels: K counts of distinct labelled training pixels, which ``min_train_pixels`` is
            checked on when given (overlapping chips may show the same 41 pixels a thousand times).
    """
    p = np.asarray(posteriors, dtype=np.float64)
    counts = np.asarray(train_pixels, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != counts.size:
        raise ValueError(f"posteriors of shape {p.shape} do not match {counts.size} training counts")
    k = counts.size
    distinct = counts if distinct_pixels is None else np.asarray(distinct_pixels, dtype=np.float64)
    if distinct.shape != counts.shape:
        raise ValueError(f"{distinct.size} distinct pixel counts for {k} training counts")
    adjusted = (distinct >= min_train_pixels) & (counts > 0)
    if adjusted.sum() < 2 or len(p) == 0:  # nothing to trade between: one class, or no pixel
        return unadjusted(counts, len(p))
    p = np.clip(p, 1e-9, None)
    p /= p.sum(axis=1, keepdims=True)
    train = np.where(adjusted, counts, 0.0) / counts[adjusted].sum()
    # shares among the adjusted outputs only: their weights (scene / train, Σ train·weight = 1) stay on
    # the same footing as the other outputs' weight 1
    scene = train.copy()
    ratio = np.ones(k)
    converged, iterations = False, 0
    for iterations in range(1, MAX_ITERATIONS + 1):  # noqa: B007 (the count is reported)
        q = p * ratio
        q /= q.sum(axis=1, keepdims=True)
        share = q.mean(axis=0)
        new = np.where(adjusted, share / max(share[adjusted].sum(), 1e-12), 0.0)
        step = float(np.abs(new - scene).max())
        scene = new
        ratio = np.where(adjusted, scene / np.where(adjusted, train, 1.0), 1.0)
        if step < TOLERANCE:
            converged = True
            break
    offsets = np.where(adjusted, np.log(np.clip(ratio, 1 / MAX_RATIO, MAX_RATIO)), 0.0)
    return ScenePriors(tuple(float(v) for v in train), tuple(float(v) for v in np.where(adjusted, scene, train)),
                       tuple(bool(a) for a in adjusted), tuple(float(v) for v in offsets), len(p), iterations,
                       converged)


RECOVERY_TOLERANCE = 0.05  # largest miss (absolute share) of a known mix that still trusts the posteriors
RECOVERY_PIXELS = 100_000  # pixels of the resampled held-out mix


def recovery_error(posteriors: np.ndarray, labels: np.ndarray, estimate: ScenePriors,
                   train_pixels: Sequence[float], min_train_pixels: int = MIN_TRAIN_PIXELS,
                   distinct_pixels: Sequence[float] | None = None, seed: int = 0) -> float | None:
    """How far EM lands from a known mix: held-out pixels (``posteriors`` (N, K), ``labels`` (N,) output
    indices) resampled to ``estimate``'s scene shares, estimated again; the largest absolute miss over
    the adjusted classes. None when the held-out pixels lack an adjusted class (nothing to check with)."""
    labels = np.asarray(labels)
    adjusted = np.flatnonzero(estimate.adjusted)
    pools = [np.flatnonzero(labels == k) for k in adjusted]
    if len(adjusted) < 2 or any(len(pool) == 0 for pool in pools):
        return None
    target = np.asarray(estimate.scene, dtype=np.float64)[adjusted]
    target = target / target.sum()
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(RECOVERY_PIXELS, target)
    chosen = np.concatenate([rng.choice(pool, n, replace=True) for pool, n in zip(pools, counts, strict=True)])
    again = estimate_scene_priors(np.asarray(posteriors)[chosen], train_pixels, min_train_pixels, distinct_pixels)
    found = np.asarray(again.scene, dtype=np.float64)[adjusted]
    return float(np.abs(found / found.sum() - target).max())
