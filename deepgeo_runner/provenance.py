"""What a run needs to be understood and repeated: versions, commit, seed, devices, inputs."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deepgeo_runner.atomic import write_text_atomic

PACKAGES = (
    "deepgeo-runner", "torch", "torchvision", "lightning", "segmentation-models-pytorch",
    "torchgeo", "rasterio", "rioxarray", "geopandas", "numpy", "hydra-core", "omegaconf",
)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    try:
        import rasterio

        versions["gdal"] = rasterio.__gdal_version__
    except ImportError:
        pass
    return versions


def git_commit(where: Path) -> str | None:
    """The commit of the source tree the package runs from, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def devices() -> dict[str, Any]:
    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "platform": platform.platform()}
    try:
        import torch

        info["cuda_available"] = torch.cuda.is_available()
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def write_provenance(path: Path, seed: int, extra: dict[str, Any]) -> Path:
    """Write provenance.json atomically."""
    record = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": sys.argv,
        "seed": seed,
        "versions": package_versions(),
        "git_commit": git_commit(Path(__file__).resolve().parent),
        "devices": devices(),
        **extra,
    }
    return write_text_atomic(path, json.dumps(record, indent=2, sort_keys=True, default=str))
