"""torchgeo's multispectral pretrained weights (SSL4EO Sentinel-2, Landsat, ...) for smp encoders.

ImageNet knows red, green and blue; torchgeo publishes ResNet weights learned on all the bands
of Sentinel-2 or Landsat (``ResNet18_Weights.SENTINEL2_ALL_MOCO``). Their state dicts use the
timm/torchvision ResNet names that smp's ResNet encoders share, so they load into the encoder
as they are; the first convolution is then adapted to the input's bands by name with the same
:func:`~deepgeo_runner.ml.models.pretrained.adapt_first_conv` as ImageNet weights. The weights'
band ids (``B2``, ``SR_B4``...) are translated into this package's band roles (blue, red...)
through the sensor presets of :mod:`deepgeo_runner.geo.sensors`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepgeo_runner.geo.sensors import SENSORS
from deepgeo_runner.ml.models._download import is_download_error

_S2_IDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
_S2_ROLES = dict(zip(_S2_IDS, SENSORS["sentinel2"][13], strict=True))
# Landsat weights: the sensor named in the enum member, its band layout by band count.
_LANDSAT = (("LANDSAT_TM", "landsat5"), ("LANDSAT_ETM", "landsat7"), ("LANDSAT_OLI", "landsat8"))


def resolve_weights(name: str) -> Any:
    """The torchgeo ``WeightsEnum`` member called ``name``, e.g. ``ResNet18_Weights.SENTINEL2_ALL_MOCO``."""
    from torchgeo.models import get_weight

    try:
        return get_weight(name)
    except ValueError as exc:
        raise ValueError(f"{name!r} is not a torchgeo weights name; use 'Enum.MEMBER' as torchgeo spells it, "
                         "e.g. ResNet18_Weights.SENTINEL2_ALL_MOCO or ResNet50_Weights.LANDSAT_OLI_SR_MOCO "
                         "(torchgeo.models.list_models() and its docs list them).") from exc


def band_roles(weights: Any) -> list[str] | None:
    """The roles (blue, nir, swir1...) of the bands ``weights`` were trained on, when known."""
    bands = [str(b).upper() for b in weights.meta.get("bands", [])]
    if bands and all(b in _S2_ROLES for b in bands) and weights.name.startswith("SENTINEL2"):
        return [_S2_ROLES[b] for b in bands]
    for prefix, sensor in _LANDSAT:
        if weights.name.startswith(prefix) and len(bands) in SENSORS[sensor]:
            return list(SENSORS[sensor][len(bands)])
    return None


def fetch_state_dict(weights: Any) -> dict[str, torch.Tensor]:
    """The weights' state dict from the torch hub cache, downloaded there the first time.

    A failed download becomes a message that says where to put the file by hand.
    """
    try:
        return weights.get_state_dict(progress=False)
    except Exception as exc:
        if not is_download_error(exc):
            raise
        cached = Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]
        raise RuntimeError(
            f"Could not download the torchgeo weights {weights!r} ({type(exc).__name__}: {exc}) from "
            f"{weights.url}. Offline, download that file elsewhere and put it at {cached} (or set TORCH_HOME "
            "to a folder holding hub/checkpoints/ with it); or set model.torchgeo_weights=null to train "
            "from scratch."
        ) from exc


def load_encoder_state(encoder: nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    """Load ``state`` into ``encoder``; keys the encoder lacks (the classifier ``fc``) are dropped."""
    own = encoder.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise ValueError(f"torchgeo weights {name} do not fit the encoder {type(encoder).__name__}: they lack "
                         f"{missing[:5]}{'...' if len(missing) > 5 else ''}; pick the encoder they were trained "
                         "for (model.encoder).")
    encoder.load_state_dict({k: state[k] for k in own}, strict=True)
