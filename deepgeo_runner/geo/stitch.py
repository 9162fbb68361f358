"""Reassembling a scene from overlapping windows: where windows go and how they are blended.

Windows advance by a constant stride; the last one may run past the scene edge (read with
padding) instead of being snapped back, so every window sees the same overlap pattern.
Scores are accumulated with a smooth weight that vanishes towards window borders, where a
convolutional network sees the least context, which hides the seams between windows
(``hann``); or each window contributes only its central ``stride`` × ``stride`` square, the
original overlap-tile strategy (``center``), so that every pixel comes from exactly one window.

:class:`WindowPlan` puts these together for one scene: the window origins along each axis, the
weight of each window, and which image rows are final once a window row is added. A change to
where windows go or how they are weighted goes here; running the network on them and writing
the outputs is :mod:`deepgeo_runner.ml.predict`'s job. Numpy only: no torch, no files.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

CHIP_SIZE = 64  # px: the side of a chip (data.chip_size) and of a prediction window when nothing says otherwise


def prediction_window(window: int | None, trained_chip_size: int | None = None, chip_size: int = CHIP_SIZE) -> int:
    """The side of the prediction windows: ``window`` when given, else the chip size the network was
    trained on (a checkpoint's ``chip_size``), else ``chip_size``."""
    return int(window or trained_chip_size or chip_size)


def window_origins(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows of side ``window`` covering ``[0, length)`` at a constant stride."""
    if window < 1 or stride < 1:
        raise ValueError(f"window ({window}) and stride ({stride}) must be positive")
    if stride > window:
        raise ValueError(f"stride {stride} larger than window {window} would leave gaps")
    if length <= window:
        return [0]
    n = -(-(length - window) // stride) + 1
    return [i * stride for i in range(n)]


def blend_weights(window: int, floor: float = 1e-3) -> np.ndarray:
    """2-D Hann weights of a window, floored so that scene borders keep a positive weight."""
    ramp = np.sin(np.pi * (np.arange(window) + 0.5) / window) ** 2
    return np.maximum(np.outer(ramp, ramp), floor).astype(np.float32)


class Blend(StrEnum):
    """How overlapping windows are blended (``predict.blend``)."""

    hann = "hann"
    center = "center"


BLEND_MODES = tuple(b.value for b in Blend)


def blend_profile(
    window: int, stride: int, mode: str, first: bool, last: bool, floor: float = 1e-3
) -> np.ndarray:
    """1-D weights along one axis of a window; the 2-D weight is the outer product of two.

    ``hann``: a floored Hann ramp (same for every window: a pixel seen by one window only, at
    the scene border, still gets that window's scores once normalized). ``center``: 1 on the
    central ``stride`` pixels and 0 elsewhere, except that the first and last windows along the
    axis also own the margin towards the scene border.
    """
    if mode == "hann":
        ramp = np.sin(np.pi * (np.arange(window) + 0.5) / window) ** 2
        return np.maximum(ramp, np.sqrt(floor)).astype(np.float32)
    if mode == "center":
        margin = (window - stride) // 2
        lo = 0 if first else margin
        hi = window if last else margin + stride
        profile = np.zeros(window, dtype=np.float32)
        profile[lo:hi] = 1.0
        return profile
    raise ValueError(f"unknown blend mode '{mode}'; choose from {list(BLEND_MODES)}")


def stride_for(window: int, overlap: float) -> int:
    """The stride that makes neighbouring windows share ``overlap`` of their side."""
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    return max(1, int(round(window * (1 - overlap))))


class WindowPlan:
    """Where the windows of a ``height`` × ``width`` scene go and how much each one weighs.

    Windows form *window rows*: window row ``i`` starts at image row ``rows[i]`` and holds one
    window per entry of ``cols``. Window rows are added in order, so the rows of the scene
    become final one stride at a time (:meth:`finished`), which lets a prediction stream.
    """

    def __init__(self, height: int, width: int, window: int, overlap: float, blend: str) -> None:
        if blend not in BLEND_MODES:
            raise ValueError(f"blend must be one of {list(BLEND_MODES)}, got '{blend}'")
        self.height, self.width, self.window = height, width, window
        self.stride = stride_for(window, overlap)
        self.rows = window_origins(height, window, self.stride)
        self.cols = window_origins(width, window, self.stride)

        def profiles(n: int) -> list[np.ndarray]:
            return [blend_profile(window, self.stride, blend, i == 0, i == n - 1) for i in range(n)]

        self.row_profiles, self.col_profiles = profiles(len(self.rows)), profiles(len(self.cols))

    def block_height(self, i: int) -> int:
        """Image rows that window row ``i`` covers inside the scene (fewer at the bottom edge)."""
        return min(self.window, self.height - self.rows[i])

    def block_width(self, j: int) -> int:
        """Image columns that window column ``j`` covers inside the scene."""
        return min(self.window, self.width - self.cols[j])

    def weight_kind(self, i: int, j: int) -> tuple[bool, bool, bool, bool, int, int]:
        """Windows of one kind have the same :meth:`weight`: a key for caching the few there are."""
        return (i == 0, i == len(self.rows) - 1, j == 0, j == len(self.cols) - 1,
                self.block_height(i), self.block_width(j))

    def weight(self, i: int, j: int) -> np.ndarray:
        """The 2-D float32 weight of window (``i``, ``j``), cropped to the scene."""
        h, w = self.block_height(i), self.block_width(j)
        return np.outer(self.row_profiles[i][:h], self.col_profiles[j][:w]).astype(np.float32)

    def finished(self, i: int) -> tuple[int, int]:
        """Image rows that no window row after ``i`` touches: final once window row ``i`` is added."""
        start = self.rows[i]
        end = self.height if i == len(self.rows) - 1 else self.rows[i + 1]
        return start, end


def read_padded(array: np.ndarray, row: int, col: int, window: int, fill: float) -> np.ndarray:
    """A (C, window, window) window of a (C, H, W) array; outside the array filled with ``fill``."""
    channels, height, width = array.shape
    out = np.full((channels, window, window), fill, dtype=array.dtype)
    r1, c1 = min(row + window, height), min(col + window, width)
    out[:, : r1 - row, : c1 - col] = array[:, row:r1, col:c1]
    return out
