"""A pixel baseline beside every network: gradient-boosted trees (LightGBM) on each pixel's features.

The field compares its networks against per-pixel forests (RStoolbox, sits, QGIS plugins): a network
earns its cost only where it beats one. :class:`PixelForest` is a plain ``nn.Module`` like the
networks, ``(in_channels, classes, ...) -> logits``: its forward flattens the (B, C, H, W) pixels,
runs the booster and returns the log-probabilities as logits, so that the test stage, whole-scene
prediction by windows, checkpoints and the assessment treat it exactly like a network.

It is fitted, not trained by gradient descent: the task layer hands it the training chips' labelled
pixels (:meth:`PixelForest.fit_pixels`). The booster travels in checkpoints as LightGBM's model text
(``model_to_string``: a plain-text description of the trees, parsed by LightGBM's C++ reader, never
executed) through ``get_extra_state``/``set_extra_state``, so a checkpoint stays loadable with
``torch.load(weights_only=True)`` and inert.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

IGNORE = 255


class PixelForest(nn.Module):
    """Per-pixel LightGBM classifier with a network's interface.

    Args:
        in_channels: features per pixel (bands and indices of the prepared stack).
        classes: model outputs.
        n_estimators, num_leaves, learning_rate, min_child_samples: LightGBM's tree options.
        max_pixels: at most this many training pixels (a seeded sample, equal share per class where the
            classes allow), bounding the fit's memory and time.
        threads: LightGBM threads (0: its default, all cores; 1 by default: on shared cores its OpenMP
            threads spin waiting for each other, a 2-thread fit of the demo took 111 s, 1 thread 8 s).
    """

    pixelwise = True  # each output pixel depends on its own input pixel only: no window overlap needed
    fits_without_gradients = True  # the task layer calls fit_pixels instead of training by gradient descent

    def __init__(self, in_channels: int, classes: int, n_estimators: int = 100, num_leaves: int = 31,
                 learning_rate: float = 0.1, min_child_samples: int = 20, max_pixels: int = 200_000,
                 threads: int = 1) -> None:
        super().__init__()
        self.in_channels, self.classes = int(in_channels), int(classes)
        self.params = {"n_estimators": int(n_estimators), "num_leaves": int(num_leaves),
                       "learning_rate": float(learning_rate), "min_child_samples": int(min_child_samples),
                       "threads": int(threads)}
        self.max_pixels = int(max_pixels)
        # one weight, so that optimizers and devices have a parameter to hold; logits add 0 × it
        self.anchor = nn.Parameter(torch.zeros(()))
        self._booster = None
        self._model_text = ""

    # -- fitting ---------------------------------------------------------------------------------
    def fit_pixels(self, features: np.ndarray, targets: np.ndarray, seed: int = 0) -> None:
        """Fit the booster on labelled pixels: ``features`` (N, C) float32, ``targets`` (N,) in 0..classes-1."""
        import lightgbm as lgb  # heavy: only when the pixel baseline is fitted or used

        if features.ndim != 2 or features.shape[1] != self.in_channels:
            raise ValueError(f"PixelForest expects (N, {self.in_channels}) features, got {features.shape}")
        if len(targets) == 0:
            raise ValueError("PixelForest: no labelled training pixel to fit on")
        p = self.params
        params = {
            "objective": "multiclass", "num_class": self.classes, "num_leaves": p["num_leaves"],
            "learning_rate": p["learning_rate"], "min_child_samples": p["min_child_samples"],
            "seed": int(seed), "deterministic": True, "force_row_wise": True, "verbosity": -1,
        }
        if p["threads"] > 0:
            params["num_threads"] = p["threads"]
        start = time.perf_counter()
        dataset = lgb.Dataset(features, label=targets.astype(np.int32), free_raw_data=True)
        booster = lgb.train(params, dataset, num_boost_round=p["n_estimators"])
        self._set_model_text(booster.model_to_string())
        log.info("pixel forest: %d trees per class fitted on %d pixels of %d features in %.1f s",
                 p["n_estimators"], len(targets), features.shape[1], time.perf_counter() - start)

    def _set_model_text(self, text: str) -> None:
        import lightgbm as lgb  # heavy: only when the pixel baseline is fitted or used

        if not isinstance(text, str):
            raise ValueError(f"a PixelForest's state is LightGBM model text, got {type(text).__name__}")
        if text:
            booster = lgb.Booster(model_str=text)  # LightGBM's text parser: data, never code
            if booster.num_feature() != self.in_channels or booster.num_model_per_iteration() != self.classes:
                raise ValueError(f"the booster text has {booster.num_feature()} features and "
                                 f"{booster.num_model_per_iteration()} classes; this PixelForest takes "
                                 f"{self.in_channels} and {self.classes}")
            self._booster = booster
        else:
            self._booster = None
        self._model_text = text

    @property
    def fitted(self) -> bool:
        return self._booster is not None

    # -- checkpoints: the booster as plain text -------------------------------------------------
    def get_extra_state(self) -> str:
        return self._model_text

    def set_extra_state(self, state) -> None:
        self._set_model_text(state)

    # -- inference --------------------------------------------------------------------------------
    def predict_proba(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities (P, K) of pixel features (P, C): the teacher's calls (ml/teacher.py)."""
        if self._booster is None:
            raise RuntimeError("PixelForest.predict_proba before fit_pixels")
        proba = self._booster.predict(np.ascontiguousarray(pixels, dtype=np.float32),
                                      num_threads=self.params["threads"] or 0)
        return np.asarray(proba, dtype=np.float32).reshape(len(pixels), self.classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        b, c, h, w = image.shape
        if self._booster is None:  # not fitted yet (e.g. the sanity check of an empty model): uniform
            logits = torch.full((b, self.classes, h, w), -float(np.log(self.classes)), device=image.device)
            return logits + 0 * self.anchor
        pixels = image.detach().float().permute(0, 2, 3, 1).reshape(-1, c).cpu().numpy()
        proba = self._booster.predict(pixels, num_threads=self.params["threads"] or 0)
        proba = np.asarray(proba, dtype=np.float32).reshape(b, h, w, self.classes)
        logits = torch.from_numpy(np.log(np.clip(proba, 1e-7, 1.0))).permute(0, 3, 1, 2).contiguous()
        return logits.to(image.device) + 0 * self.anchor


def training_pixels(images: np.ndarray, masks: np.ndarray, max_pixels: int, seed: int,
                    chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``max_pixels`` labelled pixels (not ``IGNORE``) of chips ``images`` (N, C, s, s) / ``masks``
    (N, s, s), read ``chunk`` chips at a time (memory-mapped stores stay on disk): a seeded sample
    with an equal share per class where a class has that many, the rest from the larger classes."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(masks)
    flat = labels.reshape(-1)
    labelled = np.flatnonzero(flat != IGNORE)
    if len(labelled) > max_pixels:
        classes = np.unique(flat[labelled])
        share = max_pixels // max(1, len(classes))
        picks = []
        for k in classes:
            where = labelled[flat[labelled] == k]
            picks.append(where if len(where) <= share else rng.choice(where, share, replace=False))
        chosen = np.concatenate(picks)
        if len(chosen) < max_pixels:  # fill from the pixels not chosen yet
            rest = np.setdiff1d(labelled, chosen, assume_unique=True)
            chosen = np.concatenate([chosen, rng.choice(rest, min(len(rest), max_pixels - len(chosen)),
                                                        replace=False)])
        labelled = np.sort(chosen)
    per_chip = labels.shape[1] * labels.shape[2]
    chip_of, offset = np.divmod(labelled, per_chip)
    features = np.empty((len(labelled), images.shape[1]), dtype=np.float32)
    for start in range(0, labels.shape[0], chunk):
        sel = (chip_of >= start) & (chip_of < start + chunk)
        if not sel.any():
            continue
        block = np.asarray(images[start:start + chunk], dtype=np.float32)
        block = block.reshape(block.shape[0], block.shape[1], -1)
        features[sel] = block[chip_of[sel] - start, :, offset[sel]]
    return features, flat[labelled].astype(np.int64)
