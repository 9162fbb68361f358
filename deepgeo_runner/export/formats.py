"""The formats ``deepgeo-export`` and the ``export`` stage write, and their file names.

Only the standard library: the config checks (``export.formats``) read these before torch loads.
"""

from __future__ import annotations

from collections.abc import Sequence

from deepgeo_runner.core.errors import ConfigError

FORMATS = ("onnx", "pt2", "mlm")
FILE_NAMES = {"onnx": "model.onnx", "pt2": "model.pt2", "mlm": "mlm.json"}
MODEL_FORMATS = ("onnx", "pt2")  # the model files; mlm.json describes them
REQUIREMENTS = {"onnx": ("onnx", "onnxscript"), "pt2": (), "mlm": ()}  # Python packages beyond torch (export extra)


def parse_formats(formats: str | Sequence[str], key: str = "--formats") -> list[str]:
    """``formats`` (``"onnx,mlm"`` or a list) as known names, each once, in the order given."""
    names = [str(f).strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats)
             if str(f).strip()]
    unknown = [f for f in names if f not in FORMATS]
    if unknown or not names:
        example = "--formats onnx,mlm" if key == "--formats" else f"{key}=[onnx,mlm]"
        raise ConfigError(f"export formats {unknown or names}: choose among {list(FORMATS)}, e.g. {example}.")
    return list(dict.fromkeys(names))
