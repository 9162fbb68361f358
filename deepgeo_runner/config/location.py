"""Where the package's Hydra configs (``conf/``) are."""

from __future__ import annotations

from pathlib import Path


def config_dir() -> str:
    """conf/ inside an installed wheel, or the source tree's conf/ in an editable install."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"deepgeo-runner's conf/ not found next to {package}")
