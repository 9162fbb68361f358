"""Multi-temporal segmentation networks: T dates × C bands in, one class map out.

The DeepGeo paper adapts U-Net to several dates of one scene (e.g. deforestation between two
years). Three ways to combine dates, from cheapest to most flexible:

- :class:`EarlyFusionUNet`: dates stacked as channels before the first layer (optionally
  squeezed by a 1×1 convolution), then a plain U-Net.
- :class:`LateFusionUNet`: each date encoded on its own (one shared encoder or one per date),
  the per-date features merged at every skip connection by concat + 1×1 conv, mean, max or
  difference, then one decoder.
- :class:`TemporalAttentionUNet`: a shared encoder; at every scale each pixel weighs the dates
  by a softmax attention (several heads, each with a learned per-date embedding so that the
  order of the dates counts), then one decoder.

Every model takes ``(B, T, C, H, W)`` or, as the rest of the pipeline stores multi-date scenes,
the dates stacked date-major as bands ``(B, T·C, H, W)`` (all bands of date 1, then date 2, ...),
and returns logits ``(B, classes, H, W)`` for any H, W. Their signature is
``(in_channels, classes, dates, ...)`` with ``in_channels`` the bands of one date.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deepgeo_runner.ml.models._shape import crop_padding, pad_to_multiple
from deepgeo_runner.ml.models.unet import conv_block

FUSIONS: tuple[str, ...] = ("concat", "mean", "max", "difference")


def _n_dates(dates: int | Sequence[str]) -> int:
    """Dates are given as a count or as the list of dates of the scene."""
    n = dates if isinstance(dates, int) else len(list(dates))
    if n < 1:
        raise ValueError(f"dates must be >= 1 (or a non-empty list of dates), got {dates!r}.")
    return n


def to_time_series(x: torch.Tensor, dates: int, in_channels: int, model_name: str) -> torch.Tensor:
    """(B, T, C, H, W) as is, or (B, T·C, H, W) with date-major bands reshaped to it."""
    if x.ndim == 5 and x.shape[1] == dates and x.shape[2] == in_channels:
        return x
    if x.ndim == 4 and x.shape[1] == dates * in_channels:
        return x.view(x.shape[0], dates, in_channels, *x.shape[-2:])
    got = tuple(x.shape)
    if x.ndim == 5:
        hint = (f"build the model with dates={x.shape[1]} and in_channels={x.shape[2]} (bands of "
                f"one date), or give data.dates/data.band_names matching the stack")
    elif x.ndim == 4:
        hint = (f"the stack has {x.shape[1]} bands, not dates × bands = {dates} × {in_channels}: "
                f"check data.dates and data.band_names")
    else:
        hint = "pass a batch shaped (batch, dates, bands, height, width)"
    raise ValueError(f"{model_name} expected input of shape (B, T, C, H, W) with T={dates} dates "
                     f"and C={in_channels} bands (or (B, T*C, H, W)), got shape {got}: {hint}.")


class UNetEncoder(nn.Module):
    """Same-padding U-Net encoder: features at full, 1/2, ..., 1/2**depth resolution."""

    def __init__(self, in_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        chans = [in_channels, *widths]
        self.blocks = nn.ModuleList(conv_block(chans[i], chans[i + 1]) for i in range(len(widths)))
        self.out_channels = tuple(widths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            feats.append(x)
        return feats


class UNetDecoder(nn.Module):
    """Upsample ×2, concatenate the skip, two convolutions; a 1×1 head gives the logits."""

    def __init__(self, widths: Sequence[int], classes: int) -> None:
        super().__init__()
        widths = list(widths)
        self.ups = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                 for i in reversed(range(len(widths) - 1)))
        self.blocks = nn.ModuleList(conv_block(2 * widths[i], widths[i])
                                    for i in reversed(range(len(widths) - 1)))
        self.head = nn.Conv2d(widths[0], classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for up, block, skip in zip(self.ups, self.blocks, reversed(feats[:-1]), strict=True):
            x = block(torch.cat([skip, up(x)], dim=1))
        return self.head(x)


def _widths(width: int, depth: int) -> list[int]:
    if width < 1 or depth < 0:
        raise ValueError(f"width must be >= 1 and depth >= 0, got {width}, {depth}.")
    return [width * 2 ** i for i in range(depth + 1)]


class _TemporalNet(nn.Module):
    """Shared shell: input check and reshape, padding to a multiple of 2**depth, crop back."""

    temporal = True  # tells callers the input holds dates (see to_time_series)

    def __init__(self, in_channels: int, classes: int, dates: int | Sequence[str], depth: int,
                 pad_mode: str) -> None:
        super().__init__()
        if in_channels < 1 or classes < 1:
            raise ValueError(f"in_channels and classes must be >= 1, got {in_channels}, {classes}.")
        self.in_channels, self.classes, self.dates = in_channels, classes, _n_dates(dates)
        self.depth, self.pad_mode = depth, "constant" if pad_mode == "zeros" else pad_mode

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _series(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """The input as (B, T, C, H', W') padded to a multiple of 2**depth, and the padding."""
        x = to_time_series(x, self.dates, self.in_channels, type(self).__name__)
        b, t, c, h, w = x.shape
        flat, pads = pad_to_multiple(x.reshape(b, t * c, h, w), 2 ** self.depth, self.pad_mode)
        return flat.view(b, t, c, *flat.shape[-2:]), pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, classes, H, W) for (B, T, C, H, W) or date-major (B, T·C, H, W)."""
        series, pads = self._series(x)
        return crop_padding(self._logits(series), pads)


class EarlyFusionUNet(_TemporalNet):
    """Dates as channels: one U-Net sees all T·C bands from the first layer.

    Args:
        in_channels: bands of one date.
        classes: number of output logits per pixel.
        dates: number of dates T (or the list of dates).
        reduce_channels: if set, a 1×1 convolution first squeezes the T·C bands to this many
            (a learned per-pixel combination of the dates, cheaper for long series).
        depth: max-poolings of the U-Net.
        width: channels of the first level, doubled at each level.
        pad_mode: padding to a multiple of 2**depth: reflect, replicate or zeros.
    """

    def __init__(self, in_channels: int, classes: int, dates: int | Sequence[str] = 2,
                 reduce_channels: int | None = None, depth: int = 4, width: int = 32,
                 pad_mode: str = "reflect") -> None:
        super().__init__(in_channels, classes, dates, depth, pad_mode)
        stacked = self.dates * in_channels
        self.reduce = nn.Conv2d(stacked, reduce_channels, 1) if reduce_channels else nn.Identity()
        widths = _widths(width, depth)
        self.encoder = UNetEncoder(reduce_channels or stacked, widths)
        self.decoder = UNetDecoder(widths, classes)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(self.reduce(x.flatten(1, 2))))


class _FuseConcat(nn.Module):
    def __init__(self, channels: int, dates: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(dates * channels, channels, 1, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU(inplace=True))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.conv(f.flatten(1, 2))


class _FuseDifference(nn.Module):
    """Successive differences f[t+1] − f[t]; for more than two dates concatenated and squeezed."""

    def __init__(self, channels: int, dates: int) -> None:
        super().__init__()
        if dates < 2:
            raise ValueError("fusion='difference' needs at least 2 dates.")
        self.conv = _FuseConcat(channels, dates - 1) if dates > 2 else nn.Identity()

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        diffs = f[:, 1:] - f[:, :-1]
        return diffs[:, 0] if diffs.shape[1] == 1 else self.conv(diffs)


class _FuseReduce(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f.mean(dim=1) if self.how == "mean" else f.amax(dim=1)


def _fusion(how: str, channels: int, dates: int) -> nn.Module:
    if how == "concat":
        return _FuseConcat(channels, dates)
    if how == "difference":
        return _FuseDifference(channels, dates)
    return _FuseReduce(how)


class LateFusionUNet(_TemporalNet):
    """Each date encoded on its own; features merged at every skip; one decoder.

    Args:
        in_channels: bands of one date.
        classes: number of output logits per pixel.
        dates: number of dates T (or the list of dates).
        fusion: how the T feature maps of each scale become one: ``concat`` (+1×1 conv, learns
            any combination), ``mean``, ``max`` (order-free, any T) or ``difference`` (successive
            differences: change detection).
        shared_encoder: one encoder for all dates (T times fewer weights; dates seen alike) or
            one per date (for dates from different sensors or seasons).
        depth: max-poolings of the U-Net.
        width: channels of the first level, doubled at each level.
        pad_mode: padding to a multiple of 2**depth: reflect, replicate or zeros.
    """

    def __init__(self, in_channels: int, classes: int, dates: int | Sequence[str] = 2,
                 fusion: str = "concat", shared_encoder: bool = True, depth: int = 4,
                 width: int = 32, pad_mode: str = "reflect") -> None:
        super().__init__(in_channels, classes, dates, depth, pad_mode)
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {list(FUSIONS)}, got {fusion!r}.")
        self.fusion_name, self.shared_encoder = fusion, shared_encoder
        widths = _widths(width, depth)
        n_encoders = 1 if shared_encoder else self.dates
        self.encoders = nn.ModuleList(UNetEncoder(in_channels, widths) for _ in range(n_encoders))
        self.fuse = nn.ModuleList(_fusion(fusion, c, self.dates) for c in widths)
        self.decoder = UNetDecoder(widths, classes)

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-scale features shaped (B, T, C_s, H_s, W_s)."""
        b, t = x.shape[:2]
        if self.shared_encoder:  # all dates in one batch through the one encoder
            feats = self.encoders[0](x.flatten(0, 1))
            return [f.view(b, t, *f.shape[1:]) for f in feats]
        per_date = [enc(x[:, i]) for i, enc in enumerate(self.encoders)]
        return [torch.stack(level, dim=1) for level in zip(*per_date, strict=True)]

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        feats = self._encode(x)
        return self.decoder([fuse(f) for fuse, f in zip(self.fuse, feats, strict=True)])


class _TemporalAttention(nn.Module):
    """Per-pixel softmax attention over dates, ``heads`` times, with learned date embeddings."""

    def __init__(self, channels: int, dates: int, heads: int) -> None:
        super().__init__()
        self.date_embedding = nn.Parameter(0.1 * torch.randn(dates, channels, 1, 1))
        self.score = nn.Conv2d(channels, heads, 1)
        self.out = nn.Sequential(nn.Conv2d(heads * channels, channels, 1, bias=False),
                                 nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.heads = heads

    def weigh(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Date-embedded features (B, T, C, H, W) and their weights (B, T, heads, H, W)."""
        b, t, c, h, w = f.shape
        f = f + self.date_embedding  # the same features on another date must read differently
        scores = self.score(f.flatten(0, 1)).view(b, t, self.heads, h, w)
        return f, scores.softmax(dim=1)  # over dates, per pixel and head

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        # no state is kept here (a stored attribute would break torch.compile's graph)
        f, weights = self.weigh(f)
        b, _, c, h, w = f.shape
        pooled = torch.einsum("btkhw,btchw->bkchw", weights, f)
        return self.out(pooled.reshape(b, self.heads * c, h, w))


class TemporalAttentionUNet(_TemporalNet):
    """A shared U-Net encoder per date, dates merged at every scale by temporal attention.

    Each pixel weighs the dates at each scale (softmax over T for each of ``heads`` heads),
    so cloudy or uninformative dates can be down-weighted pixel by pixel;
    :meth:`attention_weights` computes them for an input, for inspection.

    Args:
        in_channels: bands of one date.
        classes: number of output logits per pixel.
        dates: number of dates T (or the list of dates).
        heads: attention heads per scale.
        depth: max-poolings of the U-Net.
        width: channels of the first level, doubled at each level.
        pad_mode: padding to a multiple of 2**depth: reflect, replicate or zeros.
    """

    def __init__(self, in_channels: int, classes: int, dates: int | Sequence[str] = 2,
                 heads: int = 4, depth: int = 4, width: int = 32, pad_mode: str = "reflect") -> None:
        super().__init__(in_channels, classes, dates, depth, pad_mode)
        if heads < 1:
            raise ValueError(f"heads must be >= 1, got {heads}.")
        widths = _widths(width, depth)
        self.encoder = UNetEncoder(in_channels, widths)
        self.attention = nn.ModuleList(_TemporalAttention(c, self.dates, heads) for c in widths)
        self.decoder = UNetDecoder(widths, classes)

    def attention_weights(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per scale, the weights over dates (B, T, heads, H_s, W_s) that forward gives ``x``.

        Computed on request rather than kept by forward, so forward mutates no state. H_s, W_s
        are those of the input padded to a multiple of 2**depth, halved per scale.
        """
        series, _ = self._series(x)
        b, t = series.shape[:2]
        feats = [f.view(b, t, *f.shape[1:]) for f in self.encoder(series.flatten(0, 1))]
        return [att.weigh(f)[1] for att, f in zip(self.attention, feats, strict=True)]

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        feats = [f.view(b, t, *f.shape[1:]) for f in self.encoder(x.flatten(0, 1))]
        return self.decoder([att(f) for att, f in zip(self.attention, feats, strict=True)])


TEMPORAL_MODELS = {
    "early_fusion": EarlyFusionUNet,
    "late_fusion": LateFusionUNet,
    "temporal_attention": TemporalAttentionUNet,
}
