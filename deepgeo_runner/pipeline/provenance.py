"""What a run needs to be understood and repeated: versions, commit, seed, devices, inputs."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deepgeo_runner.config.schema import CONFIG_SCHEMA_VERSION
from deepgeo_runner.core.atomic import write_text_atomic

REPEAT_ENV = "DEEPGEO_REPEAT_OF"  # the run deepgeo-repeat runs again; also read by a process that DDP starts again

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


PACKAGE_DIR = Path(__file__).resolve().parents[1]  # deepgeo_runner/: the source whose digest is recorded


def git_commit(where: Path) -> str | None:
    """The commit of the git checkout whose top folder holds ``where`` (the package's source tree),
    with ``+dirty`` when tracked files changed; None when ``where`` is not in such a checkout.

    ``where`` must sit directly below the checkout's top folder: an installed package (a wheel in a
    virtual environment that happens to lie inside some repository) has no commit of its own.
    """
    try:
        top = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "--show-toplevel"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        if Path(top).resolve() != where.resolve().parent:
            return None
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


@functools.cache
def source_digest(package_dir: Path = PACKAGE_DIR) -> str:
    """SHA-256 over the package's ``.py`` files and its config's ``.yaml`` files, names and contents.

    The same for a source checkout and for the wheel built from it (whose ``conf/`` lies inside the
    package), so a run made from an installed wheel can still be matched to its source.
    """
    conf = package_dir / "conf" if (package_dir / "conf").is_dir() else package_dir.parent / "conf"
    files = [(f"{package_dir.name}/{rel}", path) for rel, path in _files(package_dir, ".py", skip="conf")]
    files += [(f"conf/{rel}", path) for rel, path in _files(conf, ".yaml")]
    digest = hashlib.sha256()
    for name, path in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _files(root: Path, suffix: str, skip: str | None = None) -> list[tuple[str, Path]]:
    """(posix path relative to ``root``, path) of the files ending in ``suffix`` below ``root``,
    following links (conf/experiments links to experiments/ in the source tree)."""
    found = []
    for folder, dirs, names in os.walk(root, followlinks=True):
        dirs[:] = [d for d in dirs if d != "__pycache__" and not (skip and Path(folder) == root and d == skip)]
        found += [(Path(folder, n).relative_to(root).as_posix(), Path(folder, n)) for n in names if n.endswith(suffix)]
    return found


def code_version(package_dir: Path = PACKAGE_DIR) -> dict[str, str | None]:
    """What code ran: the installed distribution's version, the git commit when the package runs
    from a checkout (else None, e.g. installed from a wheel), and :func:`source_digest`."""
    try:
        package = importlib.metadata.version("deepgeo-runner")
    except importlib.metadata.PackageNotFoundError:
        package = None
    return {"package": package, "git_commit": git_commit(package_dir), "source_sha256": source_digest(package_dir)}


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
    code = code_version()
    record = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": sys.argv,
        "seed": seed,
        "versions": package_versions(),
        "git_commit": code["git_commit"],  # also at the top, where earlier runs have it
        "code_version": code,
        "config_schema_version": CONFIG_SCHEMA_VERSION,
        "devices": devices(),
        **_repeat_of(),
        **extra,
    }
    return write_text_atomic(path, json.dumps(record, indent=2, sort_keys=True, default=str))


def _repeat_of() -> dict[str, str]:
    """``repeat_of``: the run directory that ``deepgeo-repeat`` is running again, when it is."""
    return {"repeat_of": os.environ[REPEAT_ENV]} if os.environ.get(REPEAT_ENV) else {}
