"""A whole-scene prediction corrected for the scene's class priors (``predict.prior_shift``).

Sparse training polygons hold the classes in the shares an analyst drew, not the scene's; the network's
posteriors carry those shares as priors into every pixel the image leaves in doubt. This stage first
classifies a spread-out sample of the scene's windows, estimates the scene's shares from those
posteriors (:mod:`deepgeo_runner.ml.prior_shift`), then predicts the scene with one constant per class
added to the logits, and writes what it estimated beside the map (``<stem>_priors.json``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from deepgeo_runner.core.atomic import write_text_atomic
from deepgeo_runner.core.step_clock import NO_CLOCK, StepClock
from deepgeo_runner.geo.label_layout import IGNORE
from deepgeo_runner.ml.predict import (
    ClassLegend,
    OutputFormats,
    RankShare,
    RawInput,
    WindowSettings,
    predict_scene,
    sample_posteriors,
)
from deepgeo_runner.ml.prior_shift import (
    MIN_TRAIN_PIXELS,
    RECOVERY_TOLERANCE,
    ScenePriors,
    estimate_scene_priors,
    recovery_error,
    unadjusted,
)

log = logging.getLogger(__name__)

PRIORS_SUFFIX = "_priors.json"


@dataclass(frozen=True)
class PriorShift:
    """What the correction needs from training: the labelled training pixels of each model output as the
    network saw them (chip by chip), how many distinct pixels they are (None: the same), and a chip store
    whose validation chips check the posteriors first (None: a new scene, trusted as asked)."""

    train_pixels: tuple[float, ...]
    distinct_pixels: tuple[float, ...] | None = None
    min_train_pixels: int = MIN_TRAIN_PIXELS
    held_out: Path | None = None
    floor: tuple[float, ...] | None = None  # each class's labelled share of the scene: its share is at least that


def priors_path(out_path: str | Path) -> Path:
    """``prediction.tif`` → ``prediction_priors.json``."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.stem + PRIORS_SUFFIX)


def predict_for_scene_priors(net: torch.nn.Module, image_path: str | Path, out_path: str | Path,
                             windows: WindowSettings, legend: ClassLegend, device: str | torch.device,
                             progress: bool, shift: PriorShift | None, *, outputs: OutputFormats | None = None,
                             share: RankShare | None = None, raw_input: RawInput | None = None,
                             clock: StepClock = NO_CLOCK) -> Path:
    """:func:`~deepgeo_runner.ml.predict.predict_scene`, corrected for the scene's class priors when ``shift``
    is given. Every rank estimates the same priors from the same sample (no collective needed)."""
    outputs, share = outputs or OutputFormats(), share or RankShare()
    offsets = None
    stale = priors_path(out_path)
    if shift is not None:
        estimate = estimate_for_scene(net, image_path, windows, legend, device, shift, raw_input, progress)
        offsets = estimate.log_offsets if estimate.changes_anything else None
        if share.rank == 0:
            write_text_atomic(stale, json.dumps(estimate.to_dict(legend.names), indent=2) + "\n")
    elif share.rank == 0:
        stale.unlink(missing_ok=True)  # an earlier attempt's estimate would vouch for this map
    return predict_scene(net, image_path, out_path, windows, legend, device, progress, outputs=outputs, share=share,
                         raw_input=raw_input, clock=clock, logit_offsets=offsets)


def estimate_for_scene(net: torch.nn.Module, image_path: str | Path, windows: WindowSettings, legend: ClassLegend,
                       device: str | torch.device, shift: PriorShift, raw_input: RawInput | None = None,
                       progress: bool = True) -> ScenePriors:
    """The scene's class priors, estimated from the network's posteriors on a sample of its windows."""
    if len(shift.train_pixels) != len(legend.ids):
        raise ValueError(f"{len(shift.train_pixels)} training pixel counts for {len(legend.ids)} classes")
    posteriors = sample_posteriors(net, image_path, windows, len(legend.ids), device, raw_input, progress)
    estimate = estimate_scene_priors(posteriors, shift.train_pixels, shift.min_train_pixels, shift.distinct_pixels)
    if estimate.changes_anything and shift.floor is not None:
        estimate = _above_floor(estimate, shift, legend.names)
    if estimate.changes_anything and shift.held_out is not None:
        estimate = _checked(estimate, net, shift, device)
    moved = [f"{name} {t:.3f}→{s:.3f}" for name, t, s, a in
             zip(legend.names, estimate.train, estimate.scene, estimate.adjusted, strict=True) if a]
    if estimate.changes_anything:
        log.info("predict: the scene's class shares estimated from %d sampled pixels (training → scene): %s; "
                 "the map is decided with the scene's (predict.prior_shift)", estimate.pixels, ", ".join(moved))
    elif estimate.rejected is None:  # a rejected estimate has had its warning
        log.info("predict.prior_shift: no correction (fewer than two classes with %d or more training pixels)",
                 shift.min_train_pixels)
    return estimate


def _above_floor(estimate: ScenePriors, shift: PriorShift, names: Sequence[str]) -> ScenePriors:
    """The estimate, unless it gives a class less of the scene than its own polygons cover (EM in a corner)."""
    below = [(name, share, floor) for name, share, floor, adjusted in
             zip(names, estimate.scene, shift.floor, estimate.adjusted, strict=True) if adjusted and share < floor]
    if not below:
        return estimate
    name, share, floor = below[0]
    log.warning("predict.prior_shift: not corrected. EM gives %s %.4f of the scene, less than the %.4f its training "
                "polygons alone cover: the network's probabilities are not calibrated enough to read class shares "
                "from (under-trained?); the map is decided with its own priors", name, share, floor)
    return replace(unadjusted(shift.train_pixels, estimate.pixels), checked=True, rejected=estimate.scene)


def _checked(estimate: ScenePriors, net: torch.nn.Module, shift: PriorShift, device: str | torch.device):
    """The estimate if the network finds a known mix of its validation pixels again, else no correction."""
    held = held_out_posteriors(net, shift.held_out, len(estimate.train), device)
    if held is None:
        return replace(estimate, checked=True)
    error = recovery_error(*held, estimate, shift.train_pixels, shift.min_train_pixels, shift.distinct_pixels)
    if error is None or error <= RECOVERY_TOLERANCE:
        return replace(estimate, checked=True, recovery_error=error)
    log.warning("predict.prior_shift: not corrected. The validation pixels resampled to the shares estimated for "
                "the scene give them back %.3f off (more than %.2f): the network's probabilities are not calibrated "
                "enough to read class shares from (under-trained?); the map is decided with its own priors",
                error, RECOVERY_TOLERANCE)
    return replace(unadjusted(shift.train_pixels, estimate.pixels), checked=True, recovery_error=error,
                   rejected=estimate.scene)


HELD_OUT_PIXELS = 200_000  # validation pixels kept for the check at most (every n-th beyond)


@torch.no_grad()
def held_out_posteriors(net: torch.nn.Module, chips: Path, k: int, device: str | torch.device,
                        batch: int = 32) -> tuple[np.ndarray, np.ndarray] | None:
    """The network's posteriors (N, K) and labels (N,) at the labelled pixels of the chip store's validation
    chips (the test chips when there is no validation split), or None without either."""
    for split in ("val", "test"):
        if (chips / f"{split}_image.npy").is_file() and (chips / f"{split}_mask.npy").is_file():
            images = np.load(chips / f"{split}_image.npy", mmap_mode="r")
            masks = np.load(chips / f"{split}_mask.npy", mmap_mode="r")
            if len(images):
                break
    else:
        return None
    net = net.eval().to(device)
    found, labels = [], []
    for start in range(0, len(images), batch):
        mask = np.asarray(masks[start:start + batch])
        keep = mask != IGNORE
        if not keep.any():
            continue
        x = torch.from_numpy(np.array(images[start:start + batch], dtype=np.float32)).to(device)
        p = torch.softmax(net(x).float(), dim=1).permute(0, 2, 3, 1).cpu().numpy()
        found.append(p[keep])
        labels.append(mask[keep])
    if not found:
        return None
    posteriors, targets = np.concatenate(found), np.concatenate(labels).astype(np.int64)
    step = max(1, -(-len(targets) // HELD_OUT_PIXELS))
    return posteriors[::step, :k], targets[::step]
